"""Tests of the threshold fit, staircase, plateau, flip and early-stopping rules (spec §13)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from parameters import PretrainingPars, StimuliPars, TrainingPars, build_parameters
from training import psychometrics
from training.psychometrics import (
    NO_THRESHOLD,
    StaircaseSettings,
    StaircaseState,
    exponential_end_slope,
    figure_flip_applies,
    fine_accuracy_below_chance,
    fit_threshold,
    has_plateaued,
    should_flip,
    stage0_accuracy_plateaued,
    stage0_should_stop,
    stage1_should_stop,
    stage2_should_stop,
    staircase_update,
)

OFFSETS = (1.0, 3.0, 7.0, 12.0, 20.0)
GRID = np.linspace(1.0, 90.0, 300)


def _fitted_curve(accs: list[float]) -> np.ndarray:
    a, c = np.polyfit(np.log(OFFSETS), accs, 1)
    return a * np.log(GRID) + c


# ------------------------------------------------------------------------------------------ fit_threshold
def test_threshold_is_grid_midpoint_around_the_crossing() -> None:
    crossing = math.exp((0.749 - 0.5) / 0.1)  # exact log-linear data a = 0.1, c = 0.5
    accs = [0.1 * math.log(o) + 0.5 for o in OFFSETS]
    i = int(np.searchsorted(GRID, crossing)) - 1
    assert fit_threshold(OFFSETS, accs) == pytest.approx((GRID[i] + GRID[i + 1]) / 2, abs=1e-12)
    assert abs(fit_threshold(OFFSETS, accs) - crossing) < GRID[1] - GRID[0]


def test_threshold_uses_acc_th_argument() -> None:
    accs = [0.1 * math.log(o) + 0.5 for o in OFFSETS]
    assert fit_threshold(OFFSETS, accs, acc_th=0.6) < fit_threshold(OFFSETS, accs, acc_th=0.749)


def test_threshold_180_when_fit_below_criterion_at_90() -> None:
    assert fit_threshold(OFFSETS, [0.5, 0.52, 0.55, 0.6, 0.62]) == NO_THRESHOLD == 180.0


def test_threshold_falls_back_to_first_measured_offset_below_criterion() -> None:
    accs = [0.9, 0.7, 0.95, 0.95, 0.95]
    assert _fitted_curve(accs).min() > 0.749  # precondition: the fit never crosses
    assert fit_threshold(OFFSETS, accs) == 3.0


def test_threshold_falls_back_to_first_offset_when_all_accurate() -> None:
    accs = [0.9, 0.95, 0.97, 0.99, 1.0]
    assert _fitted_curve(accs).min() > 0.749
    assert fit_threshold(OFFSETS, accs) == 1.0


def test_threshold_nan_accuracy_gives_nan() -> None:
    assert math.isnan(fit_threshold(OFFSETS, [0.5, float("nan"), 0.8, 0.9, 0.95]))


def test_threshold_rejects_bad_offsets() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_threshold((0.0, 1.0), (0.5, 0.9))
    with pytest.raises(ValueError, match="matching"):
        fit_threshold(OFFSETS, (0.5, 0.9))


# ------------------------------------------------------------------------------------------- staircase
def _run_staircase(offset: float, accs: list[float], settings: StaircaseSettings) -> list[float]:
    state, offsets = StaircaseState(), []
    for acc in accs:
        offset, state = staircase_update(offset, state, acc, settings)
        offsets.append(offset)
    return offsets


S, F = 0.8, 0.5


def test_staircase_3down1up_decreases_after_three_successes_and_resets() -> None:
    offsets = _run_staircase(4.0, [S, S, S, S, S, S, S, S, F, S, S, S], StaircaseSettings())
    expected = [4.0, 4.0, 3.9, 3.9, 3.9, 3.8, 3.8, 3.8, 3.9, 3.9, 3.9, 3.8]
    np.testing.assert_allclose(offsets, expected, rtol=0, atol=1e-12)


def test_staircase_failure_resets_success_count() -> None:
    offsets = _run_staircase(4.0, [S, S, F, S, S, S], StaircaseSettings())
    np.testing.assert_allclose(offsets, [4.0, 4.0, 4.1, 4.1, 4.1, 4.0], rtol=0, atol=1e-12)


def test_staircase_success_criterion_is_at_least_threshold() -> None:
    offset, state = staircase_update(4.0, StaircaseState(2), 0.75)
    assert (offset, state) == (pytest.approx(3.9), StaircaseState(0))
    offset, state = staircase_update(4.0, StaircaseState(2), 0.7499)
    assert (offset, state) == (pytest.approx(4.1), StaircaseState(0))


def test_staircase_floor_and_ceiling() -> None:
    settings = StaircaseSettings()
    assert _run_staircase(0.15, [S] * 6, settings)[-1] == 0.1
    assert min(_run_staircase(0.15, [S] * 12, settings)) == 0.1
    assert _run_staircase(9.95, [F, F, F], settings) == [10.0, 10.0, 10.0]


def test_staircase_legacy_rule() -> None:
    settings = StaircaseSettings(rule="legacy")
    offsets = _run_staircase(4.0, [S, S, S, S, S, S, F, S, S, S, S], settings)
    expected = [4.0, 4.0, 4.0, 3.9, 3.8, 3.7, 3.8, 3.8, 3.8, 3.8, 3.7]
    np.testing.assert_allclose(offsets, expected, rtol=0, atol=1e-12)


def test_staircase_legacy_has_no_floor_but_a_ceiling() -> None:
    settings = StaircaseSettings(rule="legacy")
    offsets = _run_staircase(0.15, [S] * 6, settings)
    np.testing.assert_allclose(offsets, [0.15, 0.15, 0.15, 0.05, -0.05, -0.15], rtol=0, atol=1e-12)
    assert _run_staircase(9.95, [F, F], settings) == [10.0, 10.0]


def test_staircase_settings_from_parameters() -> None:
    training = TrainingPars(staircase_step=0.2, staircase_floor=0.5, staircase_rule="legacy")
    settings = StaircaseSettings.from_parameters(training, StimuliPars(max_train_offset=8.0))
    assert settings == StaircaseSettings(threshold=0.75, step=0.2, floor=0.5, ceiling=8.0, rule="legacy")
    assert StaircaseSettings.from_parameters(TrainingPars(), StimuliPars()) == StaircaseSettings(rule="legacy")
    corrected = build_parameters(preset="corrected")
    assert StaircaseSettings.from_parameters(corrected.training, corrected.stimuli) == StaircaseSettings()


def test_staircase_rejects_nan_and_unknown_rule() -> None:
    with pytest.raises(ValueError, match="NaN"):
        staircase_update(4.0, StaircaseState(), float("nan"))
    with pytest.raises(ValueError, match="rule"):
        StaircaseSettings(rule="2down1up")


# ---------------------------------------------------------------------------------------------- plateau
def test_plateau_needs_two_windows() -> None:
    assert not has_plateaued([0.8] * 19)
    assert has_plateaued([0.8] * 20)


def test_plateau_detects_trend_and_permuted_windows() -> None:
    assert not has_plateaued(np.linspace(0.5, 0.9, 20))
    block = np.random.default_rng(1).uniform(0.6, 0.9, 10)
    assert has_plateaued([0.0] * 7 + list(block) + list(block[::-1]))


def test_plateau_uses_equal_windows_of_ten() -> None:
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(400):
        s = np.cumsum(rng.normal(0.0, 1.0, 25))
        corrected = stats.mannwhitneyu(s[-10:], s[-20:-10], alternative="two-sided").pvalue > 0.05
        legacy = stats.mannwhitneyu(s[-10:-1], s[-20:-10], alternative="two-sided").pvalue > 0.05
        assert has_plateaued(s) == corrected
        assert has_plateaued(s, rule="legacy") == legacy
        found += corrected != legacy
    assert found > 0  # the windows matter for some series


def test_plateau_legacy_window_leaves_out_the_newest_value() -> None:
    # previous window s[-20:-10] = 0..9; then 4..12 and a newest value of -1.
    # legacy: 4..12 (9 values) vs 0..9: U = 4.5+5.5+6.5+7.5+8.5+9.5+10+10+10 = 72 of 90, two-sided p = 0.030:
    # no plateau.
    # equal: -1, 4..12 vs 0..9: U = 72 + 0 = 72 of 100, p = 0.10 -> plateau.
    s = list(range(10)) + list(range(4, 13)) + [-1]
    assert stats.mannwhitneyu(list(range(4, 13)), list(range(10))).statistic == 72.0
    assert not has_plateaued(s, rule="legacy")
    assert has_plateaued(s, rule="equal")
    assert not has_plateaued(s[:-1] + [1000], rule="legacy")  # the newest value is never looked at
    assert not has_plateaued(s[1:], rule="legacy")  # still 2·window entries needed
    history = np.tile(np.asarray(s, dtype=float)[:, None], (1, 5))
    assert not stage2_should_stop(history, 1010, TrainingPars())  # the default (reference) rule
    assert stage2_should_stop(history, 1010, TrainingPars(plateau_rule="equal"))
    with pytest.raises(ValueError, match="plateau rule"):
        has_plateaued(s, rule="short")


def test_stage2_stop_requires_plateaus_of_offsets_1_3_7_after_step_1000() -> None:
    pars = TrainingPars()
    flat = np.full((30, 5), 0.8)
    assert not stage2_should_stop(flat, 1000, pars)
    assert not stage2_should_stop(flat, 1005, pars)  # not a probe step
    assert stage2_should_stop(flat, 1010, pars)
    rising_20 = flat.copy()
    rising_20[:, 4] = np.linspace(0.5, 1.0, 30)
    assert stage2_should_stop(rising_20, 1010, pars)
    rising_7 = flat.copy()
    rising_7[:, 2] = np.linspace(0.5, 1.0, 30)
    assert not stage2_should_stop(rising_7, 1010, pars)
    assert not stage2_should_stop(flat[:19], 1010, pars)


# -------------------------------------------------------------------------------------------------- flip
def test_flip_on_significant_negative_slope_and_low_accuracy() -> None:
    falling = [0.9, 0.81, 0.69, 0.6, 0.52]
    assert should_flip(falling, 0.4)
    assert not should_flip(falling, 0.5)
    assert not should_flip(falling[::-1], 0.4)
    assert not should_flip(falling, float("nan"))
    assert fine_accuracy_below_chance(0.49) and not fine_accuracy_below_chance(0.5)
    assert not fine_accuracy_below_chance(float("nan"))


def test_no_flip_for_shallow_or_insignificant_slopes() -> None:
    shallow = [0.52, 0.515, 0.51, 0.505, 0.5]  # slope -0.005, p ~ 0
    assert not should_flip(shallow, 0.3)
    noisy = [0.6, 0.5, 0.62, 0.45, 0.55]
    fit = stats.linregress(np.arange(5), noisy)
    assert fit.slope < -0.01 and fit.pvalue > 0.05  # precondition
    assert not should_flip(noisy, 0.3)
    assert not should_flip([0.5] * 5, 0.3)
    assert not should_flip([0.9, float("nan"), 0.7, 0.6, 0.5], 0.3)


# ----------------------------------------------------------------------------------------- stage 0 and 1
def test_stage0_stop_on_two_thresholds_inside_interval() -> None:
    pars = PretrainingPars()
    assert stage0_should_stop([30.0, 10.0, 12.0], 51, 0.5, 1.0, False, pars)
    assert not stage0_should_stop([30.0, 10.0, 12.0], 50, 0.5, 1.0, False, pars)
    assert not stage0_should_stop([10.0, 12.0], 51, 0.5, 1.0, False, pars)
    assert not stage0_should_stop([10.0, 30.0, 12.0], 51, 0.5, 1.0, False, pars)
    assert not stage0_should_stop([10.0, 5.0, 12.0], 51, 0.5, 1.0, False, pars)
    assert not stage0_should_stop([10.0, 12.0, 25.0], 51, 0.5, 1.0, False, pars)
    assert not stage0_should_stop([10.0, 12.0, float("nan")], 51, 0.5, 1.0, False, pars)


def test_stage0_stop_with_shuffled_labels_on_bce_share() -> None:
    pars = PretrainingPars()
    assert stage0_should_stop([180.0, 180.0, 180.0], 51, 0.96, 1.0, True, pars)
    assert not stage0_should_stop([10.0, 10.0, 10.0], 51, 0.95, 1.0, True, pars)
    assert not stage0_should_stop([180.0, 180.0, 180.0], 50, 0.96, 1.0, True, pars)


# Batch-accuracy series for the figure era's stage-0 plateau (window 20): a deterministic wiggle of period 10
# stands in for batch noise.
def _wiggle(n: int, amplitude: float) -> np.ndarray:
    return amplitude * np.array([(-1) ** k * (k % 5) / 4 for k in range(n)])


def _approach(n: int, tau: float, amplitude: float) -> np.ndarray:
    """0.85 − 0.4·e^(−x/tau) plus the wiggle."""
    return 0.85 - 0.4 * np.exp(-np.arange(n) / tau) + _wiggle(n, amplitude)


SATURATED = _approach(200, 10.0, 0.02)  # end slope ~1e-10, Mann-Whitney p ~0.4
RISING = 0.5 + 0.002 * np.arange(200) + _wiggle(200, 0.02)  # the last window is higher: p < 0.1
SLOW = _approach(101, 50.0, 0.1)  # windows alike (p ~0.16) but the fitted curve still rises 1.07e-3 per step


def test_exponential_end_slope_by_hand() -> None:
    a, b, c, n = 0.5, 0.1, 0.2, 50
    exact = a * np.exp(-b * np.arange(n)) + c
    assert exponential_end_slope(exact) == pytest.approx(a * b * math.exp(-b * (n - 1)), rel=1e-6)
    assert exponential_end_slope(SATURATED) < 1e-8
    assert exponential_end_slope(SLOW) == pytest.approx(1.07e-3, abs=1e-5)


def test_figure_plateau_needs_both_the_fit_and_the_mann_whitney_test() -> None:
    pars = build_parameters(preset="figure").pretraining
    assert (pars.stage0_plateau_window, pars.stage0_plateau_slope, pars.stage0_plateau_alpha) == (20, 1e-3, 0.1)
    assert stage0_accuracy_plateaued(SATURATED, pars)
    assert not stage0_accuracy_plateaued(RISING, pars)  # Mann-Whitney: s[-20:-1] differs from s[-40:-20]
    p = stats.mannwhitneyu(SLOW[-20:-1], SLOW[-40:-20], alternative="two-sided").pvalue
    assert p > 0.1 and exponential_end_slope(SLOW) > 1e-3  # precondition: only the fit objects
    assert not stage0_accuracy_plateaued(SLOW, pars)
    flat = 0.8 + _wiggle(40, 0.02)
    assert stage0_accuracy_plateaued(flat, pars) and not stage0_accuracy_plateaued(flat[1:], pars)  # n >= 40


def test_a_failed_exponential_fit_counts_as_no_plateau(monkeypatch, caplog) -> None:
    def no_convergence(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: Number of calls to function has reached maxfev = 10000.")

    monkeypatch.setattr(psychometrics.optimize, "curve_fit", no_convergence)
    pars = build_parameters(preset="figure").pretraining
    with caplog.at_level("WARNING", logger="training.psychometrics"):
        assert not stage0_accuracy_plateaued(SATURATED, pars)
    assert "exponential fit" in caplog.text


def test_figure_stage0_stop_needs_step_over_100_two_thresholds_in_3_10_and_a_plateau() -> None:
    pars = build_parameters(preset="figure").pretraining
    inside = [30.0, 9.5, 3.5]
    assert stage0_should_stop(inside, 101, 0.5, 1.0, False, pars, SATURATED)
    assert not stage0_should_stop(inside, 100, 0.5, 1.0, False, pars, SATURATED)  # step > 100, as the reference's > 50
    assert not stage0_should_stop(inside[1:], 101, 0.5, 1.0, False, pars, SATURATED)  # three thresholds needed
    assert not stage0_should_stop([30.0, 9.5, 3.0], 101, 0.5, 1.0, False, pars, SATURATED)  # strictly inside (3, 10)
    assert not stage0_should_stop([30.0, 10.0, 5.0], 101, 0.5, 1.0, False, pars, SATURATED)
    assert not stage0_should_stop(inside, 101, 0.5, 1.0, False, pars, RISING)  # no plateau
    assert not stage0_should_stop(inside, 101, 0.5, 1.0, False, pars, SLOW)
    # the plateau is the only addition: the reference rule (with figure's interval and step) ignores the series
    no_plateau = dataclasses.replace(pars, stage0_plateau=False)
    assert stage0_should_stop(inside, 101, 0.5, 1.0, False, no_plateau, RISING)


def test_figure_flip_condition() -> None:
    falling = [0.8, 0.75, 0.72, 0.7]  # OLS slope on 0..3: -0.033
    assert figure_flip_applies(0.44, falling)
    assert not figure_flip_applies(0.45, falling)  # strictly below 0.45
    assert not figure_flip_applies(0.44, [0.8, 0.79, 0.78, 0.77])  # slope -0.01 (the reference's limit) is too shallow
    assert figure_flip_applies(0.44, [0.9, 0.9, 0.9, 0.2])  # no p-value test: slope -0.21, p = 0.23
    assert not figure_flip_applies(None, falling) and not figure_flip_applies(float("nan"), falling)
    assert not figure_flip_applies(0.44, None) and not figure_flip_applies(0.44, [0.8, float("nan"), 0.7, 0.6])


def test_stage1_stop_rule() -> None:
    pars = PretrainingPars()
    assert stage1_should_stop([0.7], [8.0], 0, pars)
    assert not stage1_should_stop([0.7], [], 0, pars)
    assert not stage1_should_stop([0.7], [10.0], 0, pars)
    assert stage1_should_stop([0.1, 0.66], [8.0], 1, pars)  # mean of the last min(step, 3) = 1
    assert stage1_should_stop([0.1, 0.7, 0.7], [8.0], 2, pars)
    assert not stage1_should_stop([0.9, 0.9, 0.9, 0.6, 0.6, 0.7], [8.0], 5, pars)
    assert stage1_should_stop([0.1, 0.6, 0.7, 0.7, 0.7], [8.0], 4, pars)


def test_stage1_threshold_condition_follows_stage1_max_threshold() -> None:
    reference, final = (build_parameters(preset=name).pretraining for name in ("reference", "final"))
    assert (reference.stage1_max_threshold, final.stage1_max_threshold) == (10.0, 20.0)
    assert not stage1_should_stop([0.7], [15.0], 0, reference)
    assert stage1_should_stop([0.7], [15.0], 0, final)
    assert stage1_should_stop([0.7], [19.9], 0, final) and not stage1_should_stop([0.7], [20.0], 0, final)
