"""Geometry: grid, orientation map, ring distance, images and Gabor filters against known values."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from parameters import GridPars
from training.model import base_projection, build_static, middle_input
from training.util_gabor import (
    create_gabor_filters_ori_map,
    find_gabor_A,
    gabor_base_bank,
    grating_images,
    grid_distances,
    image_geometry,
    make_orimap,
    make_uniform_orimap,
    projected_noise_factor,
    readout_indices,
    ring_distance,
)
from training.util_gabor import test_uniformity as uniformity_test


@pytest.fixture(scope="module")
def geometry(params):
    return image_geometry(params.grid, params.stimuli)


def test_known_pixel_values_of_a_55_degree_grating(params, geometry):
    image = np.asarray(grating_images(55.0, 0.0, geometry, params.stimuli))
    assert image.shape == (16641,)
    assert image[0] == image[-1] == 384.0  # gray corners
    assert image[129 * 64 + 64] == 690.0  # centre
    assert image.min() == 75.0 and image.max() == 690.0
    assert np.sum(geometry.alpha == 255.0) == 7845
    assert np.sum(geometry.outside) == 3788


def test_grating_is_180_periodic_and_jitter_adds_to_orientation(params, geometry):
    a = grating_images(jnp.array([10.0, 190.0, 7.0]), jnp.array([0.0, 0.0, 3.0]), geometry, params.stimuli)
    assert np.array_equal(np.asarray(a[0]), np.asarray(a[2])) or np.mean(np.asarray(a[0]) != np.asarray(a[2])) < 1e-3
    assert np.mean(np.asarray(a[0]) != np.asarray(a[1])) < 1e-3


def test_separable_carrier_matches_direct_evaluation(params, geometry):
    ori, phase = 37.3, 1.1
    theta = ori * math.pi / 180
    X, Y = geometry.X, geometry.Y
    direct = params.stimuli.gray * (1 + 0.8 * np.cos(2 * math.pi * (X * math.cos(theta) + Y * math.sin(theta)) + phase))
    direct = np.where(geometry.outside, 128.0, direct)
    weight = geometry.alpha / 256
    expected = 3 * np.floor(weight * direct + (1 - weight) * 128)
    image = grating_images(ori, 0.0, geometry, params.stimuli, phase=phase, xp=np)
    assert np.mean(image != expected.ravel()) < 1e-3  # only floor boundaries may differ


def test_normalisation_constant_for_a_single_orientation(params, geometry):
    A = find_gabor_A(np.full(81, 55.0), 0.0, geometry, params.stimuli, params.filters)
    assert pytest.approx(2.839e-3, rel=1e-3) == A


def test_golden_normalisation_constants(params, geometry, golden):
    _, constants = gabor_base_bank(golden["orimap"], params.grid, geometry, params.stimuli, params.filters)
    np.testing.assert_allclose(constants, [golden["A_phase0"], golden["A_phase90"]], rtol=1e-4)


def test_central_readout_indices():
    expected = [20, 21, 22, 23, 24, 29, 30, 31, 32, 33, 38, 39, 40, 41, 42, 47, 48, 49, 50, 51, 56, 57, 58, 59, 60]
    assert readout_indices(9, 5).tolist() == expected
    assert readout_indices(9, 9).tolist() == list(range(81))


def test_ring_distance_and_grid_distances(params):
    assert ring_distance(90.0) == pytest.approx(180 / math.pi)
    assert ring_distance(np.linspace(-360, 360, 1001)).max() <= 180 / math.pi + 1e-12
    assert ring_distance(180.0) == pytest.approx(0.0, abs=1e-12)
    rho = grid_distances(params.grid)
    assert rho.shape == (81, 81)
    assert np.allclose(np.diag(rho), 0)
    assert rho[0, 1] == pytest.approx(0.8) and rho[0, 9] == pytest.approx(0.8)


def test_orimap_range_uniformity_and_reproducibility(params):
    grid = params.grid
    a = make_uniform_orimap(grid, np.random.default_rng(3))
    b = make_uniform_orimap(grid, np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert a.shape == (81,) and np.all((a >= 0) & (a <= 180))
    assert uniformity_test(a, grid)
    assert not np.array_equal(a, make_uniform_orimap(grid, np.random.default_rng(4)))


def test_uniformity_clamps_180_into_the_last_bin():
    grid = GridPars()
    orimap = np.zeros(81)
    central = readout_indices(9, 5)
    orimap[central] = np.concatenate([np.arange(10) * 18 + 9, np.full(15, 180.0)])
    assert isinstance(uniformity_test(orimap, grid), bool)  # no index error at exactly 180


def test_orimap_uses_hyper_col():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    assert not np.allclose(make_orimap(GridPars(hyper_col=3.2), rng()), make_orimap(GridPars(hyper_col=1.6), rng()))


def test_filter_bank_rows_and_factorised_projection(params, golden):
    gE, gI = float(golden["gE"]), float(golden["gI"])
    F = create_gabor_filters_ori_map(golden["orimap"], gE, gI, params)
    assert F.shape == (648, 16641)
    np.testing.assert_allclose(F[162 * 2 : 162 * 3], -F[:162], rtol=0, atol=0)  # phase slot 2 = -slot 0
    np.testing.assert_allclose(F[81:162] * gE, F[:81] * gI, rtol=1e-10)  # I rows = E rows x gI/gE
    static = build_static(golden["orimap"], gE, gI, params)
    image = golden["images"][1]
    u = np.asarray(middle_input(base_projection(jnp.asarray(image), static), static.gains, 4)).ravel()
    expected = F @ image.astype(np.float64)
    np.testing.assert_allclose(u, expected, rtol=1e-4, atol=1e-3)


def test_projected_noise_has_the_pixel_noise_covariance(params, geometry, golden):
    base, _ = gabor_base_bank(golden["orimap"], params.grid, geometry, params.stimuli, params.filters)
    L = projected_noise_factor(base, 100.0)
    flat = base.reshape(162, -1)
    np.testing.assert_allclose(L @ L.T, 1e4 * flat @ flat.T, rtol=1e-8, atol=1e-8)
    rng = np.random.default_rng(0)
    pixel_noise = rng.normal(0, 100.0, (4000, flat.shape[1]))
    empirical = np.cov((pixel_noise @ flat.T).T)
    np.testing.assert_allclose(np.diag(empirical), np.diag(L @ L.T), rtol=0.12)
    assert np.linalg.norm(empirical - L @ L.T) / np.linalg.norm(L @ L.T) < 0.3
