"""Assembly of a study's results files from its jobs' pieces, in run order.

A job writes its pieces into its own folder (``pretraining_runs/run_<i>/`` or
``<conf>/training_runs/run_<i>/``) and, last, its job marker; the documented root files are assembled from the
completed jobs in run order, so they never depend on which job finished first. The pretraining's assembly
ends with run exclusion and renumbering (store.exclusion).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from parameters import Parameters, load_parameters_file
from store.errors import ResultsFileError
from store.exclusion import exclude_and_renumber
from store.files import atomic_write_csv, read_marker
from store.layout import (
    PRETRAINING_PIECES,
    PRETRAINING_RESULTS,
    TRAINING_PIECES,
    TRAINING_RESULTS,
    TRAINING_RESULTS_VAL,
    ConfigurationLayout,
    StudyLayout,
)
from store.schema import training_columns, val_columns
from store.tables import read_results_csv

logger = logging.getLogger(__name__)


def pretraining_job_status(results_dir: Path, run_index: int) -> dict | None:
    """The marker of a pretraining job, None while it has not finished."""
    return read_marker(StudyLayout(results_dir).pretraining_run(run_index).marker)


def training_job_status(conf_dir: Path, run_index: int) -> dict | None:
    """The marker of a stage-2 job, None while it has not finished."""
    return read_marker(ConfigurationLayout(conf_dir).run(run_index).marker)


def runs_within_budget(failures: Sequence[int], budget: int) -> int:
    """How many leading runs a study-wide failure budget keeps (TrainingPars.failure_budget = 'study').

    The reference ran the runs one after another and stopped the study once more than ``budget`` attempts had
    failed. Here every run is an independent job that caps its own attempts at the budget; walking the runs in
    order, a run is kept while the failed attempts of it and all earlier runs add up to at most ``budget``.
    """
    total = 0
    for run_index, count in enumerate(failures):
        total += count
        if total > budget:
            return run_index
    return len(failures)


def assemble_pretraining(results_dir: Path, params: Parameters, num_runs: int) -> int:
    """Root CSVs from the completed jobs in run order, then exclusion and renumbering; retained runs."""
    layout = StudyLayout(results_dir)
    tables: dict[str, list] = {name: [] for name in PRETRAINING_PIECES}
    statuses = []
    for run_index in range(num_runs):
        status = pretraining_job_status(results_dir, run_index)
        if status is None:
            folder = layout.pretraining_run(run_index).folder
            raise ResultsFileError(f"pretraining job of run {run_index} has not completed ({folder})")
        statuses.append(status)
    failures = [len(status.get("failures", [])) for status in statuses]
    budget = params.training.max_failed_runs
    kept = runs_within_budget(failures, budget) if params.training.failure_budget == "study" else num_runs
    if kept < num_runs:
        logger.warning("the study's budget of %d failed attempts is spent at run %d: runs %d-%d are dropped",
                       budget, kept, kept, num_runs - 1)  # fmt: skip
    elif sum(failures) > budget:
        logger.warning("%d failed attempts in total (more than max_failed_runs = %d)", sum(failures), budget)
    for run_index, status in enumerate(statuses[:kept]):
        if status["success"]:
            for name in PRETRAINING_PIECES:
                rows = status.get("rows", {}).get(name)  # the row count the job recorded with its marker
                tables[name].append(read_results_csv(layout.pretraining_run(run_index).file(name), expected_rows=rows))
    if not tables[PRETRAINING_RESULTS]:
        raise ResultsFileError(f"no pretraining run succeeded in {results_dir}")
    for name, parts in tables.items():
        atomic_write_csv(pd.concat(parts, ignore_index=True), layout.file(name))
    low, high = params.pretraining.run_threshold_range
    return exclude_and_renumber(layout.root, low=low, high=high, by_threshold=params.pretraining.exclude_runs)


def assemble_training(conf_dir: Path, num_runs: int) -> None:
    """training_results(.csv, _val.csv) from the completed jobs in run order (failed runs have no rows)."""
    conf = ConfigurationLayout(conf_dir)
    parts: dict[str, list] = {name: [] for name in TRAINING_PIECES}
    for run_index in range(num_runs):
        status = training_job_status(conf.folder, run_index)
        if status is None:
            raise ResultsFileError(f"stage-2 job of run {run_index} in {conf.folder} has not completed")
        if status["success"]:
            for name in parts:
                expected = status.get("rows", {}).get(name)
                parts[name].append(read_results_csv(conf.run(run_index).file(name), expected_rows=expected))
    params = load_parameters_file(conf.parameters)
    columns = {TRAINING_RESULTS: training_columns(),
               TRAINING_RESULTS_VAL: val_columns(training_columns(), params.training.test_offsets)}  # fmt: skip
    for name, tables in parts.items():
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns[name])
        atomic_write_csv(table, conf.file(name))


def retained_runs(pretraining_dir: Path) -> int:
    """Number of runs in the (renumbered) pretraining files."""
    return len(read_results_csv(StudyLayout(pretraining_dir).orimap, ["run_index"]))
