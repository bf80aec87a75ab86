"""Tuning curves, MVPA responses and the analysis pipeline (analysis/tuning_curves.py, mvpa_responses.py,
main_analysis.py; ANALYSIS.md §1-§9).

The end-to-end analysis of a tiny real study (real pretraining and training) is marked slow; the default run
analyses a synthetic study written with the results_io column builders.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import urllib.parse
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from analysis import main_analysis as ma
from analysis.build_figures import COLOR_BY
from analysis.cells import CellLayout, cell_names
from analysis.mvpa_responses import MvpaSettings, mvpa_scores_for_run, run_mvpa_responses
from analysis.snapshots import Snapshot, SnapshotLoader
from analysis.study_inputs import order_configurations
from analysis.tuning_curve_files import read_tuning_curves_csv
from analysis.tuning_curves import snapshot_tuning_curves
from analysis.tuning_features import TC_ORIENTATIONS, feature_names
from parameters import Parameters, build_parameters
from store.exclusion import read_excluded_runs
from store.files import atomic_write_csv
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
from training.model import base_projection, build_layers, build_static, evaluate_model_response_batch
from training.util_gabor import grating_images, grid_positions_deg, image_geometry, make_uniform_orimap

LAYOUT = CellLayout.from_parameters(Parameters())
"""The cell layout of the default parameters (9x9 grid, 4 phases: 810 cells)."""

CONF = "conf_baseline"
FAST = {"ConvPars": {"Tmax": 100.0}}
ORIS = TC_ORIENTATIONS


# ------------------------------------------------------------------------------------------------------
# Snapshots built directly (no files)
# ------------------------------------------------------------------------------------------------------
BASE_J = {"m": {"EE": 4.3, "EI": 1.5, "IE": 4.2, "II": 1.1}, "s": {"EE": 4.5, "EI": 1.3, "IE": 5.5, "II": 1.0}}
"""|J| of a stable network (values of a pretrained run); runs jitter them by a few percent."""
GAINS = (0.39, 0.22)


def model_log_params(rng: np.random.Generator, kappa_scale: float = 0.0) -> dict[str, np.ndarray]:
    """Float32 log-parameters of a stable network (J, c, f jittered by up to 5%), kappas of the given size."""

    def jitter(value: float) -> float:
        return value * rng.uniform(0.95, 1.05)

    lp = {f"log_J_{p}_{layer}": np.log(jitter(BASE_J[layer][p])) for layer in ("m", "s") for p in PAIRS}
    lp.update(cE_m=jitter(5.4), cI_m=jitter(4.6), log_f_E=np.log(jitter(0.75)), log_f_I=np.log(jitter(0.75)))
    for name, shape in (("kappa_Jsup", (2, 2, 2)), ("kappa_Jmid", (2, 2)), ("kappa_f", (2,))):
        lp[name] = kappa_scale * rng.uniform(-1.0, 1.0, shape)
    return {k: np.asarray(v, dtype=np.float32) for k, v in lp.items()}


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    rng = np.random.default_rng(4)
    # The corrected kappa_f form: with the reference's exp(tanh(kappa_f) d) for I cells, kappas of 0.2 drive the
    # superficial layer to thousands of Hz without a fixed point, and unconverged rates are not comparable.
    params = build_parameters(FAST, preset="corrected")
    static = build_static(make_uniform_orimap(params.grid, rng), *GAINS, params)
    return Snapshot(model_log_params(rng, kappa_scale=0.2), static, params, run_index=3, stage=2, conf=CONF)


@pytest.fixture(scope="module")
def curves(snapshot) -> np.ndarray:
    return snapshot_tuning_curves(snapshot, ORIS)


def direct_rates(snapshot: Snapshot, g: int, ori: float, phase_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-model rates (mid (4, 2, 81), sup (162,)) to one full-field grating centred at grid point g."""
    params = snapshot.params
    x_deg, y_deg = grid_positions_deg(params.grid)
    geometry = image_geometry(params.grid, params.stimuli, full_field=True)
    image = grating_images(jnp.asarray([ori], jnp.float32), 0.0, geometry, params.stimuli,
                           phase=phase_index * math.pi / 2, centre=(x_deg[g], y_deg[g]))  # fmt: skip
    layers = build_layers({k: jnp.asarray(v) for k, v in snapshot.log_params.items()}, snapshot.static, params)
    resp = evaluate_model_response_batch(layers, base_projection(image, snapshot.static), params)
    return np.asarray(resp.r_mid[0]), np.asarray(resp.r_sup[0])


def test_tuning_curves_shape_and_cell_order_match_direct_simulation(snapshot, curves) -> None:
    assert curves.shape == (len(ORIS), LAYOUT.n_cells) and np.isfinite(curves).all()
    for g, o, p in ((40, 11, 0), (10, 3, 1), (70, 50, 2), (5, 71, 3), (80, 36, 0)):
        mid, sup = direct_rates(snapshot, g, ORIS[o], p)
        for t in (0, 1):
            np.testing.assert_allclose(curves[o, 162 * p + 81 * t + g], mid[p, t, g], rtol=1e-4)
            if p == 0:
                np.testing.assert_allclose(curves[o, 648 + 81 * t + g], sup[81 * t + g], rtol=1e-4)


def test_tuning_curves_have_the_grating_symmetries(curves) -> None:
    # phases π and 3π/2 are sign-flipped filters seeing contrast-reversed gratings: the same curves as 0, π/2
    np.testing.assert_allclose(curves[:, 324:486], curves[:, 0:162], rtol=2e-2, atol=0.05)
    np.testing.assert_allclose(curves[:, 486:648], curves[:, 162:324], rtol=2e-2, atol=0.05)
    # phase-0 gratings repeat after 180 deg; phase-π/2 ones are contrast-reversed, so those cells differ
    np.testing.assert_allclose(curves[36:, :162], curves[:36, :162], rtol=2e-2, atol=0.05)
    np.testing.assert_allclose(curves[36:, 648:], curves[:36, 648:], rtol=2e-2, atol=0.05)
    assert np.max(np.abs(curves[36:, 162:324] - curves[:36, 162:324])) > 1.0


def test_mvpa_responses_shapes_and_reproducibility(snapshot) -> None:
    snaps = [dataclasses.replace(snapshot, stage=s) for s in (1, 2)]
    r_mid, r_sup = run_mvpa_responses(snaps, 6, seed=5)
    assert r_mid.shape == (2, 3, 6, LAYOUT.n_mid) and r_sup.shape == (2, 3, 6, LAYOUT.n_sup)
    again = run_mvpa_responses(snaps, 6, seed=5, chunk_size=4)
    np.testing.assert_array_equal(again[0], r_mid)
    np.testing.assert_allclose(again[1], r_sup, rtol=1e-4)
    other = run_mvpa_responses(snaps, 6, seed=6)
    assert not np.allclose(other[0], r_mid)
    assert not np.allclose(r_mid[0, 0], r_mid[0, 2])  # 55 vs 0 deg
    assert not np.allclose(r_mid[0, 0], r_mid[1, 0])  # stages draw their own noise


def test_mvpa_scores_are_reproducible_with_the_same_seed(snapshot) -> None:
    snaps = [dataclasses.replace(snapshot, stage=s) for s in (0, 1, 2)]
    first = mvpa_scores_for_run(snaps, MvpaSettings(trials=24, seed=1))
    second = mvpa_scores_for_run(snaps, MvpaSettings(trials=24, seed=1))
    assert first.mvpa.shape == first.mahal.shape == (2, 3, 2)
    np.testing.assert_array_equal(first.mvpa, second.mvpa)
    np.testing.assert_array_equal(first.mahal, second.mahal)
    assert np.all((first.mvpa >= 0) & (first.mvpa <= 1)) and np.all(first.mahal > 0)


def test_configurations_share_the_responses_of_stages_0_and_1(snapshot) -> None:
    snaps = [dataclasses.replace(snapshot, stage=s, conf=None if s < 2 else "conf") for s in (0, 1, 2)]
    settings = MvpaSettings(trials=24, seed=1, n_splits=2)
    plain = mvpa_scores_for_run(snaps, settings)
    cache: dict = {}
    cached = mvpa_scores_for_run(snaps, settings, cache)
    assert sorted(cache) == [(1, snapshot.run_index, 0, 24), (1, snapshot.run_index, 1, 24)]  # not stage 2
    again = mvpa_scores_for_run(snaps, settings, cache)
    for result in (cached, again):
        np.testing.assert_array_equal(result.mvpa, plain.mvpa)
        np.testing.assert_array_equal(result.mahal, plain.mahal)
    key = (1, snapshot.run_index, 0, 24)
    cache[key] = (cache[key][0] * 0.5, cache[key][1] * 0.5)  # a changed entry changes the scores: it is used
    assert not np.array_equal(mvpa_scores_for_run(snaps, settings, cache).mahal, plain.mahal)


# ------------------------------------------------------------------------------------------------------
# Settings and command line
# ------------------------------------------------------------------------------------------------------
def test_settings_are_validated() -> None:
    assert len(ma.AnalysisSettings().tc_orientations) == 72
    with pytest.raises(ValueError, match="mvpa-trials"):
        ma.AnalysisSettings(mvpa=MvpaSettings(trials=10))
    with pytest.raises(ValueError, match="tc_ori_step"):
        ma.AnalysisSettings(tc_ori_step=7.0)


def test_command_line(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        ma.parse_args(["--help"])
    assert done.value.code == 0
    assert "--mvpa-trials" in capsys.readouterr().out
    args = ma.parse_args(["R", "--configs", "conf_a", "--parts", "mvpa", "stats", "--mvpa-trials", "30", "--quick"])
    assert args.configs == ["conf_a"] and args.parts == ["mvpa", "stats"]
    settings = ma.settings_from_args(args)
    assert settings.mvpa.trials == 30 and settings.mw_step == ma.QUICK_SETTINGS.mw_step
    with pytest.raises(SystemExit):
        ma.parse_args(["R", "--parts", "nonsense"])


def test_configuration_order() -> None:
    assert order_configurations(["conf_x", "conf_baseline", "conf_x"]) == ["conf_baseline", "conf_x"]


# ------------------------------------------------------------------------------------------------------
# A synthetic study: 3 runs, run 2 stuck at the offset ceiling (excluded), files from the column builders
# ------------------------------------------------------------------------------------------------------
def metric_columns(rng: np.random.Generator) -> dict[str, float]:
    """Random step metrics (accuracy, losses, rates)."""
    row = {"acc": rng.uniform(0.5, 0.9), "loss_binary_cross_entr": rng.uniform(0.3, 0.7), "loss_all": 0.8}
    for stat, scale in (("max", 40.0), ("mean", 10.0)):
        row.update({f"{stat}r_{t}_{layer}": scale * rng.uniform(0.8, 1.2) for t in "EI" for layer in ("mid", "sup")})
    return row


def synthetic_rows(rng: np.random.Generator, run: int, stage: int, n: int, lp: dict, stuck: bool) -> list[dict]:
    """n rows of a stage with slowly drifting parameters (kappas grow in stage 2)."""
    rows = []
    for step in range(n):
        cur = {k: (v + 0.002 * step * rng.standard_normal(v.shape)).astype(np.float32) for k, v in lp.items()}
        row = {"run_index": run, "stage": stage, "SGD_steps": step, **metric_columns(rng), **ssn_columns(cur)}
        if step % 2 == 0:
            row["psychometric_offset"] = 15.0 if stuck else rng.uniform(4.0, 9.0)
        if stage == 2:
            kappas = {k: 0.05 * step * rng.standard_normal(np.shape(cur[k])) for k in ("kappa_Jsup", "kappa_Jmid")}
            row.update(kappa_columns(kappas["kappa_Jsup"], kappas["kappa_Jmid"], 0.02 * step * np.ones(2)))
            row["staircase_offset"] = 10.0 if stuck else 8.0 - 0.3 * step
        rows.append(row)
    return rows


def write_study(root: Path, seed: int = 0) -> None:
    """Root files, and one configuration whose run 2 is stuck at the staircase ceiling."""
    rng = np.random.default_rng(seed)
    params = build_parameters(FAST)
    write_parameters_file(root / "parameters.py", FAST)
    write_parameters_file(root / CONF / f"parameters_{CONF}.py", FAST)
    pre, train, init, maps = [], [], [], []
    for run in range(3):
        lp = model_log_params(rng)
        pre += synthetic_rows(rng, run, 0, 6, lp, False) + synthetic_rows(rng, run, 1, 4, lp, False)
        train += synthetic_rows(rng, run, 2, 12, lp, stuck=run == 2)
        maps.append({"run_index": run, **dict(enumerate(make_uniform_orimap(params.grid, rng)))})
        gains = {"gE": GAINS[0] - 0.02 * run, "gI": GAINS[1]}
        init += [{"run_index": run, "stage": s, **gains, "eta": 4e-3} for s in (0, 1)]
    atomic_write_csv(pd.DataFrame(pre).reindex(columns=pretraining_columns()), root / "pretraining_results.csv")
    atomic_write_csv(pd.DataFrame(train).reindex(columns=training_columns()), root / CONF / "training_results.csv")
    maps_df = pd.DataFrame(maps).rename(columns=str).reindex(columns=orimap_columns())
    atomic_write_csv(maps_df, root / "orimap.csv")
    atomic_write_csv(
        pd.DataFrame(init).reindex(columns=list(INITIAL_PARAMETERS_COLUMNS)), root / "initial_parameters.csv"
    )


COMPUTE_PARTS = ("exclusion", "tuning_curves", "features", "changes", "mvpa", "stats")
SMALL = ma.AnalysisSettings(mvpa=MvpaSettings(trials=24), mw_step=2.0, per_run_figures=False)


def snapshot_of_files(root: Path) -> dict[str, int]:
    """Modification times of every file of a folder."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_study(root)
    ma.run_analysis(root, [CONF], parts=COMPUTE_PARTS, settings=SMALL)
    return root


def test_tables_a_kept_study_leaves_out_are_computed_again_identically(synthetic, tmp_path) -> None:
    from study.keep import LEFT_OUT_TABLES

    root = shutil.copytree(synthetic, tmp_path / "kept")
    left_out = sorted(p for p in root.rglob("*.csv") if p.name in LEFT_OUT_TABLES)
    assert sorted(p.name for p in left_out) == sorted(LEFT_OUT_TABLES)
    for path in left_out:
        path.unlink()
    ma.run_analysis(root, [CONF], parts=COMPUTE_PARTS, settings=SMALL)
    for path in sorted(synthetic.rglob("*.csv")):  # the tuning curves again, and every table built on them
        assert (root / path.relative_to(synthetic)).read_bytes() == path.read_bytes(), path.name


def test_pipeline_excludes_the_stuck_run_everywhere(synthetic) -> None:
    root = synthetic
    assert read_excluded_runs(root / CONF / "excluded_runs.csv") == [2]
    assert read_excluded_runs(root / "excluded_runs_all.csv") == [2]
    assert pd.read_csv(root / "excluded_runs_details.csv", index_col=0).index.tolist() == [CONF]
    tc = read_tuning_curves_csv(root / CONF / "tuning_curves.csv")
    assert sorted(set(tc["run_index"])) == [0, 1] and set(tc["training_stage"]) == {2}
    for name in ("MVPA_scores", "Mahal_scores", "Mahal_details", "LMI"):
        assert sorted(set(pd.read_csv(root / CONF / f"{name}.csv")["run_index"])) == [0, 1], name
    # relative changes keep every run with training rows; exclusion is applied when they are used
    assert pd.read_csv(root / CONF / "rel_changes_train.csv")["run_index"].tolist() == [0, 1, 2]


def test_pipeline_tables_have_the_documented_layout(synthetic) -> None:
    root = synthetic
    pre_tc = read_tuning_curves_csv(root / "pretraining_tuning_curves.csv")
    assert list(pre_tc.columns) == ["run_index", "training_stage", *cell_names(LAYOUT)]
    blocks = pre_tc.groupby(["run_index", "training_stage"]).size()
    assert blocks.to_dict() == {(r, s): len(ORIS) for r in range(3) for s in (0, 1)}
    loader = SnapshotLoader(root)
    direct = snapshot_tuning_curves(loader.snapshot(1, 0), ORIS)
    block = pre_tc[(pre_tc["run_index"] == 1) & (pre_tc["training_stage"] == 0)]
    np.testing.assert_allclose(block[cell_names(LAYOUT)].to_numpy(), direct, atol=6e-5)  # 4 decimals
    feats = pd.read_csv(root / "pretraining_tuning_curve_features.csv")
    assert feats.groupby(["run_index", "stage"]).size().to_dict() == {(r, s): 10 for r in range(3) for s in (0, 1)}
    assert feats["feature"].iloc[:10].tolist() == feature_names()
    conf_feats = pd.read_csv(root / CONF / "tuning_curve_features.csv")
    assert set(conf_feats["stage"]) == {2} and sorted(set(conf_feats["run_index"])) == [0, 1]
    scores = pd.read_csv(root / CONF / "MVPA_scores.csv")
    assert list(scores.columns) == ["run_index", "layer", "stage", "ori", "score", "n_components"]
    assert len(scores) == 2 * 2 * 3 * 2 and scores["score"].between(0, 1).all()
    assert sorted(pd.read_csv(root / "rel_changes_pretrain.csv")["run_index"]) == [0, 1, 2]
    assert "d_kappa_f_E" in pd.read_csv(root / CONF / "rel_changes_train.csv").columns
    for name in ("stats_paired_tests", "stats_rm_anova", "stats_param_offset_correlations", "stats_corr_triangles"):
        assert len(pd.read_csv(root / CONF / f"{name}.csv")) > 0, name
    paired = pd.read_csv(root / CONF / "stats_paired_tests.csv")
    assert set(paired["measure"]) == {"MVPA", "Mahal"} and (paired["n"] == 2).all()


def test_pipeline_recomputes_nothing_when_complete(synthetic) -> None:
    before = snapshot_of_files(synthetic)
    ma.run_analysis(synthetic, [CONF], parts=COMPUTE_PARTS, settings=SMALL)
    assert snapshot_of_files(synthetic) == before


def test_pipeline_resumes_an_interrupted_tuning_curve_file(synthetic, tmp_path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic, root)
    path = root / "pretraining_tuning_curves.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: 1 + 5 * len(ORIS) + 3]) + lines[1 + 5 * len(ORIS) + 3][:50])  # cut mid-line
    ma.run_analysis(root, [CONF], parts=("tuning_curves",), settings=SMALL)
    resumed = pd.read_csv(path)
    original = pd.read_csv(synthetic / "pretraining_tuning_curves.csv")
    pd.testing.assert_frame_equal(resumed, original)


def test_mvpa_with_other_settings_is_recomputed(synthetic, tmp_path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic, root)
    other_seed = dataclasses.replace(SMALL, mvpa=dataclasses.replace(SMALL.mvpa, seed=9))
    ma.run_analysis(root, [CONF], parts=("mvpa",), settings=other_seed)
    old = pd.read_csv(synthetic / CONF / "Mahal_scores.csv")
    new = pd.read_csv(root / CONF / "Mahal_scores.csv")
    assert old[["run_index", "layer", "stage", "ori"]].equals(new[["run_index", "layer", "stage", "ori"]])
    assert not np.allclose(old["score"], new["score"])


# ------------------------------------------------------------------------------------------------------
# End to end: a tiny real study (real pretraining and training), every part
# ------------------------------------------------------------------------------------------------------
TINY = {
    "PretrainingPars": {
        "SGD_steps": 3, "stage1_SGD_steps": 3, "batch_size": 4, "stage1_batch_size": 4, "acc_check_freq": 2,
        "min_acc_check_ind": 1, "flip_test_trials": 8, "regression_trials": 40, "post_stage1_regression_trials": 40,
        "regression_chunk": 40, "run_threshold_range": [0.0, 1e9],
    },
    "TrainingPars": {"num_runs": 2, "SGD_steps": 5, "batch_size": 4, "acc_check_freq": 2, "validation_freq": 2,
                     "validation_trials": 8, "probe_repeats": 1, "probe_trials": 8},
    "RandomizePars": {"probe_trials": 4},
}  # fmt: skip
ROOT_FILES = [
    "pretraining_tuning_curves.csv", "pretraining_tuning_curve_features.csv", "rel_changes_pretrain.csv",
    "excluded_runs_all.csv", "excluded_runs_details.csv", "report.html", "pretraining_stats_tc_slope_lowess.csv",
    "pretraining_stats_tc_slope_mann_whitney.csv",
    "pretraining_figures/boxplot_relative_changes.png", "pretraining_figures/tc_slope_pretrain_color_by_type.png",
    *(f"pretraining_figures/tc_features_pretrain_color_by_{c}.png" for c in COLOR_BY),
]  # fmt: skip
CONF_FILES = [
    "tuning_curves.csv", "tuning_curve_features.csv", "rel_changes_train.csv", "excluded_runs.csv",
    "MVPA_scores.csv", "Mahal_scores.csv", "Mahal_details.csv", "LMI.csv", "stats_paired_tests.csv",
    "stats_rm_anova.csv", "stats_param_offset_correlations.csv", "stats_corr_triangles.csv", "summary.pdf",
    "stats_param_offset_fits.csv", "corr_triangle_data.csv", "stats_corr_triangle_fits.csv",
    "stats_tc_slope_lowess.csv", "stats_tc_slope_mann_whitney.csv",
    *(f"figures/per_run/resultsfig_{r}.png" for r in (0, 1)),
    *(f"figures/{stem}{suffix}.png" for stem in ("offset_pre_post", "J_pre_post", "r_pre_post", "c_f_kappa_f",
                                                 "kappas_Jmidsup") for suffix in ("", "_train")),
    "figures/boxplot_relative_changes.png", "figures/boxplot_relative_changes_ylim.png",
    *(f"figures/corr_psychometric_{k}.png" for k in ("Jraw", "Jcombined", "f_c", "kappa_Jsup")),
    "figures/tc_fig.png", *(f"figures/tc_features_train_color_by_{c}.png" for c in COLOR_BY),
    "figures/tc_slope_train_color_by_type.png",
    *(f"figures/corr_triangle_{layer}_{ori}.png" for layer in ("mid", "sup") for ori in (55, 125)),
    "figures/combined_corr_triangles.png", "figures/MVPA_scores.png", "figures/Mahal_scores.png",
    "figures/MVPA_match_paper_fig.png",
]  # fmt: skip


@pytest.fixture(scope="module")
def real_study(tmp_path_factory) -> Path:
    from training.main_pretraining import main_pretraining
    from training.main_training import assemble_training, run_training_job

    root = tmp_path_factory.mktemp("real")
    write_parameters_file(root / "parameters.py", TINY)
    write_parameters_file(root / CONF / f"parameters_{CONF}.py", TINY)
    num_runs = main_pretraining(root, build_parameters(TINY), base_seed=0, num_runs=2, progress=False)
    assert num_runs == 2
    for run in range(num_runs):
        assert run_training_job(root / CONF, run, base_seed=0, progress=False)
    assemble_training(root / CONF, num_runs)
    ma.run_analysis(root, [CONF], settings=dataclasses.replace(SMALL, per_run_figures=True))
    return root


@pytest.mark.slow
def test_end_to_end_writes_every_documented_file(real_study) -> None:
    missing = [n for n in ROOT_FILES if not (real_study / n).is_file()]
    missing += [f"{CONF}/{n}" for n in CONF_FILES if not (real_study / CONF / n).is_file()]
    assert not missing
    assert (real_study / CONF / "summary.pdf").read_bytes().startswith(b"%PDF")
    assert read_excluded_runs(real_study / "excluded_runs_all.csv") == []
    assert not pd.read_csv(real_study / CONF / "MVPA_scores.csv")["score"].isna().any()


@pytest.mark.slow
def test_end_to_end_report_references_only_existing_files_and_every_figure(real_study) -> None:
    text = (real_study / "report.html").read_text()
    refs = {urllib.parse.unquote(r) for r in re.findall(r'(?:href|src)="([^"]+)"', text) if not r.startswith("#")}
    assert all((real_study / r).is_file() for r in refs)
    figures = {str(p.relative_to(real_study)) for p in real_study.rglob("*.png")}
    # a _train twin identical to its figure (no run excluded) is shown once, under either name
    twins = {f.replace("_train.png", ".png"): f for f in figures if f.endswith("_train.png")}
    identical = {f for pair in twins.items() if (real_study / pair[0]).read_bytes() ==
                 (real_study / pair[1]).read_bytes() for f in pair}  # fmt: skip
    assert figures and figures - identical <= refs and identical
    assert all((base in refs) != (twin in refs) for base, twin in twins.items() if base in identical)
    assert {f"{CONF}/MVPA_scores.csv", "pretraining_tuning_curves.csv", f"{CONF}/stats_rm_anova.csv"} <= refs


@pytest.mark.slow
def test_end_to_end_second_call_keeps_every_file(real_study) -> None:
    before = snapshot_of_files(real_study)
    ma.run_analysis(real_study, [CONF], settings=dataclasses.replace(SMALL, per_run_figures=True))
    after = snapshot_of_files(real_study)
    assert after == before
