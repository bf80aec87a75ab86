"""The study headline (per configuration: the paired per-run changes of the inhibitory and excitatory weights of
both layers and the behavioural change over stage 2) and the comparison of studies side by side.

Both draw from tables the analysis wrote: the relative changes, the pre/post values and the tests of
study_stats.csv (the headline), comparison_stats.csv (the comparison).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.style import new_figure, no_data, save, styled
from analysis.study_summary import measured
from store.files import atomic_savefig
from training.psychometrics import NO_THRESHOLD

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
        no_data(ax, title, "no retained run with stage-2 changes")
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
        no_data(ax, title, "no retained run")
        return
    ok = measured(values, quantity)
    shown = np.where(ok, values, np.nan)
    if not np.isfinite(shown).any():
        no_data(ax, title, f"not measured in any of {len(values)} runs\n(threshold {NO_THRESHOLD:g}° or NaN)")
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


@styled
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
    fig, ax = new_figure(max(len(confs), 1), 4, (3.6, 3.4))
    if not confs:
        for a in ax.flat:
            a.axis("off")
        no_data(ax[0, 0], "no configuration")
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
    return save(fig, path)


# ------------------------------------------------------------------------------------------------------
# Comparison of studies: per study (row) and configuration (column), the per-run weight changes
# ------------------------------------------------------------------------------------------------------
COMPARISON_WEIGHTS: tuple[str, ...] = ("J_II", "J_EI", "J_EE", "J_IE")
"""The weights of the comparison figure, middle then superficial layer each."""


def _comparison_values(changes: pd.DataFrame, column: str) -> np.ndarray:
    """A column of percent changes as floats (all NaN when absent)."""
    if column not in changes.columns:
        return np.full(len(changes), np.nan)
    return pd.to_numeric(changes[column], errors="coerce").to_numpy(float)


def _comparison_panel(ax: Axes, changes: pd.DataFrame, published: Mapping[str, float]) -> None:
    """Per-run changes of the comparison weights (mid, sup joined per run), medians in black, and the published
    medians (if any) as red diamonds."""
    for k, weight in enumerate(COMPARISON_WEIGHTS):
        mid = _comparison_values(changes, f"{weight}_m")
        sup = _comparison_values(changes, f"{weight}_s")
        x = np.array([3 * k, 3 * k + 1], dtype=float)
        colour = "tab:blue" if weight in ("J_II", "J_EI") else "tab:red"
        for a, b in zip(mid, sup, strict=True):
            ax.plot(x, [a, b], color=colour, alpha=0.35, lw=0.8, marker="o", ms=2.5)
        ax.plot(x, [np.nanmedian(mid), np.nanmedian(sup)], color="black", lw=2, marker="_", ms=14)
        for dx, layer in ((0, "m"), (1, "s")):
            value = published.get(f"{weight}_{layer}")
            if value is not None:
                ax.plot(x[dx], value, marker="D", color="crimson", ms=7, mfc="none", mew=1.5)
    ax.axhline(0, color="grey", lw=0.6, ls="--")
    ax.set_xticks([3 * k + d for k in range(len(COMPARISON_WEIGHTS)) for d in (0, 1)])
    ax.set_xticklabels([f"{w[2:]}\n{layer}" for w in COMPARISON_WEIGHTS for layer in ("mid", "sup")], fontsize=8)


def plot_study_comparison(
    studies: Sequence[tuple[str, Mapping[str, pd.DataFrame]]],
    tests: Callable[[str, str], str],
    path: Path,
    published: Mapping[str, Mapping[str, float]],
) -> Path:
    """Per study (row: its label and configuration -> retained rows of rel_changes_train.csv) and configuration
    (column): per-run changes of J_II, J_EI, J_EE, J_IE, middle then superficial, joined per run, medians in
    black; ``published[conf]`` holds the earlier implementation's published medians drawn as red diamonds;
    ``tests(label, conf)`` is the test line of a panel's title."""
    confs = list(dict.fromkeys(c for _, changes in studies for c in changes))
    fig = Figure(figsize=(4.6 * len(confs), 3.6 * len(studies)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(studies), len(confs), squeeze=False, sharey=True)
    for i, (label, by_conf) in enumerate(studies):
        for j, conf in enumerate(confs):
            ax = axes[i, j]
            changes = by_conf.get(conf)
            if changes is None or changes.empty:
                ax.text(0.5, 0.5, "no retained runs", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            _comparison_panel(ax, changes, published.get(conf, {}))
            test = tests(label, conf)
            ax.set_title(f"{label}: {conf.removeprefix('conf_')} (n = {len(changes)})\n{test}", fontsize=9)
            if j == 0:
                ax.set_ylabel("change over stage 2 (%)")
    handles = [
        Line2D([], [], color="tab:blue", marker="o", label="inhibitory (per run)"),
        Line2D([], [], color="tab:red", marker="o", label="excitatory (per run)"),
        Line2D([], [], color="black", lw=2, label="median"),
        Line2D([], [], color="crimson", marker="D", mfc="none", ls="",
               label="earlier implementation, published median"),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, fontsize=9)
    fig.suptitle("Does training raise inhibition specifically in the superficial layer?", fontsize=12)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    atomic_savefig(fig, path, dpi=110)
    return path
