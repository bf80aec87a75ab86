"""Model reconstruction at analysis snapshots (analysis/snapshots.py, ANALYSIS.md §0.2, B1, B2, B20)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from analysis.snapshots import SnapshotLoader, load_snapshot
from parameters import Parameters, build_parameters
from store.errors import ResultsFileError
from store.files import atomic_write_csv, write_marker
from store.schema import (
    INITIAL_PARAMETERS_COLUMNS,
    PAIRS,
    kappa_columns,
    orimap_columns,
    pretraining_columns,
    ssn_columns,
    training_columns,
)
from tests.conftest import write_parameters_file
from training.model import build_static, response_to_images
from training.util_gabor import grating_images, image_geometry, make_uniform_orimap

CONF = "conf_test"
ROOT_OVERRIDES = {"ConvPars": {"Tmax": 200.0}}
CONF_OVERRIDES = {"ConvPars": {"Tmax": 200.0}, "SSNPars": {"p_local_s": [0.5, 0.6]}}
SSN_KEYS = [f"log_J_{p}_{layer}" for layer in ("m", "s") for p in PAIRS] + ["cE_m", "cI_m", "log_f_E", "log_f_I"]


def random_log_params(rng: np.random.Generator, kappas: bool) -> dict[str, np.ndarray]:
    """A log-parameter dictionary of float32 values (non-zero kappas if asked)."""
    lp = {k: np.float32(np.log(rng.uniform(0.8, 5.0))) for k in SSN_KEYS if k.startswith("log_J")}
    lp.update(cE_m=np.float32(rng.uniform(4.5, 5.5)), cI_m=np.float32(rng.uniform(4.5, 5.5)))
    lp.update(log_f_E=np.float32(np.log(rng.uniform(0.6, 1.2))), log_f_I=np.float32(np.log(rng.uniform(0.6, 1.2))))
    shapes = {"kappa_Jsup": (2, 2, 2), "kappa_Jmid": (2, 2), "kappa_f": (2,)}
    for name, shape in shapes.items():
        values = rng.uniform(-0.8, 0.8, shape) if kappas else np.zeros(shape)
        lp[name] = values.astype(np.float32)
    return lp


def step_row(run: int, stage: int, step: int, lp: dict) -> dict:
    """One results row of a run (parameter columns; the other columns stay empty)."""
    row = {"run_index": run, "stage": stage, "SGD_steps": step, "acc": 0.5, **ssn_columns(lp)}
    if stage == 2:
        row.update(kappa_columns(lp["kappa_Jsup"], lp["kappa_Jmid"], lp["kappa_f"]), staircase_offset=5.0)
    return row


def write_synthetic_study(root: Path, seed: int = 0) -> dict:
    """Results files of two runs: run 0 with stages 0, 1, 2; run 1 without stage-1 and stage-2 rows."""
    rng = np.random.default_rng(seed)
    params = build_parameters(ROOT_OVERRIDES)
    write_parameters_file(root / "parameters.py", ROOT_OVERRIDES)
    write_parameters_file(root / CONF / f"parameters_{CONF}.py", CONF_OVERRIDES)
    truth: dict = {"lp": {}, "orimap": {}, "gains": {}}
    pre_rows, train_rows, init_rows, orimap_rows = [], [], [], []
    for run, stages in ((0, (0, 1, 2)), (1, (0,))):
        orimap = make_uniform_orimap(params.grid, rng) + rng.uniform(0, 1e-6, 81)  # full-precision values
        truth["orimap"][run] = orimap
        orimap_rows.append({"run_index": run, **{str(g): orimap[g] for g in range(81)}})
        for stage in stages:
            lps = [random_log_params(rng, kappas=stage == 2) for _ in range(3)]
            rows = [step_row(run, stage, i, lp) for i, lp in enumerate(lps)]
            (train_rows if stage == 2 else pre_rows).extend(rows)
            truth["lp"][(run, stage, "first")], truth["lp"][(run, stage, "last")] = lps[0], lps[-1]
        gains = {0: (0.31, 0.22), 1: (0.31, 0.22)} if run == 0 else {0: (0.4, 0.17)}
        for stage, (gE, gI) in gains.items():
            init_rows.append({"run_index": run, "stage": stage, "gE": gE, "gI": gI, "eta": 4e-3})
        truth["gains"][run] = gains
    atomic_write_csv(pd.DataFrame(pre_rows).reindex(columns=pretraining_columns()), root / "pretraining_results.csv")
    atomic_write_csv(pd.DataFrame(train_rows).reindex(columns=training_columns()), root / CONF / "training_results.csv")
    atomic_write_csv(pd.DataFrame(orimap_rows).reindex(columns=orimap_columns()), root / "orimap.csv")
    init = pd.DataFrame(init_rows).reindex(columns=list(INITIAL_PARAMETERS_COLUMNS))
    atomic_write_csv(init, root / "initial_parameters.csv")
    return truth


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("results")
    return root, write_synthetic_study(root)


def same_parameters(a: Parameters, b: Parameters) -> bool:
    """Equal values (a loaded parameters file defines its own dataclasses, so == compares classes too)."""
    return dataclasses.asdict(a) == dataclasses.asdict(b)


def assert_same_params(loaded: dict, expected: dict) -> None:
    """Every key of expected is loaded as float32 with exactly the same value."""
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        got = np.asarray(loaded[key])
        assert got.dtype == np.float32, key
        np.testing.assert_array_equal(got, np.asarray(value, np.float32), err_msg=key)


def test_stage0_is_the_first_stage0_row_with_zero_kappas(study) -> None:
    root, truth = study
    snap = load_snapshot(root, 0, 0)
    assert_same_params(snap.log_params, truth["lp"][(0, 0, "first")])
    assert same_parameters(snap.params, build_parameters(ROOT_OVERRIDES))
    assert (snap.run_index, snap.stage, snap.conf) == (0, 0, None)


def test_stage1_is_the_last_stage1_row(study) -> None:
    root, truth = study
    assert_same_params(load_snapshot(root, 0, 1).log_params, truth["lp"][(0, 1, "last")])


def test_stage1_falls_back_to_the_last_stage0_row(study, caplog) -> None:
    root, truth = study
    with caplog.at_level(logging.WARNING, logger="analysis.snapshots"):
        snap = load_snapshot(root, 1, 1)
    assert_same_params(snap.log_params, truth["lp"][(1, 0, "last")])
    assert "no stage-1 rows" in caplog.text
    np.testing.assert_array_equal(np.asarray(snap.static.gains), np.float32(truth["gains"][1][0]))


def test_stage2_reloads_every_parameter_including_kappa_and_the_conf_parameters(study) -> None:
    root, truth = study
    snap = load_snapshot(root, 0, 2, CONF)
    expected = truth["lp"][(0, 2, "last")]
    assert_same_params(snap.log_params, expected)
    assert np.all(snap.log_params["kappa_Jsup"] != 0)
    assert same_parameters(snap.params, build_parameters(CONF_OVERRIDES))
    assert snap.params.ssn.p_local_s == (0.5, 0.6)
    assert load_snapshot(root, 0, 1).params.ssn.p_local_s != (0.5, 0.6)


def test_static_uses_the_run_orimap_and_gains(study) -> None:
    root, truth = study
    for stage in (0, 1, 2):
        snap = load_snapshot(root, 0, stage, CONF)
        np.testing.assert_array_equal(np.asarray(snap.static.orimap), truth["orimap"][0].astype(np.float32))
        expected = truth["gains"][0][min(1, stage)]
        np.testing.assert_array_equal(np.asarray(snap.static.gains), np.asarray(expected, np.float32))


def test_rebuilt_model_responses_equal_a_direct_evaluation(study) -> None:
    root, truth = study
    snap = load_snapshot(root, 0, 2, CONF)
    params = build_parameters(CONF_OVERRIDES)
    static = build_static(truth["orimap"][0], *truth["gains"][0][1], params)
    images = grating_images(
        jnp.asarray([55.0, 125.0]), 0.0, image_geometry(params.grid, params.stimuli), params.stimuli
    )
    direct_lp = {k: jnp.asarray(v) for k, v in truth["lp"][(0, 2, "last")].items()}
    direct = response_to_images(direct_lp, static, images, params)
    rebuilt = response_to_images(
        {k: jnp.asarray(v) for k, v in snap.log_params.items()}, snap.static, images, snap.params
    )
    np.testing.assert_array_equal(np.asarray(rebuilt.r_mid), np.asarray(direct.r_mid))
    np.testing.assert_array_equal(np.asarray(rebuilt.r_sup), np.asarray(direct.r_sup))
    no_kappa = {**direct_lp, **{k: jnp.zeros_like(v) for k, v in direct_lp.items() if k.startswith("kappa")}}
    without = response_to_images(no_kappa, static, images, params)
    assert not np.allclose(np.asarray(without.r_sup), np.asarray(direct.r_sup), rtol=1e-3)


def test_loader_lists_runs(study) -> None:
    root, _ = study
    loader = SnapshotLoader(root)
    assert loader.run_indices() == [0, 1]
    assert loader.training_runs(CONF) == [0]


def test_missing_run_is_named(study) -> None:
    root, _ = study
    with pytest.raises(ResultsFileError, match=r"run 7 .*pretraining_results\.csv"):
        load_snapshot(root, 7, 0)
    with pytest.raises(ResultsFileError, match=r"run 1 .*training_results\.csv"):
        load_snapshot(root, 1, 2, CONF)


def test_stage2_needs_a_configuration_and_stages_are_checked(study) -> None:
    root, _ = study
    with pytest.raises(ValueError, match="configuration"):
        load_snapshot(root, 0, 2)
    with pytest.raises(ValueError, match="stage"):
        load_snapshot(root, 0, 3)


@pytest.mark.parametrize(
    "missing",
    ["pretraining_results.csv", "orimap.csv", "initial_parameters.csv", "parameters.py",
     f"{CONF}/training_results.csv", f"{CONF}/parameters_{CONF}.py"],
)  # fmt: skip
def test_missing_files_are_named(tmp_path, missing: str) -> None:
    write_synthetic_study(tmp_path, seed=1)
    (tmp_path / missing).unlink()
    stage = 2 if missing.startswith(CONF) else 1
    with pytest.raises(ResultsFileError, match=Path(missing).name.replace(".", r"\.")):
        load_snapshot(tmp_path, 0, stage, CONF)


def test_duplicate_orimap_rows_are_an_error(tmp_path) -> None:
    write_synthetic_study(tmp_path, seed=2)
    path = tmp_path / "orimap.csv"
    df = pd.read_csv(path)
    atomic_write_csv(pd.concat([df, df.iloc[:1]]), path)
    with pytest.raises(ResultsFileError, match=r"run 0 has 2 rows"):
        load_snapshot(tmp_path, 0, 0)


def test_a_study_that_reused_a_pretraining_rebuilds_stages_0_and_1_from_it(study, tmp_path) -> None:
    """A --skip-pretraining study has only its configurations: the pretraining tables, the map, the gains and
    the stage-0/1 parameters come from the folder its PRETRAINING_DONE.json names."""
    source, truth = study
    (tmp_path / CONF).mkdir()
    for name in ("training_results.csv", f"parameters_{CONF}.py"):
        (tmp_path / CONF / name).write_bytes((source / CONF / name).read_bytes())
    write_parameters_file(tmp_path / "parameters.py", {"ConvPars": {"Tmax": 300.0}})  # not the pretraining's
    write_marker(tmp_path / "PRETRAINING_DONE.json", {"pretraining_folder": str(source), "retained_runs": 2})
    loader = SnapshotLoader(tmp_path)
    assert loader.run_indices() == [0, 1] and loader.training_runs(CONF) == [0]
    for stage in (0, 1, 2):
        mine, theirs = loader.snapshot(0, stage, CONF), load_snapshot(source, 0, stage, CONF)
        assert_same_params(mine.log_params, theirs.log_params)
        assert same_parameters(mine.params, theirs.params)
        np.testing.assert_array_equal(np.asarray(mine.static.orimap), truth["orimap"][0].astype(np.float32))
    assert same_parameters(loader.parameters(1, None), build_parameters(ROOT_OVERRIDES))
