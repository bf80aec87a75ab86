"""Rebuild the model of one run at one analysis stage from a results folder (ANALYSIS.md §0.2, B1, B2, B20).

Stages: 0 = before pretraining (FIRST stage-0 row of ``pretraining_results.csv``), 1 = after pretraining
(LAST stage-1 row; a run without stage-1 rows falls back to its LAST stage-0 row, the end of the SSN
pretraining, with a warning), 2 = after training (LAST row of ``R/<conf>/training_results.csv``).

Fixes built here: every trained quantity is reloaded, κ included (B1; the files hold raw κ, the model
applies tanh; stages 0 and 1 use κ = 0); the parameters come from the file the snapshot was trained with:
``R/<conf>/parameters_<conf>.py`` for stage 2 and ``R/parameters.py`` otherwise (B2); every file is
opened by its explicit path, never by probing parent folders (B20). Gabor gains come from
``initial_parameters.csv`` (row stage = min(1, stage), falling back to the stage-0 row, which holds the
same gains, if the stage-1 row is missing) and the orientation map from ``orimap.csv``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from parameters import Parameters, load_parameters_file
from training.model import ModelStatic, build_static, zero_kappas
from training.results_io import (
    INITIAL_PARAMETERS,
    KAPPA_COLUMNS,
    ORIMAP,
    PRETRAINING_RESULTS,
    SSN_COLUMNS,
    ResultsFileError,
    kappas_from_row,
    ssn_state_from_row,
)

logger = logging.getLogger(__name__)

STAGES: tuple[int, int, int] = (0, 1, 2)
TRAINING_RESULTS = "training_results.csv"
ROOT_PARAMETERS = "parameters.py"


@dataclass(frozen=True)
class Snapshot:
    """The model of one run at one stage: log-parameters (κ included), per-run constants and parameters."""

    log_params: dict[str, np.ndarray]
    static: ModelStatic
    params: Parameters
    run_index: int = -1
    stage: int = -1
    conf: str | None = None


def configuration_parameters_path(results_root: str | Path, conf: str) -> Path:
    """``R/<conf>/parameters_<conf>.py``."""
    return Path(results_root) / conf / f"parameters_{conf}.py"


def training_results_path(results_root: str | Path, conf: str) -> Path:
    """``R/<conf>/training_results.csv``."""
    return Path(results_root) / conf / TRAINING_RESULTS


def parameters_path(results_root: str | Path, stage: int, conf: str | None) -> Path:
    """The parameters file of a snapshot: the configuration's own copy for stage 2, the root copy otherwise."""
    if stage == 2:
        if conf is None:
            raise ValueError("stage 2 needs a configuration name (conf)")
        return configuration_parameters_path(results_root, conf)
    return Path(results_root) / ROOT_PARAMETERS


def read_parameters(path: Path) -> Parameters:
    """Load a parameters file; ResultsFileError naming it if it is missing."""
    if not path.is_file():
        raise ResultsFileError(f"parameters file not found: {path}")
    return load_parameters_file(path)


def _read_table(path: Path, keep: Callable[[str], bool]) -> pd.DataFrame:
    """Read the columns accepted by ``keep`` of a results CSV (pandas parses floats exactly)."""
    if not path.is_file():
        raise ResultsFileError(f"results file not found: {path}")
    try:
        df = pd.read_csv(path, usecols=keep)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise ResultsFileError(f"results file cannot be parsed: {path}: {error}") from error
    if "run_index" not in df.columns:
        raise ResultsFileError(f"results file {path} lacks the column 'run_index'")
    df["run_index"] = pd.to_numeric(df["run_index"], errors="coerce")
    return df


def _run_rows(df: pd.DataFrame, run_index: int, path: Path) -> pd.DataFrame:
    """The rows of one run; ResultsFileError naming the file and the run if there are none."""
    rows = df[df["run_index"] == run_index]
    if rows.empty:
        raise ResultsFileError(f"run {run_index} has no rows in {path}")
    return rows


def _require(df: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    """ResultsFileError naming the file if columns are missing."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ResultsFileError(f"results file {path} lacks columns {missing}")


class SnapshotLoader:
    """Reads the results tables of one results folder once and builds snapshots from them."""

    def __init__(self, results_root: str | Path) -> None:
        self.root = Path(results_root)
        self._tables: dict[Path, pd.DataFrame] = {}
        self._params: dict[Path, Parameters] = {}

    # ---------------------------------------------------------------------------------------- tables
    def _table(self, path: Path, columns: Sequence[str] | Callable[[str], bool]) -> pd.DataFrame:
        """A cached table holding only the columns the snapshots need (names or a predicate)."""
        if path not in self._tables:
            keep = columns if callable(columns) else set(columns).__contains__
            self._tables[path] = _read_table(path, keep)
        return self._tables[path]

    def pretraining(self) -> pd.DataFrame:
        """Parameter columns of ``pretraining_results.csv``."""
        path = self.root / PRETRAINING_RESULTS
        df = self._table(path, ["run_index", "stage", *SSN_COLUMNS])
        _require(df, ["stage"], path)
        return df

    def training(self, conf: str) -> pd.DataFrame:
        """Parameter and κ columns of ``R/<conf>/training_results.csv``."""
        return self._table(training_results_path(self.root, conf), ["run_index", *SSN_COLUMNS, *KAPPA_COLUMNS])

    def parameters(self, stage: int, conf: str | None) -> Parameters:
        """The (cached) parameters of a snapshot's stage and configuration."""
        path = parameters_path(self.root, stage, conf)
        if path not in self._params:
            self._params[path] = read_parameters(path)
        return self._params[path]

    def run_indices(self) -> list[int]:
        """Sorted run indices present in ``pretraining_results.csv``."""
        return sorted(int(r) for r in self.pretraining()["run_index"].dropna().unique())

    def training_runs(self, conf: str) -> list[int]:
        """Sorted run indices with rows in the configuration's ``training_results.csv``."""
        return sorted(int(r) for r in self.training(conf)["run_index"].dropna().unique())

    # ---------------------------------------------------------------------------------- snapshot parts
    def parameter_row(self, run_index: int, stage: int, conf: str | None = None) -> pd.Series:
        """The results row whose parameters define the snapshot (§0.2)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage}")
        if stage == 2:
            if conf is None:
                raise ValueError("stage 2 needs a configuration name (conf)")
            path = training_results_path(self.root, conf)
            return _run_rows(self.training(conf), run_index, path).iloc[-1]
        path = self.root / PRETRAINING_RESULTS
        rows = _run_rows(self.pretraining(), run_index, path)
        stage0, stage1 = rows[rows["stage"] == 0], rows[rows["stage"] == 1]
        if stage == 1 and len(stage1):
            return stage1.iloc[-1]
        if stage0.empty:
            raise ResultsFileError(f"run {run_index} has no stage-0 rows in {path}")
        if stage == 1:
            logger.warning("run %d has no stage-1 rows in %s: using its last stage-0 row", run_index, path)
            return stage0.iloc[-1]
        return stage0.iloc[0]

    def log_params(self, run_index: int, stage: int, conf: str | None = None) -> dict[str, np.ndarray]:
        """Every trained quantity of the snapshot as float32 arrays; κ raw (zeros before stage 2)."""
        row = self.parameter_row(run_index, stage, conf)
        coupled = self.parameters(stage, conf).ssn.couple_c_ms
        path = training_results_path(self.root, conf) if stage == 2 else self.root / PRETRAINING_RESULTS
        try:
            log_params = ssn_state_from_row(row.to_dict(), coupled=coupled)
        except KeyError as error:
            raise ResultsFileError(f"results file {path}: {error}") from error
        if stage == 2:
            try:
                sup, mid, f = kappas_from_row(row.to_dict())
            except KeyError as error:
                raise ResultsFileError(f"results file {path}: {error}") from error
            log_params.update({"kappa_Jsup": sup, "kappa_Jmid": mid, "kappa_f": f})
        else:
            log_params.update({k: np.asarray(v, dtype=np.float32) for k, v in zero_kappas().items()})
        return log_params

    def gains(self, run_index: int, stage: int) -> tuple[float, float]:
        """(gE, gI) of ``initial_parameters.csv`` at row stage min(1, stage) (stage 0 if that row is missing)."""
        path = self.root / INITIAL_PARAMETERS
        df = self._table(path, ["run_index", "stage", "gE", "gI"])
        _require(df, ["stage", "gE", "gI"], path)
        rows = _run_rows(df, run_index, path)
        wanted = min(1, stage)
        sel = rows[rows["stage"] == wanted]
        if sel.empty and wanted == 1:
            logger.warning("run %d has no stage-1 row in %s: using its stage-0 gains", run_index, path)
            sel = rows[rows["stage"] == 0]
        if sel.empty:
            raise ResultsFileError(f"run {run_index} has no stage-{wanted} row in {path}")
        if len(sel) > 1:
            raise ResultsFileError(f"run {run_index} has {len(sel)} stage-{wanted} rows in {path}")
        return float(sel["gE"].iloc[0]), float(sel["gI"].iloc[0])

    def orimap(self, run_index: int) -> np.ndarray:
        """The run's orientation map (degrees, grid order) from ``orimap.csv``."""
        path = self.root / ORIMAP
        df = self._table(path, lambda c: c == "run_index" or c.isdigit())
        rows = _run_rows(df, run_index, path)
        if len(rows) > 1:
            raise ResultsFileError(f"run {run_index} has {len(rows)} rows in {path}")
        cells = sorted((c for c in df.columns if c != "run_index"), key=int)
        return rows[cells].to_numpy(np.float64).ravel()

    def snapshot(self, run_index: int, stage: int, conf: str | None = None) -> Snapshot:
        """The model of run ``run_index`` at ``stage`` (configuration ``conf`` for stage 2)."""
        params = self.parameters(stage, conf)
        log_params = self.log_params(run_index, stage, conf)
        orimap = self.orimap(run_index)
        expected = params.grid.gridsize_Nx**2
        if orimap.size != expected:
            raise ResultsFileError(f"run {run_index}: {ORIMAP} has {orimap.size} map values, expected {expected}")
        gE, gI = self.gains(run_index, stage)
        static = _cached_static(orimap.tobytes(), gE, gI, params)
        return Snapshot(log_params, static, params, int(run_index), int(stage), conf)


@functools.lru_cache(maxsize=2)
def _cached_static(orimap_bytes: bytes, gE: float, gI: float, params: Parameters) -> ModelStatic:
    """build_static, cached for consecutive snapshots of one run (stages share the map and the gains)."""
    return build_static(np.frombuffer(orimap_bytes, dtype=np.float64), gE, gI, params)


def load_snapshot(results_root: str | Path, run_index: int, stage: int, conf: str | None = None) -> Snapshot:
    """The model of one run at stage 0, 1 or 2 (``conf`` names the configuration folder for stage 2)."""
    return SnapshotLoader(results_root).snapshot(run_index, stage, conf)
