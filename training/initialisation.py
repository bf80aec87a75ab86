"""Randomised initialisation of a run (spec §14): parameters that satisfy the inequality and response
conditions, found with bounded loops, and the readout initialised by logistic regression."""

from __future__ import annotations

import logging
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from parameters import Parameters, RandomizePars
from training.adjoint import FORWARD
from training.model import LogParams, ModelStatic, build_static, with_gains
from training.readout import Readout
from training.readout_regression import fit_logistic_readout, regression_data, rescale_readout
from training.trials import TrialBatch, fine_task_batch, general_task_batch, responses_to_batch
from training.util_gabor import make_uniform_orimap

logger = logging.getLogger(__name__)

Array = jnp.ndarray
J_ORDER = ("EE", "EI", "IE", "II")


class InitialisationError(RuntimeError):
    """No initialisation satisfied the conditions within the retry limits."""


class Initialisation(NamedTuple):
    """A run's random starting point."""

    log_params: LogParams
    """Log-parameters of stage 0 (log|J|, c, log f); kappas are zero."""
    static: ModelStatic
    orimap: np.ndarray
    gE: float
    gI: float
    eta: float
    readout: Readout
    """Readout over all grid points, from logistic regression (rescaled)."""


def draw_J(rng: np.random.Generator, rp: RandomizePars) -> np.ndarray:
    """|J| for EE, EI, IE, II drawn uniformly from their ranges (one 4-vector draw)."""
    low = np.array([rp.J_EE[0], rp.J_EI[0], rp.J_IE[0], rp.J_II[0]])
    high = np.array([rp.J_EE[1], rp.J_EI[1], rp.J_IE[1], rp.J_II[1]])
    return rng.uniform(low, high)


def draw_middle(rng: np.random.Generator, rp: RandomizePars) -> tuple[np.ndarray, float, float]:
    """Middle |J| and Gabor gains satisfying 1.1·J_EE·|J_II| < |J_EI|·J_IE and 1.1·|J_EI|·gI < |J_II|·gE."""
    for _ in range(rp.max_inequality_tries):
        J = draw_J(rng, rp)
        gE, gI = rng.uniform(rp.g[0], rp.g[1], size=2)
        EE, EI, IE, II = J
        if rp.inequality_margin * EE * II < EI * IE and rp.inequality_margin * EI * gI < II * gE:
            return J, float(gE), float(gI)
    raise InitialisationError(f"no middle-layer parameters satisfied the inequalities in {rp.max_inequality_tries} "
                              "draws; widen RandomizePars ranges or raise max_inequality_tries")  # fmt: skip


def log_parameters(J_m: np.ndarray, J_s: np.ndarray, c: np.ndarray, f: np.ndarray,
                   c_s: np.ndarray | None = None) -> LogParams:
    """Log-parameter dictionary (float32 scalars) from |J| of both layers, baselines and feedforward scales.

    ``c_s``, the superficial baselines, is given only when the layers' baselines are not coupled
    (SSNPars.couple_c_ms False); coupled layers have no cE_s, cI_s entries.
    """
    values = {f"log_J_{name}_m": np.log(J_m[i]) for i, name in enumerate(J_ORDER)}
    values.update({f"log_J_{name}_s": np.log(J_s[i]) for i, name in enumerate(J_ORDER)})
    values.update(cE_m=c[0], cI_m=c[1])
    if c_s is not None:
        values.update(cE_s=c_s[0], cI_s=c_s[1])
    values.update(log_f_E=np.log(f[0]), log_f_I=np.log(f[1]))
    return {k: jnp.float32(v) for k, v in values.items()}


def draw_superficial(rng: np.random.Generator, rp: RandomizePars,
                     c: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Superficial |J|, baselines and feedforward scales, in the draw order of the earlier code.

    With RandomizePars.draw_c_s (the figure era, LINEAGE.md C.2) cE_s, cI_s are drawn from the c range
    between J_s and f; otherwise the superficial layer starts from the middle baselines ``c``.
    """
    J_s = draw_J(rng, rp)
    c_s = rng.uniform(rp.c[0], rp.c[1], size=2) if rp.draw_c_s else c
    return J_s, c_s, rng.uniform(rp.f[0], rp.f[1], size=2)


def probe_batches(key: Array, params: Parameters) -> tuple[TrialBatch, TrialBatch]:
    """The 10-trial fine-task and general-task batches that check a candidate."""
    n = params.randomize.probe_trials
    k_fine, k_general = jax.random.split(key)
    fine = fine_task_batch(k_fine, n, jnp.float32(params.stimuli.offset), params)
    general = general_task_batch(k_general, n, params.pretraining)
    return fine, general


@partial(jax.jit, static_argnames=("params",))
def reference_summary(log_params: LogParams, static: ModelStatic, key: Array, fine: TrialBatch, general: TrialBatch,
                      params: Parameters) -> dict:
    """Rate statistics and dx of the reference images of both probe batches."""
    summary = {}
    for name, batch, k in (("fine", fine, 0), ("general", general, 1)):
        ref, _ = responses_to_batch(log_params, static, batch, jax.random.fold_in(key, k), params, FORWARD)
        finite = {"finite_mid": jnp.all(jnp.isfinite(ref.r_mid)), "finite_sup": jnp.all(jnp.isfinite(ref.r_sup))}
        stats = ref.rate_stats(params.ssn.sup_I_stats_drop_last)
        summary[name] = {**stats, "dx_mid": ref.dx_mid, "dx_sup": ref.dx_sup, **finite}
    return summary


def rates_in_range(stats: dict, layer: str, rp: RandomizePars) -> bool:
    """Max rates inside rate_max_range and mean rates inside rate_mean_range, over trials and types."""
    maxima = np.concatenate([np.asarray(stats[f"max{t}_{layer}"]) for t in ("E", "I")])
    means = np.concatenate([np.asarray(stats[f"mean{t}_{layer}"]) for t in ("E", "I")])
    return bool(maxima.min() > rp.rate_max_range[0] and maxima.max() < rp.rate_max_range[1]
                and means.min() > rp.rate_mean_range[0] and means.max() < rp.rate_mean_range[1])  # fmt: skip


def middle_acceptable(summary: dict, rp: RandomizePars) -> bool:
    """Conditions on the middle layer (spec §14.1): finite responses to fine- and general-task stimuli, a
    fine-task convergence penalty below dx_max_mid and middle rates in range."""
    fine, general = summary["fine"], summary["general"]
    return bool(fine["finite_mid"] and general["finite_mid"] and np.all(np.asarray(fine["dx_mid"]) < rp.dx_max_mid)
                and rates_in_range(fine, "mid", rp))  # fmt: skip


def superficial_acceptable(summary: dict, rp: RandomizePars) -> bool:
    """Conditions on the full model (spec §14.2): finite responses of both layers, convergence penalties below
    dx_max_fine (fine task) and dx_max_general (general task) and superficial rates in range."""
    fine, general = summary["fine"], summary["general"]
    finite = all(bool(b[k]) for b in (fine, general) for k in ("finite_mid", "finite_sup"))
    dx_ok = all(np.all(np.asarray(b[k]) < limit) for b, limit in ((fine, rp.dx_max_fine), (general, rp.dx_max_general))
                for k in ("dx_mid", "dx_sup"))  # fmt: skip
    return bool(finite and dx_ok and rates_in_range(fine, "sup", rp))


def find_parameters(params: Parameters, rng: np.random.Generator, key: Array, orimap: np.ndarray):
    """Draw middle-layer parameters until they pass :func:`middle_acceptable`, then superficial ones until the
    whole model passes :func:`superficial_acceptable` (redrawing the middle layer after too many failures).

    Returns (log_params, static, gE, gI); raises InitialisationError at the retry limits of RandomizePars.
    """
    rp = params.randomize
    static = None
    middle_draws, batch_draws, middle_tries = 0, 0, 0
    fine, general = probe_batches(jax.random.fold_in(key, batch_draws), params)
    while True:
        middle_tries += 1
        if middle_tries > rp.max_middle_resamples:
            raise InitialisationError(f"no acceptable middle layer in {rp.max_middle_resamples} resamplings")
        J_m, gE, gI = draw_middle(rng, rp)
        static = build_static(orimap, gE, gI, params) if static is None else with_gains(static, gE, gI)
        c = rng.uniform(rp.c[0], rp.c[1], size=2)
        coupled = params.ssn.couple_c_ms
        candidate = log_parameters(J_m, J_m, c, np.ones(2), None if coupled else c)
        if not middle_acceptable(reference_summary(candidate, static, key, fine, general, params), rp):
            continue
        middle_draws += 1
        for failures in range(rp.max_superficial_failures):
            if 100 * (middle_draws - 1) + failures > rp.max_total_failures:
                raise InitialisationError(f"initialisation gave up after {rp.max_total_failures} failures")
            J_s, c_s, f = draw_superficial(rng, rp, c)
            candidate = log_parameters(J_m, J_s, c, f, None if coupled else c_s)
            if superficial_acceptable(reference_summary(candidate, static, key, fine, general, params), rp):
                return candidate, static, gE, gI
        batch_draws += 1
        fine, general = probe_batches(jax.random.fold_in(key, batch_draws), params)
        middle_tries = 0


def initial_readout(log_params: LogParams, static: ModelStatic, key: Array, params: Parameters) -> Readout:
    """Readout over all grid points by logistic regression on general-task trials, rescaled (§14.3).

    The labels follow PretrainingPars.shuffle_labels (as in the reference); the bias is rescaled with the
    weights only when RandomizePars.rescale_readout_bias is set.
    """
    p = params.pretraining
    num_cells = params.grid.gridsize_Nx**2
    data = regression_data(log_params, static, key, params, p.regression_trials, num_cells, p.shuffle_labels)
    readout, test_acc = fit_logistic_readout(data.sup, data.labels, p.regression_train_fraction)
    logger.info("initial logistic-regression readout: held-out accuracy %.3f", test_acc)
    return rescale_readout(readout, params.randomize.readout_std, params.randomize.rescale_readout_bias)


def randomize_initialisation(params: Parameters, rng: np.random.Generator, key: Array) -> Initialisation:
    """A random starting point of a run: orientation map, parameters that pass every initialisation condition
    (the middle-layer inequalities, finite and converged responses, rates in range) and the initial readout."""
    rp = params.randomize
    eta = float(rng.uniform(rp.eta[0], rp.eta[1]))
    orimap = make_uniform_orimap(params.grid, rng, params.readout.readout_grid_size[1])
    k_probe, k_regression = jax.random.split(key)
    log_params, static, gE, gI = find_parameters(params, rng, k_probe, orimap)
    readout = initial_readout(log_params, static, k_regression, params)
    return Initialisation(log_params, static, orimap, gE, gI, eta, readout)
