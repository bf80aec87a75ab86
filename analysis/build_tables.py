"""Builders of the analysis tables (parts ``tuning_curves``, ``features``, ``changes`` and ``mvpa``): plain
functions over explicit arguments, declared as targets by :mod:`analysis.pipeline`.

Each table is resumable: its builder computes only what the file lacks (a (run, stage) block of tuning curves
or features, the runs of a relative-change table, a run's MVPA scores) and returns whether it wrote anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from analysis.cells import CellLayout, TaskOrientations
from analysis.changes import relative_changes
from analysis.decoding import score_tables
from analysis.mvpa_responses import MvpaSettings, ResponseCache, mvpa_scores_for_run
from analysis.snapshots import SnapshotLoader
from analysis.tables import TableCache
from analysis.tuning_curve_files import (
    TC_ID_COLUMNS,
    read_complete_tuning_curves,
    stage_blocks,
    write_tuning_curves_csv,
)
from analysis.tuning_curves import tuning_curve_blocks
from analysis.tuning_features import tuning_curve_features_table
from store.errors import ResultsFileError
from store.files import atomic_open, atomic_write_csv, has_stored, remove_stored
from store.layout import MVPA_SETTINGS, SCORE_TABLES, table_name

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- tuning curves
def build_tuning_curves(
    path: Path,
    wanted: Sequence[tuple[int, int]],
    conf: str | None,
    loader: SnapshotLoader,
    oris: Sequence[float],
    layout: CellLayout,
    overwrite: bool,
) -> bool:
    """Append the missing (run, stage) blocks of one tuning-curve file (stage 2 of configuration ``conf``);
    True if any was computed."""
    if overwrite:
        remove_stored(path)
    done = stage_blocks(read_complete_tuning_curves(path, len(oris), layout))
    todo = [b for b in wanted if b not in done]
    if not todo:
        return False
    for run, stage in tqdm(todo, desc=f"tuning curves {conf or 'pretraining'}", disable=None):
        try:
            snapshot = loader.snapshot(run, stage, conf)
        except ResultsFileError as error:
            logger.warning("tuning curves of run %d stage %d skipped: %s", run, stage, error)
            continue
        write_tuning_curves_csv(tuning_curve_blocks([snapshot], oris), path, append=True)
    return True


# ----------------------------------------------------------------------------------------------------- features
def build_features(
    tc_path: Path,
    out: Path,
    stages: Sequence[int],
    oris: Sequence[float],
    layout: CellLayout,
    orientations: TaskOrientations,
    cache: TableCache,
    overwrite: bool,
) -> bool:
    """Compute the features of the tuning-curve blocks that the features file lacks (drop vanished blocks)."""
    if not has_stored(tc_path):
        logger.warning("%s missing: no features for it (run the tuning_curves part)", tc_path)
        return False
    tc = read_complete_tuning_curves(tc_path, len(oris), layout)
    tc = tc[tc["training_stage"].isin(stages)]
    present = stage_blocks(tc)
    old = None if overwrite else cache.read(out)
    if old is not None:
        in_tc = [(int(r), int(s)) in present for r, s in zip(old["run_index"], old["stage"], strict=True)]
        kept = old[in_tc]
        if len(kept) == len(old) and stage_blocks(kept, ("run_index", "stage")) == present:
            return False
        old = kept
    have = stage_blocks(old, ("run_index", "stage")) if old is not None else set()
    new = [
        tuning_curve_features_table(block, stages, oris, orientations.slopes, orientations.trained)
        for (run, stage), block in tc.groupby(list(TC_ID_COLUMNS), sort=False)
        if (int(run), int(stage)) not in have
    ]
    table = pd.concat([t for t in (old, *new) if t is not None and len(t)], ignore_index=True)
    table = table.sort_values(["run_index", "stage"], kind="stable").reset_index(drop=True)
    atomic_write_csv(table, out)
    return True


# --------------------------------------------------------------------------------------------- relative changes
def build_relative_changes(
    path: Path,
    pre_df: pd.DataFrame,
    train_df: pd.DataFrame,
    runs: list[int],
    window: str,
    cache: TableCache,
    overwrite: bool,
) -> bool:
    """Write a relative-change table (analysis.changes.relative_changes over the 'train' or 'pretrain' window)
    if it is missing, to be overwritten or covers other runs."""
    old = None if overwrite else cache.read(path)
    if old is not None and sorted(old["run_index"].astype(int)) == sorted(runs):
        return False
    atomic_write_csv(relative_changes(pre_df, train_df, runs, window), path)
    return True


# ------------------------------------------------------------------------------------------------------- MVPA
@dataclass
class MvpaJob:
    """The MVPA work of one configuration: its folder, valid runs, score tables and missing runs."""

    folder: Path
    tables: dict[str, pd.DataFrame]
    todo: list[int]


@dataclass
class MvpaBatch:
    """The MVPA of every configuration of one analysis call, computed once when the first configuration's
    target asks (runs are taken one at a time across the configurations, so that their shared stages 0 and 1
    are simulated once per run, analysis.mvpa_responses.ResponseCache)."""

    folders: dict[str, Path]
    """Configuration -> its folder."""
    valid: dict[str, list[int]]
    """Configuration -> the runs its analysis keeps."""
    loader: SnapshotLoader
    settings: MvpaSettings
    record: dict
    """The settings the scores depend on, stored beside them (AnalysisSettings.mvpa_record)."""
    cache: TableCache
    overwrite: bool
    written: set[str] | None = field(default=None, init=False)
    """The configurations whose tables this call wrote (None until computed)."""

    def wrote(self, conf: str) -> bool:
        """Whether this call wrote the configuration's score tables (computing every configuration's once)."""
        if self.written is None:
            self.written = run_mvpa(self)
        return conf in self.written


def run_mvpa(batch: MvpaBatch) -> set[str]:
    """The MVPA of every configuration of a batch; the configurations whose tables were written."""
    jobs = {conf: job for conf in batch.folders if (job := mvpa_job(batch, conf)) is not None}
    runs = sorted({run for job in jobs.values() for run in job.todo})
    for run in tqdm(runs, desc="MVPA", disable=None):
        responses: ResponseCache = {}
        for conf, job in jobs.items():
            if run in job.todo:
                mvpa_run(batch, conf, job, run, responses)
    for job in jobs.values():
        if not job.todo:  # nothing to compute, but runs were dropped from the tables
            write_scores(job.folder, job.tables, batch.record)
    return set(jobs)


def mvpa_job(batch: MvpaBatch, conf: str) -> MvpaJob | None:
    """The configuration's score tables restricted to its valid runs and the runs they lack (None if the tables
    on disk are complete and current)."""
    folder, valid = batch.folders[conf], batch.valid[conf]
    tables = {} if batch.overwrite else existing_scores(folder, batch.record, batch.cache)
    done = set(tables["MVPA_scores"]["run_index"].astype(int)) if tables else set()
    filtered = {name: t[t["run_index"].astype(int).isin(valid)] for name, t in tables.items()}
    todo = [r for r in valid if r not in done]
    if tables and not todo and all(len(filtered[n]) == len(tables[n]) for n in SCORE_TABLES):
        return None
    return MvpaJob(folder, filtered or {name: pd.DataFrame() for name in SCORE_TABLES}, todo)


def mvpa_run(batch: MvpaBatch, conf: str, job: MvpaJob, run: int, responses: ResponseCache) -> None:
    """Scores of one run of a configuration, appended to its tables, which are then written."""
    try:
        snapshots = [batch.loader.snapshot(run, st, conf if st == 2 else None) for st in (0, 1, 2)]
    except ResultsFileError as error:
        logger.warning("MVPA of run %d skipped: %s", run, error)
        return
    new = score_tables({run: mvpa_scores_for_run(snapshots, batch.settings, responses)})
    job.tables = {
        name: pd.concat([t for t in (job.tables[name], new[name]) if len(t)], ignore_index=True)
        for name in SCORE_TABLES
    }
    write_scores(job.folder, job.tables, batch.record)


def existing_scores(folder: Path, record: dict, cache: TableCache) -> dict[str, pd.DataFrame]:
    """The score tables of the folder if all exist and were computed with these settings, else {}."""
    settings_path = folder / MVPA_SETTINGS
    if not settings_path.is_file() or json.loads(settings_path.read_text()) != record:
        return {}
    tables = {name: cache.read(folder / table_name(name)) for name in SCORE_TABLES}
    if any(t is None or "run_index" not in t.columns for t in tables.values()):
        return {}
    return tables


def write_scores(folder: Path, tables: dict[str, pd.DataFrame], record: dict) -> None:
    """Write the score tables (sorted by run) and the settings they were computed with."""
    for name, table in tables.items():
        table = table if len(table.columns) else pd.DataFrame(columns=["run_index"])
        atomic_write_csv(table.sort_values("run_index", kind="stable"), folder / table_name(name))
    with atomic_open(folder / MVPA_SETTINGS) as fh:  # the cache trusts any settings file it finds
        fh.write(json.dumps(record, indent=1))
