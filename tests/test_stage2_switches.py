"""The stage-2 side of the figure preset (LINEAGE.md E, G, H): stage 1 at the start of each stage-2 job, the
stage-2 start from the last stage-0 row, the regression readout fitted at the stage-2 start, the plateau test's
alpha and curve fit, and the analysis of a training file that starts with stage-1 rows.

Most cases are hand-worked on pure functions or on the stage loop with a scripted SGD step (no compilation);
one small end-to-end stage-2 job under the figure preset runs on a hand-made stage-0-only pretraining folder
(rows written with the project's writers), since the figure preset's pretraining is built elsewhere.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from analysis.changes import exclusion_table, pre_post_values, relative_changes
from parameters import TrainingPars, build_parameters
from store.assembly import assemble_training
from store.files import atomic_write_csv
from store.parameter_files import write_parameters_copy
from store.schema import INITIAL_PARAMETERS_COLUMNS, orimap_columns, pretraining_columns, ssn_columns, training_columns
from store.tables import read_results_csv
from tests.conftest import TINY_OVERRIDES, golden_log_params, golden_path
from training import main_training, training_functions
from training.evaluation import StepGradients, StepMetrics
from training.model import zero_kappas
from training.psychometrics import (
    exponential_end_slope,
    readout_stage_skipped,
    stage2_plateaued,
    stage2_should_stop,
    trailing_accuracy_exceeds,
)
from training.readout import Readout
from training.readout_regression import RegressionData, mixed_features
from training.run_state import read_stage2_start
from training.stages import READOUT, readout_stage, training_readout_stage, training_stage
from training.training_functions import RunSetup, StageResult, StageState, readout_row, train_ori_discr
from training.util_gabor import readout_indices

FIGURE = build_parameters(preset="figure")


# ------------------------------------------------------------------------------------- stage-1 stop rules
def test_stage1_in_training_is_skipped_when_step_0_already_beats_the_threshold() -> None:
    assert readout_stage_skipped(0.52, 0, 0.51)
    assert not readout_stage_skipped(0.51, 0, 0.51)  # strictly above
    assert not readout_stage_skipped(0.9, 1, 0.51)  # only at step 0


def test_stage1_in_training_trailing_window_leaves_out_step_0_and_includes_the_current_step() -> None:
    # window min(step, 10) of the accuracies of steps 0 … step (LINEAGE.md E)
    assert not trailing_accuracy_exceeds([0.5], 0, 0.51)  # empty window at step 0
    assert trailing_accuracy_exceeds([0.0, 0.9], 1, 0.51)  # step 1: [0.9], the current step alone
    accs = [0.0, 0.3, 0.6, 0.55, 0.7]
    # step 4: mean(0.3, 0.6, 0.55, 0.7) = 0.5375 > 0.51; with step 0 it would be 0.43
    assert trailing_accuracy_exceeds(accs, 4, 0.51)
    assert not trailing_accuracy_exceeds(accs[:4], 3, 0.51)  # step 3: mean(0.3, 0.6, 0.55) = 0.483
    # at most 10 values: step 11 averages steps 2 … 11 = (9·0.5 + 0.7)/10 = 0.52 (steps 1 … 11 would give 0.5)
    accs = [0.5, 0.3] + [0.5] * 9 + [0.7]
    assert not trailing_accuracy_exceeds(accs[:11], 10, 0.51)  # steps 1 … 10: 0.48
    assert trailing_accuracy_exceeds(accs, 11, 0.51)


def test_the_stage1_of_a_training_job_under_figure() -> None:
    s1 = training_readout_stage(FIGURE)
    assert s1.number == READOUT and s1.trains_readout and not s1.trains_ssn
    assert not s1.step.general_task and not s1.step.shuffle_labels
    assert s1.step.batch_size == FIGURE.pretraining.stage1_batch_size == 50
    assert s1.max_steps == FIGURE.training.SGD_steps == 2000
    assert s1.probe_every == s1.validate_every == 10 and not s1.probe_at_last_step
    assert s1.staircase is None and s1.flip is None and s1.logs_kappas
    assert s1.contributions == FIGURE.readout.readout_contributions
    midonly = build_parameters({"ReadoutPars": {"readout_contributions": (0.0, 1.0)}}, preset="figure")
    assert training_readout_stage(midonly).contributions == (0.0, 1.0)
    reference = build_parameters()
    assert readout_stage(reference).stop_before_recording is None
    assert training_stage(reference).stop_before_recording is None


# ------------------------------------------------------------------------- the stage loop, scripted step
def scripted_step(accuracies: list[float], monkeypatch) -> list[int]:
    """Replace the SGD step, the probe and the validation of the stage loop by scripted values; the returned
    list collects the steps whose probe ran."""
    probed = []
    calls = iter(accuracies)
    names = ("maxE_mid", "maxI_mid", "maxE_sup", "maxI_sup", "meanE_mid", "meanI_mid", "meanE_sup", "meanI_sup")

    def step(trained, readout, untrained, static, key, offset, constants, params, spec):
        terms = {k: jnp.float32(0.1) for k in ("bce", "dx", "rmax", "rmean", "w", "b", "total")}
        rates = {k: jnp.float32(10.0) for k in names}
        metrics = StepMetrics(terms, jnp.float32(next(calls)), {k: v for k, v in rates.items() if "max" in k},
                              {k: v for k, v in rates.items() if "mean" in k})  # fmt: skip
        grads = jax.tree_util.tree_map(jnp.ones_like, readout)
        return StepGradients(metrics, jax.tree_util.tree_map(jnp.zeros_like, trained), grads, False)

    def probe(log_params, readout, setup, key, constants, contributions):
        probed.append(len(probed))
        return np.full((2, len(setup.params.training.test_offsets)), 0.8)

    monkeypatch.setattr(training_functions, "sgd_gradients", step)
    monkeypatch.setattr(training_functions, "run_probe", probe)
    monkeypatch.setattr(training_functions, "run_validation", lambda *args: {"val_acc": 0.5})
    return probed


def start_state(params) -> StageState:
    with np.load(golden_path(1)) as data:
        log_params = {**golden_log_params({k: data[k] for k in data.files}), **zero_kappas()}
    log_params.update(cE_s=log_params["cE_m"], cI_s=log_params["cI_m"])  # figure: uncoupled baselines
    return StageState(trained={"log_J_II_s": log_params.pop("log_J_II_s")}, untrained=log_params,
                      readout=Readout(jnp.linspace(-1.0, 1.0, 25), jnp.float32(0.3)), offset=7.5)  # fmt: skip


def scripted_setup(params) -> RunSetup:
    return RunSetup(params, None, 0, 1e-2, jax.random.PRNGKey(0), jax.random.PRNGKey(1), progress=False)


def test_stage1_in_training_ends_at_step_0_without_rows(monkeypatch) -> None:
    probed = scripted_step([0.6], monkeypatch)
    state = start_state(FIGURE)
    result = train_ori_discr(training_readout_stage(FIGURE), state, scripted_setup(FIGURE))
    assert result.rows == [] and result.val_rows == [] and probed == []
    assert result.final.readout is state.readout and result.final.trained is state.trained
    assert result.final.offset == 7.5


def test_stage1_in_training_stops_at_the_first_step_whose_trailing_mean_beats_the_threshold(monkeypatch) -> None:
    accs = [0.0, 0.3, 0.6, 0.55, 0.7, 0.9]
    probed = scripted_step(accs, monkeypatch)
    state = start_state(FIGURE)
    result = train_ori_discr(training_readout_stage(FIGURE), state, scripted_setup(FIGURE))
    assert [row["SGD_steps"] for row in result.rows] == [0, 1, 2, 3, 4]  # stops at step 4 (see the rule's test)
    assert {row["stage"] for row in result.rows} == {1}
    assert [row["acc"] for row in result.rows] == pytest.approx(accs[:5])
    assert "staircase_offset" not in result.rows[0] and result.rows[0]["kappa_Jsup_EE_pre"] == 0.0
    assert len(probed) == 1 and len(result.val_rows) == 1  # the probe of step 0 only (every 10 steps)
    # 4 Adam steps (steps 0-3) moved the readout, the update of step 4 (the last row) is not applied; SSN as it was
    assert not np.allclose(result.final.readout.w, state.readout.w)
    assert result.final.trained is state.trained and result.final.offset == 7.5


# ----------------------------------------------------------------------------------------------- plateau
def test_plateau_alpha_01_of_figure_against_005_of_reference() -> None:
    # legacy windows: s[-10:-1] = 4, 4, 5 … 11 (9 values) against s[-20:-10] = 0 … 9:
    # U = 2·4.5 + 5.5 + 6.5 + 7.5 + 8.5 + 9.5 + 10 + 10 = 66.5 of 90, two-sided p = 0.085
    s = list(range(10)) + [4, 4, 5, 6, 7, 8, 9, 10, 11] + [0]
    result = stats.mannwhitneyu(s[-10:-1], s[-20:-10], alternative="two-sided")
    assert result.statistic == 66.5 and 0.05 < result.pvalue < 0.1
    history = np.tile(np.asarray(s, dtype=float)[:, None], (1, 4))
    reference, figure = build_parameters().training, FIGURE.training
    assert (reference.plateau_alpha, figure.plateau_alpha) == (0.05, 0.1)
    assert stage2_should_stop(np.tile(history[:, :1], (1, 5)), 1010, reference)  # p > 0.05: plateau
    assert not stage2_should_stop(history, 1010, figure)  # p < 0.1: none
    assert figure.min_stop_step == 1000 and not stage2_should_stop(np.full((30, 4), 0.8), 1000, figure)
    assert stage2_should_stop(np.full((30, 4), 0.8), 1010, figure)


def test_exponential_end_slope_by_hand() -> None:
    x = np.arange(20.0)
    s = 0.9 - 0.4 * np.exp(-0.3 * x)  # a = -0.4, b = 0.3: end slope 0.4·0.3·e^(-0.3·19) = 4.015e-4
    assert exponential_end_slope(s) == pytest.approx(0.12 * math.exp(-5.7), rel=1e-4)
    assert exponential_end_slope([0.8] * 20) < 1e-12
    assert math.isnan(exponential_end_slope([0.5, float("nan"), 0.7]))


def test_the_curve_fit_plateau_also_needs_a_flat_exponential_fit() -> None:
    x = np.arange(20.0)
    s = 0.9 - 0.4 * np.exp(-0.3 * x)  # windows of 0.9 - 0.4e^(-0.3x) differ strongly: no Mann-Whitney plateau
    assert not stage2_plateaued(s, TrainingPars(plateau_curve_fit=True, plateau_fit_slope=1.0))
    # a slow decay 0.05·e^(-0.1x) (end slope 0.005·e^(-1.9) = 7.5e-4) under a ±0.02 zigzag: the windows do not
    # differ (p = 0.11), and the fitted end slope lies between 5e-4 and the default 1e-3
    slow = 0.8 + 0.05 * np.exp(-0.1 * x) + np.tile([0.02, -0.02], 10)
    assert 5e-4 < exponential_end_slope(slow) < 1e-3
    assert stage2_plateaued(slow, TrainingPars())
    assert stage2_plateaued(slow, TrainingPars(plateau_curve_fit=True))
    assert not stage2_plateaued(slow, TrainingPars(plateau_curve_fit=True, plateau_fit_slope=5e-4))
    assert not FIGURE.training.plateau_curve_fit  # T-early is off in the preset


# ------------------------------------------------------------------------------ a hand-made pretraining
STAGE0_THRESHOLDS = (14.0, 7.5, float("nan"))
"""psychometric_offset of the three hand-made stage-0 rows: the last non-NaN one is 7.5."""
MEAN_RATES = {"meanr_E_mid": 21.0, "meanr_I_mid": 41.0, "meanr_E_sup": 22.0, "meanr_I_sup": 43.0}


def golden_case() -> dict:
    with np.load(golden_path(1)) as data:
        return {k: data[k] for k in data.files}


def write_stage0_pretraining(root: Path, thresholds=STAGE0_THRESHOLDS, run_index: int = 0) -> list[dict]:
    """A pretraining folder with stage-0 rows only (no stage 1, no regressions), as a figure-era pretraining
    leaves it: golden case 1's parameters (superficial baselines apart from the middle ones) drifting a little
    per row, an 81-weight readout, orimap.csv and initial_parameters.csv; the rows it wrote."""
    golden = golden_case()
    base = {k: np.asarray(v) for k, v in golden_log_params(golden).items() if not k.startswith("kappa")}
    base.update({"cE_s": base["cE_m"] + 0.25, "cI_s": base["cI_m"] - 0.25})
    rows = []
    for step, threshold in enumerate(thresholds):
        log_params = {k: v + 0.01 * step for k, v in base.items()}
        readout = Readout(np.linspace(-0.02, 0.02, 81) * (1 + step), np.float32(0.1 * (step + 1)))
        rows.append({"run_index": run_index, "stage": 0, "SGD_steps": step, "acc": 0.7, "loss_all": 0.6,
                     "gradient_unrolled": 0, **{k: v + step for k, v in MEAN_RATES.items()},
                     **ssn_columns(log_params, coupled=False), "psychometric_offset": threshold,
                     **readout_row(readout, np.arange(81))})  # fmt: skip
    atomic_write_csv(pd.DataFrame(rows).reindex(columns=pretraining_columns(81)), root / "pretraining_results.csv")
    atomic_write_csv(pd.DataFrame([[float(run_index), *golden["orimap"]]], columns=orimap_columns(81)),
                     root / "orimap.csv")  # fmt: skip
    initial = {"run_index": run_index, "stage": 0, **ssn_columns(base, coupled=False), "eta": 4e-3,
               "gE": float(golden["gE"]), "gI": float(golden["gI"])}  # fmt: skip
    atomic_write_csv(pd.DataFrame([initial]).reindex(columns=INITIAL_PARAMETERS_COLUMNS),
                     root / "initial_parameters.csv")  # fmt: skip
    return rows


def test_stage2_under_figure_starts_from_the_last_stage0_row(tmp_path) -> None:
    rows = write_stage0_pretraining(tmp_path)
    last = rows[-1]
    start = read_stage2_start(tmp_path, 0, FIGURE)
    assert start.threshold == 7.5  # the last non-NaN stage-0 threshold
    for key in ("log_J_EE_m", "log_J_II_s", "cE_m", "cE_s", "cI_s", "log_f_I"):
        assert float(start.log_params[key]) == np.float32(last[key]), key
    central = readout_indices(9, 5)
    assert np.array_equal(np.asarray(start.readout.w), np.float32([last[f"w_sig_{i}"] for i in central]))
    assert float(start.readout.b) == np.float32(last["b_sig"])
    assert start.mean_rates == {k: v + 2 for k, v in MEAN_RATES.items()}
    state = main_training.stage2_state(start, FIGURE, start.readout, start.threshold)
    assert state.offset == 7.5  # min(7.5, 10)
    assert float(state.constants.lambda_r_mean) == 0.25
    assert np.allclose(state.constants.Rmean_E, [23.0, 24.0]) and np.allclose(state.constants.Rmean_I, [43.0, 45.0])
    merged = {**state.untrained, **state.trained}
    assert all(np.all(np.asarray(merged[k]) == 0) for k in ("kappa_Jsup", "kappa_Jmid", "kappa_f"))  # κ = 0
    capped = main_training.stage2_state(start._replace(threshold=14.0), FIGURE, start.readout, 14.0)
    assert capped.offset == 10.0  # min(threshold, StimuliPars.max_train_offset)


def test_figure_training_job_runs_stage1_then_stage2_from_the_last_stage0_row(tmp_path, monkeypatch) -> None:
    """train_run's wiring with the stages replaced by records of what they were given."""
    write_stage0_pretraining(tmp_path)
    start = read_stage2_start(tmp_path, 0, FIGURE)
    calls = []
    stage1_readout = Readout(jnp.full(25, 0.5), jnp.float32(-0.2))

    def fake_stage(stage, state, setup):
        calls.append((stage, state, setup))
        rows = [{"run_index": 0, "stage": stage.number, "SGD_steps": k} for k in range(2 if stage.number == 1 else 3)]
        return StageResult(rows, rows[:1], dataclasses.replace(state, readout=stage1_readout), [], {})

    monkeypatch.setattr(main_training, "train_ori_discr", fake_stage)
    monkeypatch.setattr(main_training, "build_static", lambda *args: None)  # the stages that use it are records
    rows, val_rows = main_training.train_run(FIGURE, tmp_path, 0, base_seed=3, progress=False)
    (s1, state1, setup1), (s2, state2, setup2) = calls
    assert (s1.number, s2.number) == (1, 2)
    assert rows["stage"].tolist() == [1, 1, 2, 2, 2] and rows["SGD_steps"].tolist() == [0, 1, 0, 1, 2]
    assert list(rows.columns) == training_columns() and val_rows["stage"].tolist() == [1, 2]
    # stage 1 starts from the stage-0 readout's central weights at offset min(7.5, 10), stage 2 from its readout
    assert np.array_equal(state1.readout.w, start.readout.w) and state1.offset == state2.offset == 7.5
    assert state2.readout is stage1_readout
    assert state2.trained is state1.trained and state2.untrained is state1.untrained  # SSN unchanged
    # stage 1 has streams of its own; stage 2 keeps the run's (the same as without a stage 1)
    streams = main_training.run_streams(3, 0)
    assert np.array_equal(setup2.train_key, streams.train_key) and np.array_equal(setup2.eval_key, streams.eval_key)
    assert not np.array_equal(setup1.train_key, streams.train_key)
    assert not np.array_equal(setup1.eval_key, streams.eval_key)


# ------------------------------------------------------------------------- regression at the stage-2 start
def test_midonly_readout_under_figure_is_a_regression_at_the_stage2_start(tmp_path, monkeypatch) -> None:
    write_stage0_pretraining(tmp_path)  # no init_readout_params.csv: nothing is read from the pretraining
    params = build_parameters({"TrainedSSNPars": {"opt_readout_before_training": True},
                               "ReadoutPars": {"readout_contributions": (0.0, 1.0)}}, preset="figure")  # fmt: skip
    start = read_stage2_start(tmp_path, 0, params)
    rng = np.random.default_rng(0)
    mid, sup = rng.normal(size=(1000, 25)), rng.normal(size=(1000, 25))
    labels = (mid @ np.linspace(-1, 1, 25) + 0.3 * rng.normal(size=1000) > 0).astype(int)
    seen = {}

    def fake_data(log_params, static, key, p, num_trials, num_cells, shuffle_labels=False):
        seen.update(log_params=log_params, num_trials=num_trials, num_cells=num_cells, shuffle=shuffle_labels)
        return RegressionData(sup=sup, mid=mid, labels=labels)

    monkeypatch.setattr(main_training, "regression_data", fake_data)
    readout, threshold = main_training.start_readout(start, params, tmp_path, 0, None, jax.random.PRNGKey(0))
    assert threshold == start.threshold == 7.5  # the start offset is not recomputed
    assert (seen["num_trials"], seen["num_cells"], seen["shuffle"]) == (1000, 25, False)  # 1000 true-label trials
    assert float(seen["log_params"]["cE_s"]) == float(start.log_params["cE_s"])  # at the stage-2 start
    assert np.all(np.asarray(seen["log_params"]["kappa_Jsup"]) == 0)
    fit = LogisticRegression().fit(mid[:700], labels[:700])  # 700/300, sklearn defaults, middle features
    assert np.allclose(readout.w, fit.coef_[0], rtol=1e-5) and float(readout.b) == pytest.approx(fit.intercept_[0])
    assert np.std(np.asarray(readout.w)) > 0.25 / 5  # unscaled (a rescaled readout has sd 0.25/5)
    baseline = build_parameters(preset="figure")  # no opt readout: the stage-0 central weights, no regression
    assert main_training.start_readout(start, baseline, tmp_path, 0, None, None) == (start.readout, 7.5)


def test_mixed_regression_features_put_the_middle_layer_first() -> None:
    data = RegressionData(sup=np.ones((2, 3)), mid=2 * np.ones((2, 3)), labels=np.array([0, 1]))
    assert np.array_equal(mixed_features(data, (0.5, 0.5)), np.hstack([np.ones((2, 3)), 0.5 * np.ones((2, 3))]))
    assert np.array_equal(mixed_features(data, (1.0, 0.0)), data.sup)
    assert np.array_equal(mixed_features(data, (0.0, 1.0)), data.mid)


def test_reference_midonly_still_starts_from_the_pretraining_readout(tmp_path) -> None:
    write_stage0_pretraining(tmp_path)
    params = build_parameters({"TrainedSSNPars": {"opt_readout_before_training": True},
                               "ReadoutPars": {"readout_contributions": (0.0, 1.0)}})  # fmt: skip
    assert not params.pretraining.stage1_in_training_job
    start = read_stage2_start(tmp_path, 0, params)
    assert main_training.start_readout(start, params, tmp_path, 0, None, None) == (start.readout, 7.5)


# ---------------------------------------------------------------------------------------- the analysis
def figure_shaped_tables(with_stage1: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's stage-0 rows and a training file with (or without) stage-1 rows before its stage-2 rows."""
    pre = pd.DataFrame({"run_index": 0, "stage": 0, "SGD_steps": [0, 1, 2], "J_II_s": [-1.0, -1.1, -1.2],
                        "acc": [0.5, 0.6, 0.7], "psychometric_offset": [20.0, np.nan, 12.0]})  # fmt: skip
    stage1 = pd.DataFrame({"run_index": 0, "stage": 1, "SGD_steps": [0, 1], "J_II_s": -1.2, "acc": [0.1, 0.2],
                           "psychometric_offset": [30.0, np.nan], "staircase_offset": np.nan,
                           "kappa_Jsup_EE_pre": 0.0})  # fmt: skip
    stage2 = pd.DataFrame({"run_index": 0, "stage": 2, "SGD_steps": [0, 1, 2], "J_II_s": [-1.2, -1.3, -1.5],
                           "acc": [0.6, 0.7, 0.8], "psychometric_offset": [8.0, np.nan, 6.0],
                           "staircase_offset": [7.5, 7.6, 7.4], "kappa_Jsup_EE_pre": [0.0, 0.1, 0.2]})  # fmt: skip
    return pre, pd.concat([stage1, stage2] if with_stage1 else [stage2], ignore_index=True)


@pytest.mark.parametrize("with_stage1", [True, False])
def test_analysis_reads_stage2_rows_from_a_training_file_with_stage1_rows(with_stage1) -> None:
    pre, train = figure_shaped_tables(with_stage1)
    changes = relative_changes(pre, train, [0], "train").set_index("run_index").loc[0]
    # J: the first stage-2 value (= the last stage-0 row's, LINEAGE.md H) against the last: -1.2 -> -1.5
    assert changes["J_II_s"] == pytest.approx(25.0)
    assert changes["psychometric_offset"] == pytest.approx(-25.0) and changes["acc"] == pytest.approx(100 / 3)
    assert changes["d_kappa_Jsup_EE_pre"] == pytest.approx(np.tanh(0.2))  # κ from 0 at the first stage-2 row
    pretrain = relative_changes(pre, train, [0], "pretrain").set_index("run_index").loc[0]
    assert pretrain["acc"] == pytest.approx(40.0) and pretrain["psychometric_offset"] == pytest.approx(-40.0)
    assert "staircase_offset" not in pretrain or math.isnan(pretrain["staircase_offset"])
    values = pre_post_values(pre, train, [0], include_init=True).set_index("time")
    assert values.loc["pre", "acc"] == 0.6 and values.loc["post", "acc"] == 0.8 and values.loc["init", "acc"] == 0.5
    table = exclusion_table(train, [0]).iloc[0]
    assert table["psy_mean_last"] == pytest.approx(7.0) and not table["excluded"]  # stage-2 thresholds only


def test_exclusion_sees_no_stage2_rows_behind_stage1_rows() -> None:
    _, train = figure_shaped_tables(True)
    assert exclusion_table(train[train["stage"] == 1], [0]).iloc[0]["reason"] == "no training rows"


# --------------------------------------------------------------------------------- one real figure job
def test_a_figure_stage2_job_end_to_end(tmp_path) -> None:
    """A middle-only readout under figure (regression at the stage-2 start, stage 1 held to its maximum by an
    unreachable threshold, stage 2) on a stage-0-only pretraining folder, with the tests' tiny sizes."""
    write_stage0_pretraining(tmp_path)
    overrides = {**TINY_OVERRIDES,
                 "PretrainingPars": {**TINY_OVERRIDES["PretrainingPars"], "stage1_acc_threshold": 1.0},
                 "TrainingPars": {**TINY_OVERRIDES["TrainingPars"], "SGD_steps": 3},
                 "TrainedSSNPars": {"opt_readout_before_training": True},
                 "ReadoutPars": {"readout_contributions": [0.0, 1.0]}}  # fmt: skip
    conf = tmp_path / "conf_midonly_readout"
    conf.mkdir()
    write_parameters_copy(conf / "parameters_conf_midonly_readout.py", overrides, preset="figure")
    assert main_training.run_training_job(conf, 0, base_seed=5, progress=False)
    assemble_training(conf, 1)
    rows = read_results_csv(conf / "training_results.csv")
    assert list(rows.columns) == training_columns()
    assert rows["stage"].tolist() == [1, 1, 1, 2, 2, 2] and rows["SGD_steps"].tolist() == [0, 1, 2, 0, 1, 2]
    pre = read_results_csv(tmp_path / "pretraining_results.csv").iloc[-1]
    for column in ("J_EE_m", "J_II_s", "cE_s", "cI_s", "f_E"):  # stage 1 leaves the SSN as stage 0 ended
        assert (rows.loc[rows["stage"] == 1, column] == pre[column]).all()
        assert rows.loc[rows["stage"] == 2, column].iloc[0] == pre[column]
    assert rows.loc[rows["stage"] == 1, "staircase_offset"].isna().all()
    assert rows.loc[rows["stage"] == 2, "staircase_offset"].iloc[0] == 7.5
    assert (rows.loc[rows["stage"] == 1, "kappa_Jsup_EE_pre"] == 0).all()
    val = read_results_csv(conf / "training_results_val.csv")
    assert val["stage"].tolist() == [1, 2, 2] and val["SGD_steps"].tolist() == [0, 0, 2]

