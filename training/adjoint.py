"""The adjoint: how gradients pass the solver's fixed points (docs/model.md, "Gradient modes").

The configured ``ConvPars.gradient_mode`` (:data:`parameters.GRADIENT_MODES`) or :data:`FORWARD` names the
adjoint asked for; :func:`with_adjoint` is the one place where it becomes the adjoint that runs, AUTO
included, whether the batch's settled flags are known on the host (between compiled steps) or only inside a
traced computation. The pieces that run are :func:`relax_with` (the solver, differentiable only under
UNROLLED) and the implicit-function gradient (:func:`implicit_fixed_points`) that IMPLICIT attaches to a
relaxed state. As in Diffrax, the solver (:mod:`training.solver`) and the adjoint are chosen separately.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp

from parameters import AUTO, GRADIENT_MODES, IMPLICIT, UNROLLED, ConvPars
from training.solver import FixedPoint, relax
from training.SSN_classes import SSN_mid, SSN_sup

Array = jnp.ndarray
T = TypeVar("T")

# The gradient modes of ConvPars (parameters.py) name adjoints:
#   UNROLLED: reverse mode through every Euler step, the gradient of the computed final state, exact at every state.
#   IMPLICIT: the implicit-function-theorem gradient at the final state, taken as the fixed point r = k[W r + h]^n:
#             one adjoint solve (I - D W)ᵀ λ = g instead of storing the loop. Exact only where the state has
#             settled; the convergence penalty dx is then a constant.
#   AUTO:     IMPLICIT for a batch whose every stimulus has settled (training.solver.settled_state), UNROLLED
#             otherwise: exact everywhere, and cheap where training spends most steps.
FORWARD = "forward"
"""No gradient through the fixed points: the plain forward pass (frozen responses, readout-only steps,
evaluations that take no gradient). Not a gradient mode: callers ask for it explicitly."""
ADJOINTS: tuple[str, ...] = (*GRADIENT_MODES, FORWARD)


def requested_adjoint(conv: ConvPars, adjoint: str | None = None) -> str:
    """The adjoint asked for: ``adjoint`` where given, else the configured ``conv.gradient_mode``."""
    return adjoint or conv.gradient_mode


def resolve_adjoint(mode: str, settled: bool | None = None) -> str:
    """The adjoint that runs for ``mode`` where the batch's settledness is known on the host: the rule of AUTO.

    UNROLLED, IMPLICIT and FORWARD are themselves. AUTO is IMPLICIT for a batch known to have settled
    (``settled`` True) and UNROLLED otherwise, including where nothing is known (``settled`` None, e.g. a
    lone stimulus evaluated on its own, where the unrolled gradient is always exact).
    """
    if mode not in ADJOINTS:
        raise ValueError(f"unknown adjoint {mode!r}; expected one of {ADJOINTS}")
    if mode != AUTO:
        return mode
    return IMPLICIT if settled else UNROLLED


def attaches_to_frozen(mode: str) -> bool:
    """Whether ``mode`` needs the batch relaxed without gradients first: IMPLICIT attaches its gradient to
    those states, and AUTO decides on their settled flags."""
    return mode in (IMPLICIT, AUTO)


def with_adjoint(mode: str, run: Callable[[str], T], settled: Array | None = None) -> T:
    """``run(adjoint)`` under the adjoint that runs for ``mode``: the one place where a mode becomes an adjoint.

    ``settled`` is the batch's settled flags (None: a lone stimulus, nothing known). For AUTO, flags known
    on the host pick one adjoint by :func:`resolve_adjoint` (a training step: only that adjoint is
    compiled); traced flags (a user's own ``jax.grad`` of a batch) select at run time with ``lax.cond``,
    where both adjoints are compiled and one runs (under ``vmap`` both run).
    """
    if mode != AUTO or settled is None:
        return run(resolve_adjoint(mode))
    if isinstance(settled, jax.core.Tracer):
        return jax.lax.cond(jnp.all(settled), lambda: run(resolve_adjoint(mode, settled=True)),
                            lambda: run(resolve_adjoint(mode, settled=False)))  # fmt: skip
    return run(resolve_adjoint(mode, settled=bool(jnp.all(settled))))


# ------------------------------------------------------------------------------- the implicit gradient
def _implicit_fwd(layer, h, r_star):
    return r_star, (layer, h, r_star)


@jax.custom_vjp
def implicit_fixed_points(layer: SSN_mid | SSN_sup, h: Array, r_star: Array) -> Array:
    """r_star (batch on the leading axis) with the implicit-function gradient of r = drive(r, h).

    The adjoint (I - D W)ᵀ λ = g is solved per stimulus; the parameter cotangent is the transpose of the
    batched drive: one product over the batch (e.g. Λᵀ R for W), not per-stimulus outer products summed.
    """
    return r_star


def _implicit_batch_bwd(residuals, g):
    layer, h, r_star = residuals
    lam = jax.vmap(layer.solve_adjoint)(r_star, h, g)
    _, vjp = jax.vjp(lambda lay, hh: jax.vmap(lay.drive)(r_star, hh), layer, h)
    d_layer, d_h = vjp(lam)
    return d_layer, d_h, jnp.zeros_like(r_star)


implicit_fixed_points.defvjp(_implicit_fwd, _implicit_batch_bwd)


def implicit_fixed_point(layer: SSN_mid | SSN_sup, h: Array, r_star: Array) -> Array:
    """r_star with the implicit-function gradient of r = drive(r, h) for one stimulus (a batch of one)."""
    return implicit_fixed_points(layer, h[None], r_star[None])[0]


# ------------------------------------------------------------------------- one layer under an adjoint
def relax_with(adjoint: str, layer: SSN_mid | SSN_sup, parts: tuple[Array, ...],
               conv: ConvPars) -> tuple[tuple[Array, ...], Array, Array]:
    """The solver's :func:`training.solver.relax`, differentiable only under UNROLLED (the other adjoints
    attach their own gradient or none)."""
    if adjoint == UNROLLED:
        return relax(layer, parts, conv)
    return relax(jax.lax.stop_gradient(layer), jax.lax.stop_gradient(parts), conv)


def layer_fixed_point(layer: SSN_mid | SSN_sup, h: Array, conv: ConvPars, adjoint: str) -> FixedPoint:
    """Fixed point of one layer for input h, its gradient by ``adjoint`` (UNROLLED, IMPLICIT or FORWARD)."""
    (r,), dx, settled = relax_with(adjoint, layer, (h,), conv)
    if adjoint == IMPLICIT:
        r = implicit_fixed_point(layer, h, r)
    return FixedPoint(r, dx, settled)
