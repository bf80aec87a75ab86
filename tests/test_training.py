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
from tests.conftest import TINY_OVERRIDES, golden_log_params, golden_path, write_parameters_file
from training import main_pretraining, main_training
from training.initialisation import InitialisationError, draw_middle, find_parameters
from training.loss import LossConstants, default_loss_constants, trial_losses
from training.model import build_static, zero_kappas
from training.readout import Readout
from training.results_io import (
    INIT_READOUT_COLUMNS,
    INITIAL_PARAMETERS_COLUMNS,
    pretraining_columns,
    read_results_csv,
    ssn_state_from_row,
    training_columns,
    val_columns,
)
from training.stages import pretraining_stage
from training.training_functions import RunSetup, StageState, train_ori_discr
from training.util_gabor import make_uniform_orimap

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
        main_training.assemble_training(root / name, retained)
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
