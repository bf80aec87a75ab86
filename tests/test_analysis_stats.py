"""Run exclusion, relative changes and statistics (analysis/analysis_functions.py, spec §2, §6, §7)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import analysis_functions as af
from analysis.cells import CellLayout
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
    rc = af.relative_changes(pre, train, [0, 1, 2], "train").set_index("run_index")
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
    rc = af.relative_changes(pre, train, [0, 1, 2], "pretrain").set_index("run_index")
    assert list(rc.index) == [0, 1, 2]
    assert rc.loc[0, "J_EE_m"] == pytest.approx(60.0)  # 0.5 -> 0.8
    assert rc.loc[2, "J_EE_m"] == pytest.approx(60.0)  # no training rows: window runs to the last row
    assert rc.loc[0, "psychometric_offset"] == pytest.approx(-25.0)  # 12 -> 9


def test_pre_post_values(tables) -> None:
    pre, train = tables
    pp = af.pre_post_values(pre, train, [0, 1, 2], include_init=True)
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
    table = af.exclusion_table(exclusion_train(), range(7), max_train_offset=10.0).set_index("run_index")
    assert af.excluded_runs(exclusion_train(), range(7)) == [1, 3, 6]
    assert table.loc[3, "reason"] == "no training rows"
    assert table.loc[1, "psy_mean_last"] == pytest.approx(53 / 3)
    assert table.loc[5, "n_staircase_at_ceiling"] == 8 and not table.loc[5, "excluded"]
    assert table.loc[4, "psy_mean_last"] == pytest.approx(29 / 3) and not table.loc[4, "excluded"]


def test_exclusion_files(tmp_path) -> None:
    union = af.write_exclusion_files(tmp_path, {"conf_baseline": [3, 1], "conf_other": [2], "conf_none": []})
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
    corr = af.param_offset_correlations(rc).set_index("parameter")
    assert list(corr.index) == ["J_EE_m", "kappa_Jsup_EE_pre", "f_E"]
    expected = stats.pearsonr(rc["J_EE_m"], rc["psychometric_offset"])
    assert corr.loc["J_EE_m", "r"] == pytest.approx(expected.statistic)
    assert corr.loc["J_EE_m", "p"] == pytest.approx(expected.pvalue)
    assert corr.loc["kappa_Jsup_EE_pre", "column"] == "d_kappa_Jsup_EE_pre"
    assert np.isnan(corr.loc["f_E", "r"])


def test_significance_colour() -> None:
    assert af.significance_color(0.5, 0.01) == "green"
    assert af.significance_color(-0.5, 0.01) == "red"
    assert af.significance_color(0.5, 0.2) == "gray"
    assert af.significance_color(NAN, NAN) == "gray"


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
    res = af.paired_tests(scores, measure="mvpa").set_index(["layer", "ori"])
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
    res = af.paired_tests(scores).set_index(["layer", "ori"])
    assert (res["n"] == 11).all()


def test_rm_anova_stage_effect_equals_squared_paired_t() -> None:
    scores = synthetic_scores(np.random.default_rng(3))
    table = af.rm_anova(scores, measure="mvpa")
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
    df = af.paired_tests(synthetic_scores(np.random.default_rng(4)))
    path = af.write_stats_csv(df, tmp_path / "stats_mvpa.csv")
    assert pd.read_csv(path).shape == df.shape


def test_sliding_window_starts_keep_last_window() -> None:
    starts = af.sliding_window_starts(-90.0, 90.0, 10.0, 0.2)
    assert len(starts) == 851  # (170 / 0.2) + 1: the window ending exactly at 90 is kept
    assert starts[-1] == pytest.approx(80.0)
    assert np.allclose(np.diff(starts), 0.2)


def test_sliding_mann_whitney() -> None:
    rng = np.random.default_rng(5)
    x1, x2 = rng.uniform(-90, 90, 300), rng.uniform(-90, 90, 300)
    v1, v2 = rng.normal(0, 1, 300), rng.normal(0, 1, 300) + (np.abs(x2) < 20)
    res = af.sliding_mann_whitney(x1, v1, x2, v2, window=10.0, step=1.0)
    lo, hi = max(x1.min(), x2.min()), min(x1.max(), x2.max())
    assert len(res) == int(np.floor((hi - 10 - lo) / 1.0 + 1e-9)) + 1
    a = res["start"].iloc[5]
    m1, m2 = (x1 >= a) & (x1 < a + 10), (x2 >= a) & (x2 < a + 10)
    expected = stats.mannwhitneyu(v1[m1], v2[m2], alternative="two-sided", use_continuity=True).pvalue
    assert res["p"].iloc[5] == pytest.approx(expected)
    empty = af.sliding_mann_whitney([0.0, 50.0], [1.0, 1.0], [0.0, 50.0], [2.0, 2.0], window=10.0, step=5.0)
    assert empty["p"].isna().sum() > 0


def test_lowess_by_side_drops_zero_and_nan() -> None:
    x = np.r_[np.linspace(-80, -1, 30), 0.0, np.linspace(1, 80, 30), np.nan]
    y = np.r_[np.ones(30), 100.0, 2 * np.ones(30), 1.0]
    fits = af.lowess_by_side(x, y)
    assert np.allclose(fits["neg"][:, 1], 1.0) and np.allclose(fits["pos"][:, 1], 2.0)


def test_slope_change_table_and_wrapping() -> None:
    cells = af.cell_names(LAYOUT)
    rows = []
    for stage, slope in ((1, 0.01), (2, 0.03)):
        for feature, value in (("slope_55", -slope), ("slope_125", slope), ("pref_ori", 170.0)):
            rows.append({"run_index": 4, "stage": stage, "feature": feature, **dict.fromkeys(cells, value)})
    features = pd.DataFrame(rows)
    table = af.slope_change_table(features, 1, 2, 55.0, LAYOUT)
    assert len(table) == 810 and np.allclose(table["dslope"], 0.02)
    assert np.allclose(table["x"], -65.0)  # 170 - 55 = 115 -> -65
    orimap = pd.DataFrame([{"run_index": 4, **{str(g): 10.0 for g in range(81)}}])
    table_om = af.slope_change_table(features, 1, 2, 125.0, LAYOUT, orimap)
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
    data = af.triangle_data(scores, rc, layer=0, ori=55.0)
    assert list(data.columns) == ["dmvpa", "dratio", "doffset"] and len(data) == 6
    wide = scores[(scores.layer == 0) & (scores.ori == 55.0)].pivot(
        index="run_index", columns="stage", values="score"
    )
    assert data["dmvpa"].to_numpy() == pytest.approx((100 * (wide[2] - wide[1]) / wide[1]).to_numpy())
    r, p, n = af.pearson_finite(data["dratio"], data["doffset"])
    assert n == 5 and r == pytest.approx(1.0)
