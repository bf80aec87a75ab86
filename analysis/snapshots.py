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

A study started with ``--skip-pretraining`` holds no pretraining files: stages 0 and 1 (their tables, map,
gains and ``parameters.py``) come from the folder its PRETRAINING_DONE.json names
(store.records.pretraining_folder), stage 2 from the study itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from parameters import Parameters, load_parameters_file
from store.errors import ResultsFileError
from store.layout import ORIMAP, ConfigurationLayout, StudyLayout
from store.records import pretraining_folder
from store.schema import KAPPA_COLUMNS, SSN_COLUMNS
from store.tables import STAGES, RunTables, pretraining_row, run_rows
from training.model import ModelStatic, build_static
from training.run_state import log_params_from_row

logger = logging.getLogger(__name__)

STATIC_CACHE_SIZE = 2
"""Model constants a SnapshotLoader keeps (the latest ones)."""


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
    return StudyLayout(Path(results_root)).configuration(conf).parameters


def training_results_path(results_root: str | Path, conf: str) -> Path:
    """``R/<conf>/training_results.csv``."""
    return StudyLayout(Path(results_root)).configuration(conf).training_results


def parameters_path(results_root: str | Path, stage: int, conf: str | None) -> Path:
    """The parameters file of a snapshot: the configuration's own copy for stage 2, the root copy otherwise."""
    if stage == 2:
        if conf is None:
            raise ValueError("stage 2 needs a configuration name (conf)")
        return configuration_parameters_path(results_root, conf)
    return StudyLayout(Path(results_root)).parameters


def read_parameters(path: Path) -> Parameters:
    """Load a parameters file; ResultsFileError naming it if it is missing."""
    if not path.is_file():
        raise ResultsFileError(f"parameters file not found: {path}")
    return load_parameters_file(path)


class SnapshotLoader:
    """Reads the results tables of one results folder once and builds snapshots from them."""

    def __init__(self, results_root: str | Path) -> None:
        self.root = Path(results_root)
        self.layout = StudyLayout(self.root)
        # stages 0 and 1 come from the pretraining, which a --skip-pretraining study reads from another folder
        self.pretraining_layout = StudyLayout(pretraining_folder(self.root))
        self.tables = RunTables(self.pretraining_layout.root)
        self._params: dict[Path, Parameters] = {}
        self._statics: dict[tuple[bytes, float, float, Parameters], ModelStatic] = {}

    # ---------------------------------------------------------------------------------------- tables
    def pretraining(self) -> pd.DataFrame:
        """Parameter columns of ``pretraining_results.csv``."""
        return self.tables.pretraining()

    def training(self, conf: str) -> pd.DataFrame:
        """Parameter and κ columns of ``R/<conf>/training_results.csv``."""
        path = self.configuration(conf).training_results
        return self.tables.table(path, ["run_index", *SSN_COLUMNS, *KAPPA_COLUMNS])

    def configuration(self, conf: str) -> ConfigurationLayout:
        """The folder of a configuration."""
        return self.layout.configuration(conf)

    def parameters(self, stage: int, conf: str | None) -> Parameters:
        """The (cached) parameters of a snapshot's stage and configuration."""
        root = self.root if stage == 2 else self.pretraining_layout.root
        path = parameters_path(root, stage, conf)
        if path not in self._params:
            self._params[path] = read_parameters(path)
        return self._params[path]

    def run_indices(self) -> list[int]:
        """Sorted run indices present in ``pretraining_results.csv``."""
        return self.tables.run_indices()

    def training_runs(self, conf: str) -> list[int]:
        """Sorted run indices with rows in the configuration's ``training_results.csv``."""
        return sorted(int(r) for r in self.training(conf)["run_index"].dropna().unique())

    # ---------------------------------------------------------------------------------- snapshot parts
    def parameter_row(self, run_index: int, stage: int, conf: str | None = None) -> pd.Series:
        """The results row whose parameters define the snapshot (store.tables)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage}")
        if stage == 2:
            if conf is None:
                raise ValueError("stage 2 needs a configuration name (conf)")
            path = self.configuration(conf).training_results
            return run_rows(self.training(conf), run_index, path).iloc[-1]
        rows = self.tables.pretraining_rows(run_index, ("run_index", "stage", *SSN_COLUMNS))
        return pretraining_row(rows, stage, self.tables.layout.pretraining_results)

    def log_params(self, run_index: int, stage: int, conf: str | None = None) -> dict[str, np.ndarray]:
        """Every trained quantity of the snapshot as float32 arrays; κ raw (zeros before stage 2)."""
        row = self.parameter_row(run_index, stage, conf)
        coupled = self.parameters(stage, conf).ssn.couple_c_ms
        path = self.configuration(conf).training_results if stage == 2 else self.tables.layout.pretraining_results
        return log_params_from_row(row, coupled, with_kappas=stage == 2, path=path)

    def gains(self, run_index: int, stage: int) -> tuple[float, float]:
        """(gE, gI) of ``initial_parameters.csv`` at row stage min(1, stage) (stage 0 if that row is missing)."""
        row = self.tables.constants(run_index, stage)
        return float(row["gE"]), float(row["gI"])

    def orimap(self, run_index: int) -> np.ndarray:
        """The run's orientation map (degrees, grid order) from ``orimap.csv``."""
        return self.tables.orimap(run_index)

    def snapshot(self, run_index: int, stage: int, conf: str | None = None) -> Snapshot:
        """The model of run ``run_index`` at ``stage`` (configuration ``conf`` for stage 2)."""
        params = self.parameters(stage, conf)
        log_params = self.log_params(run_index, stage, conf)
        orimap = self.orimap(run_index)
        expected = params.grid.gridsize_Nx**2
        if orimap.size != expected:
            raise ResultsFileError(f"run {run_index}: {ORIMAP} has {orimap.size} map values, expected {expected}")
        gE, gI = self.gains(run_index, stage)
        return Snapshot(log_params, self.static(orimap, gE, gI, params), params, int(run_index), int(stage), conf)

    def static(self, orimap: np.ndarray, gE: float, gI: float, params: Parameters) -> ModelStatic:
        """build_static, kept for the STATIC_CACHE_SIZE latest (map, gains, parameters): consecutive snapshots of
        one run share them."""
        orimap = np.asarray(orimap, dtype=np.float64)
        key = (orimap.tobytes(), gE, gI, params)
        static = self._statics.pop(key, None)
        if static is None:
            static = build_static(orimap, gE, gI, params)
        self._statics[key] = static  # the latest last: the oldest is dropped first
        while len(self._statics) > STATIC_CACHE_SIZE:
            del self._statics[next(iter(self._statics))]
        return static


def load_snapshot(results_root: str | Path, run_index: int, stage: int, conf: str | None = None) -> Snapshot:
    """The model of one run at stage 0, 1 or 2 (``conf`` names the configuration folder for stage 2)."""
    return SnapshotLoader(results_root).snapshot(run_index, stage, conf)
