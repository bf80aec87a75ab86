"""A run's saved state at a stage, as the model's values: the results rows (store.tables) decoded into
log-parameters, readouts and the start of stage 2.

Which rows hold a run at a stage, and the per-run constants, are read by :mod:`store.tables`; this module makes
the model's state of them (κ zero where a stage does not train it, readouts as JAX arrays).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pandas as pd

from parameters import Parameters
from store.errors import ResultsFileError
from store.schema import MEAN_RATE_COLUMNS, kappas_from_row, ssn_state_from_row
from store.tables import RunTables, last_threshold, pretraining_end_rows, read_regression_rows
from training.model import LogParams, zero_kappas
from training.readout import Readout
from training.util_gabor import readout_indices


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


def read_regression_readout(pretraining_dir: str | Path, run_index: int,
                            contributions: tuple[float, float]) -> tuple[Readout, float]:  # fmt: skip
    """The post-stage-1 regression readout of a readout mix (middle weights first) and its threshold."""
    weights, bias, threshold = read_regression_rows(pretraining_dir, run_index, contributions)
    return Readout(jnp.asarray(weights, jnp.float32), jnp.float32(bias)), threshold
