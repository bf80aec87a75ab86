"""Tuning-curve features (ANALYSIS.md §4), with the fixes of its bug list (B13).

* A truly periodic cubic spline (``scipy.interpolate.CubicSpline`` with ``bc_type='periodic'``) replaces
  the reference's not-a-knot spline through a duplicated end point.
* Slopes are the spline's analytic derivative divided by the peak (fraction of peak per degree); their
  feature names follow the slope orientations passed in (``slope_55``, ``slope_125`` by default).
* ``pref_ori`` is reported modulo 180; ``max_min_ratio`` is the modulation depth (max - min)/max.
* ``slope_hm`` is taken on the half-maximum flank closest (as an orientation, modulo 180) to the trained
  orientation (the reference took an arbitrary flank).
* ``fwhm`` is the width of the above-half-maximum region that contains the peak, with linearly
  interpolated crossings (the reference took the longest region, counted in samples).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.interpolate import CubicSpline

from analysis.cells import DEFAULT_ORIENTATIONS, wrap_orientation_difference
from analysis.tuning_curve_files import TC_ID_COLUMNS

logger = logging.getLogger(__name__)

TC_ORIENTATIONS: tuple[float, ...] = tuple(float(o) for o in range(0, 360, 5))
"""Tuning-curve stimulus orientations 0, 5, ..., 355 degrees (the full circle: for the π/2 and 3π/2 phases a
grating at θ + 180° is the contrast-reversed copy of the one at θ)."""
SLOPE_ORIS: tuple[float, float] = DEFAULT_ORIENTATIONS.slopes
"""Default slope orientations: trained and untrained reference orientations of the default parameters."""
INTERP_STEP = 0.2
"""Step (degrees) of the interpolated curve every feature is measured on (1800 samples over [0, 360))."""


def feature_names(slope_oris: Sequence[float] = SLOPE_ORIS) -> list[str]:
    """Feature order of the features CSV (fwhm, slopes, pref_ori, min, max, ratio, mean, std, slope_hm)."""
    slopes = [f"slope_{o:g}" for o in slope_oris]
    return ["fwhm", *slopes, "pref_ori", "min", "max", "max_min_ratio", "mean", "std", "slope_hm"]


def interpolation_grid(step: float = INTERP_STEP) -> np.ndarray:
    """Evaluation grid 0, step, ..., 360 - step (1800 points for step 0.2)."""
    return np.arange(int(round(360.0 / step))) * step


def _periodic_spline_values(oris: np.ndarray, curves: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and first derivatives on x of periodic cubic splines through curves (n_curves, n_oris)."""
    xs = np.append(oris, oris[0] + 360.0)
    ys = np.concatenate([curves, curves[:, :1]], axis=1)
    spline = CubicSpline(xs, ys, axis=1, bc_type="periodic", extrapolate="periodic")
    return spline(x), spline(x, 1)


def interpolate_tuning_curves(
    curves: np.ndarray, oris: Sequence[float] = TC_ORIENTATIONS, step: float = INTERP_STEP
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Periodic cubic-spline (bc_type='periodic') x, y and dy/dx of (n_cells, n_oris) curves."""
    # NaN samples are dropped per cell; fewer than 4 valid samples give an all-NaN curve.
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    oris_arr = np.asarray(oris, dtype=float) % 360.0
    order = np.argsort(oris_arr)
    oris_arr, curves = oris_arr[order], curves[:, order]
    x = interpolation_grid(step)
    y = np.full((curves.shape[0], x.size), np.nan)
    dy = np.full_like(y, np.nan)
    finite = np.isfinite(curves)
    complete = finite.all(axis=1)
    if complete.any():
        y[complete], dy[complete] = _periodic_spline_values(oris_arr, curves[complete], x)
    for i in np.flatnonzero(~complete):
        ok = finite[i]
        if ok.mean() < 0.9:
            logger.warning("cell %d: %.0f%% of tuning-curve samples missing", i, 100 * (1 - ok.mean()))
        if ok.sum() >= 4:
            y[i], dy[i] = _periodic_spline_values(oris_arr[ok], curves[i : i + 1, ok], x)
    return x, y, dy


def _fwhm_one(y: np.ndarray, step: float) -> float:
    """Width (degrees) of the above-half-maximum region containing the peak, crossings interpolated."""
    if not np.isfinite(y).all():
        return math.nan
    z = y - y.min()
    h = z.max() / 2.0
    if not h > 0:
        return 0.0
    shift = int(np.argmin(z > h))
    zr = np.roll(z, -shift)
    zr = np.append(zr, zr[0])
    peak = int(np.argmax(zr[:-1]))
    below = np.flatnonzero(zr <= h)
    left = int(below[below < peak].max())
    right = int(below[below > peak].min())
    x_left = left + (h - zr[left]) / (zr[left + 1] - zr[left])
    x_right = right - 1 + (zr[right - 1] - h) / (zr[right - 1] - zr[right])
    return float((x_right - x_left) * step)


def _slope_hm_one(y: np.ndarray, s: np.ndarray, x: np.ndarray, trained_ori: float) -> float:
    """Normalised slope at the half-maximum crossing closest (modulo 180) to the trained orientation."""
    if not np.isfinite(y).all():
        return math.nan
    d = y - (y.max() + y.min()) / 2.0
    above = d > 0
    cross = np.flatnonzero(above != np.roll(above, -1))
    if cross.size == 0:
        return float(s[int(np.argmin(np.abs(d)))])
    nxt = (cross + 1) % y.size
    idx = np.where(np.abs(d[cross]) <= np.abs(d[nxt]), cross, nxt)
    dist = np.abs(wrap_orientation_difference(x[idx] - trained_ori))
    return float(s[idx[int(np.argmin(dist))]])


def _pref_ori(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Preferred orientation mod 180: argmax in the >= 95%-of-peak region, first half if both halves."""
    ymax = y.max(axis=1, keepdims=True)
    near = y >= ymax - 0.05 * np.abs(ymax)
    half = x < 180.0
    both = near[:, half].any(axis=1) & near[:, ~half].any(axis=1)
    keep = near & (~both[:, None] | half[None, :])
    masked = np.where(keep, y, -np.inf)
    pref = x[np.argmax(masked, axis=1)] % 180.0
    return np.where(np.isfinite(ymax[:, 0]), pref, np.nan)


def tuning_curve_features(
    curves: np.ndarray,
    oris: Sequence[float] = TC_ORIENTATIONS,
    slope_oris: Sequence[float] = SLOPE_ORIS,
    trained_ori: float = DEFAULT_ORIENTATIONS.trained,
    step: float = INTERP_STEP,
) -> pd.DataFrame:
    """The 10 features (rows, feature_names order) of (n_cells, n_oris) tuning curves (columns)."""
    # Slopes are |spline derivative| / peak, i.e. fraction of peak per degree.
    x, y, dy = interpolate_tuning_curves(curves, oris, step)
    ymax, ymin = y.max(axis=1), y.min(axis=1)
    scale = np.where(ymax != 0, ymax, 1.0)
    s = np.abs(dy) / scale[:, None]
    values: dict[str, np.ndarray] = {"fwhm": np.array([_fwhm_one(row, step) for row in y])}
    for o in slope_oris:
        i = int(np.argmin(np.abs(x - o % 360.0)))
        values[f"slope_{o:g}"] = s[:, i]
    values["pref_ori"] = _pref_ori(y, x)
    values["min"], values["max"] = ymin, ymax
    with np.errstate(invalid="ignore", divide="ignore"):
        values["max_min_ratio"] = np.where(ymax != 0, (ymax - ymin) / ymax, 0.0)
    values["max_min_ratio"][~np.isfinite(ymax)] = np.nan
    values["mean"], values["std"] = y.mean(axis=1), y.std(axis=1)
    values["slope_hm"] = np.array([_slope_hm_one(y[i], s[i], x, trained_ori) for i in range(y.shape[0])])
    names = feature_names(slope_oris)
    return pd.DataFrame(np.vstack([values[n] for n in names]), index=names)


def tuning_curve_features_table(
    tc_df: pd.DataFrame,
    stages: Iterable[int],
    oris: Sequence[float] = TC_ORIENTATIONS,
    slope_oris: Sequence[float] = SLOPE_ORIS,
    trained_ori: float = DEFAULT_ORIENTATIONS.trained,
) -> pd.DataFrame:
    """Tuning-curve CSV layout (run, stage, orientation rows) -> features CSV layout."""
    cells = [c for c in tc_df.columns if c not in TC_ID_COLUMNS]
    wanted = {int(s) for s in stages}
    blocks = []
    for (run, stage), block in tc_df.groupby(list(TC_ID_COLUMNS), sort=False):
        if int(stage) not in wanted:
            continue
        if len(block) != len(oris):
            raise ValueError(f"run {run} stage {stage}: {len(block)} rows for {len(oris)} orientations")
        feats = tuning_curve_features(block[cells].to_numpy(float).T, oris, slope_oris, trained_ori)
        feats.columns = cells
        feats = feats.rename_axis("feature").reset_index()
        feats.insert(0, "stage", int(stage))
        feats.insert(0, "run_index", int(run))
        blocks.append(feats)
    if not blocks:
        return pd.DataFrame(columns=["run_index", "stage", "feature", *cells])
    return pd.concat(blocks, ignore_index=True)


def feature_matrix(features_df: pd.DataFrame, feature: str, stage: int) -> pd.DataFrame:
    """One feature at one stage as a (runs x cells) frame indexed by run_index."""
    sel = features_df[(features_df["feature"] == feature) & (features_df["stage"] == stage)]
    return sel.drop(columns=["stage", "feature"]).set_index("run_index").astype(float)
