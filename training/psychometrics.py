"""Psychometric threshold, staircase and early-stopping rules of the training loop (spec §13).

Host-side helpers on plain numpy/scipy values; the training loops call them between jitted steps.
Both the staircase and the plateau test come in the reference's form ("legacy", the default preset) and the
corrected one (preset "corrected"): a true 3-down/1-up rule with a floor, and the equal windows ``s[-10:]`` vs
``s[-20:-10]`` instead of the reference's ``s[-10:-1]`` (9 values) vs ``s[-20:-10]``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import optimize, stats

from parameters import PretrainingPars, StimuliPars, TrainingPars

logger = logging.getLogger(__name__)

THRESHOLD_GRID: tuple[float, float, int] = (1.0, 90.0, 300)
"""Offsets (start, stop, count) on which the fitted psychometric curve is evaluated (§13.2)."""
NO_THRESHOLD: float = 180.0
"""Threshold reported when the fitted curve is still below the criterion at the largest offset."""
SHUFFLED_BCE_FRACTION: float = 0.95
"""Stage 0 with shuffled labels stops once the BCE exceeds this fraction of the total loss (§13.3)."""
STAGE1_ACC_WINDOW: int = 3
"""Stage 1 averages at most this many recent batch accuracies (§13.4)."""
STAGE1_TRAINING_ACC_WINDOW: int = 10
"""Stage 1 inside a stage-2 job (PretrainingPars.stage1_placement 'training') averages at most this many recent
batch accuracies (LINEAGE.md E)."""
EXP_FIT_MAXFEV: int = 10000
"""Function evaluations allowed to the exponential fit of the curve-fit plateau test (scipy curve_fit maxfev)."""
FLIP_MAX_SLOPE: float = -0.01
FLIP_MAX_P: float = 0.05
FLIP_MAX_ACC: float = 0.5
FIGURE_FLIP_MAX_SLOPE: float = -0.02
"""The figure era's flip rule: the probe's mean accuracies fall by more than this per offset (LINEAGE.md D)."""
FIGURE_FLIP_MAX_VAL_ACC: float = 0.45
"""The figure era's flip rule: the latest validation accuracy lies below this (LINEAGE.md D)."""
EXP_FIT_MAXFEV: int = 10000
"""Function evaluations allowed to the exponential fit of the stage-0 plateau test (scipy's maxfev)."""


# ----------------------------------------------------------------------------------- threshold (§13.2)
def fit_threshold(offsets: Sequence[float], mean_accs: Sequence[float], acc_th: float = 0.749) -> float:
    """Offset at which the least-squares fit ``a·ln(offset) + c`` of the mean accuracies reaches acc_th."""
    x_probe = np.asarray(offsets, dtype=np.float64)
    y_probe = np.asarray(mean_accs, dtype=np.float64)
    if x_probe.shape != y_probe.shape or x_probe.ndim != 1 or x_probe.size < 2:
        raise ValueError(f"need matching 1-d offsets and accuracies, got {x_probe.shape}, {y_probe.shape}")
    if np.any(x_probe <= 0):
        raise ValueError(f"offsets must be positive, got {x_probe.tolist()}")
    if np.any(np.isnan(y_probe)):
        return math.nan
    a, c = np.polyfit(np.log(x_probe), y_probe, 1)
    x = np.linspace(*THRESHOLD_GRID)
    y = a * np.log(x) + c
    if y[-1] < acc_th:
        return NO_THRESHOLD
    crossings = np.flatnonzero(np.diff(np.sign(y - acc_th)) != 0)
    if crossings.size:
        i = crossings[0]
        return float((x[i] + x[i + 1]) / 2)
    below = np.flatnonzero(y_probe < acc_th)
    return float(x_probe[below[0]] if below.size else x_probe[0])


# ----------------------------------------------------------------------------------- staircase (§13.5)
class StaircaseState(NamedTuple):
    """Staircase memory: the number of consecutive successes counted so far."""

    successes: int = 0


@dataclass(frozen=True)
class StaircaseSettings:
    """Constants of the stage-2 staircase."""

    threshold: float = 0.75
    step: float = 0.1
    floor: float = 0.1
    ceiling: float = 10.0
    rule: str = "3down1up"

    def __post_init__(self) -> None:
        if self.rule not in ("3down1up", "legacy"):
            raise ValueError(f"staircase rule must be '3down1up' or 'legacy', got {self.rule!r}")

    @classmethod
    def from_parameters(cls, training: TrainingPars, stimuli: StimuliPars) -> StaircaseSettings:
        """Settings taken from TrainingPars.staircase_* and StimuliPars.max_train_offset."""
        return cls(threshold=training.staircase_threshold, step=training.staircase_step,
                   floor=training.staircase_floor, ceiling=stimuli.max_train_offset,
                   rule=training.staircase_rule)  # fmt: skip


DEFAULT_STAIRCASE = StaircaseSettings()


def staircase_update(
    offset: float, state: StaircaseState, batch_acc: float, settings: StaircaseSettings = DEFAULT_STAIRCASE
) -> tuple[float, StaircaseState]:
    """Next offset and state after one batch (``settings.rule``); a success is a batch accuracy of at least
    ``settings.threshold``. A failure raises the offset by one step (up to the ceiling). '3down1up' lowers it by
    one step (down to the floor) after three successes in a row, then counts again from zero; 'legacy' (the
    reference) lowers it at every success that follows at least three successes since the last failure, with
    no floor."""
    if math.isnan(batch_acc):
        raise ValueError("staircase_update: batch accuracy is NaN")
    if batch_acc < settings.threshold:
        return min(offset + settings.step, settings.ceiling), StaircaseState(0)
    if settings.rule == "legacy":
        # Decrease when the three previously recorded outcomes were successes; never reset, no floor.
        new_offset = offset - settings.step if state.successes >= 3 else offset
        return new_offset, StaircaseState(state.successes + 1)
    successes = state.successes + 1
    if successes >= 3:
        return max(offset - settings.step, settings.floor), StaircaseState(0)
    return offset, StaircaseState(successes)


# ------------------------------------------------------------------------------- early stopping (§13.3-5)
def has_plateaued(series: Sequence[float], window: int = 10, alpha: float = 0.05, rule: str = "equal") -> bool:
    """Two-sided Mann–Whitney U of the last window vs s[-2·window:-window] finds no difference (p > alpha).

    The last window is s[-window:] ('equal') or, as in the reference, s[-window:-1] ('legacy': window − 1
    values, the newest one left out). Either needs at least 2·window entries.
    """
    if rule not in ("equal", "legacy"):
        raise ValueError(f"plateau rule must be 'equal' or 'legacy', got {rule!r}")
    s = np.asarray(series, dtype=np.float64)
    if s.size < 2 * window:
        return False
    last = s[-window:-1] if rule == "legacy" else s[-window:]
    p = stats.mannwhitneyu(last, s[-2 * window : -window], alternative="two-sided").pvalue
    return bool(p > alpha)


def exponential_end_slope(series: Sequence[float]) -> float:
    """|a·b·e^(−b(n−1))|: the slope at the last point of the least-squares fit a·e^(−bx) + c, x = 0 … n−1.

    scipy's curve_fit with its default start (1, 1, 1) and maxfev EXP_FIT_MAXFEV, as the figure era fitted it
    (LINEAGE.md D, G "T-early"); NaN when the fit fails (it did not converge, or the series has fewer than 3
    values or a NaN).
    """
    y = np.asarray(series, dtype=np.float64)
    if y.size < 3 or np.any(np.isnan(y)):
        return math.nan
    x = np.arange(y.size, dtype=np.float64)

    def model(x, a, b, c):
        return a * np.exp(-b * x) + c

    try:
        # trial steps may overflow, and a flat series leaves the covariance undefined: neither matters here
        with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            (a, b, _), _ = optimize.curve_fit(model, x, y, maxfev=EXP_FIT_MAXFEV)
    except (RuntimeError, ValueError) as error:
        logger.warning("exponential fit of the plateau test failed: %s", error)
        return math.nan
    return float(abs(a * b * np.exp(-b * (y.size - 1))))


def stage2_plateaued(series: Sequence[float], pars: TrainingPars) -> bool:
    """The stage-2 plateau of one offset's probe accuracies: Mann–Whitney p > plateau_alpha (plateau_rule's
    windows of plateau_window) and, with plateau_curve_fit (figure era, T-early), the exponential fit's end
    slope below plateau_fit_slope. A failed fit (NaN slope) is no plateau."""
    if not has_plateaued(series, pars.plateau_window, pars.plateau_alpha, pars.plateau_rule):
        return False
    return not pars.plateau_curve_fit or bool(exponential_end_slope(series) < pars.plateau_fit_slope)


def stage2_should_stop(probe_history: Sequence[Sequence[float]], step: int, pars: TrainingPars) -> bool:
    """Stage-2 early stop at a probe step after min_stop_step when all plateau offsets have plateaued
    (:func:`stage2_plateaued`).

    ``probe_history`` holds one row of per-offset mean accuracies per probe so far, columns in the order
    of ``pars.test_offsets``.
    """
    if step <= pars.min_stop_step or step % pars.acc_check_freq:
        return False
    history = np.asarray(probe_history, dtype=np.float64).reshape(-1, len(pars.test_offsets))
    columns = [pars.test_offsets.index(o) for o in pars.plateau_offsets]
    return all(stage2_plateaued(history[:, j], pars) for j in columns)


def probe_accuracy_falls(probe_mean_accs: Sequence[float]) -> bool:
    """First half of the flip rule (§13.3): accuracy falls with offset (slope < −0.01, two-sided p < 0.05)."""
    y = np.asarray(probe_mean_accs, dtype=np.float64)
    if np.any(np.isnan(y)):
        return False
    fit = stats.linregress(np.arange(y.size, dtype=np.float64), y)
    return bool(fit.slope < FLIP_MAX_SLOPE and fit.pvalue < FLIP_MAX_P)


def fine_accuracy_below_chance(fine_acc: float) -> bool:
    """Second half of the flip rule (§13.3): the fine-task test accuracy is below 0.5 (NaN is not)."""
    return not math.isnan(fine_acc) and fine_acc < FLIP_MAX_ACC


def should_flip(probe_mean_accs: Sequence[float], fine_acc: float) -> bool:
    """Flip rule of §13.3: accuracy falls with offset and the fine-task accuracy is below 0.5."""
    return fine_accuracy_below_chance(fine_acc) and probe_accuracy_falls(probe_mean_accs)


def probe_slope(probe_mean_accs: Sequence[float]) -> float:
    """OLS slope of a probe's per-offset mean accuracies on x = 0, 1, …, k − 1 (NaN if any accuracy is NaN)."""
    y = np.asarray(probe_mean_accs, dtype=np.float64)
    if np.any(np.isnan(y)):
        return math.nan
    return float(stats.linregress(np.arange(y.size, dtype=np.float64), y).slope)


def figure_flip_applies(val_acc: float | None, probe_mean_accs: Sequence[float] | None) -> bool:
    """The figure era's flip condition (LINEAGE.md D): the most recent validation accuracy is below 0.45 and
    the OLS slope of the most recent probe's mean accuracies on x = 0 … k − 1 is below −0.02.

    No p-value and no fresh test (unlike :func:`should_flip`). A missing or NaN value never flips.
    """
    if val_acc is None or probe_mean_accs is None or not val_acc < FIGURE_FLIP_MAX_VAL_ACC:
        return False
    return probe_slope(probe_mean_accs) < FIGURE_FLIP_MAX_SLOPE  # NaN compares False


def stage0_accuracy_plateaued(batch_accs: Sequence[float], pars: PretrainingPars) -> bool:
    """The figure era's plateau of the stage-0 batch accuracies (LINEAGE.md D), window w = stage0_plateau_window.

    Needs n ≥ 2w accuracies; then both: a two-sided Mann–Whitney test of s[−w:−1] (w − 1 values) against
    s[−2w:−w] with p > stage0_plateau_alpha, and an exponential fit whose end slope is below
    stage0_plateau_slope (:func:`exponential_end_slope`). A fit that does not converge counts as no plateau
    (logged): the earlier code raised an error there, which would end the run for a numerical reason; stage 0
    goes on and tests again at its next probe.
    """
    window = pars.stage0_plateau_window
    if len(batch_accs) < 2 * window:
        return False
    if not has_plateaued(batch_accs, window, pars.stage0_plateau_alpha, rule="legacy"):
        return False  # the cheaper test first; the result is the same conjunction
    return bool(exponential_end_slope(batch_accs) < pars.stage0_plateau_slope)  # a failed fit is NaN: False


def stage0_should_stop(thresholds: Sequence[float], step: int, bce: float, total: float, shuffled: bool,
                       pars: PretrainingPars, batch_accs: Sequence[float] = ()) -> bool:  # fmt: skip
    """Stage-0 early stop: last two thresholds inside offset_threshold, or (shuffled) BCE-dominated loss.

    Only at steps > min_acc_check_ind with at least three thresholds. With PretrainingPars.stage0_plateau the
    batch accuracies so far (``batch_accs``, the current one included) must also have plateaued
    (:func:`stage0_accuracy_plateaued`); the caller then tests on probe steps only.
    """
    if step <= pars.min_acc_check_ind or len(thresholds) < 3:
        return False
    if shuffled:
        settled = bce > SHUFFLED_BCE_FRACTION * total
    else:
        low, high = pars.offset_threshold
        settled = all(low < t < high for t in thresholds[-2:])
    return bool(settled) and (not pars.stage0_plateau or stage0_accuracy_plateaued(batch_accs, pars))


def stage1_should_stop(batch_accs: Sequence[float], thresholds: Sequence[float], step: int,
                       pars: PretrainingPars) -> bool:  # fmt: skip
    """Stage-1 early stop: recent mean batch accuracy > stage1_acc_threshold and latest threshold below
    stage1_max_threshold (10 degrees in the reference, 20 in the final revision).

    ``batch_accs`` ends with the current step's batch accuracy; ``thresholds`` are those recorded so far.
    """
    if not thresholds or not batch_accs:
        return False
    recent = batch_accs[-max(1, min(step, STAGE1_ACC_WINDOW)) :]
    return bool(np.mean(recent) > pars.stage1_acc_threshold and thresholds[-1] < pars.stage1_max_threshold)


def readout_stage_skipped(batch_acc: float, step: int, threshold: float) -> bool:
    """Stage 1 inside a stage-2 job (LINEAGE.md E): the stage ends before anything of step 0 is recorded when
    step 0's batch accuracy already exceeds ``threshold`` (PretrainingPars.stage1_acc_threshold)."""
    return step == 0 and batch_acc > threshold


def trailing_accuracy_exceeds(batch_accs: Sequence[float], step: int, threshold: float,
                              window: int = STAGE1_TRAINING_ACC_WINDOW) -> bool:  # fmt: skip
    """Stage 1 inside a stage-2 job (LINEAGE.md E): stop once the mean of the last min(step, window) batch
    accuracies exceeds ``threshold``; there is no threshold condition.

    ``batch_accs`` holds one accuracy per recorded step, 0 … step, the current one last. The window is the
    figure era's min(step, window), so it leaves out step 0's accuracy until step > window (at step 1 it is
    the current accuracy alone); at step 0 it is empty and never stops (step 0 is
    :func:`readout_stage_skipped`'s).
    """
    count = min(step, window)
    if count < 1 or len(batch_accs) < count:
        return False
    return bool(np.mean(batch_accs[-count:]) > threshold)
