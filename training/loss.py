"""Loss of the orientation-discrimination tasks (spec §10)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from parameters import LossPars

Array = jnp.ndarray

LOSS_NAMES: tuple[str, ...] = ("bce", "dx", "rmax", "rmean", "w", "b", "total")


class LossConstants(NamedTuple):
    """Loss constants that change between stages; passed to jitted functions as traced arrays."""

    lambda_r_mean: Array
    Rmean_E: Array
    """Mean-rate targets of E cells (middle, superficial)."""
    Rmean_I: Array
    """Mean-rate targets of I cells (middle, superficial)."""
    lambda_task: Array = np.float32(1.0)
    """Weight of the cross-entropy term (LossPars.lambda_task_stage0 in stage 0, 1 elsewhere). A numpy scalar
    default, so that importing this module creates no JAX array; x · 1.0 is exact, so weight 1 changes no bit."""


def default_loss_constants(loss: LossPars) -> LossConstants:
    """Constants of every evaluation outside the SGD stages (and of stage 0 with λ_task = 1)."""
    return LossConstants(jnp.float32(loss.lambda_r_mean), jnp.asarray(loss.Rmean_E, jnp.float32),
                         jnp.asarray(loss.Rmean_I, jnp.float32))  # fmt: skip


def stage0_loss_constants(loss: LossPars) -> LossConstants:
    """Stage-0 constants: the defaults with the cross-entropy weighted by LossPars.lambda_task_stage0."""
    return default_loss_constants(loss)._replace(lambda_task=jnp.float32(loss.lambda_task_stage0))


def stage1_loss_constants(loss: LossPars, last_stage0_rates: Mapping[str, float]) -> LossConstants:
    """Stage-1 constants (in pretraining): mean-rate weight LossPars.lambda_r_mean_stage1, targets per
    LossPars.stage1_rate_targets: 'fixed' (Rmean_E, Rmean_I) or 'last_stage0' (``last_stage0_rates``, the
    meanr_* columns of the last stage-0 row). Stage 1 trains the readout only, so only logged losses change."""
    if loss.stage1_rate_targets == "last_stage0":
        return mean_rate_constants(loss.lambda_r_mean_stage1, last_stage0_rates)
    return default_loss_constants(loss)._replace(lambda_r_mean=jnp.float32(loss.lambda_r_mean_stage1))


def stage2_loss_constants(loss: LossPars, mean_rates: dict[str, float]) -> LossConstants:
    """Stage-2 constants: larger mean-rate weight, targets = the last recorded stage-1 mean rates."""
    return mean_rate_constants(loss.lambda_r_mean_stage2, mean_rates)


def mean_rate_constants(lambda_r_mean: float, mean_rates: Mapping[str, float]) -> LossConstants:
    """Constants with a mean-rate weight and targets taken from a row's meanr_* columns (λ_task = 1)."""
    return LossConstants(
        jnp.float32(lambda_r_mean),
        jnp.asarray([mean_rates["meanr_E_mid"], mean_rates["meanr_E_sup"]], jnp.float32),
        jnp.asarray([mean_rates["meanr_I_mid"], mean_rates["meanr_I_sup"]], jnp.float32),
    )


def binary_cross_entropy(p: Array, label: Array) -> Array:
    """-[l log p + (1 - l) log(1 - p)] per trial."""
    return -(label * jnp.log(p) + (1 - label) * jnp.log(1 - p))


def rate_max_penalty(stats: dict[str, Array], loss: LossPars) -> Array:
    """Sum over layers of hinge penalties on the maximum E and I rates."""
    total = 0.0
    for layer in ("mid", "sup"):
        total = total + jnp.maximum(stats[f"maxE_{layer}"] / loss.Rmax_E - 1, 0.0)
        total = total + jnp.maximum(stats[f"maxI_{layer}"] / loss.Rmax_I - 1, 0.0)
    return total


def rate_mean_penalty(stats: dict[str, Array], constants: LossConstants) -> Array:
    """Sum over layers of squared relative deviations of the mean rates from their targets."""
    total = 0.0
    for i, layer in enumerate(("mid", "sup")):
        total = total + (stats[f"meanE_{layer}"] / constants.Rmean_E[i] - 1) ** 2
        total = total + (stats[f"meanI_{layer}"] / constants.Rmean_I[i] - 1) ** 2
    return total


def trial_losses(p: Array, label: Array, ref_stats: dict[str, Array], dxs: Array, w: Array, b: Array,
                 loss: LossPars, constants: LossConstants) -> dict[str, Array]:
    """Loss terms per trial: rate terms use the reference stimulus only; dxs has shape (..., 4)."""
    terms = {
        "bce": constants.lambda_task * binary_cross_entropy(p, label),
        "dx": loss.lambda_dx * jnp.mean(dxs**2, axis=-1),
        "rmax": loss.lambda_r_max * rate_max_penalty(ref_stats, loss),
        "rmean": constants.lambda_r_mean * rate_mean_penalty(ref_stats, constants),
        "w": loss.lambda_w * jnp.sum(w**2) * jnp.ones_like(p),
        "b": loss.lambda_b * b**2 * jnp.ones_like(p),
    }
    terms["total"] = sum(terms.values())
    return terms
