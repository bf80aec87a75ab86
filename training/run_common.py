"""What the pretraining job and the stage-2 jobs of a run share: its random streams and the trained keys."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from training.model import LogParams

INIT_STREAM, TRAIN_STREAM, EVAL_STREAM = range(3)
"""Indices folded into a run attempt's root key for its three JAX streams."""


class RunStreams(NamedTuple):
    """Independent random streams of one run attempt (binding decision 3)."""

    rng: np.random.Generator
    init_key: jax.Array
    train_key: jax.Array
    eval_key: jax.Array


def run_streams(base_seed: int, run_index: int, attempt: int = 0) -> RunStreams:
    """Streams derived from (base seed, run index, attempt) only: the same run always sees the same numbers.

    Stage 2 uses attempt 0 in every configuration, so that all configurations of a run see the same data.
    """
    root = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(base_seed), run_index), attempt)
    return RunStreams(np.random.default_rng([base_seed, run_index, attempt]), jax.random.fold_in(root, INIT_STREAM),
                      jax.random.fold_in(root, TRAIN_STREAM), jax.random.fold_in(root, EVAL_STREAM))  # fmt: skip


def trained_keys(names: tuple[str, ...]) -> set[str]:
    """Dictionary keys of trained names: J_XY_l -> log_J_XY_l, f_t -> log_f_t, others unchanged."""
    return {f"log_{n}" if n.startswith(("J_", "f_")) else n for n in names}


def stage_trained(log_params: LogParams, names: tuple[str, ...]) -> LogParams:
    """The entries of a log-parameter dictionary that a list of trained names refers to."""
    return {k: v for k, v in log_params.items() if k in trained_keys(names)}
