"""Every figure function writes a PNG from the tables it draws; summary PDF and report.html (analysis/figures/,
report.py)."""

from __future__ import annotations

import logging
import re
import urllib.parse
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from analysis import report
from analysis.captions import caption_for, figures_with_captions
from analysis.cells import DEFAULT_ORIENTATIONS, CellLayout
from analysis.changes import pre_post_values, relative_changes, run_table
from analysis.figures import decoding, training, tuning
from analysis.statistics import (
    one_triangle,
    param_offset_correlations,
    param_offset_fits,
    slope_changes,
    slope_lowess_table,
    slope_mann_whitney_table,
    triangle_fits,
    triangle_statistics,
    triangle_table,
)
from analysis.tuning_curve_files import tuning_curve_frame
from analysis.tuning_features import tuning_curve_features_table
from parameters import Parameters

LAYOUT = CellLayout.from_parameters(Parameters())
"""The cell layout of the default parameters (9x9 grid, 4 phases: 810 cells)."""

ORIS = np.arange(0.0, 360.0, 5.0)
RUNS = (0, 1, 2, 3)


def run_rows(run: int, stage: int, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n synthetic log rows of one run and stage, with sparse probe columns."""
    t = np.arange(n) / n
    probe = np.where(np.arange(n) % 5 == 0, 1.0, np.nan)
    df = pd.DataFrame({"run_index": run, "stage": stage, "SGD_steps": np.arange(n)})
    df["acc"] = 0.6 + 0.3 * t + 0.02 * rng.standard_normal(n)
    df["val_acc"], df["val_loss"] = probe * 0.8, probe * 0.4
    for loss in ("binary_cross_entr", "dx_max", "r_max", "r_mean", "all"):
        df[f"loss_{loss}"] = 0.7 - 0.3 * t
    for stat in ("max", "mean"):
        for pop in ("E_mid", "I_mid", "E_sup", "I_sup"):
            df[f"{stat}r_{pop}"] = (30.0 if stat == "max" else 8.0) * (1 + 0.1 * t)
    for i, k in enumerate(("EE", "EI", "IE", "II")):
        sign = -1.0 if k in ("EI", "II") else 1.0
        for layer in ("m", "s"):
            df[f"J_{k}_{layer}"] = sign * (1.0 + 0.1 * i) * (1 + 0.2 * t * rng.uniform(-1, 1))
    for c in ("cE_m", "cI_m", "cE_s", "cI_s", "f_E", "f_I"):
        df[c] = 1.5 + 0.2 * t * rng.uniform(-1, 1)
    df["psychometric_offset"] = probe * (8.0 - 4.0 * t * rng.uniform(0.2, 1.0))
    if stage < 2:
        for i in range(10):
            df[f"w_sig_{i}"] = 0.1 * i * (1 + t)
        df["b_sig"] = 0.05
    else:
        df["staircase_offset"] = 5.0 - 3.0 * t
        kappas = [f"kappa_Jmid_{k}" for k in ("EE", "EI", "IE", "II")] + ["kappa_f_E", "kappa_f_I"]
        kappas += [f"kappa_Jsup_{k}_{w}" for w in ("pre", "post") for k in ("EE", "EI", "IE", "II")]
        for col in kappas:
            df[col] = t * rng.uniform(-1, 1)
    return df


@pytest.fixture(scope="module")
def logs() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    pre = pd.concat([run_rows(r, s, 10, rng) for r in RUNS for s in (0, 1)], ignore_index=True)
    train = pd.concat([run_rows(r, 2, 30, rng) for r in RUNS], ignore_index=True)
    return pre, train


@pytest.fixture(scope="module")
def tc_and_features() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    frames = []
    for run in (0, 1):
        prefs = rng.uniform(0, 180, LAYOUT.n_cells)
        for stage in (0, 1, 2):
            kappa = 1.5 + 0.3 * stage + 0.2 * rng.standard_normal(LAYOUT.n_cells)
            curves = (2 + stage) * np.exp(kappa * np.cos(np.deg2rad(2 * (ORIS[:, None] - prefs))))
            frames.append(tuning_curve_frame(run, stage, curves, LAYOUT))
    tc_df = pd.concat(frames, ignore_index=True)
    return tc_df, tuning_curve_features_table(tc_df, [0, 1, 2])


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = [
        (run, layer, stage, ori, 0.6 + 0.1 * (stage == 2) * (ori == 55.0) + 0.03 * rng.standard_normal(), 3)
        for run in (5, 6, 7, 8, 9)
        for layer in (0, 1)
        for stage in (0, 1, 2)
        for ori in (55.0, 125.0)
    ]
    return pd.DataFrame(rows, columns=["run_index", "layer", "stage", "ori", "score", "n_components"])


def assert_png(path: Path) -> None:
    """The file exists, is non-empty and decodes as an image."""
    assert path.is_file() and path.stat().st_size > 0
    assert mpimg.imread(path).ndim == 3


def test_f1_training_run(logs, tmp_path) -> None:
    pre, train = logs
    table = run_table(pre, train, 2)
    changes = relative_changes(pre, train, RUNS).set_index("run_index").loc[2]
    assert_png(training.plot_training_run(table, changes, tmp_path / "per_run" / "resultsfig_2.png", run_index=2))


def test_f2_pre_post_bars(logs, tmp_path) -> None:
    pre, train = logs
    pp = pre_post_values(pre, train, RUNS)
    paths = training.plot_all_pre_post_bars(pp, tmp_path, suffix="_train")
    assert [p.name for p in paths] == [f"{stem}_train.png" for stem in training.PRE_POST_FIGURES]
    for path in paths:
        assert_png(path)


def test_f3_relative_change_boxes(logs, tmp_path) -> None:
    pre, train = logs
    rc = relative_changes(pre, train, RUNS)
    assert_png(training.plot_relative_change_boxes(rc, tmp_path / "box.png", "Training changes"))
    assert_png(training.plot_relative_change_boxes(rc, tmp_path / "box_ylim.png", "Fixed range", fixed_ylim=True))
    rc_pre = relative_changes(pre, train, RUNS, "pretrain")
    assert_png(training.plot_relative_change_boxes(rc_pre, tmp_path / "box_pre.png", "Pretraining", ncols=8))


def test_f4_param_offset_correlations(logs, tmp_path) -> None:
    pre, train = logs
    rc = relative_changes(pre, train, RUNS)
    correlations, fits = param_offset_correlations(rc), param_offset_fits(rc)
    paths = training.plot_all_param_offset_correlations(rc, correlations, fits, tmp_path)
    assert len(paths) == 4
    for path in paths:
        assert_png(path)


def test_f5_example_tuning_curves(tc_and_features, tmp_path) -> None:
    tc_df, _ = tc_and_features
    cells = tuning.example_cells(LAYOUT)
    assert len(cells) == 20 and cells[:2] == [10, 40] and cells[-2:] == [739, 769]
    assert_png(tuning.plot_example_tuning_curves(tc_df, tmp_path / "tc_fig.png", layout=LAYOUT))


@pytest.mark.parametrize("color_by", ["type", "run_index", "pref_ori", "phase"])
def test_f6_feature_scatter(tc_and_features, tmp_path, color_by: str) -> None:
    _, features = tc_and_features
    orimap = None
    if color_by == "pref_ori":  # colour by the orimap instead of the measured preference
        orimap = pd.DataFrame([{"run_index": r, **{str(g): 2.0 * g for g in range(81)}} for r in (0, 1)])
    path = tmp_path / f"tc_features_train_color_by_{color_by}.png"
    assert_png(tuning.plot_tc_feature_scatter(features, path, 1, 2, color_by, orimap=orimap, layout=LAYOUT))


def test_f7_slope_changes(tc_and_features, tmp_path) -> None:
    _, features = tc_and_features
    changes = slope_changes(features, 1, 2, LAYOUT, DEFAULT_ORIENTATIONS)
    lowess = slope_lowess_table(changes, DEFAULT_ORIENTATIONS)
    mann_whitney = slope_mann_whitney_table(changes, DEFAULT_ORIENTATIONS, step=1.0)
    assert_png(tuning.plot_slope_changes(changes, lowess, mann_whitney, tmp_path / "tc_slope_train_color_by_type.png",
                                         1, 2))  # fmt: skip


def test_f8_correlation_triangles(scores, tmp_path) -> None:
    rng = np.random.default_rng(3)
    rc = pd.DataFrame(
        {
            "run_index": [5, 6, 7, 8, 9],
            "EI_ratio_J_m": rng.standard_normal(5),
            "EI_ratio_J_s": rng.standard_normal(5),
            "psychometric_offset": rng.standard_normal(5),
        }
    )
    table = triangle_table(scores, rc)
    statistics, fits = triangle_statistics(table), triangle_fits(table)
    paths, titles = [], []
    for layer, name in ((0, "mid"), (1, "sup")):
        for ori in (55.0, 125.0):
            rows = [one_triangle(t, layer, ori) for t in (table, statistics, fits)]
            paths.append(
                decoding.plot_corr_triangle(
                    *rows, tmp_path / f"corr_triangle_{name}_{ori:g}.png", f"{name} {ori:g}"
                )
            )
            titles.append(f"{name} {ori:g}")
    for path in paths:
        assert_png(path)
    assert_png(decoding.plot_image_montage(paths, titles, tmp_path / "combined_corr_triangles.png", "Triangles"))


def test_f9_scores(scores, tmp_path) -> None:
    assert_png(decoding.plot_scores_boxes(scores, tmp_path / "MVPA_scores.png", "mvpa"))
    assert_png(
        decoding.plot_scores_boxes(scores.assign(score=scores.score * 10), tmp_path / "Mahal_scores.png", "mahal")
    )
    assert_png(decoding.plot_mvpa_paper_bars(scores, tmp_path / "MVPA_match_paper_fig.png"))


def make_png(path: Path) -> Path:
    """A tiny PNG written with matplotlib."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mpimg.imsave(path, np.random.default_rng(0).random((20, 30, 3)))
    return path


def test_summary_pdf(tmp_path) -> None:
    figs = [(make_png(tmp_path / "a.png"), "Figure A"), (tmp_path / "missing.png", "gone")]
    pdf = report.write_summary_pdf(figs, tmp_path / "summary.pdf")
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000
    assert [item.title for item in PdfReader(pdf).outline] == ["Cover and contents", "a"]
    assert not list(tmp_path.glob(".summary.pdf*"))  # no temporary file left


def test_report_html_references_only_existing_files(tmp_path) -> None:
    root = tmp_path / "results"
    fig_a = make_png(root / "conf_baseline" / "figures" / "MVPA_scores.png")
    make_png(root / "pretraining_figures" / "boxplot_relative_changes.png")
    (root / "conf_baseline" / "MVPA_scores.csv").write_text("run_index,score\n0,0.5\n")
    (root / "excluded_runs_all.csv").write_text("")
    conf = report.ConfigurationReport("conf_baseline", [0, 1], {1: "stuck at offset ceiling"},
                                      [(fig_a, "MVPA"), ("conf_baseline/figures/nothing.png", "missing")])  # fmt: skip
    settings = report.read_study_settings(root, ["conf_baseline"], 2)
    assert settings.preset is None and settings.seed is None  # tolerated: nothing recorded
    out = report.write_report_html(
        root, settings, [conf], figures_with_captions(root / "pretraining_figures"), root / "headline.png"
    )
    text = out.read_text()
    refs = {r for r in re.findall(r'(?:href|src)="([^"]+)"', text) if not r.startswith("#")}
    assert refs, "no references written"
    for ref in refs:
        assert (root / urllib.parse.unquote(ref)).is_file(), ref
    assert "nothing.png" not in text and "headline.png" not in text
    assert "conf_baseline/MVPA_scores.csv" in refs and "excluded_runs_all.csv" in refs
    assert "pretraining_figures/boxplot_relative_changes.png" in refs
    assert "run 1: stuck at offset ceiling" in text and "MVPA decoding accuracy per run" in text
    caption = caption_for("boxplot_relative_changes_ylim.png", 7)
    assert caption.startswith("Relative changes over stage 2") and "7 runs" in caption


def test_report_reads_the_preset_and_seed_when_recorded(tmp_path) -> None:
    (tmp_path / "parameters.py").write_text('PRESET = "corrected"\nOVERRIDES = {}\n')
    (tmp_path / "environment.json").write_text('{"base_seed": 5, "code_version": "abc123"}')
    settings = report.read_study_settings(tmp_path, ["conf_baseline"], 3)
    assert (settings.preset, settings.seed, settings.code_version, settings.runs) == ("corrected", 5, "abc123", 3)


def test_report_names_the_runs_excluded_after_pretraining(tmp_path) -> None:
    """The report counts the runs that never reached stage 2 and says why (their final threshold)."""
    (tmp_path / "environment.json").write_text('{"study": {"runs": 4, "preset": "reference"}}')
    (tmp_path / "excluded_runs_from_pretraining.csv").write_text("1\n3\n")
    rows = [(run, stage, offset) for run, offsets in ((0, (9.0, 8.0)), (1, (30.0, 2.5)), (2, (12.0, 6.0)),
                                                      (3, (180.0, 180.0))) for stage, offset in enumerate(offsets)]
    pd.DataFrame(rows, columns=["run_index", "stage", "psychometric_offset"]).to_csv(
        tmp_path / "pretraining_results.csv", index=False)
    settings = report.read_study_settings(tmp_path, ["conf_baseline"], 2)
    assert settings.runs_started == 4 and settings.pretraining_excluded == {1: 2.5, 3: 180.0}
    conf = report.ConfigurationReport("conf_baseline", [0, 1], {})
    text = report.write_report_html(tmp_path, settings, [conf], []).read_text()
    assert "4 pretrained; 2 excluded after pretraining; 2 trained in stage 2" in text
    assert "run 1: 2.5°; run 3: 180°" in text


def test_report_of_a_study_that_reused_a_pretraining_names_that_pretraining(tmp_path) -> None:
    """A --skip-pretraining study reports the runs its source started and excluded, and where they come from."""
    source, study = tmp_path / "source", tmp_path / "study"
    source.mkdir()
    study.mkdir()
    (source / "environment.json").write_text('{"study": {"runs": 4, "preset": "reference"}}')
    (source / "excluded_runs_from_pretraining.csv").write_text("1\n")
    rows = [(0, 1, 9.0), (1, 1, 2.5), (2, 1, 6.0), (3, 1, 7.0)]
    pd.DataFrame(rows, columns=["run_index", "stage", "psychometric_offset"]).to_csv(
        source / "pretraining_results.csv", index=False)
    (study / "environment.json").write_text(f'{{"study": {{"runs": 3, "skip_pretraining": "{source}"}}}}')
    (study / "PRETRAINING_DONE.json").write_text(f'{{"pretraining_folder": "{source}", "retained_runs": 3}}')
    settings = report.read_study_settings(study, ["conf_no_horiconn"], 3)
    assert settings.runs_started == 4 and settings.pretraining_excluded == {1: 2.5}
    assert settings.pretraining_from == str(source)
    assert f"reused from {source}" in report.settings_html(settings)
    assert "4 pretrained; 1 excluded after pretraining; 3 trained in stage 2" in report.runs_line(settings)
    assert report.read_study_settings(source, ["conf_baseline"], 3).pretraining_from is None


def test_report_logs_an_exclusion_list_it_cannot_read(tmp_path, caplog) -> None:
    """An exclusion list beside a truncated pretraining file is reported as a warning, not passed over."""
    (tmp_path / "excluded_runs_from_pretraining.csv").write_text("1\n")
    (tmp_path / "pretraining_results.csv").write_text("run_index,stage,psychometric_offset\n0,0,9.0\n1,0,2")
    with caplog.at_level(logging.WARNING):
        assert report.pretraining_exclusions(tmp_path) == {}
    assert "pretraining_results.csv" in caplog.text and "not listed" in caplog.text
    (tmp_path / "excluded_runs_from_pretraining.csv").unlink()
    caplog.clear()
    assert report.pretraining_exclusions(tmp_path) == {} and not caplog.text  # no list: nothing was excluded here


def test_figure_modules_compute_no_statistic() -> None:
    """Figures draw tables: no figure module imports a statistics or fitting library, nor a statistics function
    (only constants) of analysis.statistics; what they show is computed by the stats part."""
    import ast

    folder = Path(__file__).resolve().parents[1] / "analysis" / "figures"
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
                if node.module == "analysis.statistics":
                    assert all(a.name.isupper() for a in node.names), (path.name, [a.name for a in node.names])
            else:
                continue
            assert not [m for m in modules if m.split(".")[0] in ("scipy", "statsmodels", "seaborn", "sklearn")], (
                path.name, modules)
