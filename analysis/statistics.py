"""Statistics of the analysis (ANALYSIS.md §7, binding decision 2): parameter-offset correlations, paired
tests and a repeated-measures ANOVA of the MVPA and Mahalanobis scores, the sliding Mann-Whitney test and
LOWESS fits of the slope figure, the data and correlations of the correlation triangles, and the fitted lines
the correlation figures draw. Each table function here returns one ``stats_*.csv`` table (written by the stats
part, :mod:`analysis.build_stats`); the figures only draw them.

The sliding Mann-Whitney windows start at integer multiples of the step, so no window is lost to the
floating-point accumulation of the reference (B21).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.nonparametric.smoothers_lowess import lowess
from statsmodels.stats.anova import AnovaRM

from analysis.cells import CELL_TYPES, LAYER_NAMES, CellLayout, TaskOrientations, cell_info, wrap_orientation_difference
from analysis.changes import change_column
from analysis.tuning_features import feature_matrix
from store.files import atomic_write_csv

logger = logging.getLogger(__name__)

CORRELATION_PREFIXES: tuple[str, ...] = ("J_", "c", "f_", "kappa_Jsup", "EI_ratio_J_")
"""Parameters whose change is correlated with the offset change: J's, c's, f's, kappa_Jsup, E/I ratios."""


def correlation_parameters(rel_changes: pd.DataFrame, prefixes: Sequence[str] = CORRELATION_PREFIXES) -> list[str]:
    """Parameters (base names) whose change is correlated with the offset change."""
    names = []
    for col in rel_changes.columns:
        base = col[2:] if col.startswith("d_") else col
        if base.startswith(tuple(prefixes)) and base not in names:
            names.append(base)
    return names


def param_offset_correlations(
    rel_changes: pd.DataFrame,
    target: str = "psychometric_offset",
    params: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Pearson r and two-sided p between the target's change and each parameter's change (NaN if any NaN)."""
    params = correlation_parameters(rel_changes) if params is None else params
    y = rel_changes[change_column(rel_changes, target)].to_numpy(float)
    rows = []
    for name in params:
        col = change_column(rel_changes, name)
        x = rel_changes[col].to_numpy(float)
        r, p = _pearson(x, y)
        rows.append({"parameter": name, "column": col, "target": target, "r": r, "p": p, "n": len(x)})
    return pd.DataFrame(rows)


def _constant(v: np.ndarray) -> bool:
    """True if v is constant up to float rounding (relative 1e-9)."""
    return bool(np.ptp(v) <= 1e-9 * max(np.max(np.abs(v)), 1e-300))


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pearson r and p, NaN if any value is non-finite, there are < 3 points or a constant input."""
    if len(x) < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()) or _constant(x) or _constant(y):
        return math.nan, math.nan
    res = stats.pearsonr(x, y)
    return float(res.statistic), float(res.pvalue)


def pearson_finite(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """Pearson r, p and n after dropping pairs with NaN or +-inf (correlation triangles)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    r, p = _pearson(x[ok], y[ok])
    return r, p, int(ok.sum())


def _paired_frame(scores: pd.DataFrame, layer: int, ori: float, pre: int, post: int) -> pd.DataFrame:
    """(runs x [pre, post]) scores of one layer and orientation, incomplete runs dropped."""
    sel = scores[(scores["layer"] == layer) & (scores["ori"] == ori) & scores["stage"].isin([pre, post])]
    wide = sel.pivot_table(index="run_index", columns="stage", values="score", aggfunc="first", dropna=False)
    return wide.reindex(columns=[pre, post]).dropna()


def paired_tests(scores: pd.DataFrame, pre_stage: int = 1, post_stage: int = 2, measure: str = "") -> pd.DataFrame:
    """Paired t-test and Wilcoxon signed-rank test of post vs pre score per layer and orientation."""
    rows = []
    for layer in sorted(scores["layer"].unique()):
        for ori in sorted(scores["ori"].unique()):
            wide = _paired_frame(scores, layer, ori, pre_stage, post_stage)
            pre, post = wide[pre_stage].to_numpy(float), wide[post_stage].to_numpy(float)
            t, p_t = stats.ttest_rel(post, pre) if len(pre) > 1 else (math.nan, math.nan)
            w, p_w = _wilcoxon(post - pre)
            rows.append(
                {
                    "measure": measure,
                    "layer": int(layer),
                    "ori": ori,
                    "n": len(pre),
                    "mean_pre": np.mean(pre) if len(pre) else math.nan,
                    "mean_post": np.mean(post) if len(pre) else math.nan,
                    "mean_diff": np.mean(post - pre) if len(pre) else math.nan,
                    "t": float(t),
                    "p_ttest": float(p_t),
                    "W": w,
                    "p_wilcoxon": p_w,
                }
            )
    return pd.DataFrame(rows)


def _wilcoxon(diff: np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank statistic and p (NaN when undefined, e.g. all differences zero)."""
    if len(diff) < 2 or np.all(diff == 0):
        return math.nan, math.nan
    res = stats.wilcoxon(diff)
    return float(res.statistic), float(res.pvalue)


def rm_anova(scores: pd.DataFrame, stages: Sequence[int] = (1, 2), measure: str = "") -> pd.DataFrame:
    """Repeated-measures ANOVA score ~ stage x ori within runs (statsmodels AnovaRM), per layer."""
    rows = []
    for layer in sorted(scores["layer"].unique()):
        sel = scores[(scores["layer"] == layer) & scores["stage"].isin(stages)]
        wide = sel.pivot_table(index="run_index", columns=["stage", "ori"], values="score", dropna=False)
        complete = wide.dropna()
        n_cells = len(stages) * sel["ori"].nunique()
        if len(complete) < 2 or wide.shape[1] != n_cells:
            logger.warning("layer %s: too few complete runs for the repeated-measures ANOVA", layer)
            continue
        data = sel[sel["run_index"].isin(complete.index)][["run_index", "stage", "ori", "score"]]
        table = AnovaRM(data, depvar="score", subject="run_index", within=["stage", "ori"]).fit().anova_table
        for effect, r in table.iterrows():
            rows.append(
                {
                    "measure": measure,
                    "layer": int(layer),
                    "effect": effect,
                    "F": r["F Value"],
                    "num_df": r["Num DF"],
                    "den_df": r["Den DF"],
                    "p": r["Pr > F"],
                    "n_runs": len(complete),
                }
            )
    return pd.DataFrame(rows, columns=["measure", "layer", "effect", "F", "num_df", "den_df", "p", "n_runs"])


def write_stats_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a statistics table (stats_*.csv) without the index."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(df, path)
    return path


def sliding_window_starts(lo: float, hi: float, window: float, step: float) -> np.ndarray:
    """Window starts lo + i*step (integer i) for every window [a, a+window) with a + window <= hi."""
    if hi - window < lo:
        return np.array([])
    n = int(math.floor((hi - window - lo) / step + 1e-9)) + 1
    return lo + step * np.arange(n)


def sliding_mann_whitney(
    x1: Sequence[float],
    v1: Sequence[float],
    x2: Sequence[float],
    v2: Sequence[float],
    window: float = 10.0,
    step: float = 0.2,
) -> pd.DataFrame:
    """Two-sided Mann-Whitney U (continuity correction) of v1 vs v2 in sliding windows of x whose starts
    are integer multiples of step (no window lost to rounding, ANALYSIS.md B21)."""
    x1, v1, x2, v2 = (np.asarray(a, dtype=float) for a in (x1, v1, x2, v2))
    ok1, ok2 = np.isfinite(x1) & np.isfinite(v1), np.isfinite(x2) & np.isfinite(v2)
    x1, v1, x2, v2 = x1[ok1], v1[ok1], x2[ok2], v2[ok2]
    if not (x1.size and x2.size):
        return pd.DataFrame(columns=["start", "centre", "p", "n1", "n2"])
    starts = sliding_window_starts(max(x1.min(), x2.min()), min(x1.max(), x2.max()), window, step)
    rows = []
    for a in starts:
        a1 = v1[(x1 >= a) & (x1 < a + window)]
        a2 = v2[(x2 >= a) & (x2 < a + window)]
        p = math.nan
        if a1.size and a2.size:
            p = float(stats.mannwhitneyu(a1, a2, alternative="two-sided", use_continuity=True).pvalue)
        rows.append((a, a + window / 2.0, p, a1.size, a2.size))
    return pd.DataFrame(rows, columns=["start", "centre", "p", "n1", "n2"])


def lowess_by_side(x: Sequence[float], y: Sequence[float], frac: float = 0.15) -> dict[str, np.ndarray]:
    """LOWESS fits (sorted (n, 2) arrays) for x < 0 and x > 0 separately; x = 0 and NaN are dropped."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    out = {}
    for side, mask in (("neg", ok & (x < 0)), ("pos", ok & (x > 0))):
        out[side] = lowess(y[mask], x[mask], frac=frac) if mask.sum() >= 3 else np.empty((0, 2))
    return out


def slope_change_table(
    features_df: pd.DataFrame,
    pre_stage: int,
    post_stage: int,
    slope_ori: float,
    layout: CellLayout,
    orimap: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per run and cell: Δ|slope_θ| (post - pre) and x = pref - θ wrapped to [-90, 90)."""
    # pref = tuning-curve pref_ori at the pre stage (the reference used the orimap, ANALYSIS.md B13), or the
    # orimap if given.
    name = f"slope_{slope_ori:g}"
    pre = feature_matrix(features_df, name, pre_stage).abs()
    post = feature_matrix(features_df, name, post_stage).abs()
    runs = pre.index.intersection(post.index)
    if orimap is None:
        pref = feature_matrix(features_df, "pref_ori", pre_stage).loc[runs].to_numpy(float)
    else:
        om = orimap.set_index(orimap["run_index"].astype(int)).drop(columns="run_index").loc[runs]
        pref = om.to_numpy(float)[:, layout.grid_of_cells()]
    info = cell_info(layout)
    frames = []
    for i, run in enumerate(runs):
        frame = info[["cell", "layer", "type", "phase"]].copy()
        frame.insert(0, "run_index", int(run))
        frame["pref_ori"] = pref[i]
        frame["x"] = wrap_orientation_difference(pref[i] - slope_ori)
        frame["dslope"] = post.loc[run].to_numpy(float) - pre.loc[run].to_numpy(float)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def mvpa_percent_change(scores: pd.DataFrame, layer: int, ori: float, pre: int = 1, post: int = 2) -> pd.Series:
    """ΔMVPA% = 100 (post - pre)/pre per run (index run_index)."""
    wide = _paired_frame(scores, layer, ori, pre, post)
    return (100.0 * (wide[post] - wide[pre]) / wide[pre]).rename("dmvpa")


def triangle_data(scores: pd.DataFrame, rel_changes: pd.DataFrame, layer: int, ori: float) -> pd.DataFrame:
    """Per run: ΔMVPA%, change of its layer's E/I ratio (EI_ratio_J_m/_s) and of psychometric_offset."""
    ratio = "EI_ratio_J_m" if layer == 0 else "EI_ratio_J_s"
    rc = rel_changes.set_index("run_index")
    df = mvpa_percent_change(scores, layer, ori).to_frame()
    df["dratio"] = rc[change_column(rel_changes, ratio)].reindex(df.index)
    df["doffset"] = rc[change_column(rel_changes, "psychometric_offset")].reindex(df.index)
    return df


# ------------------------------------------------------------------------------------------------------
# Fitted lines of the correlation figures (F4, F8)
# ------------------------------------------------------------------------------------------------------
REGRESSION_POINTS = 100
"""x values of a fitted line, spanning the data."""
REGRESSION_BOOTSTRAPS = 500
REGRESSION_SEED = 0
REGRESSION_CI = 95.0
MIN_REGRESSION_POINTS = 3
"""Fewest finite pairs for which a line is fitted."""
FIT_COLUMNS: tuple[str, ...] = ("grid", "fit", "ci_low", "ci_high")


def regression_line(x: Sequence[float], y: Sequence[float]) -> pd.DataFrame:
    """Least-squares line of y on x over the finite pairs at REGRESSION_POINTS x values from their smallest to
    their largest x (columns grid, fit), with the 95 % percentile band of REGRESSION_BOOTSTRAPS resampled pairs
    (ci_low, ci_high; numpy Generator seeded with REGRESSION_SEED). These are the numbers seaborn's regplot
    (seed 0, n_boot 500) computes and draws, so a figure can draw them from a table. Empty with fewer than
    MIN_REGRESSION_POINTS pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < MIN_REGRESSION_POINTS:
        return pd.DataFrame(columns=list(FIT_COLUMNS), dtype=float)
    design = np.c_[np.ones(x.size), x]
    grid = np.linspace(x.min(), x.max(), REGRESSION_POINTS)
    at_grid = np.c_[np.ones(grid.size), grid]
    rng = np.random.default_rng(REGRESSION_SEED)
    betas = []
    for _ in range(REGRESSION_BOOTSTRAPS):
        rows = rng.integers(0, x.size, x.size, dtype=np.intp)
        betas.append(np.linalg.pinv(design.take(rows, axis=0)).dot(y.take(rows, axis=0)))
    boots = at_grid.dot(np.array(betas).T).T
    low, high = np.nanpercentile(boots, (50 - REGRESSION_CI / 2, 50 + REGRESSION_CI / 2), axis=0)
    fit = at_grid.dot(np.linalg.pinv(design).dot(y))
    return pd.DataFrame({"grid": grid, "fit": fit, "ci_low": low, "ci_high": high})


def param_offset_fits(
    rel_changes: pd.DataFrame, target: str = "psychometric_offset", params: Sequence[str] | None = None
) -> pd.DataFrame:
    """stats_param_offset_fits.csv: per parameter, the fitted line of the target's change on the parameter's
    change (regression_line) that F4 draws."""
    params = correlation_parameters(rel_changes) if params is None else params
    y = rel_changes[change_column(rel_changes, target)].to_numpy(float)
    frames = [regression_line(rel_changes[change_column(rel_changes, name)].to_numpy(float), y)
              .assign(target=target, parameter=name) for name in params]  # fmt: skip
    columns = ["target", "parameter", *FIT_COLUMNS]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


# ------------------------------------------------------------------------------------------------------
# Correlation triangles (F8)
# ------------------------------------------------------------------------------------------------------
TRIANGLES: tuple[tuple[int, str, float], ...] = (
    (0, "mid", 55.0),
    (0, "mid", 125.0),
    (1, "sup", 55.0),
    (1, "sup", 125.0),
)
"""(layer index, layer name, orientation) of the four correlation triangles (F8)."""
TRIANGLE_PAIRS: tuple[tuple[str, str], ...] = (("dmvpa", "dratio"), ("doffset", "dratio"), ("dmvpa", "doffset"))
"""(x, y) of the three edges of a triangle."""


def triangle_table(scores: pd.DataFrame, rel_changes: pd.DataFrame) -> pd.DataFrame:
    """corr_triangle_data.csv: triangle_data of the four triangles, one row per (layer, orientation, run)."""
    frames = [triangle_data(scores, rel_changes, layer, ori).reset_index().assign(layer=layer, layer_name=name,
                                                                                  ori=ori)
              for layer, name, ori in TRIANGLES]  # fmt: skip
    table = pd.concat(frames, ignore_index=True)
    return table[["layer", "layer_name", "ori", "run_index", "dmvpa", "dratio", "doffset"]]


def one_triangle(table: pd.DataFrame, layer: int, ori: float) -> pd.DataFrame:
    """The rows of one triangle (layer, orientation) of a triangle table (data, statistics or fits)."""
    return table[(table["layer"].astype(int) == layer) & (table["ori"].astype(float) == ori)].reset_index(drop=True)


def triangle_statistics(table: pd.DataFrame) -> pd.DataFrame:
    """stats_corr_triangles.csv: Pearson r, p, n of the three edges of each triangle of a triangle table."""
    rows = []
    for layer, name, ori in TRIANGLES:
        data = one_triangle(table, layer, ori)
        for x, y in TRIANGLE_PAIRS:
            r, p, n = pearson_finite(data[x], data[y])
            rows.append({"layer": layer, "layer_name": name, "ori": ori, "x": x, "y": y, "r": r, "p": p, "n": n})
    return pd.DataFrame(rows)


def triangle_fits(table: pd.DataFrame) -> pd.DataFrame:
    """stats_corr_triangle_fits.csv: the fitted line of each edge of each triangle (regression_line)."""
    frames = []
    for layer, name, ori in TRIANGLES:
        data = one_triangle(table, layer, ori)
        frames += [regression_line(data[x], data[y]).assign(layer=layer, layer_name=name, ori=ori, x=x, y=y)
                   for x, y in TRIANGLE_PAIRS]  # fmt: skip
    return pd.concat(frames, ignore_index=True)[["layer", "layer_name", "ori", "x", "y", *FIT_COLUMNS]]


# ------------------------------------------------------------------------------------------------------
# Slope changes (F7)
# ------------------------------------------------------------------------------------------------------
LOWESS_FRAC = 0.15
"""Fraction of the points in each LOWESS neighbourhood."""
MANN_WHITNEY_WINDOW = 10.0
"""Width of the sliding Mann-Whitney windows, degrees."""
LOWESS_SIDES: tuple[str, str] = ("neg", "pos")
SLOPE_CHANGE_COLUMNS: tuple[str, ...] = ("run_index", "cell", "layer", "type", "phase", "pref_ori", "x", "dslope")


def slope_subset(table: pd.DataFrame, layout: CellLayout) -> pd.DataFrame:
    """The cells of the slope figure: middle layer phases 0 and π only (phase indices 0 and phases/2), every
    superficial cell."""
    mid = (table["layer"] == LAYER_NAMES[0]) & table["phase"].isin([0, layout.phases // 2])
    return table[mid | (table["layer"] == LAYER_NAMES[1])]


def slope_changes(
    features: pd.DataFrame, pre_stage: int, post_stage: int, layout: CellLayout, orientations: TaskOrientations
) -> pd.DataFrame:
    """slope_change_table at the trained then the untrained orientation (column slope_ori) of the cells of the
    slope figure (slope_subset)."""
    tables = {ori: slope_change_table(features, pre_stage, post_stage, ori, layout) for ori in orientations.slopes}
    frames = [slope_subset(t, layout).assign(slope_ori=ori) for ori, t in tables.items() if len(t)]
    if not frames:  # no run has both stages
        return pd.DataFrame(columns=[*SLOPE_CHANGE_COLUMNS, "slope_ori"])
    return pd.concat(frames, ignore_index=True)


def _slope_groups(changes: pd.DataFrame, orientations: TaskOrientations) -> list[tuple[str, str, list[pd.DataFrame]]]:
    """(layer, cell type, [rows at the trained, at the untrained orientation]) of a slope_changes table."""
    groups = []
    for layer in LAYER_NAMES:
        for cell_type in CELL_TYPES:
            sel = changes[(changes["layer"] == layer) & (changes["type"] == cell_type)]
            groups.append((layer, cell_type, [sel[sel["slope_ori"] == ori] for ori in orientations.slopes]))
    return groups


def slope_lowess_table(
    changes: pd.DataFrame, orientations: TaskOrientations, frac: float = LOWESS_FRAC
) -> pd.DataFrame:
    """stats_tc_slope_lowess.csv: LOWESS fits of Δ|slope| on preferred − θ (lowess_by_side) per layer, slope
    orientation, cell type and side of θ, at the data's x values."""
    frames = []
    for layer, cell_type, by_ori in _slope_groups(changes, orientations):
        for ori, sel in zip(orientations.slopes, by_ori, strict=True):
            for side, fit in lowess_by_side(sel["x"], sel["dslope"], frac).items():
                frames.append(pd.DataFrame({"layer": layer, "slope_ori": ori, "type": cell_type, "side": side,
                                            "x": fit[:, 0], "fit": fit[:, 1]}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def slope_mann_whitney_table(
    changes: pd.DataFrame, orientations: TaskOrientations, step: float, window: float = MANN_WHITNEY_WINDOW
) -> pd.DataFrame:
    """stats_tc_slope_mann_whitney.csv: sliding Mann-Whitney tests of Δ|slope| at the trained vs the untrained
    orientation (sliding_mann_whitney) per layer and cell type."""
    frames = []
    for layer, cell_type, (trained, untrained) in _slope_groups(changes, orientations):
        mw = sliding_mann_whitney(trained["x"], trained["dslope"], untrained["x"], untrained["dslope"], window, step)
        frames.append(mw.assign(layer=layer, type=cell_type))
    table = pd.concat(frames, ignore_index=True)
    return table[["layer", "type", "start", "centre", "p", "n1", "n2"]]
