"""Sizes and switches of the analysis (defaults: the constants table of ANALYSIS.md, §10)."""

from __future__ import annotations

from dataclasses import dataclass, field

from analysis.mvpa_responses import MvpaSettings
from study.quick import QUICK_ANALYSIS_MVPA_TRIALS, QUICK_ANALYSIS_MW_STEP


@dataclass(frozen=True)
class AnalysisSettings:
    """Sizes and switches of the analysis (defaults: ANALYSIS.md §10)."""

    mvpa: MvpaSettings = field(default_factory=MvpaSettings)
    """Trials, seed, noise and classifier settings of the MVPA and Mahalanobis scores."""
    tc_ori_step: float = 5.0
    """Step of the tuning-curve orientations over [0, 360), degrees."""
    mw_step: float = 0.2
    """Step of the sliding Mann-Whitney windows of F7, degrees."""
    per_run_figures: bool = True
    """Draw the per-run training figures F1."""

    def __post_init__(self) -> None:
        count = 360.0 / self.tc_ori_step
        if self.tc_ori_step <= 0 or abs(count - round(count)) > 1e-9 or round(count) < 4:
            raise ValueError(f"tc_ori_step must divide 360 into at least 4 steps, got {self.tc_ori_step}")
        if self.mw_step <= 0:
            raise ValueError(f"mw_step must be positive, got {self.mw_step}")

    @property
    def tc_orientations(self) -> tuple[float, ...]:
        """Tuning-curve orientations 0, step, ..., 360 - step (degrees)."""
        return tuple(float(i * self.tc_ori_step) for i in range(int(round(360.0 / self.tc_ori_step))))

    def mvpa_record(self) -> dict:
        """The settings the MVPA scores depend on (stored next to them; keys as in earlier results folders)."""
        m = self.mvpa
        return {"mvpa_trials": m.trials, "sigma_filter": m.sigma_filter, "readout_noise": m.readout_noise,
                "normalise": m.normalise, "noise_std": m.noise_std, "n_splits": m.n_splits, "seed": m.seed}  # fmt: skip


QUICK_SETTINGS = AnalysisSettings(mvpa=MvpaSettings(trials=QUICK_ANALYSIS_MVPA_TRIALS), mw_step=QUICK_ANALYSIS_MW_STEP)
"""Small sizes for a quick look (``--quick``): 40 MVPA trials, 1° Mann-Whitney steps."""
