"""The shared look of the analysis figures: rc style, colours, figure creation and saving, empty panels and
fitted lines drawn from a table.

Every figure is drawn on a ``matplotlib.figure.Figure`` with its own Agg canvas (no pyplot state, nothing left
open) and saved once (ANALYSIS.md B17), atomically.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from store.files import atomic_savefig

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
MIN_FIT_POINTS = 3
"""Fewest finite pairs for which a fitted line is drawn (the statistics write no line below it)."""


def styled(func: Callable[..., Path]) -> Callable[..., Path]:
    """Run a figure function inside the shared rc style."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Path:
        """Call func with the STYLE rc parameters."""
        with mpl.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def new_figure(nrows: int, ncols: int, panel: tuple[float, float] = (3.4, 2.9)) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Agg figure with a (nrows, ncols) array of axes."""
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save(fig: Figure, path: str | Path) -> Path:
    """Save the figure as PNG (creating folders), release its artists and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomic: a kill mid-write must not leave a truncated PNG that looks done; tight: no label cut at an edge
    atomic_savefig(fig, path, dpi=DPI, bbox_inches="tight")
    fig.clear()
    return path


def no_data(ax: Axes, title: str, text: str = "no data") -> None:
    """Mark an empty panel."""
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


@styled
def note_figure(path: str | Path, title: str, text: str) -> Path:
    """A small figure that says why a figure could not be drawn."""
    fig, ax = new_figure(1, 1, (7.0, 2.0))
    no_data(ax[0, 0], title, text)
    ax[0, 0].axis("off")
    return save(fig, path)


def transform(values: np.ndarray, how: str | None) -> np.ndarray:
    """Apply a panel transform ('abs', 'tanh' or None)."""
    if how == "abs":
        return np.abs(values)
    if how == "tanh":
        return np.tanh(values)
    return values


def significance_color(r: float, p: float, alpha: float = 0.05) -> str:
    """Green for significant positive r, red for significant negative r, gray otherwise."""
    if np.isfinite(p) and p < alpha:
        return "green" if r > 0 else "red"
    return "gray"


def draw_regression(
    ax: Axes, x: np.ndarray, y: np.ndarray, fit: pd.DataFrame, color: str = "tab:gray", line: str | None = None
) -> None:
    """The finite (x, y) pairs, the least-squares line and its 95 % bootstrap band of a fit table (columns grid,
    fit, ci_low, ci_high; analysis.statistics.regression_line), drawn as seaborn's regplot draws them."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < MIN_FIT_POINTS:
        ax.text(0.5, 0.5, "too few runs", ha="center", transform=ax.transAxes, color="gray")
        return
    line_color = mpl.colors.rgb2hex(mpl.colors.to_rgb(line or color))
    ax.scatter(x[ok], y[ok], s=18, alpha=0.7, color=mpl.colors.rgb2hex(mpl.colors.to_rgb(color)),
               linewidths=mpl.rcParams["lines.markeredgewidth"])  # fmt: skip
    if len(fit):
        grid = fit["grid"].to_numpy(float)
        ax.plot(grid, fit["fit"].to_numpy(float), color=line_color, linewidth=mpl.rcParams["lines.linewidth"] * 1.5)
        ax.fill_between(grid, fit["ci_low"].to_numpy(float), fit["ci_high"].to_numpy(float), facecolor=line_color,
                        alpha=0.15)  # fmt: skip
