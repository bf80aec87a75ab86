"""Run exclusion after pretraining (spec §15), and the run-index lists that record excluded runs.

A run whose pretraining ended with a threshold outside the accepted range (or that has no pretraining rows)
is dropped from every per-run file and the survivors are renumbered; the lists of excluded runs (this one's
``excluded_runs_from_pretraining.csv`` and the analysis' ``excluded_runs*.csv``) are one run index per line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from store.errors import ResultsFileError
from store.files import atomic_copy, atomic_open, atomic_write_csv, has_stored, read_stored_text
from store.layout import EXCLUDED_RUNS, PRETRAINING_PIECES, PRETRAINING_RESULTS, complete_copy
from store.renumbering import parse_run_list, renumber, run_indices, survivor_mapping
from store.schema import ORIGINAL_RUN_INDEX
from store.tables import final_pretraining_threshold, read_results_csv

logger = logging.getLogger(__name__)

PER_RUN_FILES: tuple[str, ...] = PRETRAINING_PIECES
"""The per-run files that run exclusion filters (file names: store.layout)."""


# ------------------------------------------------------------------------------------------- index lists
def read_excluded_runs(path: str | os.PathLike) -> list[int]:
    """The sorted run indices of a one-index-per-line list (an empty file means none); ResultsFileError naming
    the file if it is missing or holds something else."""
    return parse_run_list(read_stored_text(path), str(path))


def write_excluded_runs(runs: Iterable[int], path: str | os.PathLike) -> Path:
    """Write run indices one per line in increasing order, no header (an empty file when there are none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        fh.write("".join(f"{int(r)}\n" for r in sorted(runs)))
    return path


# ----------------------------------------------------------------------------------- run exclusion (§15)
def final_pretraining_thresholds(pretraining_df: pd.DataFrame) -> pd.Series:
    """Per run: last non-NaN psychometric_offset of its stage-1 rows (stage-0 rows if it has none)."""
    df = pretraining_df[["run_index", "stage", "psychometric_offset"]]
    runs = run_indices(df["run_index"], "pretraining results")
    thresholds = {run: final_pretraining_threshold(df[runs == run]) for run in sorted(set(runs))}
    return pd.Series(thresholds, dtype=np.float64, name="psychometric_offset").rename_axis("run_index")


def read_all_pretraining_results(folder: str | os.PathLike, required_columns: Iterable[str] = ()) -> pd.DataFrame:
    """Every run's pretraining rows: the unfiltered copy that exclusion keeps, or the plain file where none ran."""
    complete = Path(folder) / complete_copy(PRETRAINING_RESULTS)
    return read_results_csv(complete if has_stored(complete) else Path(folder) / PRETRAINING_RESULTS, required_columns)


def excluded_runs_with_thresholds(folder: str | os.PathLike, pretraining_df: pd.DataFrame) -> dict[int, float]:
    """Original index -> final pretraining threshold (deg) of each run that exclusion dropped."""
    thresholds = final_pretraining_thresholds(pretraining_df)
    return {int(r): float(thresholds.get(r, np.nan)) for r in read_excluded_runs(Path(folder) / EXCLUDED_RUNS)}


def runs_to_exclude(thresholds: pd.Series, low: float = 5.0, high: float = 25.0) -> list[int]:
    """Run indices whose threshold is NaN, < low or > high (low and high themselves are kept)."""
    keep = (thresholds >= low) & (thresholds <= high)
    return sorted(int(run) for run in thresholds.index[~keep.to_numpy()])


def exclude_and_renumber(
    folder: str | os.PathLike, low: float = 5.0, high: float = 25.0, files: Sequence[str] = PER_RUN_FILES,
    by_threshold: bool = True,
) -> int:
    """Drop runs with a final threshold outside [low, high] from every per-run file and renumber.

    Keeps the unfiltered files as ``*_complete.csv``, lists excluded original indices in
    excluded_runs_from_pretraining.csv, renumbers survivors 0..n-1 in index order (k → k − #excluded < k,
    counting indices missing from every file as excluded) and returns n. With ``by_threshold`` False
    (PretrainingPars.exclude_runs) only the runs without pretraining rows (failed runs) are excluded.
    """
    folder = Path(folder)
    if PRETRAINING_RESULTS not in files:
        raise ValueError(f"files must include {PRETRAINING_RESULTS}, got {list(files)}")
    tables = {name: read_results_csv(folder / name, _required_for(name)) for name in files}
    _check_not_applied(folder, tables)
    all_runs = set().union(*(set(run_indices(df["run_index"], name)) for name, df in tables.items()))
    universe = range(max(all_runs) + 1) if all_runs else range(0)
    thresholds = final_pretraining_thresholds(tables[PRETRAINING_RESULTS]).reindex(universe)
    if by_threshold:
        excluded = runs_to_exclude(thresholds, low, high)
    else:  # every run that has pretraining rows is kept, whatever (or whether) its threshold
        present = set(run_indices(tables[PRETRAINING_RESULTS]["run_index"], PRETRAINING_RESULTS))
        excluded = sorted(set(universe) - present)
    survivors = sorted(set(universe) - set(excluded))
    _log_exclusion(universe, all_runs, excluded, survivors)
    for name in files:
        atomic_copy(folder / name, folder / complete_copy(name))
    write_excluded_runs(excluded, folder / EXCLUDED_RUNS)
    mapping = survivor_mapping(universe, excluded)
    for name, df in tables.items():
        absent = sorted(set(mapping) - set(run_indices(df["run_index"], name)))
        if absent:
            logger.warning("%s has no rows for retained runs %s", name, absent)
        atomic_write_csv(renumber(df, mapping, name), folder / name)
    return len(survivors)


def _check_not_applied(folder: Path, tables: Mapping[str, pd.DataFrame]) -> None:
    applied = [name for name, df in tables.items() if ORIGINAL_RUN_INDEX in df.columns]
    if applied:
        raise ResultsFileError(f"run exclusion was already applied to {applied} in {folder}; "
                               "the unfiltered files are the *_complete.csv copies")  # fmt: skip


def _required_for(name: str) -> list[str]:
    """Columns exclusion needs from a per-run file."""
    return ["run_index", "stage", "psychometric_offset"] if name == PRETRAINING_RESULTS else ["run_index"]


def _log_exclusion(universe: range, present: set[int], excluded: list[int], survivors: list[int]) -> None:
    absent = [run for run in universe if run not in present]
    if absent:
        logger.warning("run indices missing from every per-run file (counted as excluded): %s", absent)
    logger.info("excluding runs %s; %d runs retained", excluded, len(survivors))
