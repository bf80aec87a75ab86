"""Tuning figures (ANALYSIS.md §8): F5 example tuning curves, F6 tuning-curve feature scatter and F7 slope
changes.

Callers remove excluded runs before calling (B5). Fixes built here: x-axes in degrees and a regular
example-cell list (B14), the phase legend in the order 0, π/2, π, 3π/2 (B18).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from analysis.cells import DEFAULT_ORIENTATIONS, LAYER_NAMES, CellLayout, TaskOrientations, cell_info, cell_names
from analysis.figures.style import new_figure, save, styled
from analysis.statistics import LOWESS_SIDES
from analysis.tuning_features import TC_ORIENTATIONS, feature_matrix


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


@styled
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
    fig, grid = new_figure(max(len(runs), 1) * per_run, ncols, (2.3, 1.9))
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
    return save(fig, path)


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


@styled
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
    fig, ax = new_figure(2, len(TC_SCATTER_FEATURES), (3.3, 3.2))
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
    return save(fig, path)


# ------------------------------------------------------------------------------------------------------
# F7 slope changes (Schoups-style)
# ------------------------------------------------------------------------------------------------------
def _lowess_lines(ax: Axes, lowess: pd.DataFrame, colors: Mapping[str, str], label: str) -> None:
    """LOWESS curves (x<0 and x>0 separately) per cell type, from rows of stats_tc_slope_lowess.csv."""
    for cell_type, color in colors.items():
        for side in LOWESS_SIDES:
            fit = lowess[(lowess["type"] == cell_type) & (lowess["side"] == side)]
            if len(fit):
                ax.plot(
                    fit["x"].to_numpy(float),
                    fit["fit"].to_numpy(float),
                    color=color,
                    lw=2,
                    label=f"{cell_type} {label}" if side == "neg" else None,
                )


@styled
def plot_slope_changes(
    changes: pd.DataFrame,
    lowess: pd.DataFrame,
    mann_whitney: pd.DataFrame,
    path: str | Path,
    pre_stage: int,
    post_stage: int,
    orientations: TaskOrientations = DEFAULT_ORIENTATIONS,
) -> Path:
    """F7: Δ|slope| at the trained (55) and untrained (125) orientation against preferred − θ
    (analysis.statistics.slope_changes), the LOWESS fits of stats_tc_slope_lowess.csv and the sliding
    Mann-Whitney p-values of stats_tc_slope_mann_whitney.csv."""
    trained, untrained = orientations.slopes
    n55, n125 = f"{trained:g}", f"{untrained:g}"
    dark = {"E": "darkred", "I": "darkblue"}
    light = {"E": "tab:red", "I": "tab:blue"}
    fig, ax = new_figure(2, 4, (3.6, 3.2))
    for i, layer in enumerate(LAYER_NAMES):
        of_layer = changes[changes["layer"] == layer]
        d55, d125 = (of_layer[of_layer["slope_ori"] == o] for o in (trained, untrained))
        fits = lowess[lowess["layer"] == layer]
        f55, f125 = (fits[fits["slope_ori"] == o] for o in (trained, untrained))
        for a, d, f, colors, name in ((ax[i, 0], d55, f55, dark, n55), (ax[i, 1], d125, f125, light, n125)):
            for cell_type, color in colors.items():
                s = d[d["type"] == cell_type]
                a.scatter(s["x"], s["dslope"], s=6, alpha=0.3, color=color)
            _lowess_lines(a, f, colors, f"Δslope({name})")
            a.set(
                title=f"Δslope({name}), {layer}",
                xlabel=f"preferred − {name} (deg)",
                ylabel="Δ|slope| (1/deg)",
            )
        _lowess_lines(ax[i, 2], f55, dark, n55)
        _lowess_lines(ax[i, 2], f125, light, n125)
        ax[i, 2].set(
            title=f"Δslope({n55}), Δslope({n125}), {layer}", xlabel="preferred − θ (deg)", ylabel="Δ|slope| (1/deg)"
        )
        for cell_type, color in light.items():
            mw = mann_whitney[(mann_whitney["layer"] == layer) & (mann_whitney["type"] == cell_type)]
            ax[i, 3].plot(mw["centre"].to_numpy(float), mw["p"].to_numpy(float), color=color, label=cell_type)
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
    return save(fig, path)
