"""Statistics of the analysis (ANALYSIS.md §7, binding decision 2): parameter-offset correlations, paired
tests and a repeated-measures ANOVA of the MVPA and Mahalanobis scores, the sliding Mann-Whitney test and
LOWESS fits of the slope figure, and the data of the correlation triangles. Tables go to ``stats_*.csv``.

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

from analysis.cells import CellLayout, cell_info, wrap_orientation_difference
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


def significance_color(r: float, p: float, alpha: float = 0.05) -> str:
    """Green for significant positive r, red for significant negative r, gray otherwise."""
    if np.isfinite(p) and p < alpha:
        return "green" if r > 0 else "red"
    return "gray"


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
