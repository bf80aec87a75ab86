"""Behaviour of the whole forward model: orientation tuning, reproducibility, batching."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import golden_log_params, golden_path
from training import trials
from training.model import (
    base_projection,
    build_layers,
    build_static,
    evaluate_model_response,
    evaluate_model_response_batch,
    middle_input,
    middle_layer_fixed_point,
    middle_layer_response,
    response_to_images,
    superficial_input,
    superficial_layer_fixed_point,
)
from training.solver import euler_relaxation_parts
from training.trials import fine_task_batch, general_task_batch, pair_projections, task_geometry
from training.util_gabor import grating_images, image_geometry, make_uniform_orimap


def load_golden(case=1):
    with np.load(golden_path(case)) as data:
        return {k: data[k] for k in data.files}


def test_middle_E_cells_prefer_their_map_orientation(params):
    golden = load_golden()
    static = build_static(golden["orimap"], float(golden["gE"]), float(golden["gI"]), params)
    geometry = image_geometry(params.grid, params.stimuli, full_field=True)
    oris = jnp.arange(0.0, 180.0, 10.0)
    images = grating_images(oris, 0.0, geometry, params.stimuli)
    response = jax.jit(response_to_images, static_argnums=3)(golden_log_params(golden), static, images, params)
    # phase-summed E output of the middle layer per grid point, over orientations: (18, 81)
    tuning = np.asarray(response.r_mid[:, :, 0, :].sum(axis=1))
    preferred = np.asarray(oris)[np.argmax(tuning, axis=0)]
    error = np.abs((preferred - golden["orimap"] + 90) % 180 - 90)  # degrees on the 180° ring
    assert np.median(error) <= 10.0
    assert np.mean(error <= 20.0) > 0.8


def test_same_key_same_results(params):
    a = make_uniform_orimap(params.grid, np.random.default_rng(9))
    b = make_uniform_orimap(params.grid, np.random.default_rng(9))
    assert np.array_equal(a, b)
    static = build_static(a, 0.3, 0.3, params)
    key = jax.random.PRNGKey(42)
    for make in (lambda k: fine_task_batch(k, 8, jnp.float32(4.0), params),
                 lambda k: general_task_batch(k, 8, params.pretraining)):  # fmt: skip
        b1, b2 = make(key), make(key)
        assert all(np.array_equal(x, y) for x, y in zip(b1, b2, strict=True))
        p1 = pair_projections(key, b1, static, params)
        p2 = pair_projections(key, b2, static, params)
        assert all(np.array_equal(x, y) for x, y in zip(p1, p2, strict=True))
        assert not np.array_equal(make(jax.random.PRNGKey(43)).target_ori, b1.target_ori)


def test_task_batches_follow_the_task_rules(params):
    fine = fine_task_batch(jax.random.PRNGKey(0), 400, jnp.float32(4.0), params)
    diff = np.asarray(fine.ref_ori - fine.target_ori)
    assert np.allclose(np.abs(diff), 4.0) and np.array_equal(diff > 0, np.asarray(fine.label) == 1)
    assert np.all(np.abs(fine.jitter) <= 5.0) and 0.35 < np.mean(fine.label) < 0.65
    general = general_task_batch(jax.random.PRNGKey(1), 400, params.pretraining)
    diff = np.asarray(general.ref_ori - general.target_ori)
    assert np.all((np.abs(diff) >= 5.0 - 1e-4) & (np.abs(diff) <= 20.0 + 1e-4))
    assert np.array_equal(diff > 0, np.asarray(general.label) == 1)
    assert np.all(np.asarray(general.jitter) == 0)
    shuffled = general_task_batch(jax.random.PRNGKey(1), 400, params.pretraining, shuffle_labels=True)
    assert 0.3 < np.mean(np.asarray(shuffled.label) == np.asarray(general.label)) < 0.7


def test_batched_response_equals_single_responses(params):
    golden = load_golden(2)
    static = build_static(golden["orimap"], float(golden["gE"]), float(golden["gI"]), params)
    images = jnp.asarray(golden["images"])
    evaluate = jax.jit(response_to_images, static_argnums=3)
    batch = evaluate(golden_log_params(golden), static, images, params)
    single = evaluate(golden_log_params(golden), static, images[1:2], params)
    np.testing.assert_allclose(batch.r_sup[1], single.r_sup[0], rtol=1e-4, atol=1e-3)


def golden_model(params, case=2):
    golden = load_golden(case)
    static = build_static(golden["orimap"], float(golden["gE"]), float(golden["gI"]), params)
    return golden, static, build_layers(golden_log_params(golden), static, params)


@pytest.mark.parametrize("phases", [4, 2])
def test_paired_middle_layer_equals_the_full_simulation(params, phases):
    """Simulating |u| + c and the shared baseline circuits gives every slot's rates and the same dx."""
    params = dataclasses.replace(params, ssn=dataclasses.replace(params.ssn, phases=phases))
    golden, static, layers = golden_model(params)
    b = base_projection(jnp.asarray(golden["images"]), static)

    def full(b_one):
        h = jnp.maximum(middle_input(b_one, static.gains, phases), 0.0) + layers.c_mid[None, :, None]
        return middle_layer_fixed_point(layers.mid, h, params.conv)

    def paired(b_one):
        return middle_layer_response(layers.mid, b_one, static.gains, layers.c_mid, phases, params.conv)

    r_full, dx_full = jax.jit(jax.vmap(full))(b)
    r_paired, dx_paired = jax.jit(jax.vmap(paired))(b)
    assert r_paired.shape == (b.shape[0], phases, 2, 81)
    np.testing.assert_allclose(r_paired, r_full, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx_paired, dx_full, rtol=1e-4, atol=1e-6)
    if phases == 4:  # of the slots phi and phi + pi, one sees only its baseline c
        baseline, _ = middle_layer_fixed_point(layers.mid, jnp.broadcast_to(layers.c_mid[None, :, None], (2, 2, 81)),
                                               params.conv)  # fmt: skip
        distance = np.minimum(np.abs(r_paired[:, :2] - baseline), np.abs(r_paired[:, 2:] - baseline))
        assert np.max(distance) <= 1e-4 * max(1.0, float(np.max(baseline)))


def test_superficial_layer_fixed_point_is_the_models_superficial_layer(params):
    """The documented per-layer function gives the superficial rates and dx of a whole-model response."""
    golden, static, layers = golden_model(params)
    b_one = base_projection(jnp.asarray(golden["images"]), static)[0]
    response = jax.jit(evaluate_model_response, static_argnums=2)(layers, b_one, params)
    h = superficial_input(layers, response.r_mid)
    r, dx = jax.jit(superficial_layer_fixed_point, static_argnums=2)(layers.sup, h, params.conv)
    # two compiled programs: the same Euler loop, float32 rounding apart
    np.testing.assert_allclose(r, response.r_sup, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, response.dx_sup, rtol=1e-5, atol=1e-7)


def test_parts_share_one_dx_metric(params):
    """Relaxing a layer's cells in two parts gives the rates and the avg_dx of relaxing them together."""
    _, _, layers = golden_model(params)
    h = jax.random.uniform(jax.random.PRNGKey(0), (2, 3, 81), minval=0.0, maxval=40.0)
    conv = dataclasses.replace(params.conv, Tmax=30.0)  # stopped early, so avg_dx is far from zero
    (whole,), dx_whole = euler_relaxation_parts(layers.mid, (h,), conv)
    (left, right), dx_parts = euler_relaxation_parts(layers.mid, (h[:, :1], h[:, 1:]), conv)
    assert float(dx_whole) > 1.0
    np.testing.assert_allclose(jnp.concatenate([left, right], axis=1), whole, rtol=1e-6)
    np.testing.assert_allclose(dx_parts, dx_whole, rtol=1e-6)


def test_batch_implicit_gradient_equals_the_sum_of_single_gradients(params):
    """The batch-level implicit gradient is the sum of the per-stimulus implicit gradients."""
    golden, static, _ = golden_model(params)
    log_params = golden_log_params(golden)
    b = base_projection(jnp.asarray(golden["images"]), static)
    weights = jax.random.normal(jax.random.PRNGKey(1), (b.shape[0], 162))

    def batch_objective(lp):
        response = evaluate_model_response_batch(build_layers(lp, static, params), b, params)
        return jnp.sum(weights * response.r_sup) + jnp.sum(response.r_mid**2) * 1e-3

    def single_objective(lp, b_one, w_one):
        response = evaluate_model_response(build_layers(lp, static, params), b_one, params)
        return jnp.sum(w_one * response.r_sup) + jnp.sum(response.r_mid**2) * 1e-3

    batched = jax.jit(jax.grad(batch_objective))(log_params)
    singles = jax.jit(jax.vmap(jax.grad(single_objective), in_axes=(None, 0, 0)))(log_params, b, weights)
    for key, value in batched.items():
        np.testing.assert_allclose(value, jnp.sum(singles[key], axis=0), rtol=2e-3, atol=1e-5, err_msg=key)


def test_chunked_projections_equal_direct_projections(params, monkeypatch):
    golden, static, _ = golden_model(params)
    ori = jnp.linspace(0.0, 170.0, 10)
    jitter = jnp.linspace(-5.0, 5.0, 10)
    direct = base_projection(grating_images(ori, jitter, task_geometry(params), params.stimuli), static)
    monkeypatch.setattr(trials, "IMAGES_PER_CHUNK", 4)  # 3 chunks of 4 images, the last one padded
    chunked = trials.grating_projections(ori, jitter, static, params)
    np.testing.assert_allclose(chunked, direct, rtol=1e-5, atol=1e-3)
