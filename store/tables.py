"""Reading the results tables: the checked CSV reader, and the rows that hold a run at a stage.

What a run is at a stage, and where the files keep it:

* stage 0 (before pretraining): the FIRST stage-0 row of ``pretraining_results.csv``;
* stage 1 (after pretraining): the LAST stage-1 row; a run whose stage 1 wrote no rows ends with its LAST
  stage-0 row (the end of the SSN pretraining). The same rule picks the rows whose last threshold decides
  run exclusion and the start of stage 2 (:func:`pretraining_end_rows`);
* stage 2 (after training): the LAST row of the configuration's ``training_results.csv`` (raw κ included).

Per-run constants come from ``orimap.csv`` (the orientation map, one column per grid cell, so the grid size
is read from the file) and ``initial_parameters.csv`` (η, gE, gI: row stage = min(1, stage), falling back to
the stage-0 row, which holds the same values). The post-stage-1 regression readouts of
``init_readout_params.csv`` are found by their row codes (store.schema.REGRESSION_CODES).

The values come back as pandas rows and numpy arrays; training.run_state makes the model's state of them.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from store.errors import ResultsFileError
from store.files import is_packed, read_stored_bytes, stored
from store.layout import StudyLayout
from store.schema import REGRESSION_CODES, RUN_CONSTANT_COLUMNS, SSN_COLUMNS, RegressionCode, map_columns

logger = logging.getLogger(__name__)

STAGES: tuple[int, int, int] = (0, 1, 2)


# ------------------------------------------------------------------------------------------- checked reading
def read_results_csv(
    path: str | os.PathLike,
    required_columns: Iterable[str] = (),
    expected_rows: int | None = None,
    numeric: bool = True,
    columns: Callable[[str], bool] | None = None,
) -> pd.DataFrame:
    """Read a results CSV; ResultsFileError naming the file if missing, empty, corrupt or incomplete.

    Refused: a last line without its newline (a truncated write), missing required columns, required
    columns with non-numeric cells (unless numeric=False; empty cells are NaN by design) and, where the
    writer recorded it, a row count other than ``expected_rows``. ``columns`` keeps only the columns it accepts.
    """
    path = stored(path)  # the name every message gives: the file that was read
    source: Any = path
    if is_packed(path):  # a kept study's packed file: unpacked whole (which checks it), then parsed
        data = read_stored_bytes(path)
        if data and not data.endswith(b"\n"):
            raise ResultsFileError(f"results file {path} is truncated (its last row is incomplete)")
        source = io.BytesIO(data)
    else:
        _check_complete_last_line(path)
    try:
        df = pd.read_csv(source, usecols=columns)
    except FileNotFoundError as error:
        raise ResultsFileError(f"results file not found: {path}") from error
    except pd.errors.EmptyDataError as error:
        raise ResultsFileError(f"results file is empty: {path}") from error
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise ResultsFileError(f"results file cannot be parsed: {path}: {error}") from error
    except OSError as error:
        raise ResultsFileError(f"results file cannot be read: {path}: {error}") from error
    required = list(required_columns)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ResultsFileError(f"results file {path} lacks columns {missing}")
    if numeric:
        for column in required:
            values = pd.to_numeric(df[column], errors="coerce")
            bad = values.isna() & df[column].notna()
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0])
                raise ResultsFileError(f"results file {path}: column {column} holds a non-number "
                                       f"{df[column].iloc[row]!r} in data row {row + 1}")  # fmt: skip
    if expected_rows is not None and len(df) != expected_rows:
        raise ResultsFileError(f"results file {path} has {len(df)} rows, its writer recorded {expected_rows}")
    return df


def _check_complete_last_line(path: Path) -> None:
    """ResultsFileError if a non-empty file does not end with a newline (a write cut short)."""
    try:
        with path.open("rb") as fh:
            if fh.seek(0, 2) == 0:
                return
            fh.seek(-1, 2)
            last = fh.read(1)
    except FileNotFoundError as error:
        raise ResultsFileError(f"results file not found: {path}") from error
    except OSError as error:
        raise ResultsFileError(f"results file cannot be read: {path}: {error}") from error
    if last != b"\n":
        raise ResultsFileError(f"results file {path} is truncated (its last row is incomplete)")


# ------------------------------------------------------------------------------------------- row selection
def run_rows(table: pd.DataFrame, run_index: int, path: Path) -> pd.DataFrame:
    """The rows of one run; ResultsFileError naming the file and the run if there are none."""
    rows = table[table["run_index"] == run_index]
    if rows.empty:
        raise ResultsFileError(f"run {run_index} has no rows in {path}")
    return rows


def pretraining_end_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of a run's pretraining that its end is read from: its stage-1 rows, else its stage-0 rows."""
    stage1 = rows[rows["stage"] == 1]
    return stage1 if len(stage1) else rows[rows["stage"] == 0]


def pretraining_row(rows: pd.DataFrame, stage: int, path: Path) -> pd.Series:
    """A run's row at stage 0 (its first stage-0 row) or 1 (its last stage-1 row, else its last stage-0 row)."""
    if stage not in (0, 1):
        raise ValueError(f"pretraining stages are 0 and 1, got {stage}")
    stage0 = rows[rows["stage"] == 0]
    if stage == 1 and (rows["stage"] == 1).any():
        return pretraining_end_rows(rows).iloc[-1]
    run_index = int(rows["run_index"].iloc[0])
    if stage0.empty:
        raise ResultsFileError(f"run {run_index} has no stage-0 rows in {path}")
    if stage == 1:
        logger.warning("run %d has no stage-1 rows in %s: using its last stage-0 row", run_index, path)
        return stage0.iloc[-1]
    return stage0.iloc[0]


def last_threshold(thresholds: Sequence[float]) -> float:
    """The last finite threshold, NaN if none."""
    valid = [t for t in thresholds if np.isfinite(t)]
    return valid[-1] if valid else float("nan")


def final_pretraining_threshold(rows: pd.DataFrame) -> float:
    """The last non-NaN psychometric_offset of a run's pretraining end rows (run exclusion), NaN if none."""
    values = pretraining_end_rows(rows)["psychometric_offset"].dropna()
    return float(values.iloc[-1]) if len(values) else float("nan")


def orimap_from_rows(rows: pd.DataFrame, path: Path) -> np.ndarray:
    """A run's orientation map (degrees, grid order) from its one orimap.csv row."""
    if len(rows) > 1:
        raise ResultsFileError(f"run {int(rows['run_index'].iloc[0])} has {len(rows)} rows in {path}")
    return rows[map_columns(rows.columns)].to_numpy(np.float64).ravel()


def constants_row(rows: pd.DataFrame, stage: int, path: Path) -> pd.Series:
    """A run's initial_parameters.csv row for a stage: stage min(1, stage), else the stage-0 row."""
    run_index = int(rows["run_index"].iloc[0])
    wanted = min(1, stage)
    selected = rows[rows["stage"] == wanted]
    if selected.empty and wanted == 1:
        logger.warning("run %d has no stage-1 row in %s: using its stage-0 gains", run_index, path)
        selected = rows[rows["stage"] == 0]
    if selected.empty:
        raise ResultsFileError(f"run {run_index} has no stage-{wanted} row in {path}")
    if len(selected) > 1:
        raise ResultsFileError(f"run {run_index} has {len(selected)} stage-{wanted} rows in {path}")
    return selected.iloc[0]


# ------------------------------------------------------------------------------------------------ tables
class RunTables:
    """The per-run tables of a results folder (``root`` holds the pretraining files), each read once.

    A table is kept per (file, columns) pair: ``columns`` names the columns to read (None: every column), so
    that a reader of parameters does not hold the other columns of a long pretraining table.
    """

    def __init__(self, root: str | Path) -> None:
        self.layout = StudyLayout(Path(root))
        self._tables: dict[tuple[Path, frozenset[str] | None], pd.DataFrame] = {}

    def table(self, path: Path, columns: Sequence[str] | None = None,
              required: Sequence[str] = ("run_index",)) -> pd.DataFrame:  # fmt: skip
        """The table at ``path`` with ``columns`` (every column for None); ResultsFileError naming the file."""
        key = (path, None if columns is None else frozenset(columns))
        if key not in self._tables:
            keep = None if columns is None else key[1].__contains__
            self._tables[key] = read_results_csv(path, required, columns=keep)
        return self._tables[key]

    def rows(self, path: Path, run_index: int, columns: Sequence[str] | None = None,
             required: Sequence[str] = ("run_index",)) -> pd.DataFrame:  # fmt: skip
        """The rows of one run of a table."""
        return run_rows(self.table(path, columns, required), run_index, path)

    # pretraining files
    def pretraining(self, columns: Sequence[str] | None = ("run_index", "stage", *SSN_COLUMNS)) -> pd.DataFrame:
        """pretraining_results.csv (by default its parameter columns)."""
        return self.table(self.layout.pretraining_results, columns, ("run_index", "stage"))

    def pretraining_rows(self, run_index: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """A run's rows of pretraining_results.csv (every column for None)."""
        return run_rows(self.pretraining(columns), run_index, self.layout.pretraining_results)

    def run_indices(self) -> list[int]:
        """Sorted run indices present in pretraining_results.csv."""
        return sorted(int(r) for r in self.pretraining()["run_index"].dropna().unique())

    def orimap(self, run_index: int) -> np.ndarray:
        """The run's orientation map from orimap.csv."""
        path = self.layout.orimap
        return orimap_from_rows(self.rows(path, run_index), path)

    def constants(self, run_index: int, stage: int) -> pd.Series:
        """η, gE, gI of a run at a stage (initial_parameters.csv)."""
        path = self.layout.initial_parameters
        columns = ("run_index", "stage", *RUN_CONSTANT_COLUMNS)
        return constants_row(self.rows(path, run_index, columns, columns), stage, path)


# ------------------------------------------------------------------------------- regression readout rows
def read_regression_rows(pretraining_dir: str | Path, run_index: int,
                         contributions: tuple[float, float]) -> tuple[np.ndarray, float, float]:  # fmt: skip
    """The post-stage-1 regression readout of a readout mix as stored: its weights (middle weights first), its
    bias and its threshold."""
    if tuple(contributions) not in REGRESSION_CODES:
        raise ValueError(f"opt_readout_before_training needs readout contributions in {list(REGRESSION_CODES)}, "
                         f"got {contributions}")  # fmt: skip
    path = StudyLayout(Path(pretraining_dir)).init_readout_params
    table = read_results_csv(path, ["run_index", *RegressionCode._fields], numeric=False)
    rows = run_rows(table, run_index, path)
    weights, bias, threshold = [], None, None
    for code in REGRESSION_CODES[tuple(contributions)]:
        match = rows[(rows[list(code._fields)] == list(code)).all(axis=1)]
        if match.empty:
            raise ResultsFileError(f"{path} lacks the regression row {tuple(code)} of run {run_index}")
        row = match.iloc[0]
        weights.append(row[[c for c in rows.columns if c.startswith("w_sig_")]].to_numpy(np.float64))
        bias, threshold = float(row["b_sig"]), float(row["psychometric_offset"])
    return np.concatenate(weights), bias, threshold
