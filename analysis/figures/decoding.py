"""Decoding figures (ANALYSIS.md §8): F8 correlation triangles of ΔMVPA, ΔE/I ratio and Δthreshold, and F9
MVPA and Mahalanobis scores.

Callers remove excluded runs before calling (B5); triangle axes are labelled as plotted (B16).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.cells import DEFAULT_ORIENTATIONS, LAYER_NAMES, TaskOrientations
from analysis.figures.style import (
    POST_COLOR,
    PRE_COLOR,
    draw_regression,
    new_figure,
    save,
    significance_color,
    styled,
)

# ------------------------------------------------------------------------------------------------------
# F8 correlation triangles
# ------------------------------------------------------------------------------------------------------
TRIANGLE_LABELS = {"dmvpa": "ΔMVPA (%)", "dratio": "ΔE/I ratio J_I/J_E (%)", "doffset": "Δthreshold (%)"}


def _triangle_edge(
    fig: Figure,
    rect: Sequence[float],
    data: pd.DataFrame,
    statistics: pd.DataFrame,
    fits: pd.DataFrame,
    xcol: str,
    ycol: str,
) -> None:
    """One edge of the triangle: ycol against xcol with its fitted line, annotated with r, p and n."""
    a = fig.add_axes(rect)
    x, y = data[xcol].to_numpy(float), data[ycol].to_numpy(float)
    row = statistics[(statistics["x"] == xcol) & (statistics["y"] == ycol)]
    r, p, n = (row.iloc[0][k] for k in ("r", "p", "n")) if len(row) else (math.nan, math.nan, 0)
    draw_regression(a, x, y, fits[(fits["x"] == xcol) & (fits["y"] == ycol)], "tab:gray", "orange")
    a.set_title(f"r={r:.2f}, p={p:.3f} (n={int(n)})", color=significance_color(r, p), fontsize=10)
    a.set(xlabel=TRIANGLE_LABELS[xcol], ylabel=TRIANGLE_LABELS[ycol])


@styled
def plot_corr_triangle(
    data: pd.DataFrame, statistics: pd.DataFrame, fits: pd.DataFrame, path: str | Path, title: str
) -> Path:
    """F8: ΔMVPA, ΔE/I ratio and Δthreshold nodes with one scatter and fitted line per edge; the rows of one
    triangle (layer, orientation) of corr_triangle_data.csv (``data``), stats_corr_triangles.csv
    (``statistics``: r, p, n) and stats_corr_triangle_fits.csv (``fits``)."""
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
    _triangle_edge(fig, (0.12, 0.45, 0.26, 0.24), data, statistics, fits, "dmvpa", "dratio")
    _triangle_edge(fig, (0.64, 0.45, 0.26, 0.24), data, statistics, fits, "dmvpa", "doffset")
    _triangle_edge(fig, (0.38, 0.13, 0.26, 0.22), data, statistics, fits, "doffset", "dratio")
    fig.suptitle(title)
    return save(fig, path)


@styled
def plot_image_montage(
    image_paths: Sequence[str | Path], titles: Sequence[str], path: str | Path, title: str, ncols: int = 2
) -> Path:
    """F8 combined_corr_triangles: PNGs in a grid (2x2 for the four triangles), each with its title."""
    nrows = int(np.ceil(len(image_paths) / ncols))
    fig, ax = new_figure(nrows, ncols, (6.0, 5.4))
    for a in ax.flat:
        a.axis("off")
    for a, img, name in zip(ax.flat, image_paths, titles, strict=True):
        a.imshow(mpimg.imread(img))
        a.set_title(name)
    fig.suptitle(title)
    return save(fig, path)


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


@styled
def plot_scores_boxes(
    scores: pd.DataFrame,
    path: str | Path,
    kind: str = "mvpa",
    pre_stage: int = 1,
    post_stage: int = 2,
    orientations: TaskOrientations = DEFAULT_ORIENTATIONS,
) -> Path:
    """F9a: per layer, boxes of 55 pre/post and 125 pre/post with a gray line per run (pre to post)."""
    fig, ax = new_figure(1, 2, (4.6, 4.0))
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
    return save(fig, path)


@styled
def plot_mvpa_paper_bars(
    scores: pd.DataFrame,
    path: str | Path,
    pre_stage: int = 1,
    post_stage: int = 2,
    ylim: tuple[float, float] = (50.0, 90.0),
    orientations: TaskOrientations = DEFAULT_ORIENTATIONS,
) -> Path:
    """F9b: Ke et al.-style bars (100 x mean, SEM error bars) of superficial and middle pre/post MVPA."""
    fig, ax = new_figure(1, 2, (4.2, 4.0))
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
    return save(fig, path)
