"""Voxel patterns, PCA, MVPA decoding and Mahalanobis distances (analysis/analysis_functions.py, spec §5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import convolve2d

from analysis.cells import CellLayout
from analysis.decoding import (
    gaussian_kernel_1d,
    lmi_frame,
    mahal,
    mahal_condition_scores,
    mahal_details_frame,
    mahal_leave_one_out,
    mvpa_accuracy,
    mvpa_mahal_for_run,
    pca_reduce,
    scores_long_frame,
    smoothing_matrix,
    voxel_patterns,
    write_scores_csvs,
)
from parameters import Parameters

LAYOUT = CellLayout.from_parameters(Parameters())
"""The cell layout of the default parameters (9x9 grid, 4 phases: 810 cells)."""


def direct_mahal(ref: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Mahalanobis distances with an explicit inverse of the unbiased covariance."""
    inv = np.linalg.inv(np.cov(ref, rowvar=False, ddof=1))
    diff = Y - ref.mean(axis=0)
    return np.sqrt(np.einsum("ij,jk,ik->i", diff, inv, diff))


def test_mahal_matches_direct_inverse() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((60, 4)) @ rng.standard_normal((4, 4)) + 3.0
    Y = rng.standard_normal((7, 4))
    assert np.allclose(mahal(ref, Y), direct_mahal(ref, Y), rtol=1e-10)
    assert mahal(ref, Y[0]).shape == (1,)


def test_mahal_needs_more_rows_than_dimensions() -> None:
    with pytest.raises(ValueError):
        mahal(np.ones((3, 3)), np.ones((1, 3)))


def test_leave_one_out_matches_direct() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 3)) + 5.0
    X[4] += 6.0  # a high-leverage row
    expected = [direct_mahal(np.delete(X, t, axis=0), X[t : t + 1])[0] for t in range(30)]
    np.testing.assert_allclose(mahal_leave_one_out(X), expected, rtol=1e-9)
    with pytest.raises(ValueError):
        mahal_leave_one_out(X[:4])  # 3 remaining rows for 3 dimensions


def test_condition_scores_snr_is_ratio_of_means() -> None:
    rng = np.random.default_rng(2)
    control, cond = rng.standard_normal((40, 2)), rng.standard_normal((40, 2)) + 2.0
    scores = mahal_condition_scores(control, cond)
    assert scores["across"] == pytest.approx(direct_mahal(control, cond).mean())
    assert scores["snr"] == pytest.approx(scores["across"] / scores["within"])
    nan_scores = mahal_condition_scores(control, np.full((40, 2), np.nan))
    assert all(np.isnan(v) for v in nan_scores.values())


def test_smoothing_matrix_equals_zero_padded_convolution() -> None:
    g = gaussian_kernel_1d(2.0)
    assert g.size == 13 and g.sum() == pytest.approx(1.0)
    kernel = np.outer(g, g)
    rng = np.random.default_rng(3)
    maps = rng.standard_normal((5, 9, 9))
    expected = np.stack([convolve2d(m, kernel, mode="same", boundary="fill") for m in maps])
    got = maps.reshape(5, 81) @ smoothing_matrix(2.0, LAYOUT.grid_side).T
    assert np.allclose(got.reshape(5, 9, 9), expected)
    assert np.array_equal(smoothing_matrix(0.0, LAYOUT.grid_side), np.eye(81))


def test_voxel_patterns_mixing_crop_and_normalisation() -> None:
    T = 4
    r_mid = np.zeros((T, 648))
    for p in range(4):
        r_mid[:, 162 * p : 162 * p + 81] = 1.0  # E cells of every phase
    r_sup = np.zeros((T, 162))
    r_sup[:, 81:] = 1.0  # I cells
    rng = np.random.default_rng(0)
    raw = voxel_patterns(
        r_mid, r_sup, rng, LAYOUT, sigma_filter=0.0, readout_noise=False, normalise=False, noise_std=0.0
    )
    assert raw["mid"].shape == (T, 25) and raw["sup"].shape == (T, 25)
    assert np.allclose(raw["mid"], 4 * 0.8) and np.allclose(raw["sup"], 0.2)
    r_mid2 = r_mid * np.arange(1, 649)[None, :] / 648.0
    smooth = voxel_patterns(
        r_mid2, r_sup, rng, LAYOUT, sigma_filter=2.0, readout_noise=False, normalise=False, noise_std=0.0
    )
    normed = voxel_patterns(
        r_mid2, r_sup, rng, LAYOUT, sigma_filter=2.0, readout_noise=False, normalise=True, noise_std=0.0
    )
    full = r_mid2.reshape(T, 4, 2, 81) @ smoothing_matrix(2.0, LAYOUT.grid_side).T
    full = (0.8 * full[:, :, 0] + 0.2 * full[:, :, 1]).sum(axis=1)
    assert np.allclose(normed["mid"], smooth["mid"] / full.std())


def test_voxel_patterns_randomness_is_explicit() -> None:
    rng_data = np.random.default_rng(5)
    r_mid, r_sup = rng_data.random((10, 648)), rng_data.random((10, 162))
    a = voxel_patterns(r_mid, r_sup, np.random.default_rng(9), LAYOUT)
    b = voxel_patterns(r_mid, r_sup, np.random.default_rng(9), LAYOUT)
    c = voxel_patterns(r_mid, r_sup, np.random.default_rng(10), LAYOUT)
    assert np.array_equal(a["mid"], b["mid"]) and not np.array_equal(a["mid"], c["mid"])


def test_pca_component_rule() -> None:
    rng = np.random.default_rng(4)
    one_direction = rng.standard_normal((200, 1)) @ rng.standard_normal((1, 25)) + 0.01 * rng.standard_normal(
        (200, 25)
    )
    scores, k = pca_reduce(one_direction)
    assert k == 2 and scores.shape == (200, 2)
    iso = rng.standard_normal((400, 25))
    _, k_iso = pca_reduce(iso)
    assert 12 <= k_iso <= 20


def test_mvpa_chance_and_perfect() -> None:
    rng = np.random.default_rng(6)
    same = mvpa_accuracy(rng.standard_normal((200, 3)), rng.standard_normal((200, 3)))
    assert abs(same - 0.5) < 0.08
    far = mvpa_accuracy(rng.standard_normal((200, 3)), rng.standard_normal((200, 3)) + 5.0)
    assert far > 0.97
    assert np.isnan(mvpa_accuracy(np.full((10, 3), np.nan), np.zeros((10, 3))))


def make_responses(rng: np.random.Generator, T: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """(3 stages, 3 oris, T, cells) rates; only stage 2 separates 55 and 125 from the control."""
    pattern = rng.random((3, 810)) * 5.0
    r = np.empty((3, 3, T, 810))
    for s in range(3):
        gain = 0.0 if s < 2 else 0.5
        for o in range(3):
            signal = gain * pattern[o] if o < 2 else 0.0
            r[s, o] = 5.0 + signal + rng.standard_normal((T, 810))
    return r[..., :648], r[..., 648:]


def test_mvpa_mahal_for_run_and_long_frames() -> None:
    r_mid, r_sup = make_responses(np.random.default_rng(7))
    res = mvpa_mahal_for_run(r_mid, r_sup, np.random.default_rng(0), LAYOUT, normalise=False, n_splits=4)
    again = mvpa_mahal_for_run(r_mid, r_sup, np.random.default_rng(0), LAYOUT, normalise=False, n_splits=4)
    assert np.array_equal(res.mvpa, again.mvpa) and np.array_equal(res.mahal, again.mahal)
    assert res.mvpa.shape == res.mahal.shape == (2, 3, 2)
    assert np.all(res.n_components >= 2)
    assert np.all(res.mvpa[:, 2] > res.mvpa[:, 0])
    assert np.all(res.mahal[:, 2] > res.mahal[:, 0])
    lmi = res.lmi.set_index(["layer", "from_stage"])
    d = res.mahal_details.set_index(["layer", "stage", "ori"])
    manual = (d.loc[(0, 2, 55.0), "across"] - d.loc[(0, 1, 55.0), "across"]) - (
        d.loc[(0, 2, 125.0), "across"] - d.loc[(0, 1, 125.0), "across"]
    )
    assert lmi.loc[(0, 1), "LMI_across"] == pytest.approx(manual)

    frame = scores_long_frame({17: res, 42: again}, "mvpa")
    assert list(frame.columns) == ["run_index", "layer", "stage", "ori", "score", "n_components"]
    assert set(frame["run_index"]) == {17, 42} and set(frame["ori"]) == {55.0, 125.0}
    assert len(frame) == 2 * 2 * 3 * 2
    row = frame[(frame.run_index == 17) & (frame.layer == 1) & (frame.stage == 2) & (frame.ori == 125.0)]
    assert row["score"].item() == res.mvpa[1, 2, 1]
    mahal_frame = scores_long_frame({17: res}, "mahal")
    assert mahal_frame["score"].to_numpy() == pytest.approx(res.mahal.ravel())
    assert set(mahal_details_frame({17: res})["run_index"]) == {17}
    assert set(lmi_frame({17: res})["run_index"]) == {17}


def test_nan_layer_gives_nan_scores() -> None:
    r_mid, r_sup = make_responses(np.random.default_rng(8), T=25)
    r_sup[1, 0, 3, 5] = np.nan
    res = mvpa_mahal_for_run(r_mid, r_sup, np.random.default_rng(0), LAYOUT, n_splits=2)
    assert np.isnan(res.mvpa[1]).all() and np.isnan(res.mahal[1]).all() and np.isnan(res.n_components[1])
    assert np.isfinite(res.mvpa[0]).all() and np.isfinite(res.mahal[0]).all()


def test_write_scores_csvs(tmp_path) -> None:
    r_mid, r_sup = make_responses(np.random.default_rng(9), T=25)
    res = mvpa_mahal_for_run(r_mid, r_sup, np.random.default_rng(0), LAYOUT, n_splits=2)
    paths = write_scores_csvs({31: res}, tmp_path / "conf_baseline")
    assert set(paths) == {"LMI", "Mahal_details", "Mahal_scores", "MVPA_scores"}
    mvpa = pd.read_csv(paths["MVPA_scores"])
    assert list(mvpa.columns) == ["run_index", "layer", "stage", "ori", "score", "n_components"]
    assert set(mvpa["run_index"]) == {31} and len(mvpa) == 12
    assert np.allclose(mvpa["score"], res.mvpa.ravel())
