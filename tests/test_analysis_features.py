"""Tuning-curve features and tuning-curve CSV handling (analysis/analysis_functions.py, spec §3-§4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.cells import CellLayout, cell_info, cell_names, wrap_orientation_difference
from analysis.tuning_curve_files import read_tuning_curves_csv, tuning_curve_frame, write_tuning_curves_csv
from analysis.tuning_features import feature_matrix, feature_names, tuning_curve_features, tuning_curve_features_table
from parameters import Parameters

LAYOUT = CellLayout.from_parameters(Parameters())
"""The cell layout of the default parameters (9x9 grid, 4 phases: 810 cells)."""

ORIS = np.arange(0.0, 360.0, 5.0)


def von_mises(theta: np.ndarray, pref: float, kappa: float = 2.0) -> np.ndarray:
    """180-periodic von Mises bump exp(kappa cos(2(theta - pref)))."""
    return np.exp(kappa * np.cos(np.deg2rad(2.0 * (theta - pref))))


def von_mises_slope(theta: float, pref: float, kappa: float = 2.0) -> float:
    """Analytic derivative (per degree) of :func:`von_mises`."""
    phi = np.deg2rad(2.0 * (theta - pref))
    return float(-kappa * np.sin(phi) * np.deg2rad(2.0) * np.exp(kappa * np.cos(phi)))


def test_cell_names_follow_index_formula() -> None:
    names = cell_names(LAYOUT)
    assert len(names) == LAYOUT.n_cells == 810
    assert names[162 * 2 + 81 * 1 + 4] == "G5_I_Ph2_M"
    assert names[648 + 81 * 0 + 80] == "G81_E_S"
    info = cell_info(LAYOUT)
    assert info.loc[162 * 3 + 81 + 40, ["layer", "type", "phase", "grid"]].tolist() == ["mid", "I", 3, 40]
    assert info.loc[729 + 10, ["layer", "type", "phase", "grid"]].tolist() == ["sup", "I", -1, 10]


def test_feature_names_order() -> None:
    assert feature_names() == [
        "fwhm",
        "slope_55",
        "slope_125",
        "pref_ori",
        "min",
        "max",
        "max_min_ratio",
        "mean",
        "std",
        "slope_hm",
    ]


@pytest.mark.parametrize("kappa", [1.0, 2.0, 4.0])
def test_von_mises_width_peak_slopes_depth(kappa: float) -> None:
    pref = 250.0  # reported modulo 180 -> 70
    feats = tuning_curve_features(von_mises(ORIS, pref, kappa)[None, :])[0]
    fwhm = np.degrees(np.arccos(np.log(np.cosh(kappa)) / kappa))  # cos(2d) = ln(cosh k)/k, width 2d
    assert feats["fwhm"] == pytest.approx(fwhm, abs=0.3)
    assert feats["pref_ori"] == pytest.approx(70.0, abs=0.21)
    peak = np.exp(kappa)
    for theta in (55.0, 125.0):
        assert feats[f"slope_{theta:g}"] == pytest.approx(
            abs(von_mises_slope(theta, pref, kappa)) / peak, rel=5e-3
        )
    assert feats["max"] == pytest.approx(np.exp(kappa), rel=1e-3)
    assert feats["min"] == pytest.approx(np.exp(-kappa), rel=1e-2)
    assert feats["max_min_ratio"] == pytest.approx((feats["max"] - feats["min"]) / feats["max"])
    assert feats["mean"] == pytest.approx(np.i0(kappa), rel=1e-3)


def test_gaussian_bump_fwhm_and_peak() -> None:
    sigma, pref = 12.0, 130.0
    d = (ORIS - pref + 180.0) % 360.0 - 180.0
    curve = 3.0 + 20.0 * np.exp(-(d**2) / (2 * sigma**2))
    feats = tuning_curve_features(curve[None, :])[0]
    assert feats["fwhm"] == pytest.approx(2.0 * np.sqrt(2.0 * np.log(2.0)) * sigma, abs=0.5)
    assert feats["pref_ori"] == pytest.approx(130.0, abs=0.21)
    assert feats["max"] == pytest.approx(23.0, rel=1e-2)


def test_pref_ori_is_modulo_180_for_both_halves() -> None:
    feats = tuning_curve_features(np.vstack([von_mises(ORIS, 20.0), von_mises(ORIS, 200.0)]))
    assert feats.loc["pref_ori"].tolist() == pytest.approx([20.0, 20.0], abs=0.21)


def skewed(theta: np.ndarray) -> np.ndarray:
    """A 360-periodic skewed bump: exp(1.5 cos(phi) + 0.6 sin(2 phi)), phi = theta - 100 in radians."""
    phi = np.deg2rad(theta - 100.0)
    return np.exp(1.5 * np.cos(phi) + 0.6 * np.sin(2 * phi))


def skewed_slope(theta: np.ndarray) -> np.ndarray:
    """Analytic derivative per degree of :func:`skewed`."""
    phi = np.deg2rad(theta - 100.0)
    return skewed(theta) * (-1.5 * np.sin(phi) + 1.2 * np.cos(2 * phi)) * np.pi / 180.0


def test_slope_hm_uses_flank_nearest_trained_orientation() -> None:
    dense = np.arange(0.0, 360.0, 0.01)
    y = skewed(dense)
    half = (y.max() + y.min()) / 2.0
    above = y > half
    crossings = dense[np.flatnonzero(above != np.roll(above, -1))]
    dist = np.abs(wrap_orientation_difference(crossings - 55.0))
    slopes = np.abs(skewed_slope(crossings)) / y.max()
    expected = slopes[np.argmin(dist)]
    assert np.ptp(slopes) > 0.1 * slopes.max()  # the flanks differ, so the choice matters
    feats = tuning_curve_features(skewed(ORIS)[None, :])[0]
    assert feats["slope_hm"] == pytest.approx(expected, rel=0.02)


def test_flat_and_zero_curves() -> None:
    feats = tuning_curve_features(np.vstack([np.zeros(72), np.full(72, 4.0)]))
    assert feats.loc["fwhm"].tolist() == [0.0, 0.0]
    assert feats.loc["max_min_ratio"].tolist() == [0.0, 0.0]
    assert feats.loc["slope_hm"].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)


def test_nan_samples_are_dropped_and_all_nan_gives_nan() -> None:
    curve = von_mises(ORIS, 70.0)
    holed = curve.copy()
    holed[[3, 30, 50]] = np.nan
    feats = tuning_curve_features(np.vstack([curve, holed, np.full(72, np.nan)]))
    assert feats.loc["fwhm", 1] == pytest.approx(feats.loc["fwhm", 0], abs=0.5)
    assert feats.loc["pref_ori", 1] == pytest.approx(70.0, abs=0.5)
    assert feats[2].isna().all()


def make_tc_df(runs: list[int], stages: list[int], rng: np.random.Generator) -> pd.DataFrame:
    """Synthetic tuning-curve CSV layout: von Mises curves with random preferences and amplitudes."""
    frames = []
    for run in runs:
        prefs = rng.uniform(0, 180, LAYOUT.n_cells)
        for stage in stages:
            amp = 1.0 + 0.5 * stage
            curves = amp * von_mises(ORIS[:, None], prefs[None, :])
            frames.append(tuning_curve_frame(run, stage, curves, LAYOUT))
    return pd.concat(frames, ignore_index=True)


def test_features_table_layout_and_values() -> None:
    rng = np.random.default_rng(0)
    tc_df = make_tc_df([3, 7], [0, 1], rng)
    table = tuning_curve_features_table(tc_df, stages=[1])
    assert list(table.columns[:3]) == ["run_index", "stage", "feature"]
    assert list(table.columns[3:]) == cell_names(LAYOUT)
    assert len(table) == 2 * 10
    assert table["feature"].tolist()[:10] == feature_names()
    assert set(table["run_index"]) == {3, 7} and set(table["stage"]) == {1}
    peaks = feature_matrix(table, "max", 1)
    assert np.allclose(peaks.to_numpy(), 1.5 * np.exp(2.0), rtol=2e-3)


def test_tuning_curve_csv_with_and_without_header(tmp_path) -> None:
    tc_df = make_tc_df([0], [2], np.random.default_rng(1))
    with_header = write_tuning_curves_csv(tc_df, tmp_path / "tc.csv")
    assert with_header.read_text().startswith("run_index,training_stage,G1_E_Ph0_M")
    no_header = tmp_path / "tc_noheader.csv"
    tc_df.to_csv(no_header, header=False, index=False, float_format="%.4f")
    for path in (with_header, no_header):
        back = read_tuning_curves_csv(path, LAYOUT)
        assert list(back.columns) == list(tc_df.columns)
        assert back["run_index"].dtype.kind == "i"
        assert np.allclose(back.iloc[:, 2:].to_numpy(), tc_df.iloc[:, 2:].to_numpy(), atol=1e-4)


def test_tuning_curve_csv_append_writes_one_header(tmp_path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "tc.csv"
    write_tuning_curves_csv(make_tc_df([0], [2], rng), path, append=True)
    write_tuning_curves_csv(make_tc_df([1], [2], rng), path, append=True)
    back = read_tuning_curves_csv(path)
    assert len(back) == 2 * 72 and back["run_index"].tolist()[::72] == [0, 1]
