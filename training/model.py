"""Forward model: images -> Gabor projection -> middle SSN -> superficial SSN (spec §5-§7).

Trained quantities travel as a dictionary of log-parameters (:data:`LogParams`); per-run constants (filters,
distances, orientation map, Gabor gains) as a :class:`ModelStatic` pytree, so one compiled function serves
every run. Structural constants come from the hashable :class:`parameters.Parameters`, passed as a static
argument.

A layer's fixed point is found by the solver (:mod:`training.solver`, the Euler relaxation) and its gradient
attached by the adjoint (:mod:`training.adjoint`); this module composes the two layers. Where a function takes
an adjoint it is one that runs (UNROLLED, IMPLICIT or FORWARD); where it takes none, or may take AUTO, it asks
:func:`training.adjoint.with_adjoint` for the adjoint that runs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from parameters import IMPLICIT, UNROLLED, ConvPars, Parameters, SSNPars
from training.adjoint import (
    FORWARD,
    implicit_fixed_point,
    implicit_fixed_points,
    layer_fixed_point,
    relax_with,
    requested_adjoint,
    with_adjoint,
)
from training.solver import FixedPoint
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


# ------------------------------------------------------------------- one layer's fixed point, one stimulus
def obtain_fixed_point(layer: SSN_mid | SSN_sup, h: Array, conv: ConvPars) -> tuple[Array, Array]:
    """Fixed point r and convergence penalty dx = max(0, avg_dx - 1) of one layer for input h.

    Gradients pass the fixed point by the configured ``conv.gradient_mode`` as :func:`training.adjoint.with_adjoint`
    resolves it for a lone stimulus: 'unrolled' and 'auto' differentiate through every Euler step; 'implicit'
    uses the implicit function theorem at the final state, r = k[W r + h]^n, and treats dx as a constant.
    """
    fixed_point = with_adjoint(requested_adjoint(conv), functools.partial(layer_fixed_point, layer, h, conv))
    return fixed_point.r, fixed_point.dx


superficial_layer_fixed_point = obtain_fixed_point
"""Superficial-layer rates (2·Nx²,) and dx for input h of the same shape (a name of the spec's interface): the
superficial layer takes its input as it is, so this is :func:`obtain_fixed_point`."""


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
    run = functools.partial(middle_fixed_point, ssn, b, gains, c_mid, phases, conv)
    fixed_point = with_adjoint(requested_adjoint(conv), run)
    return fixed_point.r, fixed_point.dx


def middle_fixed_point(ssn: SSN_mid, b: Array, gains: Array, c_mid: Array, phases: int, conv: ConvPars,
                       adjoint: str) -> FixedPoint:
    """:func:`middle_layer_response` with its settled flag, its gradient by ``adjoint`` (UNROLLED, IMPLICIT or
    FORWARD). The implicit gradient is attached to the assembled rates with the full input of every slot."""
    base = b.reshape(2, -1)
    magnitude = jnp.abs(base) if phases == 4 else jnp.maximum(base, 0.0)
    active = gains[:, None, None] * magnitude[None] + c_mid[:, None, None]  # type-major (2, 2, Nx²)
    parts = (active, jnp.broadcast_to(c_mid[:, None, None], (2, 1, base.shape[1]))) if phases == 4 else (active,)
    rates, dx, settled = relax_with(adjoint, ssn, parts, conv)
    r = assemble_middle_rates(rates, base, phases)
    if adjoint == IMPLICIT:
        h = middle_drive_input(b, gains, c_mid, phases)
        r = jnp.swapaxes(implicit_fixed_point(ssn, jnp.swapaxes(h, 0, 1), jnp.swapaxes(r, 0, 1)), 0, 1)
    return FixedPoint(r, dx, settled)


def assemble_middle_rates(rates: tuple[Array, ...], base: Array, phases: int) -> Array:
    """Rates (phases, 2, Nx²) of every slot from the simulated circuits of :func:`middle_layer_response`."""
    active = jnp.swapaxes(rates[0], 0, 1)  # (2 base phases, 2, Nx²)
    if phases == 2:
        return active
    baseline = jnp.swapaxes(rates[1], 0, 1)
    slots = [jnp.where(sign * base[phase] > 0, active[phase], baseline[0]) for phase, sign in PHASE_SLOTS]
    return jnp.stack(slots)


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
    """True where both layers' final Euler states are converged fixed points (:func:`training.solver.settled_state`)."""

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
    (:func:`training.adjoint.with_adjoint`: 'auto' is the unrolled gradient, exact at every state).
    """
    return with_adjoint(requested_adjoint(params.conv), functools.partial(stimulus_response, layers, b, params))


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
    attached to the whole batch at once (:func:`training.adjoint.implicit_fixed_points`); AUTO decided on
    the batch's settled flags (:func:`training.adjoint.with_adjoint`); FORWARD none. Values are the same for
    every adjoint. ``frozen`` is the batch's :func:`frozen_responses` where the caller has them already (a
    training step decides its adjoint on them: :func:`training.trials.trial_inputs`). A caller that takes
    no gradient (probes, validations, regressions, the analysis) passes FORWARD: AUTO's run-time choice
    relaxes an unsettled batch a second time, and under ``vmap`` (where both branches of a ``cond`` run)
    every batch.
    """
    mode = requested_adjoint(params.conv, adjoint)
    if mode == UNROLLED:  # the only adjoint that does not start from the batch relaxed without gradients
        return _unrolled_responses(layers, b, params)
    if frozen is None:
        frozen = frozen_responses(layers, b, params)
    run = functools.partial(_batch_response, layers, b, params, frozen)
    return with_adjoint(mode, run, settled=frozen.settled)


def _batch_response(layers: Layers, b: Array, params: Parameters, frozen: Response, adjoint: str) -> Response:
    """The batch's responses under an adjoint that runs, given the batch relaxed without gradients."""
    if adjoint == UNROLLED:
        return _unrolled_responses(layers, b, params)
    if adjoint == FORWARD:
        return frozen
    return _attach_implicit_gradients(layers, b, params, frozen)


def _attach_implicit_gradients(layers: Layers, b: Array, params: Parameters, frozen: Response) -> Response:
    """The frozen responses with the implicit-function gradients of both layers' fixed points attached."""
    phases = params.ssn.phases
    u = jax.vmap(middle_input, in_axes=(0, None, None))(b, layers.gains, phases)
    h_mid = jax.vmap(middle_drive_input, in_axes=(0, None, None, None))(b, layers.gains, layers.c_mid, phases)
    r_mid = jnp.swapaxes(implicit_fixed_points(layers.mid, jnp.swapaxes(h_mid, 1, 2),
                                               jnp.swapaxes(frozen.r_mid, 1, 2)), 1, 2)  # fmt: skip
    r_sup = implicit_fixed_points(layers.sup, superficial_input(layers, r_mid), frozen.r_sup)
    return frozen._replace(r_mid=r_mid, r_sup=r_sup, u=u)


def response_to_images(log_params: LogParams, static: ModelStatic, images: Array, params: Parameters,
                       noise_z: Array | None = None) -> Response:
    """Convenience: build the layers and evaluate a batch of flattened images (B, Npx²)."""
    layers = build_layers(log_params, static, params)
    return evaluate_model_response_batch(layers, base_projection(images, static, noise_z), params)
