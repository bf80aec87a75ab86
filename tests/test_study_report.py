"""The study-level summary (analysis/study_summary.py), the headline figure and report.html / summary.pdf
(analysis/report.py) on a tiny synthetic two-configuration study."""

from __future__ import annotations

import html.parser
import shutil
import urllib.parse
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader
from scipy import stats

from analysis import main_analysis as ma
from analysis import report
from analysis import study_summary as ss
from analysis.figures import headline as headline_figures
from analysis.figures import training
from store.exclusion import read_excluded_runs
from store.files import atomic_write_csv
from tests.test_analysis_pipeline import CONF, SMALL, write_study

OTHER = "conf_midonly_readout"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Two configurations of 3 runs (run 2 stuck, excluded); in the second, J_II_s grows during stage 2."""
    root = tmp_path_factory.mktemp("two_confs")
    write_study(root)
    shutil.copytree(root / CONF, root / OTHER)
    (root / OTHER / f"parameters_{CONF}.py").rename(root / OTHER / f"parameters_{OTHER}.py")
    train = pd.read_csv(root / OTHER / "training_results.csv")
    train["J_II_s"] *= 1.0 + 0.01 * train["SGD_steps"]
    atomic_write_csv(train, root / OTHER / "training_results.csv")
    (root / "note.txt").write_text("two-configuration test study\n")
    ma.run_analysis(root, [CONF, OTHER], parts=("exclusion", "changes", "stats", "report"), settings=SMALL)
    ma.draw_headline_figure(root, [CONF, OTHER], root / ss.HEADLINE)
    ma.run_analysis(root, [CONF, OTHER], overwrite=True, parts=("report",), settings=SMALL)
    return root


def retained_changes(root: Path, conf: str) -> pd.DataFrame:
    """rel_changes_train.csv of a configuration without its excluded runs."""
    rc = pd.read_csv(root / conf / "rel_changes_train.csv")
    return rc[~rc["run_index"].isin(read_excluded_runs(root / conf / "excluded_runs.csv"))]


def test_study_summary_medians_match_the_per_configuration_changes(study) -> None:
    summary = pd.read_csv(study / ss.STUDY_SUMMARY)
    assert list(summary.columns) == list(ss.SUMMARY_COLUMNS)
    assert list(dict.fromkeys(summary["configuration"])) == [CONF, OTHER]
    assert (summary["n_runs"] == 3).all() and (summary["n_retained"] == 2).all() and (summary["n_excluded"] == 1).all()
    for conf in (CONF, OTHER):
        rc = retained_changes(study, conf)
        for col in ("J_II_s", "J_EE_m", "f_I", "cE_m"):
            row = summary[(summary["configuration"] == conf) & (summary["quantity"] == f"d_{col}")].iloc[0]
            assert row["n"] == 2
            assert row["median"] == pytest.approx(np.median(rc[col]))
            assert row["q25"] == pytest.approx(np.percentile(rc[col], 25))
    # the second configuration's J_II_s grows by 11 % more over its 12 stage-2 rows
    med = summary[summary["quantity"] == "d_J_II_s"].set_index("configuration")["median"]
    assert med[OTHER] - med[CONF] == pytest.approx(11.0, abs=0.6)


def test_study_summary_behaviour_is_the_first_and_last_stage2_value(study) -> None:
    summary = pd.read_csv(study / ss.STUDY_SUMMARY).set_index(["configuration", "quantity"])
    train = pd.read_csv(study / CONF / "training_results.csv")
    kept = train[train["run_index"].isin([0, 1])]
    first = kept.dropna(subset=["psychometric_offset"]).groupby("run_index")["psychometric_offset"].first()
    last = kept.dropna(subset=["staircase_offset"]).groupby("run_index")["staircase_offset"].last()
    assert summary.loc[(CONF, "psychometric_offset_pre"), "median"] == pytest.approx(first.median())
    assert summary.loc[(CONF, "staircase_offset_post"), "median"] == pytest.approx(last.median())


def test_study_stats_are_wilcoxon_tests_of_the_per_run_differences(study) -> None:
    table = pd.read_csv(study / ss.STUDY_STATS)
    assert list(table.columns) == list(ss.STATS_COLUMNS)
    row = table[(table["configuration"] == OTHER) & (table["comparison"] == "dJ_II sup vs mid")].iloc[0]
    rc = retained_changes(study, OTHER)
    diff = (rc["J_II_s"] - rc["J_II_m"]).to_numpy()
    assert row["n"] == 2 and row["p"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert row["median_difference"] == pytest.approx(np.median(diff))
    assert "smallest possible p is 0.5" in row["note"]
    expected = {"dE/I ratio sup vs mid", "dE/I ratio sup vs 0", "psychometric_offset post vs pre"}
    assert set(table["comparison"]) >= expected


def test_wilcoxon_small_and_degenerate_samples() -> None:
    one = ss.wilcoxon_paired([1.5, np.nan])
    assert one["n"] == 1 and np.isnan(one["p"]) and "not tested" in one["note"]
    zeros = ss.wilcoxon_paired([0.0, 0.0, 0.0])
    assert np.isnan(zeros["p"]) and "zero" in zeros["note"]
    rng = np.random.default_rng(0)
    d = rng.normal(1.0, 0.5, 12)
    res = ss.wilcoxon_paired(d)
    assert res["p"] == pytest.approx(stats.wilcoxon(d).pvalue) and res["note"] == ""
    assert res["effect_size"] == pytest.approx(1.0 if (d > 0).all() else res["effect_size"])
    assert -1.0 <= ss.wilcoxon_paired(np.r_[d, -d[:5]])["effect_size"] < 1.0


def test_unmeasured_thresholds_are_counted_not_averaged() -> None:
    pre_post = pd.DataFrame({"run_index": [0, 0, 1, 1, 2, 2], "time": ["pre", "post"] * 3,
                             "staircase_offset": [8.0, 4.0, 8.0, 5.0, 9.0, 6.0],
                             "psychometric_offset": [180.0, 6.0, 7.0, np.nan, 8.0, 4.0]})  # fmt: skip
    data = ss.ConfigurationData("c", [0, 1, 2], {}, pd.DataFrame(columns=["run_index"]), pre_post)
    summary = ss.summary_table([data]).set_index("quantity")
    assert summary.loc["psychometric_offset_pre", "n"] == 2
    assert summary.loc["psychometric_offset_pre", "n_not_measured"] == 1
    assert summary.loc["psychometric_offset_pre", "median"] == pytest.approx(7.5)
    assert summary.loc["psychometric_offset_post", "n_not_measured"] == 1
    np.testing.assert_allclose(ss.behaviour_difference(pre_post, "psychometric_offset"), [-4.0])


def test_headline_figure_is_written(study) -> None:
    image = mpimg.imread(study / ss.HEADLINE)
    assert image.shape[0] > 400 and image.shape[1] > 1000  # two rows of four panels
    assert image[..., :3].std() > 0.05


def test_headline_test_lines_stay_apart_with_long_p_values(study, tmp_path, monkeypatch) -> None:
    """With many runs a test prints a long p: no panel's test line may run into its neighbour's."""
    boxes = []
    save = headline_figures.save

    def measuring_save(fig, path):
        fig.canvas.draw()  # lay the figure out as saving will
        renderer = fig.canvas.get_renderer()
        boxes.extend(ax.xaxis.label.get_window_extent(renderer) for ax in fig.axes if ax.get_xlabel())
        return save(fig, path)

    monkeypatch.setattr(headline_figures, "save", measuring_save)
    monkeypatch.setattr(ss, "format_test", lambda row: "Wilcoxon n = 13, p = 0.000488, r = -1.00")
    ma.draw_headline_figure(study, [CONF, OTHER], tmp_path / "headline.png")
    assert len(boxes) == 8  # two configurations x four panels
    assert not [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes[:i]) if a.overlaps(b)]


class _Links(html.parser.HTMLParser):
    """Ids, fragment links and file references of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.fragments: list[str] = []
        self.files: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value:
                (self.fragments if value.startswith("#") else self.files).append(value)


def test_report_leads_with_the_findings_and_its_links_resolve(study) -> None:
    text = (study / "report.html").read_text(encoding="utf-8")
    links = _Links()
    links.feed(text)
    assert links.fragments and all(f[1:] in links.ids for f in links.fragments)
    assert {"settings", "runs", "headline", "stats", "summary", "files", f"conf-{CONF}", f"conf-{OTHER}"} <= links.ids
    missing = [f for f in links.files if not (study / urllib.parse.unquote(f)).is_file()]
    assert not missing
    assert text.index("Study settings") < text.index("headline.png") < text.index("Configuration conf_baseline</h2>")
    assert "two-configuration test study" in text and "run 2: stuck at offset ceiling" in text
    assert "dJ_II sup vs mid" in text and "study_summary.csv" in text
    assert f"{CONF}/figures/J_pre_post.png" not in text  # the figures part was not run: nothing is invented


def test_identical_train_twins_are_shown_once(tmp_path) -> None:
    fig_dir = tmp_path / "figs"
    fig_dir.mkdir()
    for name, seed in (("J_pre_post", 0), ("J_pre_post_train", 0), ("r_pre_post", 0), ("r_pre_post_train", 1)):
        mpimg.imsave(fig_dir / f"{name}.png", np.random.default_rng(seed).random((8, 8, 3)))
    shown = report._dedupe_twins([(p, "") for p in sorted(fig_dir.glob("*.png"))])
    names = [p.name for p, _, _ in shown]
    assert names == ["J_pre_post.png", "r_pre_post.png", "r_pre_post_train.png"]
    assert "Identical to J_pre_post_train.png" in shown[0][2]
    first_train = report._dedupe_twins([(fig_dir / "J_pre_post_train.png", ""), (fig_dir / "J_pre_post.png", "")])
    assert [p.name for p, _, _ in first_train] == ["J_pre_post_train.png"]


def test_summary_pdf_has_a_cover_and_one_bookmark_per_figure(study) -> None:
    reader = PdfReader(study / CONF / "summary.pdf")
    titles = [item.title for item in reader.outline]
    assert titles[0] == "Cover and contents" and len(reader.pages) == len(titles)
    cover = reader.pages[0].extract_text()
    assert CONF in cover and "kept 2" in cover and "two-configuration test study" in cover


def test_figures_that_cannot_be_computed_are_one_note(tmp_path) -> None:
    from analysis.statistics import param_offset_correlations, param_offset_fits

    rc = pd.DataFrame({"run_index": [0, 1], "psychometric_offset": [-10.0, -20.0], "J_EE_m": [1.0, 2.0]})
    path = training.plot_param_offset_correlations(rc, param_offset_correlations(rc), param_offset_fits(rc),
                                                   ["J_EE_m"], tmp_path / "corr.png", "title")  # fmt: skip
    assert mpimg.imread(path).shape[0] <= 250  # one line of text, not a page of empty panels
    pre_post = pd.DataFrame({"run_index": [0, 0, 1, 1], "time": ["pre", "post"] * 2,
                             "staircase_offset": [8.0, 6.0, 9.0, 5.0],
                             "psychometric_offset": [180.0, 180.0, np.nan, 180.0]})  # fmt: skip
    panels = training.PRE_POST_FIGURES["offset_pre_post"][1]
    fig_path = training.plot_pre_post_bars(pre_post, panels, tmp_path / "offset.png", "offsets", None, 2)
    assert mpimg.imread(fig_path).std() > 0.01


def test_the_report_names_which_version_of_the_model_a_preset_is():
    from analysis.report import preset_label

    assert preset_label("figure").startswith("figure (the code behind the published figure")
    assert "2025-01-08" in preset_label("reference") and "2025-01-23" in preset_label("final")
    assert preset_label(None) == "not recorded" and preset_label("unknown") == "unknown"
