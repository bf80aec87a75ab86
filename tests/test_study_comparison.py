"""The cross-study comparison (analysis/study_comparison.py) on two tiny synthetic studies: its tables agree
with the per-study files they come from, its training numerics and ablation contrast are computed as defined,
and its command line fails on bad input with one line and exit 2."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from analysis import main_analysis as ma
from analysis import study_comparison as sc
from analysis.study_summary import wilcoxon_paired
from store.files import atomic_write_csv, write_marker
from store.layout import StudyLayout
from tests.test_analysis_pipeline import CONF, SMALL, write_study

REPO = Path(__file__).resolve().parents[1]
OTHER = "conf_midonly_readout"


def make_study(root: Path, preset: str, seed: int) -> Path:
    """Three trained runs in two configurations (run 2 stuck), plus a fourth run excluded after pretraining
    (final threshold 2 deg); the second configuration raises J_II_s during stage 2; gradient paths and dx known."""
    write_study(root, seed=seed)
    shutil.copytree(root / CONF, root / OTHER)
    (root / OTHER / f"parameters_{CONF}.py").rename(root / OTHER / f"parameters_{OTHER}.py")
    for conf in (CONF, OTHER):
        train = pd.read_csv(root / conf / "training_results.csv")
        step = train["SGD_steps"]
        train["gradient_unrolled"] = (step < 3).astype(int)  # 3 of 12 steps per run: 25 %
        train["loss_dx_max"] = np.where(step % 2 == 0, 0.0, 0.1 * (train["run_index"] + 1))  # half the steps
        if conf == OTHER:
            train["J_II_s"] *= 1.0 + 0.02 * step
        atomic_write_csv(train, root / conf / "training_results.csv")
    pre = pd.read_csv(root / "pretraining_results.csv")
    pre["gradient_unrolled"] = np.where(pre["stage"] == 0, 1, 0)
    pre["loss_dx_max"] = 0.0
    extra = pre[pre["run_index"] == 0].copy()
    extra["run_index"] = 3
    extra.loc[extra["stage"] == 1, "psychometric_offset"] = 2.0
    atomic_write_csv(pd.concat([pre, extra], ignore_index=True), root / "pretraining_results_complete.csv")
    (root / "excluded_runs_from_pretraining.csv").write_text("3\n")
    record = {"results_format_version": "1.0", "study": {"preset": preset, "runs": 4, "base_seed": seed}}
    (root / "environment.json").write_text(json.dumps(record))
    ma.run_analysis(root, [CONF, OTHER], parts=("exclusion", "changes", "stats"), settings=SMALL)
    return root


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[list[Path], Path]:
    base = tmp_path_factory.mktemp("comparison")
    folders = [make_study(base / "ref", "reference", 0), make_study(base / "cor", "corrected", 1)]
    out = base / "out"
    sc.compare_studies(folders, out)
    return folders, out


def test_every_output_is_written(compared) -> None:
    _, out = compared
    for name in sc.OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    image = mpimg.imread(out / "comparison.png")
    assert image.shape[0] > 400 and image.shape[1] > 600
    text = (out / "comparison.md").read_text()
    for heading in ("## Runs", "## Changes over stage 2", "## Training", "## Tests"):
        assert heading in text
    assert "reference: conf_baseline" in text and "corrected: conf_midonly_readout" in text


def test_runs_table_counts_both_exclusions(compared) -> None:
    _, out = compared
    runs = pd.read_csv(out / "comparison_runs.csv")
    assert len(runs) == 4 and set(runs["study"]) == {"reference", "corrected"}
    assert (runs["runs_started"] == 4).all() and (runs["excluded_after_pretraining"] == 1).all()
    assert runs["pretraining_exclusion"].str.contains("run 3: final threshold 2 deg").all()
    assert (runs["runs_in_stage2"] == 3).all() and (runs["excluded_by_analysis"] == 1).all()
    assert runs["analysis_exclusion"].str.contains("run 2: stuck at the offset ceiling").all()
    assert (runs["runs_retained"] == 2).all()


def test_every_presets_exclusion_rule_is_applied_to_each_pretraining(compared) -> None:
    folders, out = compared
    rules = pd.read_csv(out / "exclusion_rules.csv", keep_default_na=False)
    ref = rules[rules["study"] == "reference"].set_index("original_run_index")
    assert sorted(ref.index) == [0, 1, 2, 3] and not ref["failed"].any()
    assert ref.loc[3, "final_threshold_deg"] == 2.0 and ref.loc[3, "reason_reference"] == "below 5°"
    assert ref.loc[3, "kept_final"] and ref.loc[3, "kept_figure"] and not ref.loc[3, "kept_corrected"]
    thresholds = ref["final_threshold_deg"].astype(float)
    assert (ref["kept_reference"] == thresholds.between(5.0, 25.0)).all()  # the study's own exclusion, again
    assert ref["kept_figure"].all()  # the figure version keeps every run that finished
    text = (out / "exclusion_rules.md").read_text()
    assert "### reference" in text and "| final: [0°, 25°] | 4 of 4 | – | 3 | none |" in text
    claims = pd.read_csv(out / "exclusion_rules_claim.csv").set_index(["study", "configuration", "rule"])
    own = claims.loc[("reference", "conf_baseline", "reference")]
    assert own["own_rule"] and own["not_trained"] == 0
    final = claims.loc[("reference", "conf_baseline", "final")]  # the final rule adds run 3, never trained
    assert final["kept_by_rule"] == 4 and final["not_trained"] == 1 and final["n"] == own["n"]
    assert "### The claim under each rule" in text


def test_summary_rows_are_the_studies_own(compared) -> None:
    folders, out = compared
    summary = pd.read_csv(out / "comparison_summary.csv")
    for folder, label in zip(folders, ("reference", "corrected"), strict=True):
        own = pd.read_csv(folder / "study_summary.csv")
        mine = summary[summary["study"] == label].drop(columns=["study", "preset"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, own, check_dtype=False)


def test_training_numerics_follow_their_definitions(compared) -> None:
    _, out = compared
    training = pd.read_csv(out / "comparison_training.csv")
    stage2 = training[training["stage"] == 2]
    assert len(stage2) == 4 and (stage2["n_runs"] == 3).all() and (stage2["steps_median"] == 12).all()
    np.testing.assert_allclose(stage2["unrolled_percent"], 25.0)
    np.testing.assert_allclose(stage2["dx_positive_percent"], 50.0)
    np.testing.assert_allclose(stage2["max_dx"], 0.3)  # run 2: 0.1 * 3
    np.testing.assert_allclose(stage2["median_run_max_dx"], 0.2)
    assert (stage2["runs_with_dx_positive"] == 3).all()
    pre = training[training["configuration"] == "pretraining"].set_index(["study", "stage"])
    assert (pre["n_runs"] == 4).all()  # every started run, the excluded one too
    assert pre.loc[("reference", 0), "unrolled_percent"] == 100.0
    assert pre.loc[("reference", 1), "unrolled_percent"] == 0.0
    assert (pre["dx_positive_percent"] == 0.0).all()


def test_ablation_contrast_is_the_paired_test_of_layer_differences(compared) -> None:
    folders, out = compared
    stats = pd.read_csv(out / "comparison_stats.csv")
    row = stats[(stats["study"] == "reference") & (stats["comparison"] == f"dJ_II sup-mid: {OTHER} vs {CONF}")]
    assert len(row) == 1
    changes = {}
    for conf in (CONF, OTHER):
        rc = pd.read_csv(folders[0] / conf / "rel_changes_train.csv").set_index("run_index").loc[[0, 1]]
        changes[conf] = rc["J_II_s"] - rc["J_II_m"]
    expected = wilcoxon_paired((changes[OTHER] - changes[CONF]).to_numpy())
    assert int(row["n"].iloc[0]) == expected["n"] == 2
    np.testing.assert_allclose(row["median_difference"].iloc[0], expected["median_difference"])
    assert row["median_difference"].iloc[0] > 0  # J_II_s was raised in the second configuration
    # the studies' own tests are carried over unchanged
    own = pd.read_csv(folders[0] / "study_stats.csv")
    carried = stats[(stats["study"] == "reference") & stats["comparison"].isin(own["comparison"])]
    np.testing.assert_allclose(carried["median_difference"].to_numpy(), own["median_difference"].to_numpy())


def test_a_study_that_reused_a_pretraining_is_analysed_and_compared_from_its_source(compared, tmp_path) -> None:
    """A --skip-pretraining study holds only its configurations: the analysis and the comparison read the
    pretraining (its tables, its exclusions, the runs it started) from the folder its marker names."""
    source = compared[0][0]
    reused = tmp_path / "reused"
    for conf in (CONF, OTHER):
        (reused / conf).mkdir(parents=True)
        for name in ("training_results.csv", f"parameters_{conf}.py"):
            shutil.copy(source / conf / name, reused / conf / name)
    shutil.copy(source / "parameters.py", reused / "parameters.py")
    study = {"preset": "reference", "runs": 3, "base_seed": 0, "skip_pretraining": str(source)}
    (reused / "environment.json").write_text(json.dumps({"results_format_version": "1.0", "study": study}))
    write_marker(StudyLayout(reused).pretraining_done, {"pretraining_folder": str(source), "retained_runs": 3})
    ma.run_analysis(reused, [CONF, OTHER], parts=("exclusion", "changes", "stats"), settings=SMALL)
    for name in ("study_summary.csv", "study_stats.csv", "rel_changes_pretrain.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(reused / name), pd.read_csv(source / name), check_exact=False)
    mine, theirs = sc.load_study(reused), sc.load_study(source)
    assert mine.runs_started == theirs.runs_started == 4
    assert mine.pretraining_excluded == theirs.pretraining_excluded == {3: 2.0}
    pd.testing.assert_frame_equal(mine.pretraining, theirs.pretraining)


def test_a_reusing_study_without_a_baseline_is_contrasted_with_its_sources_baseline(compared, tmp_path) -> None:
    """A --skip-pretraining study that ran only another configuration takes conf_baseline from the study whose
    pretraining it reused (the same jobs it would have run); compared without that study, it has no contrast."""
    source = compared[0][0]
    reused = tmp_path / "reused_other"
    (reused / OTHER).mkdir(parents=True)
    for name in ("training_results.csv", f"parameters_{OTHER}.py"):
        shutil.copy(source / OTHER / name, reused / OTHER / name)
    shutil.copy(source / "parameters.py", reused / "parameters.py")
    study = {"preset": "reference", "runs": 3, "base_seed": 0, "skip_pretraining": str(source)}
    (reused / "environment.json").write_text(json.dumps({"results_format_version": "1.0", "study": study}))
    write_marker(StudyLayout(reused).pretraining_done, {"pretraining_folder": str(source), "retained_runs": 3})
    ma.run_analysis(reused, [OTHER], parts=("exclusion", "changes", "stats"), settings=SMALL)
    contrast = f"dJ_II sup-mid: {OTHER} vs {CONF}"

    def contrasts(studies: list[sc.StudyData]) -> pd.DataFrame:
        stats = sc.stats_table(studies)
        return stats[stats["comparison"] == contrast].reset_index(drop=True)

    own, borrowed = contrasts([sc.load_study(source), sc.load_study(reused)]).to_dict("records")
    assert own["x"] == f"{CONF} J_II_s - J_II_m" and borrowed["x"] == f"reference: {CONF} J_II_s - J_II_m"
    for column in ("n", "median_difference", "p"):  # the same runs, the same data: the same test
        np.testing.assert_allclose(borrowed[column], own[column])
    assert contrasts([sc.load_study(reused)]).empty  # its source not compared: nothing to pair with
    other_model = dataclasses.replace(sc.load_study(source), overrides="SSNPars.sup_I_kernel=own")
    assert sc.baseline_source(sc.load_study(reused), [other_model]) is None  # another model's baseline
    # across two studies runs pair by original index, not by stage-2 position: with the reusing study's runs
    # 0 and 1 standing for initialisations 2 and 4, only its run 0 meets the source's run 1 (initialisation 2)
    base, shifted = sc.load_study(source), dataclasses.replace(sc.load_study(reused), original_runs=(2, 4, 7))
    base = dataclasses.replace(base, original_runs=(0, 2, 4))
    row = next(r for r in sc.contrast_rows(shifted, base) if r["comparison"] == contrast)
    diffs = {c: pd.read_csv(f / c / "rel_changes_train.csv").set_index("run_index").eval("J_II_s - J_II_m")
             for c, f in ((OTHER, reused), (CONF, source))}  # fmt: skip
    assert row["n"] == 1
    np.testing.assert_allclose(row["median_difference"], diffs[OTHER][0] - diffs[CONF][1])


def test_two_studies_of_one_preset_get_distinct_labels() -> None:
    assert sc.unique_labels(["reference", "reference", "corrected"], [Path("a"), Path("b"), Path("c")]) == [
        "reference (a)", "reference (b)", "corrected"]  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.study_comparison", *args], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip


def test_cli_bad_input_is_one_line_and_exit_2(compared, tmp_path) -> None:
    folders, _ = compared
    missing = run_cli(str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "not found" in missing.stderr
    unanalysed = tmp_path / "unanalysed"
    shutil.copytree(folders[0], unanalysed)
    (unanalysed / "study_summary.csv").unlink()
    shown = run_cli(str(unanalysed), "--out", str(tmp_path / "o"))
    assert shown.returncode == 2 and len(shown.stderr.strip().splitlines()) == 1
    assert "study_summary.csv" in shown.stderr
    assert not (tmp_path / "o").exists()  # nothing started


def test_cli_help_needs_no_heavy_modules() -> None:
    code = ("import runpy, sys; sys.argv = [sys.argv[0], '--help']\ntry:\n"
            "    runpy.run_module('analysis.study_comparison', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('jax', 'pandas', 'matplotlib', 'numpy') if m in sys.modules))")  # fmt: skip
    shown = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert shown.returncode == 0 and "--out" in shown.stdout and shown.stdout.strip().endswith("[]")


def run_main(root: Path, *args: str) -> Path:
    """A --quick study through main.py at the end-to-end size, under root; its results folder."""
    from study.quick import END_TO_END_OVERRIDES

    argv = [sys.executable, "main.py", "--quick", "--overrides-json", json.dumps(END_TO_END_OVERRIDES), *args,
            "--results-root", str(root)]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = list(root.iterdir())
    return folder


@pytest.fixture(scope="module")
def quick_studies(tmp_path_factory) -> list[Path]:
    """A tiny study per preset through main.py (training and the whole analysis)."""
    base = tmp_path_factory.mktemp("quick")
    return [run_main(base / preset, "--preset", preset) for preset in ("reference", "corrected")]


@pytest.mark.slow
def test_quick_studies_of_both_presets_compare_end_to_end(quick_studies, tmp_path) -> None:
    """The docs/results.md comparison at a tiny size: a study per preset through main.py (training, the whole
    analysis), then the comparison command; checks that the tables and figure are produced, not the science."""
    folders = quick_studies
    out = tmp_path / "comparison"
    shown = run_cli(*map(str, folders), "--out", str(out))
    assert shown.returncode == 0, shown.stderr[-3000:]
    runs = pd.read_csv(out / "comparison_runs.csv")
    labels = {sc.study_label(sc.study_settings(f)) for f in folders}  # preset and overridden sizes, "(quick)"
    assert set(runs["study"]) == labels and sorted(label.split()[0] for label in labels) == ["corrected", "reference"]
    assert set(runs["configuration"]) == {CONF, OTHER} and (runs["runs_started"] == 2).all()
    training = pd.read_csv(out / "comparison_training.csv")
    assert sorted(set(training["stage"])) == [0, 1, 2] and (training["steps_total"] > 0).all()
    stats = pd.read_csv(out / "comparison_stats.csv")
    assert {f"dJ_II sup-mid: {OTHER} vs {CONF}", "dJ_II sup vs mid"} <= set(stats["comparison"])
    assert mpimg.imread(out / "comparison.png").shape[0] > 400
    assert "## Tests" in (out / "comparison.md").read_text()


@pytest.mark.slow
def test_a_study_reusing_a_pretraining_is_analysed_and_compared_end_to_end(quick_studies, tmp_path) -> None:
    """main.py --skip-pretraining through the analysis (which reads the reused folder's pretraining), then the
    comparison with the study whose pretraining it reused."""
    source = quick_studies[0]
    reused = run_main(tmp_path / "reused", "--skip-pretraining", str(source), "--configs", CONF, "conf_no_horiconn")
    assert not (reused / "pretraining_results.csv").exists() and (reused / "ANALYSIS_DONE.json").is_file()
    assert f"reused from {source}" in (reused / "report.html").read_text()
    assert mpimg.imread(reused / "headline.png").shape[0] > 400
    # same pretraining, same seed, same baseline: the same relative changes as the source's baseline
    pd.testing.assert_frame_equal(pd.read_csv(reused / CONF / "rel_changes_train.csv"),
                                  pd.read_csv(source / CONF / "rel_changes_train.csv"))  # fmt: skip
    out = tmp_path / "comparison"
    shown = run_cli(str(source), str(reused), "--out", str(out))
    assert shown.returncode == 0, shown.stderr[-3000:]
    runs = pd.read_csv(out / "comparison_runs.csv")
    assert set(runs["configuration"]) == {CONF, OTHER, "conf_no_horiconn"} and (runs["runs_started"] == 2).all()
