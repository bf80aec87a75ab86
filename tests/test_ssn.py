"""Connectivity of both layers: known structure at kappa = 0 and the local-inhibition shortcut."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from parameters import SSNPars
from training.model import build_static, grid_spacing
from training.SSN_classes import SSN_mid, SSN_sup, inhibition_is_local
from training.util_gabor import make_uniform_orimap

J = jnp.array([[4.5, -1.3], [5.0, -0.9]])


@pytest.fixture(scope="module")
def static(params):
    orimap = make_uniform_orimap(params.grid, np.random.default_rng(0))
    return build_static(orimap, 0.3, 0.25, params)


def build_sup(static, params, kappa=None, ssn=None):
    kappa = jnp.zeros((2, 2, 2)) if kappa is None else kappa
    return SSN_sup.build(J, kappa, static.rho, static.ori_dist, static.d_ref, ssn or params.ssn, grid_spacing(params))


def test_mid_weights_equal_J_without_kappa(static, params):
    mid = SSN_mid.build(J, jnp.zeros((2, 2)), static.d_ref, params.ssn)
    np.testing.assert_allclose(mid.W, np.broadcast_to(np.asarray(J)[:, :, None], (2, 2, 81)), rtol=1e-6)


def test_mid_kappa_keeps_mean_weight(static, params):
    mid = SSN_mid.build(J, jnp.array([[0.5, -0.3], [0.2, 0.9]]), static.d_ref, params.ssn)
    np.testing.assert_allclose(np.mean(mid.W, axis=-1), J, rtol=1e-5)
    assert not np.allclose(mid.W[0, 0], J[0, 0])


def test_sup_blocks_without_kappa(static, params):
    W = np.asarray(build_sup(static, params).W)
    n = 81
    np.testing.assert_allclose(W[:n, n:], J[0, 1] * np.eye(n), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(W[n:, n:], J[1, 1] * np.eye(n), rtol=1e-6, atol=1e-7)
    for a, p_local in enumerate(params.ssn.p_local_s):
        block = W[a * n : (a + 1) * n, :n] / float(J[a, 0])
        kernel = (block - p_local * np.eye(n)) / (1 - p_local)
        assert np.mean(kernel.sum(axis=1)) == pytest.approx(1.0, rel=1e-5)  # mean row sum normalised
        assert np.all(kernel >= 0)
    assert np.count_nonzero(W[:n, :n] - np.diag(np.diag(W[:n, :n]))) > 0  # E projections spread


def test_sup_p_local_one_makes_E_projections_local(static, params):
    ssn = dataclasses.replace(params.ssn, p_local_s=(1.0, 1.0))
    W = np.asarray(build_sup(static, params, ssn=ssn).W)
    np.testing.assert_allclose(W[:81, :81], float(J[0, 0]) * np.eye(81), rtol=1e-6, atol=1e-7)


def test_local_inhibition_shortcut_matches_dense_product(static, params):
    kappa = jnp.array(np.random.default_rng(1).normal(0, 1, (2, 2, 2)), jnp.float32)
    sup = build_sup(static, params, kappa)
    assert sup.local_inhibition
    dense = dataclasses.replace(sup, local_inhibition=False)
    r = jnp.asarray(np.random.default_rng(2).uniform(0, 20, 162), jnp.float32)
    h = jnp.ones(162)
    np.testing.assert_allclose(sup.input_current(r, h), dense.input_current(r, h), rtol=1e-5, atol=1e-4)


def test_wide_inhibition_is_not_treated_as_local(params):
    assert inhibition_is_local(params.ssn, 0.8)
    assert not inhibition_is_local(SSNPars(s_2x2_s=((0.2, 0.5), (0.4, 0.09))), 0.8)
    assert not inhibition_is_local(params.ssn, 0.0)


def test_local_adjoint_solve_matches_the_dense_solve(static, params):
    kappa = jnp.array(np.random.default_rng(3).normal(0, 1, (2, 2, 2)), jnp.float32)
    sup = build_sup(static, params, kappa)
    rng = np.random.default_rng(4)
    r = jnp.asarray(rng.uniform(0, 30, 162), jnp.float32)
    h = jnp.asarray(rng.uniform(0, 10, 162), jnp.float32)
    g = jnp.asarray(rng.normal(0, 1, 162), jnp.float32)
    local = sup.solve_adjoint(r, h, g)
    dense = dataclasses.replace(sup, local_inhibition=False).solve_adjoint(r, h, g)
    np.testing.assert_allclose(local, dense, rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(dense))))
    D = np.asarray(sup.k * sup.n * jnp.maximum(sup.input_current(r, h), 0))
    residual = (np.eye(162) - np.asarray(sup.W).T * D[None, :]) @ np.asarray(local) - np.asarray(g)
    assert np.max(np.abs(residual)) < 1e-3 * np.max(np.abs(np.asarray(g)))


@pytest.mark.parametrize("local", [True, False])
def test_solver_drive_matches_the_dense_drive(static, params, local):
    """The Euler loop's split drive (padded product, E/I parts) is k[W r + h]_+^n with the dense W."""
    kappa = jnp.array(np.random.default_rng(5).normal(0, 1, (2, 2, 2)), jnp.float32)
    sup = dataclasses.replace(build_sup(static, params, kappa), local_inhibition=local)
    rng = np.random.default_rng(6)
    r = jnp.asarray(rng.uniform(0, 20, (3, 162)), jnp.float32)  # a batch: the solver's shape under vmap
    h = jnp.asarray(rng.uniform(-5, 10, (3, 162)), jnp.float32)
    drive_E, drive_I = sup.split_drive()(r[:, :81], r[:, 81:], h[:, :81], h[:, 81:])
    dense = sup.k * np.maximum(np.asarray(r, np.float64) @ np.asarray(sup.W, np.float64).T + np.asarray(h), 0) ** 2
    np.testing.assert_allclose(np.concatenate([drive_E, drive_I], axis=1), dense, rtol=1e-4, atol=1e-3)
    mid = SSN_mid.build(J, jnp.array([[0.5, -0.3], [0.2, 0.9]]), static.d_ref, params.ssn)
    r_mid, h_mid = jnp.asarray(rng.uniform(0, 20, (2, 4, 81))), jnp.asarray(rng.uniform(-5, 10, (2, 4, 81)))
    np.testing.assert_allclose(mid.merge(*mid.split_drive()(*mid.split(r_mid), *mid.split(h_mid))),
                               mid.drive(r_mid, h_mid), rtol=1e-6)  # fmt: skip
