"""Every small preset in one place: the ``--quick`` study (stages and analysis) and the tests' smaller ones.

``--quick`` is a look at the whole pipeline in minutes; its numbers are not results. The test presets are
smaller still and only check that every stage runs every rule.
"""

from __future__ import annotations

from typing import Any

QUICK_CONFIGS: tuple[str, ...] = ("conf_baseline", "conf_midonly_readout")
"""The configurations of a --quick study when --configs is not given."""
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "TrainingPars": {
        "num_runs": 2, "SGD_steps": 6, "batch_size": 10, "probe_trials": 20, "probe_repeats": 2,
        "validation_trials": 40,
    },
    "PretrainingPars": {
        "SGD_steps": 6, "stage1_SGD_steps": 4, "batch_size": 10, "stage1_batch_size": 10, "min_acc_check_ind": 2,
        "flip_test_trials": 40, "regression_trials": 200, "post_stage1_regression_trials": 400,
        "regression_chunk": 200, "run_threshold_range": (0.0, 181.0),
    },
}  # fmt: skip
"""The --quick parameters: 2 runs, a few SGD steps per stage, small probes and regressions, no run exclusion."""
QUICK_NOTE = (
    "Quick preset (--quick): 2 runs, at most 6/4/6 SGD steps in stages 0/1/2, small probes, validations and "
    "regressions. PretrainingPars.run_threshold_range is widened to (0, 181) so that no run is excluded. "
    "These numbers are a quick look at the pipeline, not results."
)
"""What note.txt says about a --quick study."""
QUICK_ANALYSIS_MVPA_TRIALS = 40
"""MVPA and Mahalanobis trials of the --quick analysis (analysis.main_analysis.QUICK_SETTINGS)."""
QUICK_ANALYSIS_MW_STEP = 1.0
"""Step of the sliding Mann-Whitney windows of the --quick analysis, degrees."""

TEST_OVERRIDES: dict[str, dict[str, Any]] = {
    "PretrainingPars": {"batch_size": 6, "SGD_steps": 4, "stage1_batch_size": 6, "stage1_SGD_steps": 3,
                        "flip_test_trials": 20, "regression_trials": 60, "post_stage1_regression_trials": 120,
                        "regression_chunk": 60, "min_acc_check_ind": 1, "run_threshold_range": [0.0, 181.0]},
    "TrainingPars": {"probe_trials": 8, "probe_repeats": 2, "validation_trials": 16, "batch_size": 6,
                     "SGD_steps": 4},
}  # fmt: skip
"""The tests' training preset: small batch sizes, step counts and probes (every stage still runs every rule)."""
END_TO_END_OVERRIDES: dict[str, dict[str, Any]] = {
    "TrainingPars": {"SGD_steps": 2, "batch_size": 4, "probe_trials": 8, "probe_repeats": 1, "validation_trials": 8},
    "PretrainingPars": {
        "SGD_steps": 2, "stage1_SGD_steps": 2, "batch_size": 4, "stage1_batch_size": 4, "min_acc_check_ind": 1,
        "flip_test_trials": 8, "regression_trials": 60, "post_stage1_regression_trials": 60, "regression_chunk": 60,
        "run_threshold_range": [0.0, 181.0],
    },
}  # fmt: skip
"""The end-to-end tests' preset of main.py, much smaller than --quick (passed with --overrides-json)."""
