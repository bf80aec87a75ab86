"""Run exclusion, relative changes and statistics (analysis/analysis_functions.py, spec §2, §6, §7)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.cells import DEFAULT_ORIENTATIONS, CellLayout, cell_names
from analysis.changes import (
    excluded_runs,
    exclusion_table,
    pre_post_values,
    relative_changes,
    write_exclusion_files,
)
from analysis.figures.style import significance_color
from analysis.statistics import (
    LOWESS_FRAC,
    MANN_WHITNEY_WINDOW,
    REGRESSION_POINTS,
    TRIANGLE_PAIRS,
    TRIANGLES,
    lowess_by_side,
    one_triangle,
    paired_tests,
    param_offset_correlations,
    param_offset_fits,
    pearson_finite,
    regression_line,
    rm_anova,
    sliding_mann_whitney,
    sliding_window_starts,
    slope_change_table,
    slope_changes,
    slope_lowess_table,
    slope_mann_whitney_table,
    triangle_data,
    triangle_fits,
    triangle_statistics,
    triangle_table,
    write_stats_csv,
)
from parameters import Parameters
from store.exclusion import read_excluded_runs

LAYOUT = CellLayout.from_parameters(Parameters())
"""The cell layout of the default parameters (9x9 grid, 4 phases: 810 cells)."""

NAN = math.nan


def pretraining_rows(run: int, n: int = 4) -> pd.DataFrame:
    """Two stage-0 and two stage-1 rows of one run."""
    return pd.DataFrame(
        {
            "run_index": run,
            "stage": [0, 0, 1, 1][:n],
            "SGD_steps": [0, 1, 0, 1][:n],
            "acc": [0.5, 0.6, 0.7, 0.8][:n],
            "psychometric_offset": [12.0, NAN, 9.0, NAN][:n],
            "J_EE_m": [0.5, 0.6, 0.7, 0.8][:n],
            "J_EI_m": -1.0,
            "J_IE_m": 1.0,
            "J_II_m": -1.0,
            "J_EE_s": 1.0,
            "J_EI_s": -1.0,
            "J_IE_s": 1.0,
            "J_II_s": -1.0,
            "cE_m": 2.0,
            "loss_dx_max": 0.0,
        }
    )


def training_rows(run: int, psy: list[float], loss_dx: list[float]) -> pd.DataFrame:
    """Four stage-2 rows of one run."""
    return pd.DataFrame(
        {
            "run_index": run,
            "stage": 2,
            "SGD_steps": range(4),
            "acc": [0.6, 0.7, 0.8, 0.9],
            "psychometric_offset": psy,
            "staircase_offset": [4.0, 3.0, 2.0, 2.0],
            "J_EE_m": [1.0, 1.1, 1.2, 1.5],
            "J_EI_m": [-1.0, -1.0, -1.5, -2.0],
            "J_IE_m": 1.0,
            "J_II_m": -1.0,
            "J_EE_s": 1.0,
            "J_EI_s": -1.0,
            "J_IE_s": 1.0,
            "J_II_s": -1.0,
            "cE_m": [2.0, 2.0, 2.0, 1.0],
            "kappa_Jmid_EE": [0.0, 0.1, 0.3, 0.5],
            "loss_dx_max": loss_dx,
        }
    )


@pytest.fixture
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    pre = pd.concat([pretraining_rows(r) for r in (0, 1, 2)], ignore_index=True)
    train = pd.concat(
        [
            training_rows(0, [NAN, 8.0, NAN, 4.0], [0.0, 0.0, 0.1, 0.2]),
            training_rows(1, [NAN] * 4, [0.1, 0.1, 0.1, 0.3]),
        ],
        ignore_index=True,
    )
    return pre, train


def test_relative_changes_training_window(tables) -> None:
    pre, train = tables
    rc = relative_changes(pre, train, [0, 1, 2], "train").set_index("run_index")
    assert list(rc.index) == [0, 1]  # run 2 has no training rows
    assert rc.loc[0, "J_EE_m"] == pytest.approx(50.0)  # starts at the first stage-2 row (B3), not 0.8
    assert rc.loc[0, "J_EI_m"] == pytest.approx(100.0)  # negative weight: magnitude grew
    assert rc.loc[0, "psychometric_offset"] == pytest.approx(-50.0)  # sparse: first/last valid values
    assert np.isnan(rc.loc[1, "psychometric_offset"])  # NaN stays NaN
    assert rc.loc[0, "cE_m"] == pytest.approx(-50.0)
    assert "kappa_Jmid_EE" not in rc.columns
    assert rc.loc[0, "d_kappa_Jmid_EE"] == pytest.approx(np.tanh(0.5))
    assert np.isnan(rc.loc[0, "loss_dx_max"]) and rc.loc[0, "d_loss_dx_max"] == pytest.approx(0.2)
    assert rc.loc[1, "loss_dx_max"] == pytest.approx(200.0) and rc.loc[1, "d_loss_dx_max"] == pytest.approx(
        0.2
    )
    j_i_start, j_i_end = 2.0, 3.0  # |J_II + J_EI|
    j_e_start, j_e_end = 2.0, 2.5  # |J_IE + J_EE|
    assert rc.loc[0, "J_I_m"] == pytest.approx(100 * (j_i_end - j_i_start) / j_i_start)
    ratio_start, ratio_end = j_i_start / j_e_start, j_i_end / j_e_end
    assert rc.loc[0, "EI_ratio_J_m"] == pytest.approx(100 * (ratio_end - ratio_start) / ratio_start)
    assert "stage" not in rc.columns and "SGD_steps" not in rc.columns


def test_relative_changes_pretraining_window(tables) -> None:
    pre, train = tables
    rc = relative_changes(pre, train, [0, 1, 2], "pretrain").set_index("run_index")
    assert list(rc.index) == [0, 1, 2]
    assert rc.loc[0, "J_EE_m"] == pytest.approx(60.0)  # 0.5 -> 0.8
    assert rc.loc[2, "J_EE_m"] == pytest.approx(60.0)  # no training rows: window runs to the last row
    assert rc.loc[0, "psychometric_offset"] == pytest.approx(-25.0)  # 12 -> 9


def test_pre_post_values(tables) -> None:
    pre, train = tables
    pp = pre_post_values(pre, train, [0, 1, 2], include_init=True)
    assert set(pp["time"]) == {"init", "pre", "post"} and set(pp["run_index"]) == {0, 1}
    row = pp.set_index(["run_index", "time"])
    assert row.loc[(0, "pre"), "J_EE_m"] == 1.0 and row.loc[(0, "post"), "J_EE_m"] == 1.5
    assert row.loc[(0, "init"), "J_EE_m"] == 0.5
    assert row.loc[(0, "pre"), "psychometric_offset"] == 8.0


def exclusion_train() -> pd.DataFrame:
    """Runs 0: fine; 1: stuck; 2: high threshold, staircase moving; 4: one high threshold; 5: 8 at ceiling."""

    def run(idx: int, psy_tail: list[float], n_ceiling: int) -> pd.DataFrame:
        stair = [5.0] * (12 - n_ceiling) + [9.95] * n_ceiling
        psy = [NAN] * 12
        for k, v in enumerate(psy_tail):
            psy[12 - 1 - 3 * (len(psy_tail) - 1 - k)] = v
        return pd.DataFrame(
            {"run_index": idx, "stage": 2, "psychometric_offset": psy, "staircase_offset": stair}
        )

    return pd.concat(
        [
            run(0, [3.0, 2.0, 1.0], 0),
            run(1, [15.0, 20.0, 18.0], 10),
            run(2, [15.0, 20.0, 18.0], 3),
            run(4, [2.0, 2.0, 25.0], 10),
            run(5, [15.0, 20.0, 18.0], 8),
            run(6, [5.0, 30.0, 40.0], 9),
        ],
        ignore_index=True,
    )


def test_exclusion_rule() -> None:
    table = exclusion_table(exclusion_train(), range(7), max_train_offset=10.0).set_index("run_index")
    assert excluded_runs(exclusion_train(), range(7)) == [1, 3, 6]
    assert table.loc[3, "reason"] == "no training rows"
    assert table.loc[1, "psy_mean_last"] == pytest.approx(53 / 3)
    assert table.loc[5, "n_staircase_at_ceiling"] == 8 and not table.loc[5, "excluded"]
    assert table.loc[4, "psy_mean_last"] == pytest.approx(29 / 3) and not table.loc[4, "excluded"]


def test_exclusion_files(tmp_path) -> None:
    union = write_exclusion_files(tmp_path, {"conf_baseline": [3, 1], "conf_other": [2], "conf_none": []})
    assert union == [1, 2, 3]
    assert (tmp_path / "conf_baseline" / "excluded_runs.csv").read_text() == "1\n3\n"
    assert (tmp_path / "conf_none" / "excluded_runs.csv").read_text() == ""
    assert read_excluded_runs(tmp_path / "excluded_runs_all.csv") == [1, 2, 3]
    assert read_excluded_runs(tmp_path / "conf_none" / "excluded_runs.csv") == []
    details = pd.read_csv(tmp_path / "excluded_runs_details.csv", index_col=0)
    assert details.loc["conf_baseline", "n_excluded"] == 2


def test_param_offset_correlations_match_scipy() -> None:
    rng = np.random.default_rng(0)
    rc = pd.DataFrame(
        {
            "run_index": range(12),
            "psychometric_offset": rng.standard_normal(12),
            "J_EE_m": rng.standard_normal(12),
            "d_kappa_Jsup_EE_pre": rng.standard_normal(12),
            "acc": rng.standard_normal(12),
            "f_E": rng.standard_normal(12),
        }
    )
    rc.loc[3, "f_E"] = np.nan
    corr = param_offset_correlations(rc).set_index("parameter")
    assert list(corr.index) == ["J_EE_m", "kappa_Jsup_EE_pre", "f_E"]
    expected = stats.pearsonr(rc["J_EE_m"], rc["psychometric_offset"])
    assert corr.loc["J_EE_m", "r"] == pytest.approx(expected.statistic)
    assert corr.loc["J_EE_m", "p"] == pytest.approx(expected.pvalue)
    assert corr.loc["kappa_Jsup_EE_pre", "column"] == "d_kappa_Jsup_EE_pre"
    assert np.isnan(corr.loc["f_E", "r"])


def test_significance_colour() -> None:
    assert significance_color(0.5, 0.01) == "green"
    assert significance_color(-0.5, 0.01) == "red"
    assert significance_color(0.5, 0.2) == "gray"
    assert significance_color(NAN, NAN) == "gray"


def synthetic_scores(rng: np.random.Generator, n_runs: int = 12) -> pd.DataFrame:
    """Long score table with a learning effect at 55 in both layers."""
    rows = []
    for run in range(n_runs):
        base = rng.normal(0.6, 0.05)
        for layer in (0, 1):
            for stage in (0, 1, 2):
                for ori in (55.0, 125.0):
                    effect = 0.1 if (stage == 2 and ori == 55.0) else 0.0
                    rows.append((run + 100, layer, stage, ori, base + effect + rng.normal(0, 0.03), 3))
    return pd.DataFrame(rows, columns=["run_index", "layer", "stage", "ori", "score", "n_components"])


def test_paired_tests_match_scipy() -> None:
    scores = synthetic_scores(np.random.default_rng(1))
    res = paired_tests(scores, measure="mvpa").set_index(["layer", "ori"])
    sel = scores[(scores.layer == 1) & (scores.ori == 55.0)]
    pre = sel[sel.stage == 1].set_index("run_index")["score"]
    post = sel[sel.stage == 2].set_index("run_index")["score"].loc[pre.index]
    t = stats.ttest_rel(post, pre)
    assert res.loc[(1, 55.0), "t"] == pytest.approx(t.statistic)
    assert res.loc[(1, 55.0), "p_ttest"] == pytest.approx(t.pvalue)
    assert res.loc[(1, 55.0), "p_wilcoxon"] == pytest.approx(stats.wilcoxon(post - pre).pvalue)
    assert res.loc[(1, 55.0), "n"] == 12 and res.loc[(1, 55.0), "p_ttest"] < 1e-3


def test_paired_tests_drop_incomplete_runs() -> None:
    scores = synthetic_scores(np.random.default_rng(2))
    scores.loc[(scores.run_index == 100) & (scores.stage == 2), "score"] = np.nan
    res = paired_tests(scores).set_index(["layer", "ori"])
    assert (res["n"] == 11).all()


def test_rm_anova_stage_effect_equals_squared_paired_t() -> None:
    scores = synthetic_scores(np.random.default_rng(3))
    table = rm_anova(scores, measure="mvpa")
    assert set(table["effect"]) == {"stage", "ori", "stage:ori"}
    row = table[(table.layer == 0) & (table.effect == "stage")].iloc[0]
    sel = scores[(scores.layer == 0) & scores.stage.isin([1, 2])]
    means = sel.groupby(["run_index", "stage"])["score"].mean().unstack()
    t = stats.ttest_rel(means[2], means[1]).statistic
    assert row["F"] == pytest.approx(t**2)
    assert row["num_df"] == 1 and row["den_df"] == 11
    interaction = table[(table.layer == 0) & (table.effect == "stage:ori")].iloc[0]
    assert interaction["p"] < 0.01


def test_write_stats_csv(tmp_path) -> None:
    df = paired_tests(synthetic_scores(np.random.default_rng(4)))
    path = write_stats_csv(df, tmp_path / "stats_mvpa.csv")
    assert pd.read_csv(path).shape == df.shape


def test_sliding_window_starts_keep_last_window() -> None:
    starts = sliding_window_starts(-90.0, 90.0, 10.0, 0.2)
    assert len(starts) == 851  # (170 / 0.2) + 1: the window ending exactly at 90 is kept
    assert starts[-1] == pytest.approx(80.0)
    assert np.allclose(np.diff(starts), 0.2)


def test_sliding_mann_whitney() -> None:
    rng = np.random.default_rng(5)
    x1, x2 = rng.uniform(-90, 90, 300), rng.uniform(-90, 90, 300)
    v1, v2 = rng.normal(0, 1, 300), rng.normal(0, 1, 300) + (np.abs(x2) < 20)
    res = sliding_mann_whitney(x1, v1, x2, v2, window=10.0, step=1.0)
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    assert len(res) == int(np.floor((hi - 10 - lo) / 1.0 + 1e-9)) + 1
    a = res["start"].iloc[5]
    m1, m2 = (x1 >= a) & (x1 < a + 10), (x2 >= a) & (x2 < a + 10)
    expected = stats.mannwhitneyu(v1[m1], v2[m2], alternative="two-sided", use_continuity=True).pvalue
    assert res["p"].iloc[5] == pytest.approx(expected)
    empty = sliding_mann_whitney([0.0, 50.0], [1.0, 1.0], [0.0, 50.0], [2.0, 2.0], window=10.0, step=5.0)
    assert empty["p"].isna().sum() > 0


def test_lowess_by_side_drops_zero_and_nan() -> None:
    x = np.r_[np.linspace(-80, -1, 30), 0.0, np.linspace(1, 80, 30), np.nan]
    y = np.r_[np.ones(30), 100.0, 2 * np.ones(30), 1.0]
    fits = lowess_by_side(x, y)
    assert np.allclose(fits["neg"][:, 1], 1.0) and np.allclose(fits["pos"][:, 1], 2.0)


def test_slope_change_table_and_wrapping() -> None:
    cells = cell_names(LAYOUT)
    rows = []
    for stage, slope in ((1, 0.01), (2, 0.03)):
        for feature, value in (("slope_55", -slope), ("slope_125", slope), ("pref_ori", 170.0)):
            rows.append({"run_index": 4, "stage": stage, "feature": feature, **dict.fromkeys(cells, value)})
    features = pd.DataFrame(rows)
    table = slope_change_table(features, 1, 2, 55.0, LAYOUT)
    assert len(table) == 810 and np.allclose(table["dslope"], 0.02)
    assert np.allclose(table["x"], -65.0)  # 170 - 55 = 115 -> -65
    orimap = pd.DataFrame([{"run_index": 4, **{str(g): 10.0 for g in range(81)}}])
    table_om = slope_change_table(features, 1, 2, 125.0, LAYOUT, orimap)
    assert np.allclose(table_om["x"], 65.0)  # 10 - 125 = -115 -> 65


def test_triangle_data_and_finite_pearson() -> None:
    scores = synthetic_scores(np.random.default_rng(6), n_runs=6)
    rc = pd.DataFrame(
        {
            "run_index": range(100, 106),
            "EI_ratio_J_m": np.arange(6.0),
            "EI_ratio_J_s": -np.arange(6.0),
            "psychometric_offset": [1, 2, 3, 4, np.inf, 6.0],
        }
    )
    data = triangle_data(scores, rc, layer=0, ori=55.0)
    assert list(data.columns) == ["dmvpa", "dratio", "doffset"] and len(data) == 6
    wide = scores[(scores.layer == 0) & (scores.ori == 55.0)].pivot(
        index="run_index", columns="stage", values="score"
    )
    assert data["dmvpa"].to_numpy() == pytest.approx((100 * (wide[2] - wide[1]) / wide[1]).to_numpy())
    r, p, n = pearson_finite(data["dratio"], data["doffset"])
    assert n == 5 and r == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------------
# The statistics tables the figures draw
# ------------------------------------------------------------------------------------------------------
def test_regression_line_is_the_least_squares_line_with_a_bootstrap_band() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=12)
    y = 2.0 * x + 1.0 + 0.3 * rng.normal(size=12)
    x[4] = np.nan  # dropped with its pair
    line = regression_line(x, y)
    assert list(line.columns) == ["grid", "fit", "ci_low", "ci_high"] and len(line) == REGRESSION_POINTS
    ok = np.isfinite(x)
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    assert line["grid"].iloc[0] == np.nanmin(x) and line["grid"].iloc[-1] == np.nanmax(x)
    assert line["fit"].to_numpy() == pytest.approx(intercept + slope * line["grid"].to_numpy())
    assert (line["ci_low"] <= line["fit"] + 1e-12).all() and (line["fit"] <= line["ci_high"] + 1e-12).all()
    assert line.equals(regression_line(x, y))  # seeded: the same band every time
    assert regression_line([1.0, 2.0, np.nan], [1.0, 2.0, 3.0]).empty  # fewer than 3 pairs: no line


def test_param_offset_fits_draw_every_correlated_parameter() -> None:
    rng = np.random.default_rng(8)
    rc = pd.DataFrame({"run_index": range(6), "J_EE_m": rng.normal(size=6), "d_kappa_Jsup_EE_pre": rng.normal(size=6),
                       "psychometric_offset": rng.normal(size=6)})  # fmt: skip
    fits = param_offset_fits(rc)
    assert set(fits["parameter"]) == set(param_offset_correlations(rc)["parameter"]) == {"J_EE_m", "kappa_Jsup_EE_pre"}
    one = fits[fits["parameter"] == "J_EE_m"].reset_index(drop=True)
    assert one[["grid", "fit", "ci_low", "ci_high"]].equals(regression_line(rc["J_EE_m"], rc["psychometric_offset"]))


def test_triangle_tables_hold_the_triangle_data_and_its_correlations() -> None:
    scores = synthetic_scores(np.random.default_rng(6), n_runs=6)
    rc = pd.DataFrame({"run_index": range(100, 106), "EI_ratio_J_m": np.arange(6.0) ** 2,
                       "EI_ratio_J_s": -np.arange(6.0), "psychometric_offset": [1, 2, 3, 4, np.inf, 6.0]})  # fmt: skip
    table = triangle_table(scores, rc)
    statistics, fits = triangle_statistics(table), triangle_fits(table)
    assert len(statistics) == 3 * len(TRIANGLES) and set(fits["x"] + fits["y"]) == {x + y for x, y in TRIANGLE_PAIRS}
    for layer, _, ori in TRIANGLES:
        data = triangle_data(scores, rc, layer, ori)
        rows = one_triangle(table, layer, ori)
        assert rows["run_index"].tolist() == data.index.tolist()
        assert rows[["dmvpa", "dratio", "doffset"]].equals(data.reset_index(drop=True))
        for _, row in one_triangle(statistics, layer, ori).iterrows():
            r, p, n = pearson_finite(data[row["x"]], data[row["y"]])
            assert (row["r"], row["n"]) == (pytest.approx(r), n)


def test_slope_tables_are_the_lowess_fits_and_mann_whitney_tests_of_the_figure_cells() -> None:
    rng = np.random.default_rng(9)
    cells = cell_names(LAYOUT)
    rows = [{"run_index": run, "stage": stage, "feature": feature,
             **dict(zip(cells, rng.normal(size=len(cells)) * (100 if feature == "pref_ori" else 0.01), strict=True))}
            for run in (0, 1) for stage in (1, 2) for feature in ("slope_55", "slope_125", "pref_ori")]  # fmt: skip
    features = pd.DataFrame(rows)
    changes = slope_changes(features, 1, 2, LAYOUT, DEFAULT_ORIENTATIONS)
    mid = changes[changes["layer"] == "mid"]
    assert set(mid["phase"]) == {0, LAYOUT.phases // 2} and set(changes["slope_ori"]) == {55.0, 125.0}
    assert len(changes) == 2 * 2 * (2 * 2 * LAYOUT.n_grid + 2 * LAYOUT.n_grid)  # runs x oris x (mid 2 phases + sup)
    lowess = slope_lowess_table(changes, DEFAULT_ORIENTATIONS)
    sel = changes[(changes["layer"] == "sup") & (changes["type"] == "I") & (changes["slope_ori"] == 125.0)]
    expected = lowess_by_side(sel["x"], sel["dslope"], LOWESS_FRAC)["pos"]
    got = lowess[(lowess["layer"] == "sup") & (lowess["type"] == "I") & (lowess["slope_ori"] == 125.0)
                 & (lowess["side"] == "pos")]  # fmt: skip
    assert np.array_equal(got[["x", "fit"]].to_numpy(), expected)
    tests = slope_mann_whitney_table(changes, DEFAULT_ORIENTATIONS, step=1.0)
    e55, e125 = (changes[(changes["layer"] == "mid") & (changes["type"] == "E") & (changes["slope_ori"] == o)]
                 for o in (55.0, 125.0))  # fmt: skip
    expected = sliding_mann_whitney(e55["x"], e55["dslope"], e125["x"], e125["dslope"], MANN_WHITNEY_WINDOW, 1.0)
    got = tests[(tests["layer"] == "mid") & (tests["type"] == "E")].reset_index(drop=True)
    assert got[["start", "centre", "p", "n1", "n2"]].equals(expected)
    assert slope_changes(features[features["stage"] == 1], 1, 2, LAYOUT, DEFAULT_ORIENTATIONS).empty
