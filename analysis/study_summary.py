"""Study-level summary across configurations: ``study_summary.csv``, ``study_stats.csv`` and ``headline.png``.

Everything is computed from files the per-configuration analysis already wrote or read: the relative changes
of ``<conf>/rel_changes_train.csv`` (first to last stage-2 row of each run, percent) restricted to the runs the
configuration keeps, the exclusion verdicts, and the first and last stage-2 values of the staircase offset and
of the psychometric threshold (``training_results.csv``).

Thresholds equal to :data:`training.psychometrics.NO_THRESHOLD` (the fitted curve never reached the criterion)
or NaN are *not measured*: they are counted, not averaged, in the summary and drawn apart in the figure.

Tests are Wilcoxon signed-rank tests (scipy, two-sided, exact for small n) on per-run paired differences; the
effect size is the matched-pairs rank-biserial correlation (W+ - W-) / (W+ + W-), in [-1, 1]. With n < 2 no
test is run (p = NaN); with n < 6 the exact two-sided p cannot fall below 0.05 (the smallest is 2 / 2^n),
which the ``note`` column says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from store.layout import HEADLINE, STUDY_STATS, STUDY_SUMMARY  # noqa: F401  (used as ss.STUDY_SUMMARY etc.)
from training.psychometrics import NO_THRESHOLD

WEIGHTS: tuple[str, ...] = tuple(f"J_{k}_{x}" for x in ("m", "s") for k in ("EE", "IE", "EI", "II"))
"""The eight recurrent weights (change of |J|: the sign of each J is fixed, so J and |J| change alike)."""
GAINS: tuple[str, ...] = ("f_E", "f_I", "cE_m", "cI_m")
"""Feedforward scales f and baselines c (cE_s, cI_s equal cE_m, cI_m)."""
BEHAVIOUR: tuple[str, ...] = ("staircase_offset", "psychometric_offset")
"""The behavioural measures, before (first stage-2 value) and after (last stage-2 value) training."""
MIN_N_FOR_005 = 6
"""Smallest n for which an exact two-sided Wilcoxon signed-rank p can be below 0.05."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "configuration", "n_runs", "n_retained", "n_excluded", "excluded_runs", "quantity", "unit", "n",
    "n_not_measured", "median", "q25", "q75",
)  # fmt: skip
STATS_COLUMNS: tuple[str, ...] = (
    "configuration", "comparison", "x", "y", "unit", "n", "test", "statistic", "p", "effect_size",
    "median_difference", "note",
)  # fmt: skip

PAIRED_CHANGES: tuple[tuple[str, str, str], ...] = (
    ("dJ_II sup vs mid", "J_II_m", "J_II_s"),
    ("dJ_EI sup vs mid", "J_EI_m", "J_EI_s"),
    ("dJ_EE sup vs mid", "J_EE_m", "J_EE_s"),
    ("dJ_IE sup vs mid", "J_IE_m", "J_IE_s"),
    ("dE/I ratio sup vs mid", "EI_ratio_J_m", "EI_ratio_J_s"),
)
"""(comparison, x, y): paired tests of y - x on the per-run relative changes (percent)."""
ONE_SAMPLE_CHANGES: tuple[tuple[str, str], ...] = (
    ("dE/I ratio mid vs 0", "EI_ratio_J_m"),
    ("dE/I ratio sup vs 0", "EI_ratio_J_s"),
)
"""(comparison, column): tests of the change of the E/I balance J_I/J_E of one layer against no change."""


@dataclass(frozen=True)
class ConfigurationData:
    """What the study summary needs of one configuration."""

    name: str
    runs: list[int]
    """Every run of the study."""
    excluded: dict[int, str]
    """Excluded run -> reason."""
    changes: pd.DataFrame
    """rel_changes_train.csv rows of the retained runs."""
    pre_post: pd.DataFrame
    """Long table run_index, time (pre/post), staircase_offset, psychometric_offset of the retained runs."""

    @property
    def retained(self) -> list[int]:
        """Runs the configuration's analysis keeps."""
        return [r for r in self.runs if r not in self.excluded]


# ------------------------------------------------------------------------------------------------- helpers
def measured(values: np.ndarray, quantity: str) -> np.ndarray:
    """Boolean mask of the measured values (finite; thresholds also below NO_THRESHOLD)."""
    ok = np.isfinite(values)
    if quantity.startswith("psychometric_offset"):
        ok &= values < NO_THRESHOLD
    return ok


def behaviour_wide(pre_post: pd.DataFrame, column: str) -> pd.DataFrame:
    """(runs x [pre, post]) values of one behavioural column."""
    if column not in pre_post.columns or pre_post.empty:
        return pd.DataFrame(columns=["pre", "post"], dtype=float)
    wide = pre_post.pivot_table(index="run_index", columns="time", values=column, aggfunc="first", dropna=False)
    return wide.reindex(columns=["pre", "post"]).astype(float)


def change_values(changes: pd.DataFrame, column: str) -> pd.Series:
    """Per-run percent change of a column (indexed by run; empty if absent)."""
    if column not in changes.columns or changes.empty:
        return pd.Series(dtype=float)
    return pd.to_numeric(changes[column], errors="coerce").set_axis(changes["run_index"].astype(int).to_numpy())


def wilcoxon_paired(diff: Sequence[float]) -> dict[str, float | int | str]:
    """Two-sided Wilcoxon signed-rank test of paired differences (NaNs dropped): n, statistic, p, effect
    size (rank-biserial), median difference and a note on small n."""
    d = np.asarray(diff, dtype=float)
    d = d[np.isfinite(d)]
    n = int(d.size)
    out: dict[str, float | int | str] = {
        "n": n, "test": "Wilcoxon signed-rank (two-sided)", "statistic": math.nan, "p": math.nan,
        "effect_size": math.nan, "median_difference": float(np.median(d)) if n else math.nan, "note": "",
    }  # fmt: skip
    if n < 2:
        out["note"] = f"n = {n} < 2: not tested"
        return out
    nonzero = d[d != 0]
    if nonzero.size == 0:
        out["note"] = "all differences are zero: not tested"
        return out
    ranks = stats.rankdata(np.abs(nonzero))
    w_plus, w_minus = float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum())
    result = stats.wilcoxon(d, zero_method="wilcox")
    out.update(statistic=float(result.statistic), p=float(result.pvalue),
               effect_size=(w_plus - w_minus) / (w_plus + w_minus))  # fmt: skip
    if n < MIN_N_FOR_005:
        out["note"] = f"n = {n} < {MIN_N_FOR_005}: the smallest possible p is {2 / 2**n:.3g}"
    return out


def mann_whitney_unpaired(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int]:
    """Two-sided Mann-Whitney U test of two independent samples (NaNs dropped): the sizes, U of ``a``, p and
    the rank-biserial effect size 2U/(n_a n_b) − 1 (positive where ``a`` tends to be larger); NaN p and effect
    below 2 values a side."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    out: dict[str, float | int] = {"n_a": int(x.size), "n_b": int(y.size), "statistic": math.nan, "p": math.nan,
                                   "effect_size": math.nan}  # fmt: skip
    if x.size < 2 or y.size < 2:
        return out
    result = stats.mannwhitneyu(x, y, alternative="two-sided")
    out.update(statistic=float(result.statistic), p=float(result.pvalue),
               effect_size=2.0 * float(result.statistic) / (x.size * y.size) - 1.0)  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------------- tables
def _summary_row(data: ConfigurationData, quantity: str, unit: str, values: np.ndarray) -> dict:
    """One summary row: median and quartiles of the measured values."""
    ok = measured(values, quantity)
    good = values[ok]
    q25, median, q75 = np.percentile(good, [25, 50, 75]) if good.size else (math.nan,) * 3
    return {
        "configuration": data.name, "n_runs": len(data.runs), "n_retained": len(data.retained),
        "n_excluded": len(data.excluded), "excluded_runs": " ".join(map(str, sorted(data.excluded))),
        "quantity": quantity, "unit": unit, "n": int(good.size), "n_not_measured": int((~ok).sum()),
        "median": float(median), "q25": float(q25), "q75": float(q75),
    }  # fmt: skip


def summary_table(confs: Sequence[ConfigurationData]) -> pd.DataFrame:
    """study_summary.csv: per configuration and quantity, median [q25, q75] over the retained runs."""
    rows = []
    for data in confs:
        for col in (*WEIGHTS, *GAINS):
            rows.append(_summary_row(data, f"d_{col}", "% change", change_values(data.changes, col).to_numpy(float)))
        for col in BEHAVIOUR:
            wide = behaviour_wide(data.pre_post, col)
            for time in ("pre", "post"):
                rows.append(_summary_row(data, f"{col}_{time}", "deg", wide[time].to_numpy(float)))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _stats_row(conf: str, comparison: str, x: str, y: str, unit: str, diff: Sequence[float]) -> dict:
    """One statistics row."""
    return {"configuration": conf, "comparison": comparison, "x": x, "y": y, "unit": unit, **wilcoxon_paired(diff)}


def paired_change_difference(changes: pd.DataFrame, x: str, y: str) -> np.ndarray:
    """Per-run difference (y - x) of two percent changes (runs lacking either are dropped)."""
    both = pd.concat([change_values(changes, x).rename("x"), change_values(changes, y).rename("y")], axis=1)
    both = both.dropna()
    return (both["y"] - both["x"]).to_numpy(float)


def behaviour_difference(pre_post: pd.DataFrame, column: str) -> np.ndarray:
    """Per-run post - pre of a behavioural column, runs with an unmeasured value dropped."""
    wide = behaviour_wide(pre_post, column)
    ok = measured(wide["pre"].to_numpy(float), column) & measured(wide["post"].to_numpy(float), column)
    return (wide["post"] - wide["pre"]).to_numpy(float)[ok]


def stats_table(confs: Sequence[ConfigurationData]) -> pd.DataFrame:
    """study_stats.csv: the paired tests of every configuration."""
    rows = []
    for data in confs:
        for comparison, x, y in PAIRED_CHANGES:
            rows.append(_stats_row(data.name, comparison, x, y, "% change",
                                   paired_change_difference(data.changes, x, y)))  # fmt: skip
        for comparison, col in ONE_SAMPLE_CHANGES:
            rows.append(_stats_row(data.name, comparison, "0", col, "% change",
                                   change_values(data.changes, col).to_numpy(float)))  # fmt: skip
        for col in BEHAVIOUR:
            rows.append(_stats_row(data.name, f"{col} post vs pre", f"{col}_pre", f"{col}_post", "deg",
                                   behaviour_difference(data.pre_post, col)))  # fmt: skip
    return pd.DataFrame(rows, columns=list(STATS_COLUMNS))


def stats_lookup(table: pd.DataFrame) -> Mapping[tuple[str, str], pd.Series]:
    """(configuration, comparison) -> stats row."""
    return {(str(r["configuration"]), str(r["comparison"])): r for _, r in table.iterrows()}


def format_test(row: pd.Series | None) -> str:
    """'Wilcoxon n = 5, p = 0.031, r = 0.87' (or the note when not tested)."""
    if row is None:
        return "not tested"
    if not np.isfinite(row["p"]):
        return str(row["note"]) or "not tested"
    return f"Wilcoxon n = {int(row['n'])}, p = {row['p']:.3g}, r = {row['effect_size']:.2f}"
