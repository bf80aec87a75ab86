"""Behaviour of the whole forward model: orientation tuning, reproducibility, batching."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.conftest import golden_log_params, golden_path
from training.model import build_static, response_to_images
from training.trials import fine_task_batch, general_task_batch, pair_projections
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
