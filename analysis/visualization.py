"""Figures of the analysis (spec ANALYSIS.md §8, F1-F9), one function per figure.

Every function takes DataFrames/arrays and an output path, writes one PNG through the Agg canvas
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``: no pyplot state, nothing left open), and returns the
path. Callers remove excluded runs before calling (B5). Fixes built here: x-axes in degrees and a
regular example-cell list (B14), the four ``_post`` kappa keys and consistent kappa ticks (B15), E/I
ratio labelled J_I/J_E and triangle axes labelled as plotted (B16), one save per figure (B17), phase
legend in the order 0, π/2, π, 3π/2 (B18). Kappa values are shown as tanh(kappa), the form the model uses.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.cells import (
    DEFAULT_ORIENTATIONS,
    LAYER_NAMES,
    CellLayout,
    TaskOrientations,
    cell_info,
    cell_names,
)
from analysis.changes import change_column, run_relative_changes
from analysis.statistics import (
    lowess_by_side,
    param_offset_correlations,
    pearson_finite,
    significance_color,
    sliding_mann_whitney,
    slope_change_table,
)
from analysis.study_summary import measured
from analysis.tuning_features import TC_ORIENTATIONS, feature_matrix
from store.files import atomic_savefig
from training.psychometrics import NO_THRESHOLD

logger = logging.getLogger(__name__)

STYLE: dict[str, Any] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9,
    "figure.titlesize": 14,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
DPI = 100
PRE_COLOR, POST_COLOR = "#F3929A", "#70BFD9"
E_PRE_COLOR, I_PRE_COLOR = "tab:red", "tab:blue"
KAPPA_YLIM = (-2.0, 2.0)
PERCENT_YLIM = (-60.0, 100.0)

Panel = tuple[str, str, str | None]
"""(column, label with unit, transform: None, 'abs' or 'tanh')."""


def _styled(func: Callable[..., Path]) -> Callable[..., Path]:
    """Run a figure function inside the shared rc style."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Path:
        """Call func with the STYLE rc parameters."""
        with mpl.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def _figure(nrows: int, ncols: int, panel: tuple[float, float] = (3.4, 2.9)) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Agg figure with a (nrows, ncols) array of axes."""
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig: Figure, path: str | Path) -> Path:
    """Save the figure as PNG (creating folders), release its artists and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomic: a kill mid-write must not leave a truncated PNG that looks done; tight: no label cut at an edge
    atomic_savefig(fig, path, dpi=DPI, bbox_inches="tight")
    fig.clear()
    return path


def _no_data(ax: Axes, title: str, text: str = "no data") -> None:
    """Mark an empty panel."""
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _transform(values: np.ndarray, how: str | None) -> np.ndarray:
    """Apply a panel transform ('abs', 'tanh' or None)."""
    if how == "abs":
        return np.abs(values)
    if how == "tanh":
        return np.tanh(values)
    return values


# ------------------------------------------------------------------------------------------------------
# F1 per-run training traces
# ------------------------------------------------------------------------------------------------------
def _lines(
    ax: Axes, x: np.ndarray, df: pd.DataFrame, cols: Sequence[str], how: str | None = None, **kw: Any
) -> None:
    """Plot the present columns of df against x with their names as labels."""
    for col in cols:
        if col in df.columns:
            y = _transform(pd.to_numeric(df[col], errors="coerce").to_numpy(float), how)
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
        _no_data(ax, title)
        return
    vals = changes[present].to_numpy(float)
    bars = ax.bar(range(len(present)), np.nan_to_num(vals), color="tab:gray")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=8)
    ax.set_xticks(range(len(present)), present, rotation=60, ha="right", fontsize=8)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_title(title)
    ax.set_ylabel("Change (%)")


@_styled
def plot_training_run(run_df: pd.DataFrame, path: str | Path, run_index: int | None = None) -> Path:
    """F1: 3x5 traces of one run (pretraining + training rows, see analysis.changes.run_table) against SGD step."""
    fig, ax = _figure(3, 5, (4.0, 3.0))
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
    changes = run_relative_changes(run_df, "train")
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
    return _save(fig, path)


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
        _no_data(ax, label, "not recorded")
        return
    wide = pre_post.pivot_table(index="run_index", columns="time", values=col, aggfunc="first", dropna=False)
    vals = _transform(wide.reindex(columns=["pre", "post"]).to_numpy(float), how)
    ok = measured(vals, col)
    shown = np.where(ok, vals, np.nan)
    if not np.isfinite(shown).any():
        _no_data(ax, label, f"not measured in any of {len(vals)} runs" if len(vals) else "no runs")
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


@_styled
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
    fig, ax = _figure(nrows, ncols, (3.0, 3.0))
    for a, panel in zip(ax.flat, panels, strict=False):
        _pre_post_panel(a, pre_post, panel)
        if ylim is not None:
            a.set_ylim(*ylim)
    for a in ax.flat[len(panels) :]:
        a.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


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
        _no_data(ax, title, "not trained / no data")
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


@_styled
def plot_relative_change_boxes(
    rel_changes: pd.DataFrame, path: str | Path, title: str, fixed_ylim: bool = False, ncols: int = 4
) -> Path:
    """F3: box plots of the eight parameter groups; fixed_ylim gives (-60, 100)% and (-2, 2) for kappa."""
    fig, ax = _figure(int(np.ceil(len(BOX_GROUPS) / ncols)), ncols, (3.2, 3.2))
    for a, (group, cols, absolute) in zip(ax.flat, BOX_GROUPS, strict=False):
        _box_panel(a, rel_changes, group, cols, absolute)
        if fixed_ylim and any(c in rel_changes.columns for c in cols):
            a.set_ylim(*(KAPPA_YLIM if absolute else PERCENT_YLIM))
            if absolute:
                a.set_yticks(np.linspace(*KAPPA_YLIM, 5))
    fig.suptitle(title)
    return _save(fig, path)


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


def _regplot(
    ax: Axes, x: np.ndarray, y: np.ndarray, color: str = "tab:gray", line: str | None = None
) -> None:
    """Seaborn regplot (OLS line, 95% bootstrap band, seed 0) of the finite pairs."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        ax.text(0.5, 0.5, "too few runs", ha="center", transform=ax.transAxes, color="gray")
        return
    sns.regplot(
        x=x[ok],
        y=y[ok],
        ax=ax,
        seed=0,
        n_boot=500,
        color=color,
        scatter_kws={"s": 18, "alpha": 0.7},
        line_kws={"color": line or color},
    )


MIN_CORRELATION_RUNS = 3
"""Fewest runs for which a correlation figure is drawn."""


def _has_change(rel_changes: pd.DataFrame, name: str) -> bool:
    """Whether the table holds a change column of name."""
    return name in rel_changes.columns or f"d_{name}" in rel_changes.columns


@_styled
def _note_figure(path: str | Path, title: str, text: str) -> Path:
    """A small figure that says why a figure could not be computed."""
    fig, ax = _figure(1, 1, (7.0, 2.0))
    _no_data(ax[0, 0], title, text)
    ax[0, 0].axis("off")
    return _save(fig, path)


@_styled
def plot_param_offset_correlations(
    rel_changes: pd.DataFrame,
    params: Sequence[str],
    path: str | Path,
    title: str,
    ncols: int = 4,
    row_labels: Sequence[str] | None = None,
    target: str = "psychometric_offset",
) -> Path:
    """F4: one regplot per parameter of the target's change (y) against the parameter's change (x); with fewer
    than MIN_CORRELATION_RUNS runs the figure is one note instead of empty panels."""
    n_runs = int(np.isfinite(pd.to_numeric(rel_changes.get(change_column(rel_changes, target))
                                           if _has_change(rel_changes, target) else pd.Series(dtype=float),
                                           errors="coerce")).sum())  # fmt: skip
    if n_runs < MIN_CORRELATION_RUNS:
        return _note_figure(path, title, f"{n_runs} run(s) with a measured change of {target}: a correlation "
                            f"needs at least {MIN_CORRELATION_RUNS}.")  # fmt: skip
    nrows = int(np.ceil(len(params) / ncols))
    fig, ax = _figure(nrows, ncols, (3.4, 3.2))
    corr = param_offset_correlations(rel_changes, target, params).set_index("parameter")
    y = rel_changes[change_column(rel_changes, target)].to_numpy(float)
    for a, name in zip(ax.flat, params, strict=False):
        if name not in corr.index or not np.isfinite(rel_changes[corr.loc[name, "column"]]).any():
            _no_data(a, name)
            continue
        r, p = corr.loc[name, "r"], corr.loc[name, "p"]
        color = significance_color(r, p)
        _regplot(a, rel_changes[corr.loc[name, "column"]].to_numpy(float), y, color)
        a.set_title(f"r={r:.2f}, p={p:.3f}", color=color)
        a.set(xlabel=_change_label(rel_changes, name), ylabel=f"Δ{target} (%)")
    for a in ax.flat[len(params) :]:
        a.axis("off")
    for i, label in enumerate(row_labels or []):
        ax[i, 0].set_ylabel(f"{label}\nΔ{target} (%)")
    fig.suptitle(title)
    return _save(fig, path)


def plot_all_param_offset_correlations(rel_changes: pd.DataFrame, fig_dir: str | Path) -> list[Path]:
    """The four F4 files into fig_dir (each saved exactly once, B17)."""
    return [
        plot_param_offset_correlations(rel_changes, params, Path(fig_dir) / f"{stem}.png", title, ncols, rows)
        for stem, (title, params, ncols, rows) in CORRELATION_FIGURES.items()
    ]


# ------------------------------------------------------------------------------------------------------
# F5 example tuning curves
# ------------------------------------------------------------------------------------------------------
def example_grid_points(layout: CellLayout) -> tuple[int, int]:
    """An off-centre grid point (row 1, column 1: grid point 10 of a 9x9 grid) and the centre one (40)."""
    return (layout.grid_side + 1, layout.centre_grid_point)


def example_cells(layout: CellLayout) -> list[int]:
    """Off-centre and centre cell of every group: mid E/I at every phase, then sup E/I."""
    groups = [layout.mid_index(p, t, 0) for p in range(layout.phases) for t in range(2)]
    groups += [layout.sup_index(t, 0) for t in range(2)]
    return [base + g for base in groups for g in example_grid_points(layout)]


def _cell_title(cell: int, layout: CellLayout) -> str:
    """Short panel title of a cell index."""
    info = cell_info(layout).iloc[cell]
    where = "centre" if info["grid"] == layout.centre_grid_point else f"grid {info['grid']}"
    phase = f" Ph{info['phase']}" if info["layer"] == "mid" else ""
    return f"{info['layer']} {info['type']}{phase}, {where}"


TC_COLUMNS = 8
"""Panels per row of the example tuning curves (F5)."""


@_styled
def plot_example_tuning_curves(
    tc_df: pd.DataFrame,
    path: str | Path,
    cells: Sequence[int] | None = None,
    oris: Sequence[float] = TC_ORIENTATIONS,
    max_runs: int = 5,
    *,
    layout: CellLayout,
) -> Path:
    """F5: tuning curves (x in degrees) of example cells (columns) for the first runs (rows), all stages."""
    cells = example_cells(layout) if cells is None else list(cells)
    names = cell_names(layout)
    runs = list(dict.fromkeys(tc_df["run_index"].astype(int)))[:max_runs]
    ncols = min(TC_COLUMNS, len(cells))
    per_run = int(np.ceil(len(cells) / ncols))  # a run's cells wrap into rows of ncols panels
    fig, grid = _figure(max(len(runs), 1) * per_run, ncols, (2.3, 1.9))
    stages = sorted(tc_df["training_stage"].astype(int).unique())
    widths = dict(zip(stages, np.linspace(1.2, 2.6, len(stages)), strict=True))
    for i, run in enumerate(runs):
        sub = tc_df[tc_df["run_index"].astype(int) == run]
        for j, cell in enumerate(cells):
            a = grid[i * per_run + j // ncols, j % ncols]
            for stage in stages:
                block = sub[sub["training_stage"].astype(int) == stage]
                if len(block) == len(oris):
                    a.plot(oris, block[names[cell]].to_numpy(float), lw=widths[stage], label=f"stage {stage}")
            a.set_xticks([0, 90, 180, 270, 360])
            a.set_title(f"run {run}: {_cell_title(cell, layout)}", fontsize=9)
            if j % ncols == 0:
                a.set_ylabel("rate (Hz)")
            if i == len(runs) - 1 and j // ncols == per_run - 1:
                a.set_xlabel("orientation (deg)")
        for j in range(len(cells), per_run * ncols):
            grid[i * per_run + j // ncols, j % ncols].axis("off")
    handles, labels = grid[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    fig.suptitle("Example tuning curves (stage 0: initial, 1: after pretraining, 2: after training)")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------------
# F6 tuning-curve feature scatter plots
# ------------------------------------------------------------------------------------------------------
TC_SCATTER_FEATURES: list[tuple[str, str]] = [
    ("fwhm", "Tuning width (deg)"),
    ("min", "Baseline rate (Hz)"),
    ("max", "Peak rate (Hz)"),
    ("mean", "Mean rate (Hz)"),
    ("slope_hm", "Slope at half max (1/deg)"),
]


def phase_labels(layout: CellLayout) -> list[str]:
    """Legend labels of the colour-by-phase blocks: each middle-layer phase (k·2π/phases), then sup."""
    labels = []
    for p in range(layout.phases):
        f = Fraction(2 * p, layout.phases)
        numerator = "" if f.numerator == 1 else str(f.numerator)
        denominator = "" if f.denominator == 1 else f"/{f.denominator}"
        labels.append("mid phase 0" if f == 0 else f"mid phase {numerator}π{denominator}")
    return [*labels, "sup"]


def feature_pairs(
    features_df: pd.DataFrame,
    feature: str,
    pre_stage: int,
    post_stage: int,
    layout: CellLayout,
    orimap: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Long table run_index, cell, layer, type, phase, pref_ori, pre, post of one feature."""
    pre = feature_matrix(features_df, feature, pre_stage)
    post = feature_matrix(features_df, feature, post_stage)
    runs = pre.index.intersection(post.index)
    pref = _pref_matrix(features_df, pre_stage, runs, layout, orimap)
    info = cell_info(layout)
    frames = []
    for i, run in enumerate(runs):
        f = info[["cell", "layer", "type", "phase"]].assign(run_index=int(run), pref_ori=pref[i])
        frames.append(f.assign(pre=pre.loc[run].to_numpy(float), post=post.loc[run].to_numpy(float)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["pre", "post"])


def _pref_matrix(
    features_df: pd.DataFrame, stage: int, runs: pd.Index, layout: CellLayout, orimap: pd.DataFrame | None
) -> np.ndarray:
    """(runs x cells) preferred orientations: tuning-curve pref_ori at stage, or the orimap if given."""
    if orimap is None:
        return feature_matrix(features_df, "pref_ori", stage).reindex(runs).to_numpy(float)
    om = orimap.set_index(orimap["run_index"].astype(int)).drop(columns="run_index").reindex(runs)
    return om.to_numpy(float)[:, layout.grid_of_cells()]


def _scatter_panel(ax: Axes, d: pd.DataFrame, color_by: str, layout: CellLayout) -> Any:
    """Post vs pre scatter of one layer, E and I separately, coloured by color_by; returns a mappable."""
    mappable = None
    for cell_type, marker in (("E", "o"), ("I", "^")):
        s = d[d["type"] == cell_type]
        kw: dict[str, Any] = {"alpha": 0.3, "s": 10, "marker": marker}
        if color_by == "type":
            ax.scatter(
                s["pre"], s["post"], color="orange" if cell_type == "E" else "cyan", label=cell_type, **kw
            )
            ax.errorbar(
                s["pre"].mean(),
                s["post"].mean(),
                xerr=s["pre"].std(),
                yerr=s["post"].std(),
                color="red" if cell_type == "E" else "blue",
                lw=2,
                capsize=3,
            )
        elif color_by == "phase":
            for k, label in enumerate(phase_labels(layout)):
                block = s[s["phase"] == k] if k < layout.phases else s[s["layer"] == "sup"]
                if len(block):
                    ax.scatter(block["pre"], block["post"], color=f"C{k}", label=label, **kw)
        else:
            values = s["run_index"] if color_by == "run_index" else s["pref_ori"]
            vmax = 180.0 if color_by == "pref_ori" else max(float(d["run_index"].max()), 1.0)
            mappable = ax.scatter(s["pre"], s["post"], c=values, cmap="rainbow", vmin=0, vmax=vmax, **kw)
    return mappable


def _identity_line(ax: Axes) -> None:
    """Dashed y = x line over the current limits."""
    lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
    hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)


@_styled
def plot_tc_feature_scatter(
    features_df: pd.DataFrame,
    path: str | Path,
    pre_stage: int,
    post_stage: int,
    color_by: str = "type",
    orimap: pd.DataFrame | None = None,
    *,
    layout: CellLayout,
) -> Path:
    """F6: 2x5 post-vs-pre scatter of tuning features (rows mid, sup), coloured by color_by."""
    if color_by not in ("type", "run_index", "pref_ori", "phase"):
        raise ValueError(f"unknown color_by {color_by!r}")
    fig, ax = _figure(2, len(TC_SCATTER_FEATURES), (3.3, 3.2))
    mappable = None
    for j, (feature, label) in enumerate(TC_SCATTER_FEATURES):
        pairs = feature_pairs(features_df, feature, pre_stage, post_stage, layout, orimap)
        for i, layer in enumerate(LAYER_NAMES):
            a = ax[i, j]
            mappable = _scatter_panel(a, pairs[pairs["layer"] == layer], color_by, layout) or mappable
            _identity_line(a)
            a.set(
                title=f"{label.split(' (')[0]}, {layer}",
                xlabel=f"stage {pre_stage}: {label}",
                ylabel=f"stage {post_stage}: {label}",
            )
    if color_by in ("type", "phase"):
        ax[0, -1].legend(fontsize=8, markerscale=1.5)
    elif mappable is not None:
        label = "preferred orientation (deg)" if color_by == "pref_ori" else "run index"
        fig.colorbar(mappable, ax=ax[:, -1].tolist(), label=label)
    fig.suptitle(f"Tuning-curve features, stage {pre_stage} → {post_stage}, coloured by {color_by}")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------------
# F7 slope changes (Schoups-style)
# ------------------------------------------------------------------------------------------------------
def _slope_subset(table: pd.DataFrame, layer: str, layout: CellLayout) -> pd.DataFrame:
    """Mid: phases 0 and π only (phase indices 0 and phases/2); sup: all cells."""
    sel = table[table["layer"] == layer]
    return sel[sel["phase"].isin([0, layout.phases // 2])] if layer == "mid" else sel


def _lowess_lines(ax: Axes, d: pd.DataFrame, colors: Mapping[str, str], frac: float, label: str) -> None:
    """LOWESS curves (x<0 and x>0 separately) per cell type."""
    for cell_type, color in colors.items():
        s = d[d["type"] == cell_type]
        for side, fit in lowess_by_side(s["x"], s["dslope"], frac).items():
            if len(fit):
                ax.plot(
                    fit[:, 0],
                    fit[:, 1],
                    color=color,
                    lw=2,
                    label=f"{cell_type} {label}" if side == "neg" else None,
                )


@_styled
def plot_slope_changes(
    features_df: pd.DataFrame,
    path: str | Path,
    pre_stage: int,
    post_stage: int,
    orimap: pd.DataFrame | None = None,
    frac: float = 0.15,
    window: float = 10.0,
    step: float = 0.2,
    *,
    layout: CellLayout,
    orientations: TaskOrientations = DEFAULT_ORIENTATIONS,
) -> Path:
    """F7: Δ|slope| at the trained (55) and untrained (125) orientation against preferred − θ, LOWESS fits
    and sliding Mann-Whitney p-values."""
    trained, untrained = orientations.slopes
    t55 = slope_change_table(features_df, pre_stage, post_stage, trained, layout, orimap)
    t125 = slope_change_table(features_df, pre_stage, post_stage, untrained, layout, orimap)
    n55, n125 = f"{trained:g}", f"{untrained:g}"
    dark = {"E": "darkred", "I": "darkblue"}
    light = {"E": "tab:red", "I": "tab:blue"}
    fig, ax = _figure(2, 4, (3.6, 3.2))
    for i, layer in enumerate(LAYER_NAMES):
        d55, d125 = _slope_subset(t55, layer, layout), _slope_subset(t125, layer, layout)
        for a, d, colors, name in ((ax[i, 0], d55, dark, n55), (ax[i, 1], d125, light, n125)):
            for cell_type, color in colors.items():
                s = d[d["type"] == cell_type]
                a.scatter(s["x"], s["dslope"], s=6, alpha=0.3, color=color)
            _lowess_lines(a, d, colors, frac, f"Δslope({name})")
            a.set(
                title=f"Δslope({name}), {layer}",
                xlabel=f"preferred − {name} (deg)",
                ylabel="Δ|slope| (1/deg)",
            )
        _lowess_lines(ax[i, 2], d55, dark, frac, n55)
        _lowess_lines(ax[i, 2], d125, light, frac, n125)
        ax[i, 2].set(
            title=f"Δslope({n55}), Δslope({n125}), {layer}", xlabel="preferred − θ (deg)", ylabel="Δ|slope| (1/deg)"
        )
        for cell_type, color in light.items():
            e55, e125 = d55[d55["type"] == cell_type], d125[d125["type"] == cell_type]
            mw = sliding_mann_whitney(e55["x"], e55["dslope"], e125["x"], e125["dslope"], window, step)
            ax[i, 3].plot(mw["centre"], mw["p"], color=color, label=cell_type)
        ax[i, 3].axhline(0.05, color="k", ls="--", lw=1)
        ax[i, 3].set(
            title=f"Sliding Mann-Whitney, {layer}",
            xlabel="window centre (deg)",
            ylabel="p-value",
            ylim=(0, 1),
        )
        for a in ax[i, :3]:
            a.axhline(0, color="gray", lw=0.8)
            a.set_xlim(-90, 90)
        for a in ax[i, 2:]:
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=8)
    fig.suptitle(f"Slope changes vs preferred orientation, stage {pre_stage} → {post_stage}")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------------
# F8 correlation triangles
# ------------------------------------------------------------------------------------------------------
TRIANGLE_LABELS = {"dmvpa": "ΔMVPA (%)", "dratio": "ΔE/I ratio J_I/J_E (%)", "doffset": "Δthreshold (%)"}


def _triangle_edge(fig: Figure, rect: Sequence[float], data: pd.DataFrame, xcol: str, ycol: str) -> None:
    """One edge of the triangle: regplot of ycol against xcol, annotated with r and p."""
    a = fig.add_axes(rect)
    x, y = data[xcol].to_numpy(float), data[ycol].to_numpy(float)
    r, p, n = pearson_finite(x, y)
    _regplot(a, x, y, "tab:gray", "orange")
    a.set_title(f"r={r:.2f}, p={p:.3f} (n={n})", color=significance_color(r, p), fontsize=10)
    a.set(xlabel=TRIANGLE_LABELS[xcol], ylabel=TRIANGLE_LABELS[ycol])


@_styled
def plot_corr_triangle(data: pd.DataFrame, path: str | Path, title: str) -> Path:
    """F8: ΔMVPA, ΔE/I ratio and Δthreshold nodes with a regplot per edge (analysis.statistics.triangle_data)."""
    fig = Figure(figsize=(10, 9))
    FigureCanvasAgg(fig)
    back = fig.add_axes((0, 0, 1, 1))
    back.set_axis_off()
    nodes = {"dmvpa": (0.5, 0.9), "dratio": (0.1, 0.1), "doffset": (0.9, 0.1)}
    for a_key, b_key in (("dmvpa", "dratio"), ("dratio", "doffset"), ("doffset", "dmvpa")):
        (x0, y0), (x1, y1) = nodes[a_key], nodes[b_key]
        back.plot([x0, x1], [y0, y1], ls=(0, (6, 6)), color="lightgray", lw=2)
    for key, (x, y) in nodes.items():
        back.text(
            x,
            y,
            TRIANGLE_LABELS[key],
            ha="center",
            va="center",
            fontsize=13,
            bbox={"boxstyle": "round", "fc": "white", "ec": "k"},
        )
    back.set(xlim=(0, 1), ylim=(0, 1))
    _triangle_edge(fig, (0.12, 0.45, 0.26, 0.24), data, "dmvpa", "dratio")
    _triangle_edge(fig, (0.64, 0.45, 0.26, 0.24), data, "dmvpa", "doffset")
    _triangle_edge(fig, (0.38, 0.13, 0.26, 0.22), data, "doffset", "dratio")
    fig.suptitle(title)
    return _save(fig, path)


@_styled
def plot_image_montage(
    image_paths: Sequence[str | Path], titles: Sequence[str], path: str | Path, title: str, ncols: int = 2
) -> Path:
    """F8 combined_corr_triangles: PNGs in a grid (2x2 for the four triangles), each with its title."""
    nrows = int(np.ceil(len(image_paths) / ncols))
    fig, ax = _figure(nrows, ncols, (6.0, 5.4))
    for a in ax.flat:
        a.axis("off")
    for a, img, name in zip(ax.flat, image_paths, titles, strict=True):
        a.imshow(mpimg.imread(img))
        a.set_title(name)
    fig.suptitle(title)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------------
# F9 MVPA / Mahalanobis scores
# ------------------------------------------------------------------------------------------------------
CHANCE = 0.5
"""Chance accuracy of the two-class MVPA decoder."""
SCORE_LABELS = {"mvpa": "MVPA accuracy (fraction correct)", "mahal": "Mahalanobis distance (a.u.)"}


def _score_wide(scores: pd.DataFrame, layer: int, pre: int, post: int, oris: Sequence[float]) -> pd.DataFrame:
    """(runs x [(ori, stage)]) scores of one layer for the trained/untrained pre/post boxes."""
    sel = scores[(scores["layer"] == layer) & scores["stage"].isin([pre, post])].astype({"ori": float})
    wide = sel.pivot_table(index="run_index", columns=["ori", "stage"], values="score", dropna=False)
    cols = [(o, s) for o in oris for s in (pre, post)]
    return wide.reindex(columns=pd.MultiIndex.from_tuples(cols))


@_styled
def plot_scores_boxes(
    scores: pd.DataFrame,
    path: str | Path,
    kind: str = "mvpa",
    pre_stage: int = 1,
    post_stage: int = 2,
    orientations: TaskOrientations = DEFAULT_ORIENTATIONS,
) -> Path:
    """F9a: per layer, boxes of 55 pre/post and 125 pre/post with a gray line per run (pre to post)."""
    fig, ax = _figure(1, 2, (4.6, 4.0))
    for li, layer in enumerate(LAYER_NAMES):
        a = ax[0, li]
        wide = _score_wide(scores, li, pre_stage, post_stage, orientations.slopes)
        vals = wide.to_numpy(float)
        data = [v[np.isfinite(v)] for v in vals.T]
        box = a.boxplot(data, positions=range(4), patch_artist=True, medianprops={"color": "k"}, widths=0.5)
        for patch, color in zip(box["boxes"], [PRE_COLOR, POST_COLOR] * 2, strict=True):
            patch.set_facecolor(color)
        for row in vals:
            a.plot([0, 1], row[:2], color="gray", alpha=0.6, lw=0.8, marker=".", ms=5)
            a.plot([2, 3], row[2:], color="gray", alpha=0.6, lw=0.8, marker=".", ms=5)
        if kind == "mvpa":
            a.axhline(CHANCE, color="k", ls="--", lw=1, label="chance")
            a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
        a.set_xticks(range(4), [f"{o:g} {t}" for o in orientations.slopes for t in ("pre", "post")])
        a.set(title=f"Layer {layer}", ylabel=SCORE_LABELS[kind], xlabel="orientation (deg), stage")
    name = "MVPA decoding accuracy (vs 0°)" if kind == "mvpa" else "Mahalanobis distance to 0°"
    fig.suptitle(f"{name}: pre = stage {pre_stage}, post = stage {post_stage}")
    return _save(fig, path)


@_styled
def plot_mvpa_paper_bars(
    scores: pd.DataFrame,
    path: str | Path,
    pre_stage: int = 1,
    post_stage: int = 2,
    ylim: tuple[float, float] = (50.0, 90.0),
    orientations: TaskOrientations = DEFAULT_ORIENTATIONS,
) -> Path:
    """F9b: Ke et al.-style bars (100 x mean, SEM error bars) of superficial and middle pre/post MVPA."""
    fig, ax = _figure(1, 2, (4.2, 4.0))
    lo, hi = ylim
    for a, ori, name in zip(ax[0], orientations.slopes, ("Trained", "Untrained"), strict=True):
        for layer, x0 in ((1, 0.0), (0, 2.5)):
            for dx, stage, color, label in (
                (0, pre_stage, PRE_COLOR, "pre"),
                (1, post_stage, POST_COLOR, "post"),
            ):
                sel = scores[(scores["layer"] == layer) & (scores["ori"] == ori) & (scores["stage"] == stage)]
                v = 100.0 * sel["score"].dropna().to_numpy(float)
                mean = v.mean() if v.size else np.nan
                sem = v.std() / np.sqrt(v.size) if v.size else np.nan
                a.bar(x0 + dx, mean, yerr=sem, color=color, capsize=4, label=label if layer == 1 else None)
                if np.isfinite(mean):
                    lo, hi = min(lo, mean - sem - 2), max(hi, mean + sem + 2)
        a.set_xticks([0.5, 3.0], ["Superficial", "Middle"])
        a.set(title=f"{name} orientation ({ori:g}°)", ylabel="MVPA accuracy (%)", xlabel="layer")
    for a in ax[0]:
        a.set_ylim(min(lo, 100 * CHANCE - 2), hi)
        a.axhline(100 * CHANCE, color="k", ls="--", lw=1, label="chance")
    ax[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    fig.suptitle("MVPA accuracy before and after training (mean ± SEM over runs)")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------------
# Study headline: paired per-run changes by layer and the behavioural change, one row per configuration
# ------------------------------------------------------------------------------------------------------
HEADLINE_WEIGHTS: tuple[tuple[str, tuple[str, str], str], ...] = (
    ("Inhibitory weights", ("II", "EI"), "dJ_II sup vs mid"),
    ("Excitatory weights", ("EE", "IE"), "dJ_EE sup vs mid"),
)
"""(panel title, the two weights drawn mid -> sup, the comparison printed under the panel)."""
NOT_MEASURED_COLOR = "tab:brown"
WEIGHT_COLORS: dict[str, str] = {"II": "tab:blue", "EI": "tab:cyan", "EE": "tab:red", "IE": "tab:orange"}
BEHAVIOUR_PANELS: tuple[tuple[str, str], ...] = (
    ("staircase_offset", "Staircase offset"),
    ("psychometric_offset", "Psychometric threshold"),
)


def _paired_points(ax: Axes, x: Sequence[float], values: np.ndarray, color: str) -> None:
    """Per-run points joined by a line, and a median mark per position."""
    for row in values:
        ax.plot(x, row, color=color, alpha=0.45, lw=1.0, marker="o", ms=4)
    medians = [np.nanmedian(col) if np.isfinite(col).any() else np.nan for col in values.T]
    ax.plot(x, medians, color="k", lw=0, marker="_", ms=22, mew=2.5, label="median")


def _weights_panel(ax: Axes, changes: pd.DataFrame, title: str, kinds: Sequence[str], test: str) -> None:
    """Relative changes (%) of two weights in the middle and superficial layer, joined per run."""
    ticks, labels = [], []
    for i, kind in enumerate(kinds):
        color = WEIGHT_COLORS[kind]
        cols = [f"J_{kind}_m", f"J_{kind}_s"]
        x = [3 * i, 3 * i + 1]
        if not set(cols) <= set(changes.columns) or changes.empty:
            continue
        _paired_points(ax, x, changes[cols].to_numpy(float), color)
        ticks += x
        labels += [f"{kind} mid", f"{kind} sup"]
    if not ticks:
        _no_data(ax, title, "no retained run with stage-2 changes")
        return
    ax.axhline(0, color="gray", lw=0.8, ls=":")
    ax.set_xticks(ticks, labels)
    ax.set_xlim(-0.6, max(ticks) + 0.6)
    ax.set(title=title, ylabel="change over stage 2 (% of |J|)")
    ax.set_xlabel(f"J_{kinds[0]} sup vs mid\n{test}", fontsize=9)  # two lines: a long p never runs into the next panel


def _behaviour_panel(ax: Axes, wide: pd.DataFrame, title: str, test: str, quantity: str) -> None:
    """Pre and post values joined per run; values that were not measured drawn apart and labelled."""
    values = wide.to_numpy(float) if len(wide) else np.empty((0, 2))
    if values.size == 0:
        _no_data(ax, title, "no retained run")
        return
    ok = measured(values, quantity)
    shown = np.where(ok, values, np.nan)
    if not np.isfinite(shown).any():
        _no_data(ax, title, f"not measured in any of {len(values)} runs\n(threshold {NO_THRESHOLD:g}° or NaN)")
        return
    _paired_points(ax, [0, 1], shown, "tab:purple")
    if (~ok).any():
        top = np.nanmax(shown) * 1.15 if np.isfinite(shown).any() else 1.0
        xs = np.nonzero(~ok)[1]
        ax.plot(xs, np.full(xs.size, top), "x", color=NOT_MEASURED_COLOR, ms=8, mew=2,
                label=f"not measured ({int((~ok).sum())})")  # fmt: skip
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False, fontsize=8)
    ax.set_xticks([0, 1], ["pre", "post"])
    ax.set_xlim(-0.5, 1.5)
    ax.set(title=title, ylabel=f"{title} (deg)")
    ax.set_xlabel(f"post vs pre\n{test}", fontsize=9)


@_styled
def plot_headline(
    changes: Mapping[str, pd.DataFrame],
    behaviour: Mapping[str, Mapping[str, pd.DataFrame]],
    tests: Callable[[str, str], str],
    path: str | Path,
) -> Path:
    """The study headline: per configuration (rows), the per-run relative changes of the inhibitory and
    excitatory weights of both layers (points joined per run, median marks, the paired test below), then the
    staircase offset and the psychometric threshold before and after stage 2.

    ``changes[conf]`` is the configuration's retained rows of rel_changes_train.csv, ``behaviour[conf][col]``
    the (runs x [pre, post]) table of a behavioural column and ``tests(conf, comparison)`` the test line.
    """
    confs = list(changes)
    fig, ax = _figure(max(len(confs), 1), 4, (3.6, 3.4))
    if not confs:
        for a in ax.flat:
            a.axis("off")
        _no_data(ax[0, 0], "no configuration")
    for row, conf in zip(ax, confs, strict=False):
        rc = changes[conf]
        for a, (title, kinds, comparison) in zip(row[:2], HEADLINE_WEIGHTS, strict=True):
            _weights_panel(a, rc, title, kinds, tests(conf, comparison))
        for a, (col, title) in zip(row[2:], BEHAVIOUR_PANELS, strict=True):
            _behaviour_panel(a, behaviour[conf][col], title, tests(conf, f"{col} post vs pre"), col)
        row[0].annotate(f"{conf}\nn = {len(rc)} runs", xy=(0, 0.5), xycoords="axes fraction",
                        xytext=(-70, 0), textcoords="offset points", rotation=90, ha="center", va="center",
                        fontsize=12, weight="bold")  # fmt: skip
    fig.suptitle("Changes during stage 2 per run (lines join a run's values; black marks: medians)")
    return _save(fig, path)
