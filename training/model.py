"""Forward model: images -> Gabor projection -> middle SSN -> superficial SSN (spec §5-§7).

Trained quantities travel as a dictionary of log-parameters (:data:`LogParams`); per-run constants (filters,
distances, orientation map, Gabor gains) as a :class:`ModelStatic` pytree, so one compiled function serves
every run. Structural constants come from the hashable :class:`parameters.Parameters`, passed as a static
argument.

A layer's fixed point is found by a solver, the Euler relaxation (:func:`relax`), and its gradient is
attached by an adjoint (:data:`UNROLLED`, :data:`IMPLICIT`, :data:`AUTO` or :data:`FORWARD`), the two
chosen separately as in Diffrax; :func:`resolve_adjoint` is the one rule that turns the configured
``ConvPars.gradient_mode`` into the adjoint that runs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from parameters import ConvPars, Parameters, SSNPars
from training.SSN_classes import SSN_mid, SSN_sup, kappa_profile, padded_width
from training.util_gabor import (
    PHASE_SLOTS,
    gabor_base_bank,
    grid_distances,
    image_geometry,
    projected_noise_factor,
    ring_distance,
)

Array = jnp.ndarray
J_NAMES: tuple[str, ...] = ("EE", "EI", "IE", "II")
J_SIGNS: dict[str, float] = {"EE": 1.0, "EI": -1.0, "IE": 1.0, "II": -1.0}

LogParams: TypeAlias = dict[str, Array]
"""The SSN parameters in the form SGD trains them, keyed by name (float32 arrays):

* ``log_J_{EE,EI,IE,II}_{m,s}`` (scalars): log|J| of the middle (m) and superficial (s) connection strengths;
  the signs are fixed (:data:`J_SIGNS`).
* ``cE_m``, ``cI_m`` and, unless SSNPars.couple_c_ms, ``cE_s``, ``cI_s`` (scalars): baseline inputs.
* ``log_f_E``, ``log_f_I`` (scalars): log feedforward gains from the middle to the superficial layer.
* ``kappa_Jsup`` (2, 2, 2), ``kappa_Jmid`` (2, 2), ``kappa_f`` (2,): raw orientation-dependent modulations
  (tanh-squashed when used); zero outside stage 2, and missing ones count as zero.

A stage splits it into a trained and an untrained part, each a ``LogParams`` holding some of these keys.
"""


# ------------------------------------------------------------------------------------ per-run constants
class ModelStatic(NamedTuple):
    """Per-run constant arrays of the model."""

    gabor_T: Array
    """Demeaned, A-scaled base filters, transposed: (Npx², C), column 81·phase + g; the columns from 2·Nx²
    to C = :func:`padded_width` (2·Nx²) are zero (see :func:`base_projection`)."""
    noise_factor: Array
    """L with L Lᵀ = pixel-noise covariance of the base projections, (2·Nx², 2·Nx²)."""
    gains: Array
    """Gabor gains (gE, gI)."""
    d_ref: Array
    """Ring distance of each map orientation from the reference orientation, (Nx²,)."""
    ori_dist: Array
    """Ring distances between map orientations, (Nx², Nx²)."""
    rho: Array
    """Cortical distances between grid points, mm, (Nx², Nx²)."""
    orimap: Array
    """Preferred orientation of each grid point, degrees, (Nx²,)."""

    @property
    def num_filters(self) -> int:
        """Number of base filters, 2·Nx² (the width of a base projection)."""
        return self.noise_factor.shape[0]


def build_static(orimap: np.ndarray, gE: float, gI: float, params: Parameters) -> ModelStatic:
    """The per-run constants for an orientation map (degrees, Nx² values) and Gabor gains."""
    orimap = np.asarray(orimap, dtype=np.float64).ravel()
    geometry = image_geometry(params.grid, params.stimuli)
    base, _ = gabor_base_bank(orimap, params.grid, geometry, params.stimuli, params.filters)
    flat = base.reshape(-1, base.shape[-1])
    columns = np.zeros((flat.shape[1], padded_width(flat.shape[0])))
    columns[:, : flat.shape[0]] = flat.T
    f32 = np.float32
    return ModelStatic(
        gabor_T=jnp.asarray(columns, dtype=f32),
        noise_factor=jnp.asarray(projected_noise_factor(base, params.stimuli.std), dtype=f32),
        gains=jnp.asarray([gE, gI], dtype=f32),
        d_ref=jnp.asarray(ring_distance(orimap - params.stimuli.ref_ori), dtype=f32),
        ori_dist=jnp.asarray(ring_distance(orimap[:, None] - orimap[None, :]), dtype=f32),
        rho=jnp.asarray(grid_distances(params.grid), dtype=f32),
        orimap=jnp.asarray(orimap, dtype=f32),
    )


def with_gains(static: ModelStatic, gE: float, gI: float) -> ModelStatic:
    """The same constants with new Gabor gains (the filters factor as gain x base filter)."""
    return static._replace(gains=jnp.asarray([gE, gI], dtype=jnp.float32))


# ---------------------------------------------------------------------------------- trained parameters
def signed_J(log_params: LogParams, layer: str) -> Array:
    """Signed 2x2 J of a layer ('m' or 's') from log|J| entries, [post][pre]."""
    values = [J_SIGNS[name] * jnp.exp(log_params[f"log_J_{name}_{layer}"]) for name in J_NAMES]
    return jnp.stack(values).reshape(2, 2)


def baselines(log_params: LogParams, ssn: SSNPars) -> tuple[Array, Array]:
    """Baselines (cE, cI) of the middle and the superficial layer (coupled: the middle values twice)."""
    c_mid = jnp.stack([log_params["cE_m"], log_params["cI_m"]])
    if ssn.couple_c_ms:
        return c_mid, c_mid
    return c_mid, jnp.stack([log_params["cE_s"], log_params["cI_s"]])


def zero_kappas() -> LogParams:
    """Raw kappas that switch every kappa modulation off."""
    return {"kappa_Jsup": jnp.zeros((2, 2, 2)), "kappa_Jmid": jnp.zeros((2, 2)), "kappa_f": jnp.zeros(2)}


def constant_to_vec(cE: Array, cI: Array, num_grid: int, phases: int = 1) -> Array:
    """Baseline per cell, E then I for each phase: shape (phases, 2, num_grid) or (2·num_grid,)."""
    vec = jnp.stack([jnp.full(num_grid, cE), jnp.full(num_grid, cI)])
    return jnp.broadcast_to(vec, (phases, 2, num_grid)) if phases > 1 else vec.ravel()


# ------------------------------------------------------------------------------ solver: Euler relaxation
class FixedPoint(NamedTuple):
    """Final Euler state of a layer, its convergence penalty and whether it has settled."""

    r: Array
    dx: Array
    """Convergence penalty max(0, avg_dx - 1)."""
    settled: Array
    """True where the final state is a converged fixed point by :func:`settled_state`."""


def euler_relaxation(layer: SSN_mid | SSN_sup, h: Array, conv: ConvPars) -> tuple[Array, Array]:
    """Final rates after Tmax/dt Euler steps from zero, and avg_dx (mean second-half metric / xtol)."""
    (r,), avg_dx = euler_relaxation_parts(layer, (h,), conv)
    return r, avg_dx


def euler_relaxation_parts(layer: SSN_mid | SSN_sup, parts: tuple[Array, ...],
                           conv: ConvPars) -> tuple[tuple[Array, ...], Array]:
    """:func:`euler_relaxation` of several inputs to the same layer, with one dx metric over all their cells.

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
    """The solver: rates of each part after the Euler loop, the penalty max(0, avg_dx - 1) and the settled flag.

    Gradients flow through every step unless the caller stops them (the adjoints below decide).
    """
    rates, trace = euler_trace(layer, parts, conv)
    avg_dx = jnp.mean(trace) / conv.xtol
    # A diverged state (inf or nan rates) can leave a trace of zeros; it is no fixed point.
    finite = functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(r)) for r in rates])
    return rates, jnp.maximum(0.0, avg_dx - 1.0), settled_state(trace, conv) & finite


# -------------------------------------------------------------- adjoints: how gradients pass a fixed point
UNROLLED = "unrolled"
"""Reverse mode through every Euler step: the gradient of the computed final state, exact at every state."""
IMPLICIT = "implicit"
"""Implicit-function-theorem gradient at the final state, taken as the fixed point r = k[W r + h]^n: one
adjoint solve (I - D W)ᵀ λ = g instead of storing the loop. Exact only where the state has settled; the
convergence penalty dx is then treated as a constant."""
AUTO = "auto"
"""IMPLICIT for a batch whose every stimulus has settled (:func:`settled_state`), UNROLLED otherwise: exact
everywhere, and cheap where training spends most steps."""
FORWARD = "forward"
"""No gradient through the fixed points: the plain forward pass (frozen responses, readout-only steps)."""
ADJOINTS: tuple[str, ...] = (UNROLLED, IMPLICIT, AUTO, FORWARD)


def resolve_adjoint(mode: str, settled: bool | None = None) -> str:
    """The adjoint that a gradient mode gives: the one rule behind every choice of adjoint.

    UNROLLED, IMPLICIT and FORWARD are themselves. AUTO is IMPLICIT for a batch known to have settled
    (``settled`` True) and UNROLLED otherwise, including where nothing is known (``settled`` None, e.g. a
    lone stimulus evaluated on its own, where the unrolled gradient is always exact).
    """
    if mode not in ADJOINTS:
        raise ValueError(f"unknown adjoint {mode!r}; expected one of {ADJOINTS}")
    if mode != AUTO:
        return mode
    return IMPLICIT if settled else UNROLLED


def _implicit_fixed_point(layer: SSN_mid | SSN_sup, h: Array, r_star: Array) -> Array:
    """r_star with the implicit-function gradient of r = drive(r, h) for one stimulus (a batch of one)."""
    return _implicit_fixed_points(layer, h[None], r_star[None])[0]


def _implicit_fwd(layer, h, r_star):
    return r_star, (layer, h, r_star)


@jax.custom_vjp
def _implicit_fixed_points(layer: SSN_mid | SSN_sup, h: Array, r_star: Array) -> Array:
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


_implicit_fixed_points.defvjp(_implicit_fwd, _implicit_batch_bwd)


def relax_with(adjoint: str, layer: SSN_mid | SSN_sup, parts: tuple[Array, ...],
               conv: ConvPars) -> tuple[tuple[Array, ...], Array, Array]:
    """:func:`relax`, differentiable only under the UNROLLED adjoint (the others attach their own gradient)."""
    if adjoint == UNROLLED:
        return relax(layer, parts, conv)
    return relax(jax.lax.stop_gradient(layer), jax.lax.stop_gradient(parts), conv)


def layer_fixed_point(layer: SSN_mid | SSN_sup, h: Array, conv: ConvPars, adjoint: str) -> FixedPoint:
    """Fixed point of one layer for input h, its gradient by ``adjoint`` (UNROLLED, IMPLICIT or FORWARD)."""
    (r,), dx, settled = relax_with(adjoint, layer, (h,), conv)
    if adjoint == IMPLICIT:
        r = _implicit_fixed_point(layer, h, r)
    return FixedPoint(r, dx, settled)


def obtain_fixed_point(layer: SSN_mid | SSN_sup, h: Array, conv: ConvPars) -> tuple[Array, Array]:
    """Fixed point r and convergence penalty dx = max(0, avg_dx - 1) of one layer for input h.

    ``conv.gradient_mode`` chooses how gradients pass the fixed point: 'unrolled' (and 'auto' for a lone
    stimulus) differentiates through every Euler step; 'implicit' uses the implicit function theorem at
    the final state, r = k[W r + h]^n, and treats dx as a constant.
    """
    fixed_point = layer_fixed_point(layer, h, conv, resolve_adjoint(conv.gradient_mode))
    return fixed_point.r, fixed_point.dx


def middle_layer_fixed_point(ssn: SSN_mid, h: Array, conv: ConvPars) -> tuple[Array, Array]:
    """Middle-layer rates (phases, 2, Nx²) and dx for input h of the same shape."""
    r, dx = obtain_fixed_point(ssn, jnp.swapaxes(h, 0, 1), conv)
    return jnp.swapaxes(r, 0, 1), dx


def middle_layer_response(ssn: SSN_mid, b: Array, gains: Array, c_mid: Array, phases: int,
                          conv: ConvPars) -> tuple[Array, Array]:
    """Middle-layer rates (phases, 2, Nx²) and dx for base projection b (2·Nx²,): the model's middle layer.

    Equal to :func:`middle_layer_fixed_point` of h = [u]_+ + c with u = :func:`middle_input`, but with four
    phases only half of the circuits are simulated per stimulus: the slots phi and phi + pi see u and -u,
    so one of them gets |u| + c and the other its baseline c alone. The baseline circuits of a grid point
    are the same for every stimulus (an unbatched part under vmap); rates and dx are unchanged.
    """
    fixed_point = middle_fixed_point(ssn, b, gains, c_mid, phases, conv, resolve_adjoint(conv.gradient_mode))
    return fixed_point.r, fixed_point.dx


def middle_fixed_point(ssn: SSN_mid, b: Array, gains: Array, c_mid: Array, phases: int, conv: ConvPars,
                       adjoint: str) -> FixedPoint:
    """:func:`middle_layer_response` with its settled flag, its gradient by ``adjoint`` (not AUTO)."""
    base = b.reshape(2, -1)
    magnitude = jnp.abs(base) if phases == 4 else jnp.maximum(base, 0.0)
    active = gains[:, None, None] * magnitude[None] + c_mid[:, None, None]  # type-major (2, 2, Nx²)
    parts = (active, jnp.broadcast_to(c_mid[:, None, None], (2, 1, base.shape[1]))) if phases == 4 else (active,)
    rates, dx, settled = relax_with(adjoint, ssn, parts, conv)
    r = assemble_middle_rates(rates, base, phases)
    if adjoint == IMPLICIT:
        h = middle_drive_input(b, gains, c_mid, phases)
        r = jnp.swapaxes(_implicit_fixed_point(ssn, jnp.swapaxes(h, 0, 1), jnp.swapaxes(r, 0, 1)), 0, 1)
    return FixedPoint(r, dx, settled)


def assemble_middle_rates(rates: tuple[Array, ...], base: Array, phases: int) -> Array:
    """Rates (phases, 2, Nx²) of every slot from the simulated circuits of :func:`middle_layer_response`."""
    active = jnp.swapaxes(rates[0], 0, 1)  # (2 base phases, 2, Nx²)
    if phases == 2:
        return active
    baseline = jnp.swapaxes(rates[1], 0, 1)
    slots = [jnp.where(sign * base[phase] > 0, active[phase], baseline[0]) for phase, sign in PHASE_SLOTS]
    return jnp.stack(slots)


def superficial_layer_fixed_point(ssn: SSN_sup, h: Array, conv: ConvPars) -> tuple[Array, Array]:
    """Superficial-layer rates (2·Nx²,) and dx for input h of the same shape."""
    return obtain_fixed_point(ssn, h, conv)


# --------------------------------------------------------------------------------------- model response
class Response(NamedTuple):
    """Responses of both layers to one stimulus (add a leading batch axis for batches)."""

    r_mid: Array
    """Middle-layer rates, (phases, 2, Nx²); ravel gives the documented 162p+81t+g order."""
    r_sup: Array
    """Superficial-layer rates, (2·Nx²,): E then I."""
    dx_mid: Array
    dx_sup: Array
    u: Array
    """Gabor projection F·s (phases, 2, Nx²), before rectification."""
    settled: Array
    """True where both layers' final Euler states are converged fixed points (:func:`settled_state`)."""

    @property
    def mid_output(self) -> Array:
        """Phase-summed middle E rates R_g, the middle layer's output (Nx²,)."""
        return jnp.sum(self.r_mid[..., 0, :], axis=-2)

    @property
    def sup_E(self) -> Array:
        """Superficial E rates (Nx²,)."""
        return self.r_sup[..., : self.r_sup.shape[-1] // 2]

    def rate_stats(self, drop_last_sup_I: bool = False) -> dict[str, Array]:
        """Max and mean rates per type and layer (spec §7.3).

        ``drop_last_sup_I`` (SSNPars.sup_I_stats_drop_last) reproduces the reference, whose superficial I
        statistics leave out the last I cell; otherwise they cover all I cells.
        """
        half = self.r_sup.shape[-1] // 2
        sup_I = self.r_sup[..., half:-1] if drop_last_sup_I else self.r_sup[..., half:]
        groups = {"E_mid": self.r_mid[..., 0, :], "I_mid": self.r_mid[..., 1, :],
                  "E_sup": self.r_sup[..., :half], "I_sup": sup_I}  # fmt: skip
        stats = {}
        for name, rates in groups.items():
            flat = rates.reshape(rates.shape[: rates.ndim - (2 if "mid" in name else 1)] + (-1,))
            stats[f"max{name}"] = jnp.max(flat, axis=-1)
            stats[f"mean{name}"] = jnp.mean(flat, axis=-1)
        return stats


class Layers(NamedTuple):
    """Both layers and the feedforward constants built from one set of parameters."""

    mid: SSN_mid
    sup: SSN_sup
    c_mid: Array
    c_sup: Array
    ff_gain: Array
    """Feedforward gain per superficial cell (2, Nx²): f_t·exp(feedforward_kappa_exponent)."""
    gains: Array
    """Gabor gains (gE, gI) of the middle layer's input, the run's constants (:attr:`ModelStatic.gains`)."""


def build_layers(log_params: LogParams, static: ModelStatic, params: Parameters) -> Layers:
    """Both SSN layers from log-parameters (missing kappas count as zero)."""
    ssn = params.ssn
    kappas = {**zero_kappas(), **{k: v for k, v in log_params.items() if k.startswith("kappa")}}
    mid = SSN_mid.build(signed_J(log_params, "m"), kappas["kappa_Jmid"], static.d_ref, ssn)
    sup = SSN_sup.build(signed_J(log_params, "s"), kappas["kappa_Jsup"], static.rho, static.ori_dist,
                        static.d_ref, ssn, grid_spacing(params))  # fmt: skip
    f = jnp.exp(jnp.stack([log_params["log_f_E"], log_params["log_f_I"]]))
    ff_gain = f[:, None] * jnp.exp(feedforward_kappa_exponent(kappas["kappa_f"], static.d_ref, ssn))
    c_mid, c_sup = baselines(log_params, ssn)
    return Layers(mid=mid, sup=sup, c_mid=c_mid, c_sup=c_sup, ff_gain=ff_gain, gains=static.gains)


def feedforward_kappa_exponent(kappa_f: Array, d_ref: Array, ssn: SSNPars) -> Array:
    """Exponent of the kappa_f modulation of the superficial feedforward input, (2, Nx²), spec §7.2.

    E: tanh(kappa_f[0])·d²/(2·90²). I: the same form when SSNPars.kappa_f_I_form is 'squared'; with 'linear'
    the reference's tanh(kappa_f[1])·d (d in degrees, no square and no normalisation, up to e^57).
    """
    squared = kappa_profile(kappa_f[:, None], d_ref[None, :], ssn.kappa_range)
    if ssn.kappa_f_I_form == "squared":
        return squared
    return squared.at[1].set(jnp.tanh(kappa_f[1]) * d_ref)


def grid_spacing(params: Parameters) -> float:
    """Distance between neighbouring grid points, mm."""
    return params.grid.gridsize_mm / (params.grid.gridsize_Nx - 1)


def base_projection(images: Array, static: ModelStatic, noise_z: Array | None = None) -> Array:
    """Base-filter responses (..., 2·Nx²) of flattened images, plus projected pixel noise L·z if given."""
    b = (images @ static.gabor_T)[..., : static.num_filters]
    return b if noise_z is None else b + projected_noise(noise_z, static)


def projected_noise(noise_z: Array, static: ModelStatic) -> Array:
    """Pixel noise in filter space, L·z, for standard-normal draws z (..., 2·Nx²)."""
    return noise_z @ static.noise_factor.T


def draw_projected_noise(key: Array, shape: tuple[int, ...], static: ModelStatic) -> Array:
    """Standard-normal draws z (shape + (2·Nx²,)) that base_projection turns into pixel noise."""
    return jax.random.normal(key, shape + (static.num_filters,), dtype=jnp.float32)


def middle_input(b: Array, gains: Array, phases: int) -> Array:
    """Gabor projection u (phases, 2, Nx²) from base responses b (2·Nx²,): u = sign_p g_t b[phi_p]."""
    base = b.reshape(2, -1)
    rows = [sign * gains[:, None] * base[phase][None, :] for phase, sign in PHASE_SLOTS[:phases]]
    return jnp.stack(rows)


def middle_drive_input(b: Array, gains: Array, c_mid: Array, phases: int) -> Array:
    """Middle-layer input h = [u]_+ + c (phases, 2, Nx²) for base projection b (2·Nx²,)."""
    return jnp.maximum(middle_input(b, gains, phases), 0.0) + c_mid[None, :, None]


def superficial_input(layers: Layers, r_mid: Array) -> Array:
    """Superficial-layer input (2·Nx²,): feedforward gain x phase-summed middle E rates, plus baseline."""
    R = jnp.sum(r_mid[..., 0, :], axis=-2)
    return (layers.ff_gain * R[..., None, :] + layers.c_sup[:, None]).reshape(R.shape[:-1] + (-1,))


def evaluate_model_response(layers: Layers, b: Array, params: Parameters) -> Response:
    """Both layers' fixed points for one stimulus given its base projection b (2·Nx²,).

    Gradients pass the fixed points by ``params.conv.gradient_mode`` as resolved for a lone stimulus
    (:func:`resolve_adjoint`: 'auto' is the unrolled gradient, exact at every state).
    """
    return stimulus_response(layers, b, params, resolve_adjoint(params.conv.gradient_mode))


def stimulus_response(layers: Layers, b: Array, params: Parameters, adjoint: str) -> Response:
    """:func:`evaluate_model_response` with an explicit adjoint (UNROLLED, IMPLICIT or FORWARD)."""
    u = middle_input(b, layers.gains, params.ssn.phases)
    mid = middle_fixed_point(layers.mid, b, layers.gains, layers.c_mid, params.ssn.phases, params.conv, adjoint)
    sup = layer_fixed_point(layers.sup, superficial_input(layers, mid.r), params.conv, adjoint)
    return Response(r_mid=mid.r, r_sup=sup.r, dx_mid=mid.dx, dx_sup=sup.dx, u=u, settled=mid.settled & sup.settled)


def _unrolled_responses(layers: Layers, b: Array, params: Parameters) -> Response:
    return jax.vmap(stimulus_response, in_axes=(None, 0, None, None))(layers, b, params, UNROLLED)


def frozen_responses(layers: Layers, b: Array, params: Parameters) -> Response:
    """Responses to a batch of base projections (B, 2·Nx²) with no gradient: the FORWARD adjoint."""
    return _unrolled_responses(*jax.lax.stop_gradient((layers, b)), params)


def evaluate_model_response_batch(layers: Layers, b: Array, params: Parameters, adjoint: str | None = None,
                                  frozen: Response | None = None) -> Response:
    """:func:`evaluate_model_response` over a batch of base projections (B, 2·Nx²).

    ``adjoint`` (default: ``params.conv.gradient_mode``) is how gradients pass the fixed points:
    UNROLLED through every Euler step; IMPLICIT by the implicit function theorem at the final states,
    attached to the whole batch at once (:func:`_implicit_fixed_points`); AUTO resolved on the batch's
    settled flags (:func:`resolve_adjoint`); FORWARD none. Values are the same for every adjoint.
    ``frozen`` may pass in the batch's :func:`frozen_responses` when the caller has them already (a
    training step decides its adjoint on them). A caller that takes no gradient (probes, validations,
    regressions, the analysis) passes FORWARD: AUTO's run-time choice relaxes an unsettled batch a second
    time, and under ``vmap`` (where both branches of a ``cond`` run) every batch.
    """
    adjoint = adjoint or params.conv.gradient_mode
    if adjoint == UNROLLED:
        return _unrolled_responses(layers, b, params)
    if frozen is None:
        frozen = frozen_responses(layers, b, params)
    if adjoint == FORWARD:
        return frozen
    if adjoint == IMPLICIT:
        return _attach_implicit_gradients(layers, b, params, frozen)
    # AUTO inside a traced computation: both adjoints are compiled and the settled flags select one at run time.
    return jax.lax.cond(
        jnp.all(frozen.settled),
        lambda: evaluate_model_response_batch(layers, b, params, resolve_adjoint(adjoint, settled=True), frozen),
        lambda: evaluate_model_response_batch(layers, b, params, resolve_adjoint(adjoint, settled=False)))


def _attach_implicit_gradients(layers: Layers, b: Array, params: Parameters, frozen: Response) -> Response:
    """The frozen responses with the implicit-function gradients of both layers' fixed points attached."""
    phases = params.ssn.phases
    u = jax.vmap(middle_input, in_axes=(0, None, None))(b, layers.gains, phases)
    h_mid = jax.vmap(middle_drive_input, in_axes=(0, None, None, None))(b, layers.gains, layers.c_mid, phases)
    r_mid = jnp.swapaxes(_implicit_fixed_points(layers.mid, jnp.swapaxes(h_mid, 1, 2),
                                                jnp.swapaxes(frozen.r_mid, 1, 2)), 1, 2)  # fmt: skip
    r_sup = _implicit_fixed_points(layers.sup, superficial_input(layers, r_mid), frozen.r_sup)
    return frozen._replace(r_mid=r_mid, r_sup=r_sup, u=u)


def response_to_images(log_params: LogParams, static: ModelStatic, images: Array, params: Parameters,
                       noise_z: Array | None = None) -> Response:
    """Convenience: build the layers and evaluate a batch of flattened images (B, Npx²)."""
    layers = build_layers(log_params, static, params)
    return evaluate_model_response_batch(layers, base_projection(images, static, noise_z), params)
