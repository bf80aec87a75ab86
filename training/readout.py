"""Readout of the layers: the readout weights, layer mixing, readout noise and the sigmoid decision (spec §8).

The decision compares reference and target: p = (1 - 2 eps)·σ(w·(x_ref - x_target) + b) + eps is the
probability that the reference orientation exceeds the target's, where x are the (noisy) rates of the
readout cells.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from training.model import Response

Array = jnp.ndarray

SUPERFICIAL_ONLY: tuple[float, float] = (1.0, 0.0)
"""Readout mix (superficial, middle) of stages 0 and 1: superficial E rates only. ReadoutPars.readout_contributions
sets the mix of stage 2 alone."""


class Readout(NamedTuple):
    """Readout weights w (one per feature) and bias b of the sigmoid decision."""

    w: Array
    b: Array


def readout_features(response: Response, indices: Array, contributions: tuple[float, float]) -> Array:
    """Readout input x (..., n): superficial E and/or phase-summed middle E rates at the readout cells.

    With both contributions non-zero the middle features come first (length 2·len(indices)).
    """
    c_sup, c_mid = contributions
    sup = response.sup_E[..., indices]
    mid = response.mid_output[..., indices]
    if c_sup and c_mid:
        return jnp.concatenate([c_mid * mid, c_sup * sup], axis=-1)
    return c_sup * sup + c_mid * mid


def add_readout_noise(x: Array, noise: Array) -> Array:
    """x + ξ·sqrt(softplus(x)) for pre-scaled noise ξ (sd 1/sqrt(num_readout_noise·dt_readout))."""
    return x + noise * jnp.sqrt(jax.nn.softplus(x))


def sigmoid_output(w: Array, b: Array, x_ref: Array, x_target: Array, eps: float) -> Array:
    """p = (1 - 2 eps)·σ(w·(x_ref - x_target) + b) + eps, the probability of label 1 (ref > target)."""
    z = (x_ref - x_target) @ w + b
    return (1 - 2 * eps) * jax.nn.sigmoid(z) + eps


def predicted_label(p: Array) -> Array:
    """Decision: 1 where p > 0.5."""
    return (p > 0.5).astype(jnp.int32)
