"""Every model constant of the project, as frozen dataclasses with validation.

Edit the defaults below to try a variant. A training configuration never edits this file: ``main.py``
writes a copy into the configuration's results folder whose last lines assign ``OVERRIDES``, a plain
dictionary ``{"ClassName": {"field": value}}`` that :func:`build_parameters` applies on top of the
defaults and the study's preset (``PRESET``). Load such a copy with :func:`load_parameters_file`.

The defaults are the reference implementation's behaviour (preset ``reference``); ``PRESETS["corrected"]``
switches every behaviour the specification corrects (spec §18) at once.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import numbers
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KAPPA_F_I_FORMS: tuple[str, ...] = ("linear", "squared")
STAIRCASE_RULES: tuple[str, ...] = ("legacy", "3down1up")
PLATEAU_RULES: tuple[str, ...] = ("legacy", "equal")
FAILURE_BUDGETS: tuple[str, ...] = ("study", "per_run")
ACCS_125_PROBES: tuple[str, ...] = ("offset_125", "reference_125")
SUP_I_KERNELS: tuple[str, ...] = ("own", "reuse_E")
FLIP_RULES: tuple[str, ...] = ("reference", "figure")
STAGE1_PLACEMENTS: tuple[str, ...] = ("pretraining", "training")
STAGE1_RATE_TARGETS: tuple[str, ...] = ("fixed", "last_stage0")

# Trainable SSN quantities (spec §11, §16), in the order of the configuration tables.
ALL_TRAINABLE: tuple[str, ...] = (
    "cE_m", "cI_m", "cE_s", "cI_s", "f_E", "f_I",
    "J_EE_m", "J_EI_m", "J_IE_m", "J_II_m", "J_EE_s", "J_EI_s", "J_IE_s", "J_II_s",
    "kappa_Jsup", "kappa_Jmid", "kappa_f",
)  # fmt: skip
PRETRAINED_KEYS: tuple[str, ...] = ALL_TRAINABLE[:14]
KAPPAS_MID_F: tuple[str, ...] = ("kappa_Jmid", "kappa_f")
"""The kappas that only a model with SSNPars.kappa_mid_f has."""
AUTO, IMPLICIT, UNROLLED = "auto", "implicit", "unrolled"
GRADIENT_MODES: tuple[str, ...] = (AUTO, IMPLICIT, UNROLLED)
"""The values of ConvPars.gradient_mode; training/adjoint.py gives them their meaning."""


class ParameterError(ValueError):
    """An invalid parameter value; the message names the parameter."""


def _fail(cls: object, name: str, message: str) -> None:
    raise ParameterError(f"{type(cls).__name__}.{name}: {message}")


def _check_finite(obj: object) -> None:
    _check_types(obj)  # first: the range checks below assume values of the annotated types
    for f in dataclasses.fields(obj):
        for value in _flatten(getattr(obj, f.name)):
            if isinstance(value, float) and not math.isfinite(value):
                _fail(obj, f.name, f"must be finite, got {value}")


def _check_types(obj: object) -> None:
    """Every field holds a value of its annotated type (ints refuse 2.5 and 9.0, floats accept ints)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        problem = _type_problem(value, hints[f.name])
        if problem:
            _fail(obj, f.name, f"{problem}, got {value!r} ({type(value).__name__})")


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not have type ``hint`` (None if it does); bool is no int or float here."""
    if hint is bool:
        return None if isinstance(value, bool) else "must be a bool (True or False)"
    if hint is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if hint is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (tuple, list)):
            return f"must be a sequence of type {_type_name(hint)}"
        args = typing.get_args(hint)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return f"must have {len(items)} entries ({_type_name(hint)})"
        for item, item_hint in zip(value, items, strict=True):
            if _type_problem(item, item_hint):
                return f"must be of type {_type_name(hint)}"
        return None
    return None  # nested parameter groups check themselves


def _type_name(hint: Any) -> str:
    return str(hint) if typing.get_origin(hint) else hint.__name__


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _check_positive(obj: object, *names: str) -> None:
    for name in names:
        for value in _flatten(getattr(obj, name)):
            if not value > 0:
                _fail(obj, name, f"must be positive, got {value}")


def _check_interval(obj: object, *names: str) -> None:
    for name in names:
        low, high = getattr(obj, name)
        if low > high:
            _fail(obj, name, f"interval low > high: {(low, high)}")


def _check_choice(obj: object, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        _fail(obj, name, f"must be one of {list(choices)}, got {value!r}")


def _check_bool(obj: object, *names: str) -> None:
    for name in names:
        if not isinstance(getattr(obj, name), bool):
            _fail(obj, name, f"must be True or False, got {getattr(obj, name)!r}")


def _check_probability(obj: object, *names: str) -> None:
    for name in names:
        for value in _flatten(getattr(obj, name)):
            if not 0.0 <= value <= 1.0:
                _fail(obj, name, f"must lie in [0, 1], got {value}")


@dataclass(frozen=True)
class GridPars:
    """Retinotopic grid and orientation map (spec §1, §2)."""

    gridsize_Nx: int = 9
    """Grid edge length, in grid points (the grid has gridsize_Nx² points)."""
    gridsize_deg: float = 3.2
    """Grid edge length, in degrees of visual angle."""
    magnif_factor: float = 2.0
    """Cortical magnification, mm per degree."""
    hyper_col: float = 3.2
    """Wavelength of the orientation map's plane waves, in mm."""
    orimap_num_waves: int = 30
    """Number of plane waves superposed in the orientation map."""
    orimap_max_attempts: int = 101
    """Orientation maps drawn before the last one is kept despite failing the uniformity test."""
    uniformity_bins: int = 10
    """Number of 18° bins of the uniformity test over the central readout cells."""
    uniformity_p_threshold: float = 0.25
    """Chi-square p-value above which a map counts as uniform."""

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_positive(self, "gridsize_Nx", "gridsize_deg", "magnif_factor", "hyper_col",
                        "orimap_num_waves", "orimap_max_attempts", "uniformity_bins")  # fmt: skip
        _check_probability(self, "uniformity_p_threshold")

    @property
    def gridsize_mm(self) -> float:
        """Grid edge length in mm."""
        return self.gridsize_deg * self.magnif_factor


@dataclass(frozen=True)
class StimuliPars:
    """Grating stimuli (spec §4) and the fine task (spec §9.1)."""

    degree_per_pixel: float = 0.05
    """Image resolution, degrees per pixel."""
    inner_radius: float = 2.5
    """Radius inside which the grating has full alpha, degrees."""
    outer_radius: float = 3.0
    """Declared outer radius, degrees; unused (the fade is Gaussian, spec §18.16)."""
    grating_contrast: float = 0.8
    """Michelson contrast of the grating."""
    k: float = 1.0
    """Spatial frequency of the grating, cycles per degree."""
    gray: float = 128.0
    """Background luminance, grey level."""
    pixel_scale: float = 3.0
    """Factor applied to pixel values after blending."""
    std: float = 100.0
    """Standard deviation of additive Gaussian pixel noise (on the x3 scale)."""
    jitter_val: float = 5.0
    """Half-range of the uniform orientation jitter of fine-task pairs, degrees."""
    ref_ori: float = 55.0
    """Reference (trained) orientation, degrees."""
    untrained_ori: float = 125.0
    """Untrained reference orientation of the ``accs_125`` probe, degrees."""
    offset: float = 4.0
    """Fine-task offset used before stage 2, degrees."""
    max_train_offset: float = 10.0
    """Ceiling of the stage-2 staircase offset, degrees."""

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_positive(self, "degree_per_pixel", "inner_radius", "k", "gray", "pixel_scale")
        _check_probability(self, "grating_contrast")
        for name in ("std", "jitter_val"):
            if getattr(self, name) < 0:
                _fail(self, name, f"must be non-negative, got {getattr(self, name)}")
        _check_positive(self, "offset", "max_train_offset")


@dataclass(frozen=True)
class FilterPars:
    """Gabor filters from the image to the middle layer (spec §5)."""

    sigma_g: float = 0.27
    """Standard deviation of the Gabor envelope, degrees."""
    k: float = 1.0
    """Spatial frequency of the Gabor filters, cycles per degree."""
    target_response: float = 80.0
    """The filters are scaled so that the mean matched response equals this value (100 x contrast)."""

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_positive(self, "sigma_g", "k", "target_response")


@dataclass(frozen=True)
class SSNPars:
    """Fixed structure of both SSN layers (spec §6, §7)."""

    n: float = 2.0
    """Exponent of the power-law nonlinearity."""
    k: float = 0.04
    """Gain of the power-law nonlinearity."""
    tauE: float = 20.0
    """Time constant of excitatory cells, ms."""
    tauI: float = 10.0
    """Time constant of inhibitory cells, ms."""
    phases: int = 4
    """Middle-layer phases per grid point (must be 2 or 4)."""
    sigma_oris: float = 90.0
    """Width of the orientation-difference term of the superficial kernels, degrees."""
    kappa_range: float = 90.0
    """Scale of every kappa term, degrees."""
    s_2x2_s: tuple[tuple[float, float], tuple[float, float]] = ((0.2, 0.09), (0.4, 0.09))
    """Spatial ranges of the superficial kernels, mm, [post][pre]."""
    p_local_s: tuple[float, float] = (0.4, 0.7)
    """Local fraction of E projections onto (E, I) superficial cells."""
    min_syn: float = 1e-4
    """Kernel entries below this are set to zero."""
    couple_c_ms: bool = True
    """Use the middle-layer baselines cE_m, cI_m in the superficial layer too."""
    kappa_f_I_form: str = "linear"
    """kappa_f exponent of the I feedforward term: 'linear' tanh(k)·d (reference) or 'squared' as for E."""
    sup_I_stats_drop_last: bool = True
    """Superficial I max/mean rates leave out the last I cell (reference) instead of using all I cells."""
    sup_I_kernel: str = "own"
    """Kernel of the superficial I projections: 'own' (local Gaussian) or 'reuse_E' (figure era: each post
    type's E-projection kernel, p_local identity and kappa included, so I->X is long-range)."""
    kappa_mid_f: bool = True
    """The model has the middle-layer and feedforward kappas (kappa_Jmid, kappa_f); False: the figure era's
    model, where neither exists and stage 2 trains the rest of a configuration's list."""

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_positive(self, "n", "k", "tauE", "tauI", "sigma_oris", "kappa_range", "s_2x2_s",
                        "min_syn")  # fmt: skip
        _check_probability(self, "p_local_s")
        if self.phases not in (2, 4):
            _fail(self, "phases", f"must be 2 or 4 (an even number of phases), got {self.phases}")
        _check_choice(self, "kappa_f_I_form", KAPPA_F_I_FORMS)
        _check_choice(self, "sup_I_kernel", SUP_I_KERNELS)
        _check_bool(self, "sup_I_stats_drop_last", "couple_c_ms", "kappa_mid_f")


@dataclass(frozen=True)
class ConvPars:
    """Euler integration of the fixed points (spec §6.5, training/solver.py) and how gradients pass them
    (training/adjoint.py)."""

    dt: float = 1.0
    """Euler step, ms."""
    Tmax: float = 300.0
    """Integration horizon, ms (Tmax/dt steps)."""
    xtol: float = 1e-4
    """Tolerance of the convergence metric."""
    xmin: float = 1.0
    """Floor of the rate in the relative-change convergence metric, Hz."""
    gradient_mode: str = AUTO
    """Fixed-point gradient: 'auto' (exact: implicit for a settled batch, else through Euler), 'implicit'
    (implicit function theorem at the final state) or 'unrolled' (reverse mode through every Euler step)."""
    settle_tol: float = 1e-5
    """'auto': largest estimated relative distance of the final Euler state from its fixed point that
    counts as settled (the geometric tail of the last steps' relative changes)."""
    settle_floor: float = 1e-6
    """'auto': relative change of the last Euler steps at or below which a state counts as settled
    whatever its estimated rate (float32 rounding makes the rate unmeasurable there)."""
    settle_window: int = 10
    """'auto': Euler steps per window of the convergence-rate estimate (last window vs the one before;
    shortened to fit twice into the measured second half of the steps)."""

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_positive(self, "dt", "Tmax", "xtol", "xmin", "settle_tol", "settle_floor", "settle_window")
        if self.dt > self.Tmax:
            _fail(self, "dt", f"must not exceed Tmax={self.Tmax}, got {self.dt}")
        if self.gradient_mode not in GRADIENT_MODES:
            _fail(self, "gradient_mode", f"must be one of {GRADIENT_MODES}, got {self.gradient_mode!r}")

    @property
    def num_steps(self) -> int:
        """Number of Euler steps."""
        return int(self.Tmax / self.dt)


@dataclass(frozen=True)
class LossPars:
    """Loss weights and rate targets (spec §10)."""

    lambda_dx: float = 1.0
    """Weight of the convergence penalty."""
    lambda_r_max: float = 1.0
    """Weight of the maximum-rate hinge."""
    lambda_r_mean: float = 0.01
    """Weight of the mean-rate term in stage 0 (stage 1: lambda_r_mean_stage1)."""
    lambda_r_mean_stage2: float = 0.25
    """Weight of the mean-rate term in stage 2."""
    lambda_w: float = 1.0
    """Weight of the L2 penalty on the readout weights."""
    lambda_b: float = 1.0
    """Weight of the L2 penalty on the readout bias."""
    Rmax_E: float = 40.0
    """Maximum-rate threshold of E cells, Hz."""
    Rmax_I: float = 80.0
    """Maximum-rate threshold of I cells, Hz."""
    Rmean_E: tuple[float, float] = (25.0, 25.0)
    """Mean-rate targets of E cells (middle, superficial), Hz, stages 0 and 1."""
    Rmean_I: tuple[float, float] = (50.0, 50.0)
    """Mean-rate targets of I cells (middle, superficial), Hz, stages 0 and 1."""
    lambda_task_stage0: float = 1.0
    """Weight of the cross-entropy term in stage 0 (the logged cross-entropy is the weighted one)."""
    lambda_r_mean_stage1: float = 0.01
    """Weight of the mean-rate term in stage 1 (in pretraining)."""
    stage1_rate_targets: str = "fixed"
    """Stage-1 mean-rate targets: 'fixed' (Rmean_E, Rmean_I) or 'last_stage0' (the rates of the last stage-0 row)."""

    def __post_init__(self) -> None:
        _check_finite(self)
        for f in dataclasses.fields(self):
            if f.name.startswith("lambda") and getattr(self, f.name) < 0:
                _fail(self, f.name, f"must be non-negative, got {getattr(self, f.name)}")
        _check_positive(self, "Rmax_E", "Rmax_I", "Rmean_E", "Rmean_I")
        _check_choice(self, "stage1_rate_targets", STAGE1_RATE_TARGETS)


@dataclass(frozen=True)
class ReadoutPars:
    """Readout of the superficial (and middle) layer (spec §8)."""

    readout_grid_size: tuple[int, int] = (9, 5)
    """Edge of the readout block: stage 0 (general task), stages 1-2 (fine task)."""
    readout_contributions: tuple[float, float] = (1.0, 0.0)
    """Weights of the (superficial, middle) layers in the readout."""
    num_readout_noise: int = 125
    """Number of noise samples the readout noise stands for; sd = 1/sqrt(num * dt)."""
    dt_readout: float = 0.2
    """Readout integration time of the readout noise."""
    sigmoid_eps: float = 0.01
    """The sigmoid output is squeezed into [eps, 1 - eps]."""

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_positive(self, "readout_grid_size", "num_readout_noise", "dt_readout")
        if any(c < 0 for c in self.readout_contributions) or sum(self.readout_contributions) == 0:
            _fail(self, "readout_contributions", f"must be non-negative and not both zero, got "
                  f"{self.readout_contributions}")  # fmt: skip
        if not 0 <= self.sigmoid_eps < 0.5:
            _fail(self, "sigmoid_eps", f"must lie in [0, 0.5), got {self.sigmoid_eps}")

    @property
    def noise_std(self) -> float:
        """Standard deviation of the readout noise."""
        return 1.0 / math.sqrt(self.num_readout_noise * self.dt_readout)


@dataclass(frozen=True)
class PretrainingPars:
    """Stage 0 (general task, SSN and readout) and stage 1 (fine task, readout only), spec §13."""

    is_on: bool = True
    """Run pretraining (stages 0 and 1)."""
    shuffle_labels: bool = True
    """Replace general-task labels by coin flips (stage 0 then stops when the BCE dominates the loss)."""
    ori_interval: tuple[float, float] = (15.0, 165.0)
    """Range of the first orientation of general-task pairs, degrees."""
    ori_dist_int: tuple[float, float] = (5.0, 20.0)
    """Range of the orientation difference of general-task pairs, degrees."""
    batch_size: int = 100
    """Trials per stage-0 SGD step."""
    SGD_steps: int = 1000
    """Maximum number of stage-0 SGD steps."""
    stage1_batch_size: int = 50
    """Trials per stage-1 SGD step."""
    stage1_SGD_steps: int = 1000
    """Maximum number of stage-1 SGD steps."""
    acc_check_freq: int = 2
    """Psychometric probe every this many steps in stages 0 and 1."""
    min_acc_check_ind: int = 50
    """Stage-0 early stop is considered only after this step."""
    offset_threshold: tuple[float, float] = (5.0, 25.0)
    """Stage 0 stops when the last two thresholds lie strictly inside this interval, degrees."""
    stage1_acc_threshold: float = 0.65
    """Stage 1 stops when the recent batch accuracy exceeds this and the threshold is below stage1_max_threshold."""
    flip_test_trials: int = 300
    """Fine-task trials of the stage-0 flip test."""
    run_threshold_range: tuple[float, float] = (5.0, 25.0)
    """Runs whose final pretraining threshold lies outside this interval (or is missing) are excluded, degrees."""
    exclude_runs: bool = True
    """Exclude runs by run_threshold_range after pretraining; False keeps every run that succeeded (figure era)."""
    stage1_max_threshold: float = 10.0
    """Stage 1 (in pretraining) stops only once the latest threshold is below this too, degrees."""
    stage1_placement: str = "pretraining"
    """Where stage 1 runs: 'pretraining' (after stage 0) or 'training' (figure era: at the start of every stage-2
    job from the last stage-0 row, stopping once the batch accuracy exceeds stage1_acc_threshold)."""
    stage0_plateau: bool = False
    """Stage 0 stops only once the batch accuracies have also plateaued (figure era: exponential fit, Mann-Whitney);
    the stop rule is then tested on probe steps only."""
    stage0_plateau_window: int = 20
    """Window of the stage-0 plateau test: s[-w:-1] against s[-2w:-w] of the batch accuracies, steps."""
    stage0_plateau_slope: float = 1e-3
    """Largest end slope |a·b·e^(-b(n-1))| of the fitted a·e^(-bx)+c that counts as a plateau, accuracy per step."""
    stage0_plateau_alpha: float = 0.1
    """The stage-0 plateau needs the Mann-Whitney p-value above this."""
    flip_rule: str = "reference"
    """Stage-0 readout flip: 'reference' (spec §13.3) or 'figure' (validation < 0.45 and a falling probe, no test)."""
    regression_trials: int = 1000
    """General-task trials of the readout initialisation by logistic regression."""
    regression_train_fraction: float = 0.7
    """Fraction of regression trials used for fitting (the rest are held out)."""
    post_stage1_regression_trials: int = 50000
    """General-task trials of each logistic regression after stage 1."""
    regression_chunk: int = 2000
    """Trials simulated at once when collecting regression features."""

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_positive(self, "batch_size", "SGD_steps", "stage1_batch_size", "stage1_SGD_steps",
                        "acc_check_freq", "flip_test_trials", "regression_trials",
                        "post_stage1_regression_trials", "regression_chunk")  # fmt: skip
        _check_interval(self, "ori_interval", "ori_dist_int", "offset_threshold", "run_threshold_range")
        _check_probability(self, "stage1_acc_threshold", "regression_train_fraction", "stage0_plateau_alpha")
        _check_bool(self, "shuffle_labels", "exclude_runs", "stage0_plateau")
        _check_positive(self, "stage1_max_threshold", "stage0_plateau_window", "stage0_plateau_slope")
        _check_choice(self, "stage1_placement", STAGE1_PLACEMENTS)
        _check_choice(self, "flip_rule", FLIP_RULES)

    @property
    def stage1_in_training_job(self) -> bool:
        """Stage 1 runs at the start of every stage-2 job (figure era), so pretraining is stage 0 alone."""
        return self.stage1_placement == "training"


@dataclass(frozen=True)
class TrainingPars:
    """Runs, probes and stage 2 (fine task, SSN only), spec §13, §15."""

    num_runs: int = 50
    """Number of independent initialisations."""
    max_failed_runs: int = 20
    """Budget of failed pretraining attempts (NaN or failed initialisation); see failure_budget."""
    failure_budget: str = "study"
    """'study': max_failed_runs for all runs together, in run order (reference); 'per_run': for each run."""
    batch_size: int = 50
    """Trials per stage-2 SGD step."""
    SGD_steps: int = 1500
    """Maximum number of stage-2 SGD steps."""
    acc_check_freq: int = 10
    """Psychometric probe every this many stage-2 steps."""
    validation_freq: int = 10
    """Validation (and the 125° probe) every this many steps, all stages."""
    validation_trials: int = 300
    """Fine-task trials of a validation."""
    test_offsets: tuple[float, ...] = (1.0, 3.0, 7.0, 12.0, 20.0)
    """Offsets of the psychometric probe, degrees."""
    probe_repeats: int = 5
    """Repeats per offset in the psychometric probe."""
    probe_trials: int = 100
    """Trials per repeat and offset in the psychometric probe."""
    acc_th: float = 0.749
    """Accuracy criterion that defines the psychometric threshold."""
    shuffle_labels: bool = False
    """Replace fine-task training labels by coin flips (never in probes)."""
    general_task: bool = False
    """Train stage 2 on the general task instead of the fine task."""
    staircase_threshold: float = 0.75
    """Batch accuracy counted as a success by the staircase."""
    staircase_step: float = 0.1
    """Staircase step, degrees."""
    staircase_floor: float = 0.1
    """Smallest staircase offset, degrees."""
    staircase_rule: str = "legacy"
    """'legacy' (reference: no reset, no floor) or '3down1up' (standard, resets after a decrease, floored)."""
    min_stop_step: int = 1000
    """Stage 2 may stop early on a plateau only after this step."""
    plateau_window: int = 10
    """Window of the plateau test on probe accuracies."""
    plateau_offsets: tuple[float, ...] = (1.0, 3.0, 7.0)
    """Offsets whose probe accuracy must all plateau for stage 2 to stop, degrees."""
    plateau_rule: str = "legacy"
    """Plateau windows: 'legacy' s[-w:-1] vs s[-2w:-w] (reference, w - 1 values) or 'equal' s[-w:] vs s[-2w:-w]."""
    accs_125_probe: str = "offset_125"
    """accs_125 column: 'offset_125' (reference: reference 55°, offset 125°) or 'reference_125' (reference 125°)."""
    plateau_alpha: float = 0.05
    """Stage 2's plateau needs the Mann-Whitney p-value above this at every plateau offset."""
    plateau_curve_fit: bool = False
    """Stage 2's plateau also needs an exponential fit's end slope below plateau_fit_slope (figure era, T-early)."""
    plateau_fit_slope: float = 1e-3
    """Largest end slope of the exponential fit that counts as a plateau (plateau_curve_fit), accuracy per probe."""
    failure_reseed: bool = True
    """A failed pretraining attempt is retried with fresh streams; False: the run is dropped (the figure era
    retried with the same seed, which fails the same way)."""

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_positive(self, "num_runs", "batch_size", "SGD_steps", "acc_check_freq", "validation_freq",
                        "validation_trials", "test_offsets", "probe_repeats", "probe_trials",
                        "staircase_step", "staircase_floor", "plateau_window")  # fmt: skip
        if self.max_failed_runs < 0:
            _fail(self, "max_failed_runs", f"must be non-negative, got {self.max_failed_runs}")
        _check_probability(self, "acc_th", "staircase_threshold")
        _check_choice(self, "staircase_rule", STAIRCASE_RULES)
        _check_choice(self, "plateau_rule", PLATEAU_RULES)
        _check_choice(self, "failure_budget", FAILURE_BUDGETS)
        _check_choice(self, "accs_125_probe", ACCS_125_PROBES)
        _check_probability(self, "plateau_alpha")
        _check_positive(self, "plateau_fit_slope")
        _check_bool(self, "plateau_curve_fit", "failure_reseed", "shuffle_labels", "general_task")
        if not set(self.plateau_offsets) <= set(self.test_offsets):
            _fail(self, "plateau_offsets", "must be a subset of test_offsets")


@dataclass(frozen=True)
class TrainedSSNPars:
    """Which SSN quantities stage 2 trains (a configuration changes this, spec §16)."""

    trained: tuple[str, ...] = ALL_TRAINABLE
    """Names from ALL_TRAINABLE trained in stage 2; the others keep their stage-1 values."""
    opt_readout_before_training: bool = False
    """Start stage 2 from the readout fitted by logistic regression after stage 1 and its threshold (see below)."""
    honour_opt_readout: bool = False
    """Whether opt_readout_before_training is read; False (reference) only the mixed readout loads its readout."""

    def __post_init__(self) -> None:
        _check_types(self)
        unknown = sorted(set(self.trained) - set(ALL_TRAINABLE))
        if unknown:
            _fail(self, "trained", f"unknown names {unknown}; valid: {list(ALL_TRAINABLE)}")
        if not self.trained:
            _fail(self, "trained", "must name at least one parameter")
        _check_bool(self, "opt_readout_before_training", "honour_opt_readout")


@dataclass(frozen=True)
class PretrainedSSNPars:
    """Which SSN quantities stage 0 trains (spec §11)."""

    trained: tuple[str, ...] = PRETRAINED_KEYS
    """Names trained in stage 0 (kappas stay zero during pretraining)."""

    def __post_init__(self) -> None:
        _check_types(self)
        unknown = sorted(set(self.trained) - set(PRETRAINED_KEYS))
        if unknown:
            _fail(self, "trained", f"unknown names {unknown}; valid: {list(PRETRAINED_KEYS)}")


@dataclass(frozen=True)
class RandomizePars:
    """Ranges and retry limits of the random initialisation (spec §14)."""

    J_EE: tuple[float, float] = (4.0, 5.5)
    """Range of J_EE (middle and superficial)."""
    J_EI: tuple[float, float] = (0.7, 2.0)
    """Range of |J_EI| (middle and superficial)."""
    J_IE: tuple[float, float] = (4.0, 5.5)
    """Range of J_IE (middle and superficial)."""
    J_II: tuple[float, float] = (0.7, 1.2)
    """Range of |J_II| (middle and superficial)."""
    g: tuple[float, float] = (0.15, 0.45)
    """Range of the Gabor gains gE, gI."""
    c: tuple[float, float] = (4.5, 5.5)
    """Range of the baselines cE_m, cI_m, Hz."""
    f: tuple[float, float] = (0.6, 1.2)
    """Range of the feedforward scales f_E, f_I."""
    eta: tuple[float, float] = (3e-3, 5e-3)
    """Range of the Adam learning rate."""
    inequality_margin: float = 1.1
    """Margin m of the middle-layer inequalities m·J_EE·|J_II| < |J_EI|·J_IE and m·|J_EI|·gI < |J_II|·gE."""
    max_inequality_tries: int = 200
    """Middle-layer draws that may fail the inequalities before giving up."""
    max_middle_resamples: int = 300
    """Middle-layer redraws allowed when its responses fail the conditions."""
    max_superficial_failures: int = 101
    """Consecutive superficial failures before the middle layer is redrawn."""
    max_total_failures: int = 1000
    """Initialisation gives up beyond this failure count (spec §14.2)."""
    probe_trials: int = 10
    """Trials of each probe batch used to check an initialisation."""
    rate_max_range: tuple[float, float] = (10.0, 151.0)
    """Accepted range of maximum rates at initialisation, Hz."""
    rate_mean_range: tuple[float, float] = (5.0, 80.0)
    """Accepted range of mean rates at initialisation, Hz."""
    dx_max_mid: float = 50.0
    """Largest accepted middle-layer convergence metric in the middle-layer check."""
    dx_max_fine: float = 100.0
    """Largest accepted convergence metric on the fine-task batch."""
    dx_max_general: float = 200.0
    """Largest accepted convergence metric on the general-task batch."""
    readout_std: float = 0.25
    """Initial readout weights are rescaled to std readout_std / floor(sqrt(n_weights))."""
    rescale_readout_bias: bool = False
    """Scale the initial readout bias by the weights' factor (same decisions); False keeps it (reference)."""
    draw_c_s: bool = False
    """Draw the superficial baselines cE_s, cI_s from c (after J_s, before f) instead of copying cE_m, cI_m."""

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_interval(self, "J_EE", "J_EI", "J_IE", "J_II", "g", "c", "f", "eta", "rate_max_range",
                        "rate_mean_range")  # fmt: skip
        _check_positive(self, "J_EE", "J_EI", "J_IE", "J_II", "g", "f", "eta", "max_inequality_tries",
                        "max_middle_resamples", "max_superficial_failures", "max_total_failures",
                        "probe_trials", "readout_std")  # fmt: skip
        _check_bool(self, "rescale_readout_bias", "draw_c_s")


@dataclass(frozen=True)
class Parameters:
    """All parameter groups of one run."""

    grid: GridPars = field(default_factory=GridPars)
    stimuli: StimuliPars = field(default_factory=StimuliPars)
    filters: FilterPars = field(default_factory=FilterPars)
    ssn: SSNPars = field(default_factory=SSNPars)
    conv: ConvPars = field(default_factory=ConvPars)
    loss: LossPars = field(default_factory=LossPars)
    readout: ReadoutPars = field(default_factory=ReadoutPars)
    pretraining: PretrainingPars = field(default_factory=PretrainingPars)
    training: TrainingPars = field(default_factory=TrainingPars)
    trained_ssn: TrainedSSNPars = field(default_factory=TrainedSSNPars)
    pretrained_ssn: PretrainedSSNPars = field(default_factory=PretrainedSSNPars)
    randomize: RandomizePars = field(default_factory=RandomizePars)

    def __post_init__(self) -> None:
        if self.readout.readout_grid_size[0] > self.grid.gridsize_Nx:
            raise ParameterError(
                f"ReadoutPars.readout_grid_size: {self.readout.readout_grid_size} is larger than the "
                f"grid (GridPars.gridsize_Nx = {self.grid.gridsize_Nx})")
        for size in self.readout.readout_grid_size:
            if size > self.grid.gridsize_Nx or (self.grid.gridsize_Nx - size) % 2:
                raise ParameterError(f"ReadoutPars.readout_grid_size: {size} must not exceed the grid and "
                                     f"must be centred in it (same parity as {self.grid.gridsize_Nx})")
        if self.randomize.draw_c_s and self.ssn.couple_c_ms:
            raise ParameterError("RandomizePars.draw_c_s: drawn superficial baselines need uncoupled layers "
                                 "(SSNPars.couple_c_ms = False)")

    @property
    def absent_trainables(self) -> tuple[str, ...]:
        """Names of ALL_TRAINABLE that this model does not have (kappa_Jmid and kappa_f without SSNPars.kappa_mid_f)."""
        return () if self.ssn.kappa_mid_f else KAPPAS_MID_F

    @property
    def stage2_trained(self) -> tuple[str, ...]:
        """What stage 2 trains: the configuration's list (TrainedSSNPars.trained) less what the model lacks."""
        return tuple(name for name in self.trained_ssn.trained if name not in self.absent_trainables)

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> Parameters:
        """A copy with ``{"ClassName": {"field": value}}`` applied (values validated as usual)."""
        groups = {type(getattr(self, f.name)).__name__: f.name for f in dataclasses.fields(self)}
        changes = {}
        for class_name, values in overrides.items():
            if class_name not in groups:
                raise ParameterError(f"unknown parameter class {class_name!r}; valid: {sorted(groups)}")
            group = getattr(self, groups[class_name])
            names = {f.name for f in dataclasses.fields(group)}
            unknown = sorted(set(values) - names)
            if unknown:
                raise ParameterError(f"{class_name}: unknown fields {unknown}; valid: {sorted(names)}")
            changes[groups[class_name]] = dataclasses.replace(group, **_as_tuples(values))
        return dataclasses.replace(self, **changes)


def _as_tuples(values: dict[str, Any]) -> dict[str, Any]:
    """Lists become tuples so that overrides written as lists keep the classes hashable."""

    def convert(v: Any) -> Any:
        return tuple(convert(x) for x in v) if isinstance(v, (list, tuple)) else v

    return {k: convert(v) for k, v in values.items()}


# The versions of the earlier implementation (../shared/spec/LINEAGE.md) and the corrected model, as OVERRIDES on
# top of the defaults above. The defaults are the seed version's behaviour, so "reference" restates its switches;
# "corrected" switches every behaviour the specification corrects (spec §18); "figure" and "final" are the
# versions before and after the seed's. docs/model.md ("Presets", "Lineage") gives the reason for each switch.
FIGURE_SIGMA_ORIS = 180.0 / math.sqrt(2.0)
"""The figure era's orientation term ori²/180² written as ori²/(2σ²)."""
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "reference": {
        "SSNPars": {"kappa_f_I_form": "linear", "sup_I_stats_drop_last": True, "sigma_oris": 90.0,
                    "kappa_range": 90.0, "couple_c_ms": True, "sup_I_kernel": "own", "kappa_mid_f": True},
        "LossPars": {"lambda_task_stage0": 1.0, "lambda_r_mean_stage1": 0.01, "stage1_rate_targets": "fixed"},
        "PretrainingPars": {"shuffle_labels": True, "offset_threshold": (5.0, 25.0), "min_acc_check_ind": 50,
                            "stage0_plateau": False, "flip_rule": "reference", "stage1_placement": "pretraining",
                            "stage1_acc_threshold": 0.65, "stage1_max_threshold": 10.0, "exclude_runs": True,
                            "run_threshold_range": (5.0, 25.0)},
        "TrainingPars": {"staircase_rule": "legacy", "plateau_rule": "legacy", "failure_budget": "study",
                         "accs_125_probe": "offset_125", "test_offsets": (1.0, 3.0, 7.0, 12.0, 20.0),
                         "SGD_steps": 1500, "plateau_alpha": 0.05, "plateau_curve_fit": False,
                         "failure_reseed": True},
        "TrainedSSNPars": {"honour_opt_readout": False},
        "RandomizePars": {"rescale_readout_bias": False, "probe_trials": 10, "dx_max_fine": 100.0,
                          "dx_max_general": 200.0, "draw_c_s": False, "J_EE": (4.0, 5.5), "J_EI": (0.7, 2.0),
                          "J_IE": (4.0, 5.5), "J_II": (0.7, 1.2)},
    },
    "corrected": {
        "SSNPars": {"kappa_f_I_form": "squared", "sup_I_stats_drop_last": False},
        "PretrainingPars": {"shuffle_labels": False},
        "TrainingPars": {"staircase_rule": "3down1up", "plateau_rule": "equal", "failure_budget": "per_run",
                         "accs_125_probe": "reference_125"},
        "TrainedSSNPars": {"honour_opt_readout": True},
        "RandomizePars": {"rescale_readout_bias": True},
    },
    # The code behind the published figure: pretraining of 2024-08-15, stage 2 of Sep to 2024-10-08 (LINEAGE.md J).
    "figure": {
        "SSNPars": {"sigma_oris": FIGURE_SIGMA_ORIS, "kappa_range": 45.0, "couple_c_ms": False,
                    "sup_I_kernel": "reuse_E", "kappa_mid_f": False},
        "PretrainingPars": {"shuffle_labels": False, "offset_threshold": (3.0, 10.0), "min_acc_check_ind": 100,
                            "stage0_plateau": True, "flip_rule": "figure", "stage1_placement": "training",
                            "stage1_acc_threshold": 0.51, "exclude_runs": False},
        "TrainingPars": {"test_offsets": (1.0, 3.0, 7.0, 12.0), "SGD_steps": 2000, "plateau_alpha": 0.1,
                         "plateau_curve_fit": False, "failure_reseed": False},
        "TrainedSSNPars": {"honour_opt_readout": True},
        "RandomizePars": {"probe_trials": 3, "dx_max_fine": 50.0, "dx_max_general": 1e30, "draw_c_s": True},
    },
    # The authors' last revision, 2025-01-23, two weeks after the seed's version (LINEAGE.md, "The final preset").
    "final": {
        "LossPars": {"lambda_task_stage0": 0.5, "lambda_r_mean_stage1": 0.25, "stage1_rate_targets": "last_stage0"},
        "PretrainingPars": {"stage1_max_threshold": 20.0, "run_threshold_range": (0.0, 25.0)},
        "TrainingPars": {"accs_125_probe": "reference_125"},
        "RandomizePars": {"J_EE": (4.0, 4.8), "J_EI": (1.2, 2.0), "J_IE": (4.6, 5.4), "J_II": (0.8, 1.6)},
    },
}  # fmt: skip
PRESET_DESCRIPTIONS: dict[str, str] = {
    "figure": "the code behind the published figure (pretraining 2024-08-15, stage 2 to 2024-10-08)",
    "reference": "the seed version of 2025-01-08 that ../shared/spec/MODEL.md describes (default)",
    "final": "the authors' last revision of 2025-01-23",
    "corrected": "the reference with every correction of the specification (spec §18)",
}
"""One line per preset for --help: which version of the earlier implementation, of which date."""
DEFAULT_PRESET = "reference"

# A configuration's copy of this file reassigns OVERRIDES (and PRESET) at its end; the repository's copy keeps
# OVERRIDES empty and the default preset.
OVERRIDES: dict[str, dict[str, Any]] = {}
PRESET: str = "reference"  # DEFAULT_PRESET, as a literal that store.parameter_files.read_preset can parse


def check_preset(name: str) -> str:
    """``name`` if it is a preset; ParameterError naming the valid ones otherwise."""
    if name not in PRESETS:
        raise ParameterError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return name


def build_parameters(overrides: dict[str, dict[str, Any]] | None = None, preset: str = DEFAULT_PRESET) -> Parameters:
    """The defaults with the preset's values and then ``overrides`` (``{"ClassName": {"field": value}}``) applied."""
    merged = {name: dict(values) for name, values in PRESETS[check_preset(preset)].items()}
    for name, values in (overrides or {}).items():
        merged.setdefault(name, {}).update(values)
    return Parameters().with_overrides(merged)


def load_parameters_file(path: str | Path, preset: str | None = None) -> Parameters:
    """Import a parameters file (e.g. a configuration's copy) and build its parameters: its PRESET (or ``preset``
    where given), then its OVERRIDES.

    The file's own classes and defaults decide every value it defines (a copy may predate edits of this
    file); the result is made of this module's classes (:func:`as_current`), so loading a file twice gives
    equal, hashable parameters (one compilation per distinct value), and a field the file predates takes its
    current default, which is the behaviour before that field existed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameters file not found: {path}")
    name = f"_parameters_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered while the file executes
    try:
        spec.loader.exec_module(module)
        overrides = getattr(module, "OVERRIDES", {})
        preset = preset if preset is not None else getattr(module, "PRESET", None)
        if preset is None:  # a file written before presets existed
            loaded = module.build_parameters(overrides)
        else:
            loaded = module.build_parameters(overrides, preset=preset)
        return as_current(loaded)
    except Exception as error:  # the file's own ParameterError class, a syntax error, a bad override
        raise ParameterError(f"{path}: {error}") from error
    finally:
        sys.modules.pop(name, None)


def as_current(loaded: Any) -> Parameters:
    """Parameters of another copy of this module's classes (an imported parameters file) as this module's
    classes, validated field by field; a field the copy lacks takes its current default, and a field this
    module lacks is refused (ParameterError naming it)."""
    groups = {}
    for group_field in dataclasses.fields(Parameters):
        group = getattr(loaded, group_field.name)
        current_class = group_field.default_factory  # each group field's factory is its class
        known = {f.name for f in dataclasses.fields(current_class)}
        values = {f.name: getattr(group, f.name) for f in dataclasses.fields(group)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(f"{current_class.__name__}: fields {unknown} are not parameters of this code")
        groups[group_field.name] = current_class(**values)
    return Parameters(**groups)
