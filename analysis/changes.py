"""Run exclusion (ANALYSIS.md §2) and relative parameter changes and pre/post values (§6).

A configuration's training_results.csv holds stage-2 rows; where stage 1 runs in the training job
(PretrainingPars.stage1_placement 'training', the figure era) a run's stage-1 rows (stage = 1, possibly none)
come before them. Everything below that means stage 2 reads the stage-2 rows only.

Exclusion (binding decision 7, fix of B4): a run is excluded from a configuration's analysis if it has no
stage-2 (training) rows, or if both the mean of its last 3 valid psychometric thresholds exceeds 10 and more
than 8 of its last 10 staircase values sit at the ceiling (>= max_train_offset - 0.1). The rule applies to
every configuration; the union over configurations is used where configurations are compared.

Relative changes (fixes B3 and B22): the training window runs from the first stage-2 row to the last row, for
every configuration (the reference started the first configuration's window at the last pretraining row).
With stage 1 in the training job this is LINEAGE.md H's figure for J, c and f (its start row, the last
stage-0 row, holds the values of the first stage-2 row, since stage 1 trains the readout only) and for κ
(zero at the first stage-2 row). The pretraining window ends at the run's last pretraining row.
Ordinary columns get percent changes; kappa columns (the change of tanh(kappa); the files store raw kappa)
and every column whose start value is 0 in some run get absolute changes in ``d_<name>`` columns; NaN stays
NaN. Start and end of a window are the first and last non-missing values inside it (psychometric offsets
are sparse).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from store.exclusion import write_excluded_runs
from store.files import atomic_open
from store.layout import EXCLUDED_ALL, EXCLUDED_CONF, EXCLUDED_DETAILS

NON_VALUE_COLUMNS: tuple[str, ...] = ("run_index", "stage", "SGD_steps", "index")
"""Columns of the results tables that are bookkeeping, not measured values."""


def _column_values(df: pd.DataFrame, column: str) -> np.ndarray:
    """Non-missing numeric values of a column (empty if the column is absent)."""
    if column not in df.columns:
        return np.array([])
    return pd.to_numeric(df[column], errors="coerce").dropna().to_numpy(float)


def stage2_rows(train_df: pd.DataFrame) -> pd.DataFrame:
    """The stage-2 rows of a training table (all of them where it has no stage column or no stage-1 rows)."""
    if "stage" not in train_df.columns:
        return train_df
    stage = pd.to_numeric(train_df["stage"], errors="coerce")
    return train_df[(stage == 2) | stage.isna()]


def exclusion_table(
    train_df: pd.DataFrame,
    run_indices: Iterable[int],
    max_train_offset: float = 10.0,
    psy_threshold: float = 10.0,
    n_psy: int = 3,
    n_stair: int = 10,
    min_stuck: int = 8,
    tolerance: float = 0.1,
) -> pd.DataFrame:
    """Per run: training rows?, last-3 psychometric mean, staircase values at ceiling, verdict."""
    rows = []
    stage2 = stage2_rows(train_df)
    for run in run_indices:
        sub = stage2[stage2["run_index"] == run]
        has_training = len(sub) > 0
        psy = _column_values(sub, "psychometric_offset")
        stair = _column_values(sub, "staircase_offset")
        psy_mean = float(np.mean(psy[-n_psy:])) if psy.size else math.nan
        n_stuck = int(np.sum(stair[-n_stair:] >= max_train_offset - tolerance))
        stuck = psy_mean > psy_threshold and n_stuck > min_stuck
        reason = "no training rows" if not has_training else ("stuck at offset ceiling" if stuck else "")
        rows.append(
            {
                "run_index": int(run),
                "has_training": has_training,
                "psy_mean_last": psy_mean,
                "n_staircase_at_ceiling": n_stuck,
                "excluded": bool(reason),
                "reason": reason,
            }
        )
    return pd.DataFrame(rows)


def excluded_runs(train_df: pd.DataFrame, run_indices: Iterable[int], max_train_offset: float = 10.0) -> list[int]:
    """Sorted indices of the runs excluded from one configuration's analysis."""
    table = exclusion_table(train_df, run_indices, max_train_offset)
    return sorted(int(r) for r in table.loc[table["excluded"], "run_index"])


def write_exclusion_files(results_root: str | Path, excluded_by_conf: Mapping[str, Iterable[int]]) -> list[int]:
    """Write <conf>/excluded_runs.csv, excluded_runs_all.csv (union) and excluded_runs_details.csv."""
    root = Path(results_root)
    lists = {conf: sorted(int(r) for r in runs) for conf, runs in excluded_by_conf.items()}
    for conf, runs in lists.items():
        write_excluded_runs(runs, root / conf / EXCLUDED_CONF)
    union = sorted(set().union(*lists.values())) if lists else []
    write_excluded_runs(union, root / EXCLUDED_ALL)
    details = pd.DataFrame(
        {
            "excluded_runs": [" ".join(map(str, runs)) for runs in lists.values()],
            "n_excluded": [len(runs) for runs in lists.values()],
        },
        index=pd.Index(list(lists), name="configuration"),
    )
    with atomic_open(root / EXCLUDED_DETAILS) as fh:
        details.to_csv(fh)
    return union


# ------------------------------------------------------------------------------------------------------
# Relative changes and pre/post values (ANALYSIS.md §6; the window rules are in the module docstring)
# ------------------------------------------------------------------------------------------------------
def add_derived_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Add J_I_x = |J_II_x + J_EI_x|, J_E_x = |J_IE_x + J_EE_x| (x = m, s) and the E/I ratios J_I/J_E."""
    out = df.copy()
    for x in ("m", "s"):
        if {f"J_{k}_{x}" for k in ("EE", "EI", "IE", "II")} <= set(out.columns):
            out[f"J_I_{x}"] = (out[f"J_II_{x}"] + out[f"J_EI_{x}"]).abs()
            out[f"J_E_{x}"] = (out[f"J_IE_{x}"] + out[f"J_EE_{x}"]).abs()
            out[f"EI_ratio_J_{x}"] = out[f"J_I_{x}"] / out[f"J_E_{x}"]
    if {"J_I_m", "J_I_s"} <= set(out.columns):
        out["EI_ratio_J_ms"] = (out["J_I_m"] + out["J_I_s"]) / (out["J_E_m"] + out["J_E_s"])
    return out


def run_table(pre_df: pd.DataFrame, train_df: pd.DataFrame, run_index: int) -> pd.DataFrame:
    """One run's pretraining rows then training rows (stage 2), re-indexed 0..L-1, with derived columns."""
    pre = pre_df[pre_df["run_index"] == run_index]
    train = train_df[train_df["run_index"] == run_index].copy()
    if "stage" not in train.columns or train["stage"].isna().all():
        train["stage"] = 2
    table = pd.concat([pre, train], ignore_index=True)
    return add_derived_columns(table.drop(columns=["index"], errors="ignore"))


def time_indices(table: pd.DataFrame) -> dict[str, int | None]:
    """t0 (first stage-0 row), tT (first stage-2 row, None if absent) and tE (last row)."""
    stage = table["stage"].to_numpy()
    first0 = np.flatnonzero(stage == 0)
    first2 = np.flatnonzero(stage == 2)
    return {
        "t0": int(first0[0]) if first0.size else 0,
        "tT": int(first2[0]) if first2.size else None,
        "tE": len(table) - 1,
    }


def value_columns(table: pd.DataFrame) -> list[str]:
    """Numeric columns that get a change (everything except run_index, stage, SGD_steps, index)."""
    numeric = table.select_dtypes(include="number").columns
    return [c for c in numeric if c not in NON_VALUE_COLUMNS]


def window_endpoints(table: pd.DataFrame, start: int, stop: int) -> tuple[pd.Series, pd.Series]:
    """Per value column: first non-missing value in [start, stop] and the last one after it."""
    cols = value_columns(table)
    window = table[cols].iloc[start : stop + 1].apply(pd.to_numeric, errors="coerce")
    valid = window.notna().to_numpy()
    values = window.to_numpy(float)
    first = np.full(len(cols), np.nan)
    last = np.full(len(cols), np.nan)
    for j in range(len(cols)):
        pos = np.flatnonzero(valid[:, j])
        if pos.size:
            first[j] = values[pos[0], j]
        if pos.size > 1:
            last[j] = values[pos[-1], j]
    return pd.Series(first, index=cols), pd.Series(last, index=cols)


def is_kappa_column(name: str) -> bool:
    """Kappa columns hold raw kappa; their changes are absolute changes of tanh(kappa)."""
    return name.startswith("kappa_")


def changes_from_endpoints(start: pd.DataFrame, end: pd.DataFrame) -> pd.DataFrame:
    """Percent columns (NaN where start = 0) and d_<name> absolute columns (kappa: of tanh)."""
    out = {}
    absolute = []
    for col in start.columns:
        s, e = start[col].astype(float), end[col].astype(float)
        if is_kappa_column(col):
            absolute.append((col, np.tanh(e) - np.tanh(s)))
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            out[col] = (100.0 * (e - s) / s).where(s != 0)
        if (s == 0).any():
            absolute.append((col, e - s))
    out.update({f"d_{col}": delta for col, delta in absolute})
    return pd.DataFrame(out, index=start.index)


def _window_bounds(table: pd.DataFrame, window: str, pretraining_rows: int | None = None) -> tuple[int, int] | None:
    """[a, b] of the 'train' window (first stage-2 row .. last row) or the 'pretrain' window (first row .. the
    row before the first stage-2 row, and at most the ``pretraining_rows``-th: a configuration's stage-1 rows
    belong to its training, not to the pretraining)."""
    t = time_indices(table)
    if window == "train":
        return None if t["tT"] is None else (t["tT"], t["tE"])
    if window == "pretrain":
        end = t["tE"] if t["tT"] is None else t["tT"] - 1
        return t["t0"], end if pretraining_rows is None else min(end, pretraining_rows - 1)
    raise ValueError("window must be 'train' or 'pretrain'")


def run_relative_changes(table: pd.DataFrame, window: str = "train") -> pd.Series:
    """Changes (percent and d_<name> columns) of one run table over its 'train' or 'pretrain' window."""
    bounds = _window_bounds(table, window) if len(table) else None
    if bounds is None:
        return pd.Series(dtype=float)
    start, end = window_endpoints(table, *bounds)
    return changes_from_endpoints(start.to_frame().T, end.to_frame().T).iloc[0]


def endpoints_for_runs(
    pre_df: pd.DataFrame, train_df: pd.DataFrame, run_indices: Iterable[int], window: str = "train"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Start and end values (runs x columns) of each run's window; runs without that window are skipped."""
    starts, ends = {}, {}
    for run in run_indices:
        table = run_table(pre_df, train_df, int(run))
        pretraining_rows = int((pre_df["run_index"] == run).sum())
        bounds = _window_bounds(table, window, pretraining_rows) if len(table) else None
        if bounds is None:
            continue
        starts[int(run)], ends[int(run)] = window_endpoints(table, *bounds)
    start = pd.DataFrame(starts).T.rename_axis("run_index")
    end = pd.DataFrame(ends).T.rename_axis("run_index")
    return start, end.reindex(columns=start.columns)


def relative_changes(
    pre_df: pd.DataFrame, train_df: pd.DataFrame, run_indices: Iterable[int], window: str = "train"
) -> pd.DataFrame:
    """rel_changes_<window>.csv table: run_index, percent columns and d_<name> absolute-change columns."""
    start, end = endpoints_for_runs(pre_df, train_df, run_indices, window)
    if start.empty:
        return pd.DataFrame(columns=["run_index"])
    return changes_from_endpoints(start, end).reset_index()


def pre_post_values(
    pre_df: pd.DataFrame, train_df: pd.DataFrame, run_indices: Iterable[int], include_init: bool = False
) -> pd.DataFrame:
    """Long table (run_index, time init/pre/post, columns) of the training-window end points."""
    start, end = endpoints_for_runs(pre_df, train_df, run_indices, "train")
    frames = [start.assign(time="pre"), end.assign(time="post")]
    if include_init:
        init, _ = endpoints_for_runs(pre_df, train_df, start.index, "pretrain")
        frames.insert(0, init.assign(time="init"))
    out = pd.concat(frames).reset_index()
    return out[["run_index", "time", *[c for c in out.columns if c not in ("run_index", "time")]]]


def change_column(rel_changes: pd.DataFrame, name: str) -> str:
    """The column holding the change of name: the percent column, else d_<name>."""
    if name in rel_changes.columns:
        return name
    if f"d_{name}" in rel_changes.columns:
        return f"d_{name}"
    raise KeyError(name)
