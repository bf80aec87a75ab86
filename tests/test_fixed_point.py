"""The Euler result is a fixed point, agrees with an independent float64 solver, and both gradient
modes agree with each other and with finite differences."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import root

from parameters import build_parameters
from tests.conftest import with_gradient_mode
from training.loss import default_loss_constants
from training.model import base_projection, build_layers, build_static, evaluate_model_response_batch
from training.trials import evaluate_trials, fine_task_batch
from training.util_gabor import grating_images, image_geometry, make_uniform_orimap


def random_log_params(rng: np.random.Generator, params) -> dict:
    """Parameters drawn from the RandomizePars ranges, with small random kappas."""
    r = params.randomize
    draw = lambda bounds: float(rng.uniform(*bounds))  # noqa: E731
    log_params = {}
    for layer in ("m", "s"):
        for name, bounds in (("EE", r.J_EE), ("EI", r.J_EI), ("IE", r.J_IE), ("II", r.J_II)):
            log_params[f"log_J_{name}_{layer}"] = jnp.float32(np.log(draw(bounds)))
    c = draw(r.c)
    log_params.update(cE_m=jnp.float32(c), cI_m=jnp.float32(draw(r.c)), log_f_E=jnp.float32(np.log(draw(r.f))),
                      log_f_I=jnp.float32(np.log(draw(r.f))))  # fmt: skip
    log_params["kappa_Jmid"] = jnp.asarray(rng.normal(0, 0.3, (2, 2)), jnp.float32)
    log_params["kappa_Jsup"] = jnp.asarray(rng.normal(0, 0.3, (2, 2, 2)), jnp.float32)
    log_params["kappa_f"] = jnp.asarray(rng.normal(0, 0.3, 2), jnp.float32)
    return log_params


@pytest.fixture(scope="module")
def setup(params):
    orimap = make_uniform_orimap(params.grid, np.random.default_rng(5))
    static = build_static(orimap, 0.35, 0.3, params)
    geometry = image_geometry(params.grid, params.stimuli)
    images = grating_images(jnp.array([55.0, 100.0]), 0.0, geometry, params.stimuli)
    return static, images


@functools.partial(jax.jit, static_argnums=3)
def relaxed_layers(log_params, static, images, params):
    layers = build_layers(log_params, static, params)
    response = evaluate_model_response_batch(layers, base_projection(images, static), params)
    return layers, response


def test_euler_result_is_a_fixed_point_and_matches_newton(setup):
    # The corrected kappa_f form: with the reference's exp(tanh(kappa_f) d) for I cells, the random kappa_f of
    # these samples drive the superficial layer far beyond any fixed point the Euler loop reaches.
    params = build_parameters(preset="corrected")
    static, images = setup
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(40):
        layers, response = relaxed_layers(random_log_params(rng, params), static, images, params)
        for i in range(images.shape[0]):
            if not (float(response.dx_mid[i]) == 0 and float(response.dx_sup[i]) == 0):
                continue  # not converged (or diverged): not a fixed point to check
            checked += 1
            h_mid = np.asarray(jnp.maximum(response.u[i], 0) + layers.c_mid[None, :, None], np.float64)
            r_mid = np.asarray(response.r_mid[i], np.float64)
            R = r_mid[:, 0].sum(axis=0)
            h_mid, r_mid = np.swapaxes(h_mid, 0, 1), np.swapaxes(r_mid, 0, 1)  # the solver's type-major layout
            h_sup = (np.asarray(layers.ff_gain) * R + np.asarray(layers.c_sup)[:, None]).ravel()
            r_sup = np.asarray(response.r_sup[i], np.float64)
            for layer, r, h in ((layers.mid, r_mid, h_mid), (layers.sup, r_sup, h_sup)):
                drive = lambda x, layer=layer, h=h: np.asarray(layer.drive(jnp.asarray(x, jnp.float32), h))  # noqa: E731
                residual = np.abs(r - drive(r)) / np.maximum(1.0, np.abs(r))
                assert residual.max() < 1e-3
                W = np.asarray(layer.W, np.float64)
                newton = root(lambda x, W=W, h=h, layer=layer, shape=r.shape: (
                    float64_drive(layer, W, x.reshape(shape), h) - x.reshape(shape)).ravel(), r.ravel(), tol=1e-12)
                assert newton.success
                np.testing.assert_allclose(r.ravel(), newton.x, rtol=1e-4, atol=1e-4)
    assert checked >= 4, "too few converged samples to test"


def float64_drive(layer, W, r, h):
    """k[W r + h]_+^n in float64 for either layer's weight layout."""
    if W.ndim == 3:  # middle layer: (2, 2, grid) per circuit, type-major rates (2, phases, grid)
        v = np.stack([W[0, 0] * r[0] + W[0, 1] * r[1], W[1, 0] * r[0] + W[1, 1] * r[1]]) + h
    else:
        v = W @ r + h
    return layer.k * np.maximum(v, 0) ** layer.n


def small_batch_loss(log_params, readout, static, params, key):
    batch = fine_task_batch(jax.random.fold_in(key, 0), 3, jnp.float32(4.0), params)
    out = evaluate_trials(log_params, readout, static, batch, jax.random.fold_in(key, 1), params,
                          default_loss_constants(params.loss), (1.0, 0.0))  # fmt: skip
    return jnp.mean(out.terms["total"])


def gradient(mode, log_params, readout, static, params):
    p = with_gradient_mode(params, mode)
    return jax.jit(jax.grad(small_batch_loss), static_argnums=3)(log_params, readout, static, p,
                                                                jax.random.PRNGKey(3))  # fmt: skip


def test_implicit_and_unrolled_gradients_agree(golden_setup, params):
    log_params, readout, static = golden_setup
    g_implicit = gradient("implicit", log_params, readout, static, params)
    g_unrolled = gradient("unrolled", log_params, readout, static, params)
    scale = max(float(jnp.max(jnp.abs(v))) for v in g_unrolled.values())
    for key in g_unrolled:
        np.testing.assert_allclose(g_implicit[key], g_unrolled[key], rtol=1e-3, atol=1e-3 * scale, err_msg=key)


@pytest.mark.parametrize("mode", ["unrolled", "implicit"])
def test_gradients_match_finite_differences_in_float64(golden_setup, params, mode):
    log_params, readout, static = golden_setup
    p = with_gradient_mode(params, mode)
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
        lp, ro, st = to64(log_params), to64(readout), to64(static)
        key = jax.random.PRNGKey(3)
        loss = jax.jit(small_batch_loss, static_argnums=3)
        grads = jax.jit(jax.grad(small_batch_loss), static_argnums=3)(lp, ro, st, p, key)
        rng = np.random.default_rng(0)
        direction = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=np.shape(x))), lp)
        eps = 1e-4
        shifted = lambda s: jax.tree_util.tree_map(lambda x, d: x + s * eps * d, lp, direction)  # noqa: E731
        fd = (loss(shifted(1.0), ro, st, p, key) - loss(shifted(-1.0), ro, st, p, key)) / (2 * eps)
        analytic = sum(jnp.sum(grads[k] * direction[k]) for k in lp)
        assert float(analytic) == pytest.approx(float(fd), rel=1e-4 if mode == "unrolled" else 1e-3)
    jax.clear_caches()  # float64 entries in JAX's tracing caches would otherwise leak into later float32 tests
