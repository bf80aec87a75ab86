"""Growing a study: ``python main.py --resume FOLDER --runs N`` adds runs up to N.

Every random stream derives from (base seed, run index, attempt) only (training.run_common.run_streams), a
pretraining job does not depend on how many runs the study has, and the assembly is redone over all runs in
run order, so a grown study ends with the files of a study started with N runs:

* **run exclusion** keeps the order of the runs: the runs kept before keep their renumbered indices, new kept
  runs are appended, and the stage-2 job folders of the kept runs stay valid;
* **the study-wide failure budget** (``TrainingPars.failure_budget = 'study'``) is counted over the runs in
  run order at each assembly: new runs cannot change whether an earlier run is kept, and if the budget was
  spent before, the new runs are dropped as they would be in a study started with N runs;
* **assembled files** (root CSVs, each configuration's CSVs): the study-stage markers are removed, so the
  stages assemble again from the jobs (a kept study's left-out pieces are written back first, study.pieces);
* **TrainingPars.num_runs** in environment.json's study record and in every parameters copy becomes N (the
  only value that differs between the copies of a study started with fewer runs and one started with N);
* **the analysis** is redone from scratch (main.analysis_stage) once the study's runs exceed those
  its last analysis covered: its outputs are tables over all runs (tuning curves in run order, statistics).

A ``--skip-pretraining`` study grows into the runs that its reused pretraining retains: grow that folder
first, then the study (study.cli.growth_target checks that it retains enough runs).

The steps below can be interrupted anywhere: the markers are removed first and environment.json, which says
how many runs the study has, is written last, so a resume redoes what is missing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path

from store import parameter_files
from store.files import has_stored, read_marker, write_json, write_marker
from store.layout import EXCLUDED_ALL, PRETRAINING_TC, REL_PRETRAIN, STUDY_SUMMARY, StudyLayout
from store.records import read_environment_record
from study import records
from study.design import StudyDesign

logger = logging.getLogger("main")

ANALYSIS_TRACES: tuple[str, ...] = (EXCLUDED_ALL, PRETRAINING_TC, REL_PRETRAIN, STUDY_SUMMARY)
"""Root files of the analysis: if one exists, the folder holds analysis outputs (of the runs before a growth)."""


def grow_study(folder: Path, study: StudyDesign, runs: int) -> StudyDesign:
    """Record that the study in ``folder`` has ``runs`` runs (more than now); the grown study."""
    layout = StudyLayout(folder)
    logger.info("growing the study from %d to %d runs", study.runs, runs)
    note_analysed_runs(layout, study)
    for marker in (layout.pretraining_done, *(layout.configuration(c).done for c in study.configs)):
        marker.unlink(missing_ok=True)
    for path in (layout.parameters, *(layout.configuration(c).parameters for c in study.configs)):
        if path.is_file():
            parameter_files.set_num_runs(path, runs)
    grown = grown_study(study, runs)
    record = read_environment_record(folder)
    record["study"] = grown.to_json()
    record["growths"] = [*record.get("growths", []), growth_entry(study.runs, runs)]
    write_json(layout.environment, record)
    return grown


def grown_study(study: StudyDesign, runs: int) -> StudyDesign:
    """The study record with ``runs`` runs (TrainingPars.num_runs among its overrides, as a new study's)."""
    overrides = parameter_files.merge_overrides(study.run_overrides, {"TrainingPars": {"num_runs": runs}})
    return dataclasses.replace(study, runs=runs, run_overrides=overrides)


def growth_entry(before: int, after: int) -> dict:
    """environment.json's record of one growth."""
    return {"from_runs": before, "to_runs": after, "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "code_version": records.code_version()}  # fmt: skip


def note_analysed_runs(layout: StudyLayout, study: StudyDesign) -> None:
    """Make the analysis marker say which runs the analysis outputs in the folder cover, so that the grown
    study's analysis is redone from scratch: add the runs to a marker of an earlier code version, and write one
    where the analysis ran by hand (python -m analysis.main_analysis writes no marker) or stopped part way."""
    payload = read_marker(layout.analysis_done)
    if payload is None and any(has_stored(layout.file(name)) for name in ANALYSIS_TRACES):
        payload = {"configs": list(study.configs)}
    if payload is not None and "runs" not in payload:
        write_marker(layout.analysis_done, {**payload, "runs": study.runs})
