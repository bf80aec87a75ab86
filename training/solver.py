"""The solver of the fixed points (spec §6.5): the Euler relaxation from zero, its convergence penalty dx and
whether its final state has settled.

The solver knows nothing of gradients: they flow through every Euler step unless the adjoint
(:mod:`training.adjoint`) stops them and attaches its own.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from parameters import ConvPars
from training.SSN_classes import SSN_mid, SSN_sup

Array = jnp.ndarray


class FixedPoint(NamedTuple):
    """Final Euler state of a layer, its convergence penalty and whether it has settled."""

    r: Array
    dx: Array
    """Convergence penalty max(0, avg_dx - 1)."""
    settled: Array
    """True where the final state is a converged fixed point by :func:`settled_state`."""


def euler_relaxation_parts(layer: SSN_mid | SSN_sup, parts: tuple[Array, ...],
                           conv: ConvPars) -> tuple[tuple[Array, ...], Array]:
    """Final rates after Tmax/dt Euler steps from zero of several inputs to the same layer, and avg_dx (mean
    second-half metric / xtol) with one dx metric over all their cells.

    The parts are relaxed side by side and the per-step metric is the maximum over every cell of every
    part, so splitting a layer's cells into parts gives the same rates and the same avg_dx. Under vmap a
    part that does not depend on the batch (e.g. circuits that see only their baseline) stays unbatched.
    """
    rates, trace = euler_trace(layer, parts, conv)
    return rates, jnp.mean(trace) / conv.xtol


def euler_trace(layer: SSN_mid | SSN_sup, parts: tuple[Array, ...],
                conv: ConvPars) -> tuple[tuple[Array, ...], Array]:
    """Final rates of each part and the per-step convergence metric of the second half of the steps.

    The metric of a step is max_i |dr_i| / max(xmin, |r_i|) over every cell of every part. The loop
    carries the E and I rates as separate arrays and the layer's weights are prepared once outside it,
    so each step is one product (superficial layer) and a few fused elementwise kernels.
    """
    drive = layer.split_drive()
    inputs = [layer.split(h) for h in parts]
    rate_E, rate_I = conv.dt / layer.tau[0], conv.dt / layer.tau[1]
    steps = conv.num_steps
    first_half = steps // 2

    def step(rates):
        new, changes = [], []
        for (r_E, r_I), (h_E, h_I) in zip(rates, inputs, strict=True):
            drive_E, drive_I = drive(r_E, r_I, h_E, h_I)
            dr_E, dr_I = rate_E * (-r_E + drive_E), rate_I * (-r_I + drive_I)
            new.append((r_E + dr_E, r_I + dr_I))
            changes.append((dr_E, dr_I))
        return tuple(new), changes

    @functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.nothing_saveable)
    def silent(rates, _):
        return step(rates)[0], None

    @functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.nothing_saveable)
    def measured(rates, _):
        rates, changes = step(rates)
        maxima = []
        for (r_E, r_I), (dr_E, dr_I) in zip(rates, changes, strict=True):
            ratio_E = jnp.abs(dr_E) / jnp.maximum(conv.xmin, jnp.abs(r_E))
            ratio_I = jnp.abs(dr_I) / jnp.maximum(conv.xmin, jnp.abs(r_I))
            maxima.append(jnp.max(jnp.maximum(ratio_E, ratio_I)))
        return rates, functools.reduce(jnp.maximum, maxima)

    rates = tuple((jnp.zeros_like(h_E), jnp.zeros_like(h_I)) for h_E, h_I in inputs)
    rates, _ = jax.lax.scan(silent, rates, None, length=first_half)
    rates, trace = jax.lax.scan(measured, rates, None, length=steps - first_half)
    return tuple(layer.merge(*r) for r in rates), trace


def settled_state(trace: Array, conv: ConvPars) -> Array:
    """Whether the final Euler state is, to ``conv.settle_tol``, the fixed point the implicit gradient assumes.

    Reverse mode through the loop differentiates the final iterate r_T; the implicit gradient
    differentiates the fixed point r*. Started from zero, the iterate approaches r* geometrically, and
    the gap r_T - r* and the gap between the two gradients shrink with the same factor, so the
    gradients agree when the iterate has converged. The gap is estimated from the trace of relative
    changes: with s the largest change in the last window of ``settle_window`` steps and s' in the
    window before, the contraction per step is q = (s/s')^(1/window) and the remaining distance the
    geometric tail s q/(1 - q). Settled means: no convergence penalty (avg_dx < 1, so the dx term has
    zero gradient in every mode), and either a tail below ``settle_tol`` or a change at float32
    rounding level (``settle_floor``), where q cannot be measured. A small change alone is not enough:
    a slowly creeping state (q near 1) is far from its fixed point although each step is small.
    """
    window = max(1, min(conv.settle_window, trace.shape[-1] // 2))
    last = jnp.max(trace[-window:])
    before = jnp.max(trace[-2 * window : -window])
    # 0/0 (an exactly stationary state) is a zero rate; x/0 with x > 0 is no contraction at all.
    q = jnp.where(before > 0, (last / jnp.where(before > 0, before, 1.0)) ** (1.0 / window),
                  jnp.where(last > 0, jnp.inf, 0.0))  # fmt: skip
    tail = jnp.where(q < 1.0, last * q / jnp.maximum(1.0 - q, 1e-30), jnp.inf)
    no_penalty = jnp.mean(trace) / conv.xtol < 1.0
    return no_penalty & ((last <= conv.settle_floor) | (tail <= conv.settle_tol))


def relax(layer: SSN_mid | SSN_sup, parts: tuple[Array, ...], conv: ConvPars) -> tuple[tuple[Array, ...], Array, Array]:
    """The solver: rates of each part after the Euler loop, the penalty max(0, avg_dx - 1) and the settled flag."""
    rates, trace = euler_trace(layer, parts, conv)
    avg_dx = jnp.mean(trace) / conv.xtol
    # A diverged state (inf or nan rates) can leave a trace of zeros; it is no fixed point.
    finite = functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(r)) for r in rates])
    return rates, jnp.maximum(0.0, avg_dx - 1.0), settled_state(trace, conv) & finite
