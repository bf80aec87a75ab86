"""Training: loss terms by hand, initialisation conditions, a tiny end-to-end study, reproducibility and the
round trip of a stage's final state through the CSV files."""

from __future__ import annotations

import filecmp

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from parameters import ALL_TRAINABLE, RandomizePars, build_parameters
from store.assembly import assemble_training, pretraining_job_status
from store.schema import (
    INIT_READOUT_COLUMNS,
    INITIAL_PARAMETERS_COLUMNS,
    pretraining_columns,
    ssn_state_from_row,
    training_columns,
    val_columns,
)
from store.tables import read_results_csv
from tests.conftest import TINY_OVERRIDES, golden_log_params, golden_path, write_parameters_file
from training import main_pretraining, main_training, run_state, stages
from training.initialisation import InitialisationError, draw_middle, find_parameters
from training.loss import (
    LossConstants,
    default_loss_constants,
    stage0_loss_constants,
    stage1_loss_constants,
    stage2_loss_constants,
    trial_losses,
)
from training.model import build_static, zero_kappas
from training.readout import Readout
from training.stages import pretraining_stage
from training.training_functions import RunSetup, StageFailedError, StageState, train_ori_discr
from training.util_gabor import make_uniform_orimap, readout_indices

SUBSET = ["J_EE_s", "J_IE_s", "kappa_Jsup", "f_E"]


# ------------------------------------------------------------------------------------------------ loss
def test_loss_terms_by_hand(params):
    stats = {"maxE_mid": jnp.float32(50.0), "maxI_mid": jnp.float32(60.0), "maxE_sup": jnp.float32(30.0),
             "maxI_sup": jnp.float32(100.0), "meanE_mid": jnp.float32(20.0), "meanI_mid": jnp.float32(50.0),
             "meanE_sup": jnp.float32(30.0), "meanI_sup": jnp.float32(40.0)}  # fmt: skip
    w, b = jnp.array([0.5, -1.0]), jnp.float32(0.3)
    terms = trial_losses(jnp.float32(0.8), jnp.int32(1), stats, jnp.array([0.0, 2.0, 0.0, 0.0]), w, b, params.loss,
                         default_loss_constants(params.loss))  # fmt: skip
    expected = {
        "bce": -np.log(0.8),
        "dx": 4.0 / 4,
        "rmax": (50 / 40 - 1) + 0 + 0 + (100 / 80 - 1),
        "rmean": 0.01 * ((20 / 25 - 1) ** 2 + 0 + (30 / 25 - 1) ** 2 + (40 / 50 - 1) ** 2),
        "w": 1.25,
        "b": 0.09,
    }
    expected["total"] = sum(expected.values())
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-5), name
    stage2 = LossConstants(jnp.float32(0.25), jnp.array([20.0, 30.0]), jnp.array([50.0, 40.0]))
    terms = trial_losses(jnp.float32(0.2), jnp.int32(0), stats, jnp.zeros(4), w, b, params.loss, stage2)
    assert float(terms["rmean"]) == pytest.approx(0.0, abs=1e-7)
    assert float(terms["bce"]) == pytest.approx(-np.log(0.8), rel=1e-5)


STATS = {"maxE_mid": 10.0, "maxI_mid": 10.0, "maxE_sup": 10.0, "maxI_sup": 10.0, "meanE_mid": 20.0,
         "meanI_mid": 40.0, "meanE_sup": 30.0, "meanI_sup": 60.0}  # fmt: skip
LAST_STAGE0_ROW = {"meanr_E_mid": 20.0, "meanr_E_sup": 30.0, "meanr_I_mid": 40.0, "meanr_I_sup": 60.0, "acc": 0.7}


def _terms(constants: LossConstants, loss) -> dict:
    stats = {k: jnp.float32(v) for k, v in STATS.items()}
    w, b = jnp.array([0.5, -1.0]), jnp.float32(0.3)
    terms = trial_losses(jnp.float32(0.8), jnp.int32(1), stats, jnp.zeros(4), w, b, loss, constants)
    return {k: float(v) for k, v in terms.items()}


def test_final_weights_the_stage0_cross_entropy_by_one_half():
    final = build_parameters(preset="final").loss
    stage0, plain = _terms(stage0_loss_constants(final), final), _terms(default_loss_constants(final), final)
    assert stage0["bce"] == pytest.approx(0.5 * -np.log(0.8), rel=1e-6)  # the logged BCE is the weighted one
    assert stage0["total"] == pytest.approx(plain["total"] - 0.5 * plain["bce"], rel=1e-6)
    # so the shuffled-label stop compares 0.5·BCE with 0.95·total, both from these terms
    assert {k: v for k, v in stage0.items() if k not in ("bce", "total")} == {
        k: v for k, v in plain.items() if k not in ("bce", "total")}
    # weight 1 in stages 1 and 2
    assert _terms(stage1_loss_constants(final, LAST_STAGE0_ROW), final)["bce"] == plain["bce"]
    assert _terms(stage2_loss_constants(final, LAST_STAGE0_ROW), final)["bce"] == plain["bce"]
    reference = build_parameters().loss
    assert _terms(stage0_loss_constants(reference), reference) == _terms(default_loss_constants(reference), reference)


def test_final_stage1_mean_rate_term_uses_the_last_stage0_rates():
    final = build_parameters(preset="final").loss
    constants = stage1_loss_constants(final, LAST_STAGE0_ROW)
    assert float(constants.lambda_r_mean) == 0.25
    assert np.asarray(constants.Rmean_E).tolist() == [20.0, 30.0]
    assert np.asarray(constants.Rmean_I).tolist() == [40.0, 60.0]
    assert _terms(constants, final)["rmean"] == 0.0  # the row's own rates meet their targets
    reference = build_parameters().loss
    fixed = stage1_loss_constants(reference, LAST_STAGE0_ROW)  # 'fixed': 0.01 and 25/50, as in stage 0
    for mine, default in zip(fixed, default_loss_constants(reference), strict=True):
        assert np.array_equal(np.asarray(mine), np.asarray(default))
    one_switch = build_parameters({"LossPars": {"stage1_rate_targets": "last_stage0"}}).loss
    assert float(stage1_loss_constants(one_switch, LAST_STAGE0_ROW).lambda_r_mean) == np.float32(0.01)


# -------------------------------------------------------------------------------------- failed attempts
@pytest.mark.parametrize("reseed, attempts", [(True, 3), (False, 1)])
def test_a_failed_attempt_is_retried_only_with_failure_reseed(tmp_path, monkeypatch, reseed, attempts):
    calls = []

    def failing(params, base_seed, run_index, attempt, progress=True):
        calls.append(attempt)
        raise StageFailedError(f"run {run_index}: NaN loss in stage 0 at step 3")

    monkeypatch.setattr(main_pretraining, "pretrain_run", failing)
    params = build_parameters({"TrainingPars": {"failure_reseed": reseed, "max_failed_runs": 2}})
    assert not main_pretraining.run_pretraining_job(tmp_path, params, base_seed=0, run_index=4, progress=False)
    assert calls == list(range(attempts))
    marker = pretraining_job_status(tmp_path, 4)
    assert marker["success"] is False and len(marker["failures"]) == attempts
    assert "NaN loss" in marker["failures"][0]


def test_figure_preset_drops_a_failed_run_and_goes_on(tmp_path, monkeypatch):
    """A failed run (one attempt, no retry) is recorded as failed; the next run still runs."""
    calls = []

    def second_fails(params, base_seed, run_index, attempt, progress=True):
        calls.append((run_index, attempt))
        if run_index == 1:
            raise InitialisationError("no acceptable superficial layer")
        return {}

    monkeypatch.setattr(main_pretraining, "pretrain_run", second_fails)
    params = build_parameters(preset="figure")
    main_pretraining.run_pending_jobs(tmp_path, params, base_seed=0, runs=range(3), progress=False)
    assert calls == [(0, 0), (1, 0), (2, 0)]
    assert [pretraining_job_status(tmp_path, r)["success"] for r in range(3)] == [True, False, True]


# -------------------------------------------------------------------------------------- initialisation
def test_middle_draws_satisfy_the_inequalities(params):
    rng = np.random.default_rng(0)
    for _ in range(50):
        (EE, EI, IE, II), gE, gI = draw_middle(rng, params.randomize)
        assert 1.1 * EE * II < EI * IE and 1.1 * EI * gI < II * gE
        assert 4 <= EE <= 5.5 and 0.7 <= EI <= 2 and 0.15 <= gE <= 0.45


def test_exhausted_inequality_retries_raise_a_clear_error():
    impossible = RandomizePars(J_EE=(5.4, 5.5), J_II=(1.1, 1.2), J_EI=(0.7, 0.71), J_IE=(4.0, 4.01))
    with pytest.raises(InitialisationError, match="inequalities"):
        draw_middle(np.random.default_rng(0), impossible)


def test_exhausted_response_retries_raise_a_clear_error(params):
    strict = build_parameters({"RandomizePars": {"rate_max_range": [500.0, 600.0], "max_middle_resamples": 3}})
    orimap = make_uniform_orimap(strict.grid, np.random.default_rng(1))
    with pytest.raises(InitialisationError, match="resamplings"):
        find_parameters(strict, np.random.default_rng(2), jax.random.PRNGKey(0), orimap)


# -------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Pretraining of 2 runs and stage 2 of two configurations (all parameters; a subset, mixed readout)."""
    root = tmp_path_factory.mktemp("study")
    params = build_parameters(TINY_OVERRIDES)
    write_parameters_file(root / "parameters.py", TINY_OVERRIDES)
    retained = main_pretraining.main_pretraining(root, params, base_seed=7, num_runs=2, progress=False)
    confs = {"conf_all": {}, "conf_subset": {"TrainedSSNPars": {"trained": SUBSET,
                                                                "opt_readout_before_training": True},
                                             "ReadoutPars": {"readout_contributions": [0.5, 0.5]}}}  # fmt: skip
    for name, extra in confs.items():
        write_parameters_file(root / name / f"parameters_{name}.py", {**TINY_OVERRIDES, **extra})
        for run in range(retained):
            assert main_training.run_training_job(root / name, run, base_seed=7, progress=False)
        assemble_training(root / name, retained)
    return root, params, retained


def assert_finite_columns(df, columns):
    assert list(df.columns[: len(columns)]) == list(columns)
    values = df[columns].to_numpy(dtype=float)
    assert not np.any(np.isinf(values))


def test_pretraining_files_have_documented_columns_and_sane_values(study):
    root, params, retained = study
    assert retained == 2
    results = read_results_csv(root / "pretraining_results.csv")
    assert_finite_columns(results, pretraining_columns(81))
    steps = ["acc", "loss_all", "maxr_E_mid", "meanr_I_sup", "J_EE_m", "J_EI_s", "f_E", "cE_m"]
    assert np.isfinite(results[steps].to_numpy()).all()
    assert set(results["stage"]) == {0, 1} and sorted(results["run_index"].unique()) == [0, 1]
    assert (results["J_EI_m"] < 0).all() and (results["J_EE_m"] > 0).all()
    assert np.allclose(results["cE_s"], results["cE_m"])
    assert results["acc"].between(0, 1).all()
    probe_rows = results[results["SGD_steps"] % 2 == 0]
    assert probe_rows["psychometric_offset"].notna().all()
    stage1 = results[results["stage"] == 1]
    assert stage1["w_sig_0"].isna().all() and stage1["w_sig_40"].notna().all()
    val = read_results_csv(root / "pretraining_results_val.csv")
    assert list(val.columns[:-1]) == val_columns(pretraining_columns(81), params.training.test_offsets)
    assert val["acc_mean_offset_20"].between(0, 1).all()
    orimap = read_results_csv(root / "orimap.csv")
    assert orimap.shape == (2, 83) and orimap.iloc[:, 1:82].stack().between(0, 180).all()
    initial = read_results_csv(root / "initial_parameters.csv")
    assert list(initial.columns[:-1]) == list(INITIAL_PARAMETERS_COLUMNS)
    first = initial[initial["stage"] == 0]
    J = {k: first[k].abs() for k in ("J_EE_m", "J_EI_m", "J_IE_m", "J_II_m")}
    assert (1.1 * J["J_EE_m"] * J["J_II_m"] < J["J_EI_m"] * J["J_IE_m"]).all()
    assert (1.1 * J["J_EI_m"] * first["gI"] < J["J_II_m"] * first["gE"]).all()
    assert first["eta"].between(3e-3, 5e-3).all()
    readouts = read_results_csv(root / "init_readout_params.csv")
    assert list(readouts.columns[:-1]) == list(INIT_READOUT_COLUMNS) and len(readouts) == 2 * 5
    assert (root / "excluded_runs_from_pretraining.csv").exists()


def test_stage2_files_for_all_and_subset_configurations(study):
    root, params, retained = study
    for name in ("conf_all", "conf_subset"):
        results = read_results_csv(root / name / "training_results.csv")
        assert list(results.columns) == training_columns()
        assert sorted(results["run_index"].unique()) == list(range(retained))
        assert np.isfinite(results[["acc", "loss_all", "staircase_offset", "kappa_Jsup_EE_pre"]].to_numpy()).all()
        assert results["staircase_offset"].between(0.1, 10.0).all()
        val = read_results_csv(root / name / "training_results_val.csv")
        # probes at step 0 (every 10th step) and at the last step 3, so a post-training threshold exists
        assert val.groupby("run_index")["SGD_steps"].apply(list).tolist() == [[0, 3]] * retained
        last = results.groupby("run_index").tail(1)
        assert last["psychometric_offset"].notna().all()
    subset = read_results_csv(root / "conf_subset" / "training_results.csv")
    for _, rows in subset.groupby("run_index"):
        assert rows["J_EE_m"].nunique() == 1 and rows["kappa_Jmid_EE"].eq(0).all()  # untrained stay fixed
        assert rows["J_EE_s"].nunique() > 1 and rows["kappa_Jsup_EE_pre"].nunique() > 1  # trained move
    all_trained = read_results_csv(root / "conf_all" / "training_results.csv")
    assert all_trained.groupby("run_index")["kappa_Jmid_EE"].nunique().gt(1).all()
    assert set(ALL_TRAINABLE) >= set(SUBSET)


def test_stage2_starts_from_the_last_stage1_row(study):
    root, params, _ = study
    pre = read_results_csv(root / "pretraining_results.csv")
    train = read_results_csv(root / "conf_all" / "training_results.csv")
    for run in (0, 1):
        last = pre[(pre["run_index"] == run) & (pre["stage"] == 1)].iloc[-1]
        first = train[train["run_index"] == run].iloc[0]
        for column in ("J_EE_m", "J_II_s", "cE_m", "f_I", "log_J_IE_s"):
            assert first[column] == last[column]


def test_figure_pretraining_is_stage0_alone_with_its_flip_rule(tmp_path, monkeypatch):
    """Under the `figure` preset (its model and its pretraining switches, at the test preset's sizes): stage 0
    only, no exclusion, uncoupled superficial baselines, and the stage-2 start readable from the last stage-0
    row. The flip condition is forced at the first test, to follow a flip through the loop."""
    seen = []

    def first_test_flips(val_acc, probe_mean_accs):
        seen.append(val_acc)
        return len(seen) == 1

    monkeypatch.setattr(stages, "figure_flip_applies", first_test_flips)
    tiny = {k: v for k, v in TINY_OVERRIDES["PretrainingPars"].items() if k != "run_threshold_range"}
    params = build_parameters({"PretrainingPars": tiny, "TrainingPars": TINY_OVERRIDES["TrainingPars"]},
                              preset="figure")  # fmt: skip
    assert params.ssn.sup_I_kernel == "reuse_E" and params.randomize.draw_c_s
    assert params.pretraining.stage1_placement == "training" and params.pretraining.flip_rule == "figure"
    assert not params.pretraining.exclude_runs and params.pretraining.stage0_plateau
    assert main_pretraining.main_pretraining(tmp_path, params, base_seed=5, num_runs=1, progress=False) == 1
    rows = read_results_csv(tmp_path / "pretraining_results.csv")
    assert rows["stage"].tolist() == [0] * params.pretraining.SGD_steps  # no stage 1 inside pretraining
    assert rows["cE_s"][0] != rows["cE_m"][0]  # the figure model's own superficial baselines
    central = readout_indices(9, 5)
    w = rows[[f"w_sig_{i}" for i in range(81)]].to_numpy()
    # the flip at step 0: central weights and bias negated, the rest and the SSN unchanged (no update)
    assert np.array_equal(w[1, central], -w[0, central]) and rows["b_sig"][1] == -rows["b_sig"][0]
    assert np.array_equal(np.delete(w[1], central), np.delete(w[0], central))
    assert rows["J_EE_m"][1] == rows["J_EE_m"][0] and rows["J_EE_m"][2] != rows["J_EE_m"][1]
    assert seen[0] == rows["val_acc"][0] and seen[1] == pytest.approx(1 - rows["val_acc"][0])  # v := 1 - v
    assert len(seen) == params.pretraining.SGD_steps  # tested at every step (none stopped the stage)
    last = rows.iloc[-1]
    readouts = read_results_csv(tmp_path / "init_readout_params.csv")
    assert len(readouts) == 1 and readouts[["log_regr", "layer", "sup_only"]].iloc[0].tolist() == [0, 1, 1]
    last_central = last[[f"w_sig_{i}" for i in central]].tolist()
    assert readouts[[f"w_sig_{i}" for i in range(25)]].iloc[0].tolist() == last_central
    assert readouts["b_sig"][0] == last["b_sig"]
    threshold = rows["psychometric_offset"].dropna().iloc[-1]
    assert readouts["psychometric_offset"][0] == threshold
    initial = read_results_csv(tmp_path / "initial_parameters.csv")
    assert initial["stage"].tolist() == [0, 1] and initial["J_II_s"][1] == last["J_II_s"]
    start = run_state.read_stage2_start(tmp_path, 0, params)  # what stage 2 reads: the last stage-0 row
    assert np.asarray(start.readout.w).tolist() == last_central
    assert start.threshold == threshold and start.mean_rates["meanr_E_sup"] == last["meanr_E_sup"]


def test_same_run_twice_gives_identical_files(study, tmp_path):
    root, params, _ = study
    assert main_pretraining.run_pretraining_job(tmp_path, params, base_seed=7, run_index=1, progress=False)
    again = main_pretraining.run_folder(tmp_path, 1)
    first = main_pretraining.run_folder(root, 1)
    for name in main_pretraining.PIECES:
        assert filecmp.cmp(again / name, first / name, shallow=False), name


def test_stage_state_round_trips_through_the_csv(params, tmp_path):
    with np.load(golden_path(2)) as data:
        golden = {k: data[k] for k in data.files}
    tiny = build_parameters(TINY_OVERRIDES)
    static = build_static(golden["orimap"], float(golden["gE"]), float(golden["gI"]), tiny)
    log_params = {k: v for k, v in golden_log_params(golden).items() if not k.startswith("kappa")}
    setup = RunSetup(tiny, static, 0, 4e-3, jax.random.PRNGKey(1), jax.random.PRNGKey(2), progress=False)
    state = StageState(trained=log_params, untrained=zero_kappas(), readout=Readout(jnp.zeros(81), jnp.float32(0.1)))
    result = train_ori_discr(pretraining_stage(tiny), state, setup)
    path = tmp_path / "rows.csv"
    pd.DataFrame(result.rows).reindex(columns=pretraining_columns(81)).to_csv(path, index=False)
    last = read_results_csv(path).iloc[-1]
    reloaded = ssn_state_from_row(last)
    for key, value in reloaded.items():
        assert np.float32(value) == np.float32(result.final.trained[key]), key
    w = last[[f"w_sig_{i}" for i in range(81)]].to_numpy(np.float64).astype(np.float32)
    assert np.array_equal(w, np.asarray(result.final.readout.w))
    assert np.float32(last["b_sig"]) == np.float32(result.final.readout.b)
    assert not np.array_equal(np.asarray(result.final.readout.w), np.zeros(81))  # the readout did train
