"""The model-level switches of the `figure` preset (../shared/spec/LINEAGE.md B, C.2, J), each against a
hand-worked case: the superficial I projections reuse the E kernel, the orientation and kappa scales, the
uncoupled and separately drawn superficial baselines, and the model without kappa_Jmid and kappa_f."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configurations
from parameters import ALL_TRAINABLE, ParameterError, build_parameters
from tests.conftest import golden_log_params, golden_path, with_gradient_mode
from training.initialisation import draw_J, draw_superficial, randomize_initialisation
from training.loss import stage2_loss_constants
from training.model import build_layers, build_static, grid_spacing
from training.readout import Readout
from training.SSN_classes import SSN_sup
from training.trials import evaluate_trials, fine_task_batch
from training.util_gabor import make_uniform_orimap

J = jnp.array([[4.5, -1.3], [5.0, -0.9]])
N = 81


@pytest.fixture(scope="module")
def figure():
    return build_parameters(preset="figure")


@pytest.fixture(scope="module")
def static(figure):
    orimap = make_uniform_orimap(figure.grid, np.random.default_rng(0))
    return build_static(orimap, 0.3, 0.25, figure)


def build_sup(static, params, kappa=None):
    kappa = jnp.zeros((2, 2, 2)) if kappa is None else kappa
    return SSN_sup.build(J, kappa, static.rho, static.ori_dist, static.d_ref, params.ssn, grid_spacing(params))


def figure_kernel(static, a: int, kappa: np.ndarray, p_local: float) -> np.ndarray:
    """LINEAGE.md B.1 written out with its own constants: ori²/180² and d²/(2·45²), exponential in distance."""
    rho, ori, d = (np.asarray(x, np.float64) for x in (static.rho, static.ori_dist, static.d_ref))
    s_E = (0.2, 0.4)[a]
    scale = 2 * 45**2
    X = np.tanh(kappa[0][a][0]) * d[:, None] ** 2 / scale + np.tanh(kappa[1][a][0]) * d[None, :] ** 2 / scale
    Q = np.exp(-rho / s_E - ori**2 / 180**2 - X)
    Q[Q < 1e-4] = 0
    Q = Q / np.mean(Q.sum(axis=1))
    return p_local * np.eye(N) + (1 - p_local) * Q


def test_figure_I_columns_reuse_the_E_kernel_and_reach_far(static, figure):
    kappa = np.zeros((2, 2, 2))
    kappa[0, 0, 0], kappa[1, 1, 0] = 0.7, -0.4  # E-input kappas: the I columns inherit them
    kappa[:, :, 1] = 2.0  # I-input kappas: no effect under 'reuse_E'
    W = np.asarray(build_sup(static, figure, jnp.asarray(kappa, jnp.float32)).W, np.float64)
    for a, p_local in enumerate(figure.ssn.p_local_s):
        K = figure_kernel(static, a, kappa, p_local)
        rows = slice(a * N, (a + 1) * N)
        np.testing.assert_allclose(W[rows, :N], float(J[a, 0]) * K, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(W[rows, N:], float(J[a, 1]) * K, rtol=2e-5, atol=1e-6)
    rho = np.asarray(static.rho)
    far = rho > 1.0  # mm: far beyond the local Gaussian I kernel (0.09 mm)
    assert np.count_nonzero(W[:N, N:][far]) > 0 and np.count_nonzero(W[N:, N:][far]) > 0
    reference = np.asarray(build_sup(static, build_parameters()).W)
    assert np.count_nonzero(reference[:N, N:] - np.diag(np.diag(reference[:N, N:]))) == 0  # local in the seed


def test_sigma_ori_and_kappa_scale_enter_as_the_formula_says(static):
    """Each switch alone: sigma_oris scales the orientation term, kappa_range the kappa term (E block, a = E)."""
    base = build_parameters()
    kappa = np.zeros((2, 2, 2))
    kappa[0, 0, 0] = 0.5
    for ssn in (dataclasses.replace(base.ssn, sigma_oris=180 / 2**0.5),
                dataclasses.replace(base.ssn, kappa_range=45.0)):
        params = dataclasses.replace(base, ssn=ssn)
        W = np.asarray(build_sup(static, params, jnp.asarray(kappa, jnp.float32)).W, np.float64)
        rho, ori, d = (np.asarray(x, np.float64) for x in (static.rho, static.ori_dist, static.d_ref))
        Q = np.exp(-rho / 0.2 - ori**2 / (2 * ssn.sigma_oris**2)
                   - np.tanh(0.5) * d[:, None] ** 2 / (2 * ssn.kappa_range**2))  # fmt: skip
        Q[Q < 1e-4] = 0
        K = 0.4 * np.eye(N) + 0.6 * Q / np.mean(Q.sum(axis=1))
        np.testing.assert_allclose(W[:N, :N], float(J[0, 0]) * K, rtol=2e-5, atol=1e-6)


def test_shared_kernel_drive_and_adjoint_match_the_dense_weights(static, figure):
    kappa = jnp.array(np.random.default_rng(5).normal(0, 1, (2, 2, 2)), jnp.float32)
    sup = build_sup(static, figure, kappa)
    assert sup.shared is not None and not sup.local_inhibition
    rng = np.random.default_rng(6)
    r = jnp.asarray(rng.uniform(0, 20, (3, 2 * N)), jnp.float32)
    h = jnp.asarray(rng.uniform(-5, 10, (3, 2 * N)), jnp.float32)
    drive_E, drive_I = sup.split_drive()(r[:, :N], r[:, N:], h[:, :N], h[:, N:])
    dense = sup.k * np.maximum(np.asarray(r, np.float64) @ np.asarray(sup.W, np.float64).T + np.asarray(h), 0) ** 2
    np.testing.assert_allclose(np.concatenate([drive_E, drive_I], axis=1), dense, rtol=1e-4, atol=1e-3)
    g = jnp.asarray(rng.normal(0, 1, 2 * N), jnp.float32)
    lam = np.asarray(sup.solve_adjoint(r[0], h[0], g))
    D = np.asarray(sup.k * sup.n * jnp.maximum(sup.input_current(r[0], h[0]), 0))
    residual = (np.eye(2 * N) - np.asarray(sup.W).T * D[None, :]) @ lam - np.asarray(g)
    assert np.max(np.abs(residual)) < 1e-3 * np.max(np.abs(np.asarray(g)))


def test_superficial_baselines_are_drawn_between_J_s_and_f():
    """LINEAGE.md C.2: J_s (a 4-vector), then cE_s, cI_s ~ U[4.5, 5.5] independently, then f_E, f_I."""
    rp = build_parameters(preset="figure").randomize
    c_mid = np.array([5.1, 4.7])
    J_s, c_s, f = draw_superficial(np.random.default_rng(11), rp, c_mid)
    rng = np.random.default_rng(11)
    np.testing.assert_array_equal(J_s, draw_J(rng, rp))
    np.testing.assert_array_equal(c_s, rng.uniform(4.5, 5.5, size=2))
    np.testing.assert_array_equal(f, rng.uniform(rp.f[0], rp.f[1], size=2))
    seed = build_parameters().randomize  # the seed version: no draw, the middle baselines, f right after J_s
    J_s, c_s, f = draw_superficial(np.random.default_rng(11), seed, c_mid)
    rng = np.random.default_rng(11)
    draw_J(rng, seed)
    np.testing.assert_array_equal(c_s, c_mid)
    np.testing.assert_array_equal(f, rng.uniform(seed.f[0], seed.f[1], size=2))


def test_drawn_baselines_need_uncoupled_layers():
    with pytest.raises(ParameterError, match="RandomizePars.draw_c_s"):
        build_parameters({"SSNPars": {"couple_c_ms": True}}, preset="figure")


@pytest.fixture(scope="module")
def figure_start(figure):
    """Golden case 1's network under the figure model, with its own superficial baselines."""
    with np.load(golden_path(1)) as data:
        golden = {k: data[k] for k in data.files}
    log_params = golden_log_params(golden)
    log_params.update(cE_s=jnp.float32(4.6), cI_s=jnp.float32(5.3))
    static = build_static(golden["orimap"], float(golden["gE"]), float(golden["gI"]), figure)
    readout = Readout(jnp.asarray(golden["w_sig"]), jnp.asarray(golden["b_sig"]))
    return log_params, readout, static


def test_uncoupled_superficial_baselines_are_their_own_and_trained(figure, figure_start):
    log_params, readout, static = figure_start
    layers = build_layers(log_params, static, figure)
    np.testing.assert_allclose(layers.c_sup, [4.6, 5.3])
    np.testing.assert_allclose(layers.c_mid, [log_params["cE_m"], log_params["cI_m"]])
    grads = jax.grad(stage2_loss)(log_params, readout, static, figure)
    assert abs(float(grads["cE_s"])) > 0 and abs(float(grads["cI_s"])) > 0
    assert "cE_s" in figure.stage2_trained and "cE_s" in figure.pretrained_ssn.trained


def test_initialisation_under_figure_draws_separate_superficial_baselines(figure):
    params = build_parameters({"PretrainingPars": {"regression_trials": 40}}, preset="figure")
    init = randomize_initialisation(params, np.random.default_rng(0), jax.random.PRNGKey(0))
    c_s = np.array([init.log_params["cE_s"], init.log_params["cI_s"]])
    c_m = np.array([init.log_params["cE_m"], init.log_params["cI_m"]])
    assert np.all((c_s >= 4.5) & (c_s <= 5.5)) and not np.allclose(c_s, c_m)


def test_the_figure_model_has_no_middle_or_feedforward_kappa(figure):
    baseline = build_parameters({"TrainedSSNPars": {"trained": ALL_TRAINABLE}}, preset="figure")
    assert baseline.stage2_trained == tuple(n for n in ALL_TRAINABLE if n not in ("kappa_Jmid", "kappa_f"))
    assert build_parameters().stage2_trained == ALL_TRAINABLE
    absent = figure.absent_trainables
    refused = {c.name for g in configurations.GROUPS.values() for c in g
               if configurations.unsupported_reason(c, absent)}  # fmt: skip
    assert refused == {"conf_kappa_Jmid_only", "conf_kappa_f_only", "conf_kappa_Jmid_excluded", "conf_kappa_f_excluded"}
    assert not any(configurations.unsupported_reason(c, ()) for g in configurations.GROUPS.values() for c in g)


def stage2_loss(log_params, readout, static, params, trials=3):
    key = jax.random.PRNGKey(3)
    batch = fine_task_batch(jax.random.fold_in(key, 0), trials, jnp.float32(4.0), params)
    constants = stage2_loss_constants(params.loss, {"meanr_E_mid": 20.0, "meanr_E_sup": 15.0,
                                                    "meanr_I_mid": 40.0, "meanr_I_sup": 30.0})  # fmt: skip
    out = evaluate_trials(log_params, readout, static, batch, jax.random.fold_in(key, 1), params, constants, (1.0, 0.0))
    return jnp.mean(out.terms["total"])


def test_figure_kappas_of_I_inputs_get_no_gradient(figure, figure_start):
    log_params, readout, static = figure_start
    kappas = {"kappa_Jsup": jnp.full((2, 2, 2), 0.3).at[:, :, 1].set(0.0)}
    grads = jax.grad(stage2_loss)({**log_params, **kappas}, readout, static, figure)
    g = np.asarray(grads["kappa_Jsup"])
    assert np.all(g[:, :, 1] == 0) and np.all(np.abs(g[:, :, 0]) > 0)


def test_figure_stage2_gradient_matches_finite_differences_where_training_goes(figure, figure_start):
    """In float64, at two states with a convergence penalty, as stage 2 visits: golden case 1's network under the
    figure model (its long-range inhibition leaves the superficial layer unsettled, dx_sup ≈ 0.9) and the same
    with slightly stronger superficial excitation (dx_sup ≈ 3.4)."""
    log_params, readout, static = figure_start
    p = with_gradient_mode(figure, "auto")
    loss = jax.jit(stage2_loss, static_argnums=3)
    grad = jax.jit(jax.grad(stage2_loss), static_argnums=3)
    kappas = {"kappa_Jsup": jnp.asarray(np.random.default_rng(2).normal(0, 0.5, (2, 2, 2)), jnp.float32)}
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
        ro, st = to64(readout), to64(static)
        for shift in ({}, {"log_J_EE_s": 0.02}):
            lp = to64({**log_params, **kappas, **{k: log_params[k] + v for k, v in shift.items()}})
            grads = grad(lp, ro, st, p)
            rng = np.random.default_rng(0)
            direction = {k: jnp.asarray(rng.normal(size=np.shape(x))) for k, x in lp.items()}
            eps = 1e-7
            plus = {k: lp[k] + eps * direction[k] for k in lp}
            minus = {k: lp[k] - eps * direction[k] for k in lp}
            fd = (loss(plus, ro, st, p) - loss(minus, ro, st, p)) / (2 * eps)
            analytic = sum(jnp.sum(grads[k] * direction[k]) for k in lp)
            assert float(analytic) == pytest.approx(float(fd), rel=1e-4), shift
            assert abs(float(fd)) > 0
    jax.clear_caches()  # float64 entries in JAX's tracing caches would otherwise leak into later float32 tests
