"""Shared fixtures: default parameters, the golden cases, and a small helper to vary ConvPars."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from parameters import Parameters
from study.quick import TEST_OVERRIDES

GOLDEN_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "golden"


def golden_path(case: int) -> Path:
    """Path of a golden case (the shared folder sits next to the repository)."""
    return GOLDEN_DIR / f"case_{case}.npz"


@pytest.fixture(scope="session")
def params() -> Parameters:
    return Parameters()


def with_gradient_mode(params: Parameters, mode: str) -> Parameters:
    return dataclasses.replace(params, conv=dataclasses.replace(params.conv, gradient_mode=mode))


@pytest.fixture(scope="session", params=[1, 2], ids=["case_1", "case_2"])
def golden(request) -> dict:
    path = golden_path(request.param)
    if not path.exists():
        pytest.fail(f"golden case missing: {path}")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


PARAMETER_KEYS = (
    *(f"log_J_{name}_{layer}" for layer in ("m", "s") for name in ("EE", "EI", "IE", "II")),
    "cE_m", "cI_m", "log_f_E", "log_f_I", "kappa_Jmid", "kappa_Jsup",
)  # fmt: skip


def golden_log_params(golden: dict) -> dict:
    """The trained parameters of a golden case as float32 JAX arrays (kappa_f = 0)."""
    import jax.numpy as jnp

    log_params = {key: jnp.asarray(golden[key], jnp.float32) for key in PARAMETER_KEYS}
    log_params["kappa_f"] = jnp.zeros(2, jnp.float32)
    return log_params


TINY_OVERRIDES = TEST_OVERRIDES
"""Small batch sizes, step counts and probes for end-to-end tests (study.quick, with the other small presets)."""


def write_parameters_file(path: Path, overrides: dict) -> Path:
    """A copy of the repository's parameters.py with an appended OVERRIDES block (as a run writes it)."""
    from store.parameter_files import write_parameters_copy

    path.parent.mkdir(parents=True, exist_ok=True)
    write_parameters_copy(path, overrides)
    return path


@pytest.fixture(scope="module")
def golden_setup(params):
    """Golden case 1 as (log-parameters, readout, per-run constants) for gradient tests."""
    import jax.numpy as jnp

    from training.model import build_static
    from training.readout import Readout

    with np.load(golden_path(1)) as data:
        golden = {k: data[k] for k in data.files}
    static = build_static(golden["orimap"], float(golden["gE"]), float(golden["gI"]), params)
    readout = Readout(jnp.asarray(golden["w_sig"]), jnp.asarray(golden["b_sig"]))
    return golden_log_params(golden), readout, static
