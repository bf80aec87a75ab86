"""A run's saved state at a stage: the one reader (and the row writers) of what the results files hold per run.

What a run is at a stage, and where the files keep it:

* stage 0 (before pretraining): the FIRST stage-0 row of ``pretraining_results.csv``;
* stage 1 (after pretraining): the LAST stage-1 row; a run whose stage 1 wrote no rows ends with its LAST
  stage-0 row (the end of the SSN pretraining). The same rule picks the rows whose last threshold decides
  run exclusion and the start of stage 2 (:func:`pretraining_end_rows`);
* stage 2 (after training): the LAST row of the configuration's ``training_results.csv`` (raw κ included).

Per-run constants come from ``orimap.csv`` (the orientation map, one column per grid cell, so the grid size
is read from the file) and ``initial_parameters.csv`` (η, gE, gI: row stage = min(1, stage), falling back to
the stage-0 row, which holds the same values). The post-stage-1 regression readouts of
``init_readout_params.csv`` are rows keyed by three codes (log_regr, layer, sup_only), encoded and decoded
only here (:data:`REGRESSION_CODES`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pandas as pd

from parameters import Parameters
from study.layout import StudyLayout
from training.model import LogParams, zero_kappas
from training.readout import Readout
from training.results_io import (
    SSN_COLUMNS,
    ResultsFileError,
    kappas_from_row,
    read_results_csv,
    ssn_state_from_row,
)
from training.util_gabor import readout_indices

logger = logging.getLogger(__name__)

STAGES: tuple[int, int, int] = (0, 1, 2)
MEAN_RATE_COLUMNS: tuple[str, ...] = ("meanr_E_mid", "meanr_E_sup", "meanr_I_mid", "meanr_I_sup")
RUN_CONSTANT_COLUMNS: tuple[str, ...] = ("eta", "gE", "gI")


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


# ------------------------------------------------------------------------------------------ row decoding
def log_params_from_row(row: pd.Series, coupled: bool, with_kappas: bool, path: Path) -> dict[str, np.ndarray]:
    """Every trained quantity of a results row as float32 arrays; κ raw from the row, or zero (stages 0, 1)."""
    values = row.to_dict()
    try:
        log_params = ssn_state_from_row(values, coupled=coupled)
        if with_kappas:
            sup, mid, f = kappas_from_row(values)
            log_params.update({"kappa_Jsup": sup, "kappa_Jmid": mid, "kappa_f": f})
    except KeyError as error:
        raise ResultsFileError(f"results file {path}: {error}") from error
    if not with_kappas:
        log_params.update({k: np.asarray(v, dtype=np.float32) for k, v in zero_kappas().items()})
    return log_params


def readout_from_row(row: pd.Series, cells: Sequence[int]) -> Readout:
    """The SGD readout of a pretraining row restricted to the given grid cells (w_sig_<cell>, b_sig)."""
    weights = row[[f"w_sig_{i}" for i in cells]].to_numpy(np.float64)
    return Readout(jnp.asarray(weights, jnp.float32), jnp.float32(row["b_sig"]))


def map_columns(columns: Sequence[str]) -> list[str]:
    """The cell columns of orimap.csv ("0", "1", ...) in cell order; their number is the grid's cell count."""
    return sorted((c for c in columns if c.isdigit()), key=int)


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


# ------------------------------------------------------------------------------------------- stage-2 start
class Stage2Start(NamedTuple):
    """What stage 2 of a run starts from: the end of its pretraining and the run's constants."""

    log_params: LogParams
    readout: Readout
    threshold: float
    mean_rates: dict
    orimap: np.ndarray
    eta: float
    gE: float
    gI: float


def read_stage2_start(pretraining_dir: str | Path, run_index: int, params: Parameters) -> Stage2Start:
    """Parameters, readout, threshold and rates of the end of a run's pretraining, and its constants."""
    tables = RunTables(pretraining_dir)
    rows = pretraining_end_rows(tables.pretraining_rows(run_index, columns=None))
    last = rows.iloc[-1]
    central = readout_indices(params.grid.gridsize_Nx, params.readout.readout_grid_size[1])
    log_params = {k: jnp.asarray(v) for k, v in ssn_state_from_row(last, coupled=params.ssn.couple_c_ms).items()}
    constants = tables.constants(run_index, 1)
    threshold = last_threshold(rows["psychometric_offset"].tolist())
    return Stage2Start(log_params, readout_from_row(last, central), threshold,
                       {c: float(last[c]) for c in MEAN_RATE_COLUMNS}, tables.orimap(run_index),
                       float(constants["eta"]), float(constants["gE"]), float(constants["gI"]))  # fmt: skip


# ------------------------------------------------------------------------------- regression readout rows
class RegressionCode(NamedTuple):
    """The key of an init_readout_params.csv row (the reference's three flags)."""

    log_regr: int
    """1 for a logistic-regression readout, 0 for the SGD readout of stage 1."""
    layer: int
    """1 for superficial weights, 0 for middle weights."""
    sup_only: int
    """1 for a readout of one layer only, 0 for one half of the mixed readout."""


SGD_READOUT = RegressionCode(0, 1, 1)
SUPERFICIAL_ONLY = RegressionCode(1, 1, 1)
MIXED_MIDDLE_HALF = RegressionCode(1, 0, 0)
MIXED_SUPERFICIAL_HALF = RegressionCode(1, 1, 0)
MIDDLE_ONLY = RegressionCode(1, 0, 1)
REGRESSION_CODES: Mapping[tuple[float, float], tuple[RegressionCode, ...]] = {
    (1.0, 0.0): (SUPERFICIAL_ONLY,),
    (0.5, 0.5): (MIXED_MIDDLE_HALF, MIXED_SUPERFICIAL_HALF),
    (0.0, 1.0): (MIDDLE_ONLY,),
}
"""The rows of the regression readout of each readout mix (superficial, middle contributions); the mixed
readout's weights are its middle half followed by its superficial half."""


def regression_row(run_index: int, code: RegressionCode, w: np.ndarray, b: float, offset: float) -> dict:
    """One init_readout_params.csv row: the code, the weights w_sig_<i>, the bias and the readout's threshold."""
    row = {"run_index": run_index, **code._asdict(),
           **{f"w_sig_{i}": float(v) for i, v in enumerate(np.asarray(w))}, "b_sig": float(b),
           "psychometric_offset": offset}  # fmt: skip
    return row


def read_regression_readout(pretraining_dir: str | Path, run_index: int,
                            contributions: tuple[float, float]) -> tuple[Readout, float]:  # fmt: skip
    """The post-stage-1 regression readout of a readout mix (middle weights first) and its threshold."""
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
    return Readout(jnp.asarray(np.concatenate(weights), jnp.float32), jnp.float32(bias)), threshold
