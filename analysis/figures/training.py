"""Training figures (ANALYSIS.md §8): F1 per-run traces, F2 pre/post values, F3 relative-change boxes and F4
parameter-offset correlations.

Callers remove excluded runs before calling (B5). Fixes built here: the four ``_post`` kappa keys and
consistent kappa ticks (B15), the E/I ratio labelled J_I/J_E (B16); kappa values are shown as tanh(kappa), the
form the model uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from analysis.changes import change_column
from analysis.figures.style import (
    E_PRE_COLOR,
    I_PRE_COLOR,
    POST_COLOR,
    PRE_COLOR,
    draw_regression,
    new_figure,
    no_data,
    note_figure,
    save,
    significance_color,
    styled,
    transform,
)
from analysis.study_summary import measured

KAPPA_YLIM = (-2.0, 2.0)
PERCENT_YLIM = (-60.0, 100.0)

Panel = tuple[str, str, str | None]
"""(column, label with unit, transform: None, 'abs' or 'tanh')."""


# ------------------------------------------------------------------------------------------------------
# F1 per-run training traces
# ------------------------------------------------------------------------------------------------------
def _lines(
    ax: Axes, x: np.ndarray, df: pd.DataFrame, cols: Sequence[str], how: str | None = None, **kw: Any
) -> None:
    """Plot the present columns of df against x with their names as labels."""
    for col in cols:
        if col in df.columns:
            y = transform(pd.to_numeric(df[col], errors="coerce").to_numpy(float), how)
            ax.plot(x, y, label=col, **kw)


def _dots(ax: Axes, x: np.ndarray, df: pd.DataFrame, cols: Sequence[str], **kw: Any) -> None:
    """Scatter the non-missing values of the present columns (sparse columns)."""
    for col in cols:
        if col in df.columns:
            y = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], "o", ms=3, label=col, **kw)


def _stage_lines(ax: Axes, stage: np.ndarray) -> None:
    """Dashed vertical lines where the stage changes."""
    for pos in np.flatnonzero(np.diff(stage) != 0) + 0.5:
        ax.axvline(pos, color="k", ls="--", lw=1)


def _change_bars(ax: Axes, changes: pd.Series, cols: Sequence[str], title: str) -> None:
    """Bar chart of a run's percent changes, each bar labelled with its value."""
    present = [c for c in cols if c in changes.index]
    if not present:
        no_data(ax, title)
        return
    vals = changes[present].to_numpy(float)
    bars = ax.bar(range(len(present)), np.nan_to_num(vals), color="tab:gray")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=8)
    ax.set_xticks(range(len(present)), present, rotation=60, ha="right", fontsize=8)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_title(title)
    ax.set_ylabel("Change (%)")


@styled
def plot_training_run(
    run_df: pd.DataFrame, changes: pd.Series, path: str | Path, run_index: int | None = None
) -> Path:
    """F1: 3x5 traces of one run (pretraining + training rows, see analysis.changes.run_table) against SGD step;
    the bars show the run's changes over stage 2 (its row of rel_changes_train.csv, empty without one)."""
    fig, ax = new_figure(3, 5, (4.0, 3.0))
    x = np.arange(len(run_df))
    stage = run_df["stage"].to_numpy() if "stage" in run_df.columns else np.zeros(len(run_df))
    a = ax[0, 0]
    _lines(a, x, run_df, ["acc"])
    _dots(a, x, run_df, ["val_acc"])
    a.axhline(0.5, color="gray", lw=0.8)
    a.set(ylim=(0, 1), title="Accuracy", ylabel="Fraction correct")
    a = ax[0, 1]
    losses = [c for c in run_df.columns if c.startswith("loss_")]
    _lines(a, x, run_df, losses, lw=1)
    _dots(a, x, run_df, ["val_loss"])
    top = 1.0
    if "loss_all" in run_df.columns:
        tail = pd.to_numeric(run_df["loss_all"], errors="coerce").iloc[int(0.02 * len(run_df)) :]
        top = max(1.0, float(np.nanmax(tail.to_numpy(float), initial=0.0)) + 0.1)
    a.set(ylim=(-0.1, top), title="Losses", ylabel="Loss (a.u.)")
    a = ax[0, 2]
    _dots(a, x, run_df, ["psychometric_offset", "staircase_offset"])
    stair = pd.to_numeric(run_df.get("staircase_offset", pd.Series(dtype=float)), errors="coerce")
    a.set(ylim=(0, min(25.0, float(np.nanmax(stair.to_numpy(float), initial=9.0)) + 1.0)))
    a.set(title="Offsets", ylabel="Offset (deg)")
    _lines(ax[0, 3], x, run_df, [c for c in run_df.columns if c.startswith("maxr_")])
    ax[0, 3].set(title="Maximum rates", ylabel="Rate (Hz)")
    _lines(ax[0, 4], x, run_df, [c for c in run_df.columns if c.startswith("meanr_")])
    ax[0, 4].set(title="Mean rates", ylabel="Rate (Hz)")
    w_cols = [f"w_sig_{i}" for i in range(29, 39) if f"w_sig_{i}" in run_df.columns]
    w_cols = w_cols or [c for c in run_df.columns if c.startswith("w_sig_")][:10]
    _lines(ax[1, 0], x, run_df, ["b_sig"], lw=2, color="k")
    _lines(ax[1, 0], x, run_df, w_cols, lw=0.8)
    ax[1, 0].set(title="Readout (b_sig, w_sig)", ylabel="Weight (a.u.)")
    _lines(ax[1, 1], x, run_df, [f"J_{k}_m" for k in ("EE", "EI", "IE", "II")], ls="--")
    _lines(ax[1, 1], x, run_df, [f"J_{k}_s" for k in ("EE", "EI", "IE", "II")])
    ax[1, 1].set(title="J (mid dashed, sup solid)", ylabel="Weight (a.u.)")
    _lines(ax[1, 2], x, run_df, ["cE_m", "cI_m", "cE_s", "cI_s", "f_E", "f_I"])
    ax[1, 2].set(title="c and f", ylabel="Value (a.u.)")
    kappa_groups = [("kappa_Jsup", ax[1, 3]), ("kappa_Jmid", ax[1, 4]), ("kappa_f", ax[2, 0])]
    for prefix, a in kappa_groups:
        _lines(a, x, run_df, [c for c in run_df.columns if c.startswith(prefix)], how="tanh")
        a.set(title=f"tanh({prefix})", ylabel="tanh(κ)")
    j_cols = [f"J_{k}_{lay}" for lay in ("m", "s") for k in ("EE", "EI", "IE", "II")]
    _change_bars(ax[2, 1], changes, j_cols, "Training change: J")
    _change_bars(
        ax[2, 2], changes, ["psychometric_offset", "staircase_offset", "acc"], "Training change: metrics"
    )
    _change_bars(ax[2, 3], changes, ["cE_m", "cI_m", "cE_s", "cI_s", "f_E", "f_I"], "Training change: c, f")
    ax[2, 4].axis("off")
    for a in ax.flat[:11]:
        _stage_lines(a, stage)
        a.set_xlabel("SGD step (all stages)")
        if a.get_legend_handles_labels()[0]:  # below the panel: the traces fill the axes
            a.legend(fontsize=7, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.suptitle(f"Training traces, run {run_index if run_index is not None else ''}".strip())
    return save(fig, path)


# ------------------------------------------------------------------------------------------------------
# F2 pre/post bar plots
# ------------------------------------------------------------------------------------------------------
def _j_panels(how: str | None = "abs") -> list[Panel]:
    """|J| panels: mid then sup, EE, IE, EI, II."""
    names = {"m": "mid", "s": "sup"}
    return [
        (f"J_{k}_{x}", f"|J_{k}| {names[x]} (a.u.)", how)
        for x in ("m", "s")
        for k in ("EE", "IE", "EI", "II")
    ]


PRE_POST_FIGURES: dict[str, tuple[str, list[Panel], tuple[float, float] | None, int]] = {
    "offset_pre_post": (
        "Offsets before (Pre) and after (Post) training",
        [
            ("staircase_offset", "Staircase offset (deg)", None),
            ("psychometric_offset", "Psychometric threshold (deg)", None),
        ],
        None,
        2,
    ),
    "J_pre_post": ("Recurrent weights before and after training", _j_panels(), None, 4),
    "r_pre_post": (
        "Firing rates before and after training",
        [
            (f"{s}r_{t}_{lay}", f"{s} rate {t} {lay} (Hz)", None)
            for s in ("max", "mean")
            for lay in ("mid", "sup")
            for t in ("E", "I")
        ],
        None,
        4,
    ),
    "c_f_kappa_f": (
        "Baselines c, feedforward scales f and tanh(κ_f)",
        [(c, f"{c} (a.u.)", None) for c in ("cE_m", "cI_m", "cE_s", "cI_s", "f_E", "f_I")]
        + [(f"kappa_f_{t}", f"tanh(κ_f {t})", "tanh") for t in ("E", "I")],
        None,
        4,
    ),
    "kappas_Jmidsup": (
        "tanh(κ) of the recurrent weights",
        [(f"kappa_Jmid_{k}", f"tanh(κ mid {k})", "tanh") for k in ("EE", "IE", "EI", "II")]
        + [
            (f"kappa_Jsup_{k}_{w}", f"tanh(κ sup {k}, {w})", "tanh")
            for w in ("pre", "post")
            for k in ("EE", "IE", "EI", "II")
        ],
        None,
        4,
    ),
}


def _pre_post_panel(ax: Axes, pre_post: pd.DataFrame, panel: Panel) -> None:
    """Pre and post value of every run (dots joined per run) with median marks and the median change below;
    thresholds that were not measured (NO_THRESHOLD or NaN) are counted in the panel, not drawn."""
    col, label, how = panel
    if col not in pre_post.columns:
        no_data(ax, label, "not recorded")
        return
    wide = pre_post.pivot_table(index="run_index", columns="time", values=col, aggfunc="first", dropna=False)
    vals = transform(wide.reindex(columns=["pre", "post"]).to_numpy(float), how)
    ok = measured(vals, col)
    shown = np.where(ok, vals, np.nan)
    if not np.isfinite(shown).any():
        no_data(ax, label, f"not measured in any of {len(vals)} runs" if len(vals) else "no runs")
        return
    for row in shown:
        ax.plot([0, 1], row, color="k", alpha=0.35, lw=0.8, marker="o", ms=4)
    medians = [np.nanmedian(c) if np.isfinite(c).any() else np.nan for c in shown.T]
    for x, m, color in zip((0, 1), medians, (PRE_COLOR, POST_COLOR), strict=True):
        ax.plot([x - 0.25, x + 0.25], [m, m], color=color, lw=3, solid_capstyle="butt")
    diff = shown[:, 1] - shown[:, 0]
    note = f"median change {np.nanmedian(diff):.3g}" if np.isfinite(diff).any() else "no complete pair"
    if (~ok).any():
        note += f"; not measured: {int((~ok).sum())}"
    ax.set_xticks([0, 1], ["Pre", "Post"])
    ax.set_xlim(-0.5, 1.5)
    ax.set(title=label, ylabel=label)
    ax.set_xlabel(note, fontsize=9)


@styled
def plot_pre_post_bars(
    pre_post: pd.DataFrame,
    panels: Sequence[Panel],
    path: str | Path,
    title: str,
    ylim: tuple[float, float] | None = None,
    ncols: int = 4,
) -> Path:
    """F2: Pre (first training row) vs Post (last row) values of analysis.changes.pre_post_values output, one panel each
    (one dot per run, joined; coloured marks: medians; y-range from the data unless ylim is given)."""
    nrows = int(np.ceil(len(panels) / ncols))
    fig, ax = new_figure(nrows, ncols, (3.0, 3.0))
    for a, panel in zip(ax.flat, panels, strict=False):
        _pre_post_panel(a, pre_post, panel)
        if ylim is not None:
            a.set_ylim(*ylim)
    for a in ax.flat[len(panels) :]:
        a.axis("off")
    fig.suptitle(title)
    return save(fig, path)


def plot_all_pre_post_bars(pre_post: pd.DataFrame, fig_dir: str | Path, suffix: str = "") -> list[Path]:
    """All F2 files (offset, J, r, c_f_kappa_f, kappas) into fig_dir with the given suffix."""
    return [
        plot_pre_post_bars(pre_post, panels, Path(fig_dir) / f"{stem}{suffix}.png", title, ylim, ncols)
        for stem, (title, panels, ylim, ncols) in PRE_POST_FIGURES.items()
    ]


# ------------------------------------------------------------------------------------------------------
# F3 relative-change box plots
# ------------------------------------------------------------------------------------------------------
BOX_GROUPS: list[tuple[str, list[str], bool]] = [
    ("J mid", [f"J_{k}_m" for k in ("EE", "IE", "EI", "II")], False),
    ("J sup", [f"J_{k}_s" for k in ("EE", "IE", "EI", "II")], False),
    ("c", ["cE_m", "cI_m", "cE_s", "cI_s"], False),
    ("f", ["f_E", "f_I"], False),
    ("κ mid", [f"d_kappa_Jmid_{k}" for k in ("EE", "IE", "EI", "II")], True),
    ("κ sup (pre)", [f"d_kappa_Jsup_{k}_pre" for k in ("EE", "IE", "EI", "II")], True),
    ("κ sup (post)", [f"d_kappa_Jsup_{k}_post" for k in ("EE", "IE", "EI", "II")], True),
    ("κ f", ["d_kappa_f_E", "d_kappa_f_I"], True),
]
"""(title, columns, absolute?) of the eight box-plot groups; kappa groups use the d_ (tanh) columns."""


def _box_color(col: str) -> str:
    """Red for E-presynaptic weights (EE, IE), blue for I-presynaptic (EI, II), gray otherwise."""
    if "_EE" in col or "_IE" in col:
        return E_PRE_COLOR
    if "_EI" in col or "_II" in col:
        return I_PRE_COLOR
    return "lightgray"


def _short_label(col: str) -> str:
    """Tick label of a change column."""
    label = col.removeprefix("d_").replace("kappa_Jmid_", "").replace("kappa_Jsup_", "").replace("kappa_", "")
    return label.removesuffix("_pre").removesuffix("_post")


def _box_panel(ax: Axes, rel_changes: pd.DataFrame, title: str, cols: Sequence[str], absolute: bool) -> None:
    """Box plot of the present columns with black medians and a dashed zero line."""
    present = [c for c in cols if c in rel_changes.columns]
    if not present:
        no_data(ax, title, "not trained / no data")
        return
    data = [rel_changes[c].dropna().to_numpy(float) for c in present]
    box = ax.boxplot(data, patch_artist=True, medianprops={"color": "k"}, widths=0.6)
    for patch, col in zip(box["boxes"], present, strict=True):
        patch.set_facecolor(_box_color(col))
        patch.set_alpha(0.5)
    jitter = np.random.default_rng(0)  # fixed: the same figure on every call
    for i, values in enumerate(data, start=1):
        ax.plot(i + jitter.uniform(-0.12, 0.12, values.size), values, "k.", ms=5, zorder=3)
    ax.set_xticks(range(1, len(present) + 1), [_short_label(c) for c in present], rotation=30)
    ax.axhline(0, color="k", ls="--", lw=1)
    ax.set(title=title, ylabel="Absolute change of tanh(κ)" if absolute else "Relative change (%)")


@styled
def plot_relative_change_boxes(
    rel_changes: pd.DataFrame, path: str | Path, title: str, fixed_ylim: bool = False, ncols: int = 4
) -> Path:
    """F3: box plots of the eight parameter groups; fixed_ylim gives (-60, 100)% and (-2, 2) for kappa."""
    fig, ax = new_figure(int(np.ceil(len(BOX_GROUPS) / ncols)), ncols, (3.2, 3.2))
    for a, (group, cols, absolute) in zip(ax.flat, BOX_GROUPS, strict=False):
        _box_panel(a, rel_changes, group, cols, absolute)
        if fixed_ylim and any(c in rel_changes.columns for c in cols):
            a.set_ylim(*(KAPPA_YLIM if absolute else PERCENT_YLIM))
            if absolute:
                a.set_yticks(np.linspace(*KAPPA_YLIM, 5))
    fig.suptitle(title)
    return save(fig, path)


# ------------------------------------------------------------------------------------------------------
# F4 parameter-offset correlations
# ------------------------------------------------------------------------------------------------------
CORRELATION_FIGURES: dict[str, tuple[str, list[str], int, tuple[str, ...] | None]] = {
    "corr_psychometric_Jraw": (
        "Threshold change vs change of the recurrent weights",
        [f"J_{k}_{x}" for x in ("m", "s") for k in ("EE", "IE", "EI", "II")],
        4,
        ("MIDDLE LAYER", "SUPERFICIAL LAYER"),
    ),
    "corr_psychometric_Jcombined": (
        "Threshold change vs summed E and I weights and the E/I ratio J_I/J_E",
        ["J_E_m", "J_I_m", "EI_ratio_J_m", "J_E_s", "J_I_s", "EI_ratio_J_s"],
        3,
        ("MIDDLE LAYER", "SUPERFICIAL LAYER"),
    ),
    "corr_psychometric_f_c": (
        "Threshold change vs change of f and c",
        ["f_E", "f_I", "cE_m", "cI_m", "cE_s", "cI_s"],
        2,
        None,
    ),
    "corr_psychometric_kappa_Jsup": (
        "Threshold change vs change of tanh(κ) of the superficial weights",
        ["kappa_Jsup_EE_pre", "kappa_Jsup_IE_pre", "kappa_Jsup_EE_post", "kappa_Jsup_IE_post"],
        2,
        None,
    ),
}

PARAM_LABELS = {
    "EI_ratio_J_m": "E/I ratio J_I/J_E mid",
    "EI_ratio_J_s": "E/I ratio J_I/J_E sup",
    "EI_ratio_J_ms": "E/I ratio J_I/J_E mid+sup",
    "J_E_m": "J_E mid = |J_EE+J_IE|",
    "J_I_m": "J_I mid = |J_EI+J_II|",
    "J_E_s": "J_E sup = |J_EE+J_IE|",
    "J_I_s": "J_I sup = |J_EI+J_II|",
}


def _change_label(rel_changes: pd.DataFrame, name: str) -> str:
    """Axis label of a parameter's change with its unit."""
    col = change_column(rel_changes, name)
    base = PARAM_LABELS.get(name, name)
    return f"Δtanh({base}) (abs.)" if col.startswith("d_") else f"Δ{base} (%)"


MIN_CORRELATION_RUNS = 3
"""Fewest runs for which a correlation figure is drawn."""


def _has_change(rel_changes: pd.DataFrame, name: str) -> bool:
    """Whether the table holds a change column of name."""
    return name in rel_changes.columns or f"d_{name}" in rel_changes.columns


def _measured_runs(rel_changes: pd.DataFrame, target: str) -> int:
    """Runs with a finite change of the target."""
    if not _has_change(rel_changes, target):
        return 0
    values = pd.to_numeric(rel_changes[change_column(rel_changes, target)], errors="coerce")
    return int(np.isfinite(values).sum())


@styled
def plot_param_offset_correlations(
    rel_changes: pd.DataFrame,
    correlations: pd.DataFrame,
    fits: pd.DataFrame,
    params: Sequence[str],
    path: str | Path,
    title: str,
    ncols: int = 4,
    row_labels: Sequence[str] | None = None,
    target: str = "psychometric_offset",
) -> Path:
    """F4: one panel per parameter: the target's change (y) against the parameter's change (x) with the fitted
    line, r and p of stats_param_offset_correlations.csv (``correlations``) and the line and band of
    stats_param_offset_fits.csv (``fits``); with fewer than MIN_CORRELATION_RUNS runs the figure is one note
    instead of empty panels."""
    n_runs = _measured_runs(rel_changes, target)
    if n_runs < MIN_CORRELATION_RUNS:
        return note_figure(path, title, f"{n_runs} run(s) with a measured change of {target}: a correlation "
                           f"needs at least {MIN_CORRELATION_RUNS}.")  # fmt: skip
    nrows = int(np.ceil(len(params) / ncols))
    fig, ax = new_figure(nrows, ncols, (3.4, 3.2))
    corr = correlations[correlations["target"] == target].set_index("parameter")
    lines = fits[fits["target"] == target]
    y = rel_changes[change_column(rel_changes, target)].to_numpy(float)
    for a, name in zip(ax.flat, params, strict=False):
        if name not in corr.index or not np.isfinite(rel_changes[corr.loc[name, "column"]]).any():
            no_data(a, name)
            continue
        r, p = corr.loc[name, "r"], corr.loc[name, "p"]
        color = significance_color(r, p)
        x = rel_changes[corr.loc[name, "column"]].to_numpy(float)
        draw_regression(a, x, y, lines[lines["parameter"] == name], color)
        a.set_title(f"r={r:.2f}, p={p:.3f}", color=color)
        a.set(xlabel=_change_label(rel_changes, name), ylabel=f"Δ{target} (%)")
    for a in ax.flat[len(params) :]:
        a.axis("off")
    for i, label in enumerate(row_labels or []):
        ax[i, 0].set_ylabel(f"{label}\nΔ{target} (%)")
    fig.suptitle(title)
    return save(fig, path)


def plot_all_param_offset_correlations(
    rel_changes: pd.DataFrame, correlations: pd.DataFrame, fits: pd.DataFrame, fig_dir: str | Path
) -> list[Path]:
    """The four F4 files into fig_dir (each saved exactly once, B17)."""
    return [
        plot_param_offset_correlations(rel_changes, correlations, fits, params, Path(fig_dir) / f"{stem}.png", title,
                                       ncols, rows)  # fmt: skip
        for stem, (title, params, ncols, rows) in CORRELATION_FIGURES.items()
    ]
