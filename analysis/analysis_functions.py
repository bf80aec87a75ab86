"""Model-independent analysis functions (spec ANALYSIS.md §2-§7), working on arrays and DataFrames only.

Nothing here simulates the network: callers pass tuning curves, steady-state responses or the training CSVs.
All randomness comes from an explicit ``numpy.random.Generator`` or a fixed seed (B11).

Documented choices and fixes of ANALYSIS.md §11 built here:

* Tuning curves (§3): the CSV files always carry a header (the header-less configuration file of the
  reference is a defect); :func:`read_tuning_curves_csv` reads files with and without a header.
* Tuning-curve features (§4, B13): a truly periodic cubic spline (``scipy.interpolate.CubicSpline`` with
  ``bc_type='periodic'``) replaces the not-a-knot spline through a duplicated end point; slopes are the
  spline's analytic derivative divided by the peak; ``pref_ori`` is reported modulo 180; ``max_min_ratio``
  is the modulation depth (max - min)/max; ``slope_hm`` is taken on the half-maximum flank closest (as an
  orientation, modulo 180) to the trained orientation; ``fwhm`` is the width of the above-half-maximum
  region that contains the peak, with linearly interpolated crossings; slope feature names follow the
  slope orientations passed in (``slope_55``, ``slope_125`` by default).
* Voxel patterns (§5.1): per-condition std normalisation is switchable (B7); the smoothing is the
  normalised separable 13x13 Gaussian kernel (sigma = 2) with zero padding, applied as an 81x81 matrix.
* PCA (§5.2, B8): the number of components k is returned and written with the scores.
* MVPA (§5.3, B11): stratified 50/50 splits seeded 0..9, classifier ``random_state`` = split seed.
* Mahalanobis (§5.4, B9): distances (not squared); the SNR is the ratio of the trial means
  mean(across)/mean(within) instead of an arbitrary trial-by-trial pairing; the LMIs are returned.
* NaN responses give NaN scores (B10); score files carry the real run index (B6) and the orientation in
  degrees (55, 125).
* Exclusion (§2, B4, binding decision 7): every configuration; mean of the last 3 valid psychometric
  thresholds of the training rows > 10 AND more than 8 of the last 10 staircase values at the ceiling.
* Relative changes (§6, B3, B22): the training window starts at the first stage-2 row; percent columns for
  ordinary columns, ``d_<name>`` absolute-change columns for kappa (change of tanh(kappa), the files store
  raw kappa) and for every column whose start value is 0 in some run; NaN stays NaN. Start and end of a
  window are the first and last non-missing values inside it (psychometric offsets are sparse).
* Sliding Mann-Whitney (§7, B21): integer-indexed window starts, so no window is lost to rounding.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.interpolate import CubicSpline
from scipy.linalg import solve_triangular
from sklearn.decomposition import PCA
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from statsmodels.nonparametric.smoothers_lowess import lowess
from statsmodels.stats.anova import AnovaRM

from training.results_io import atomic_open, atomic_write_csv

logger = logging.getLogger(__name__)

GRID_SIDE = 9
N_GRID = GRID_SIDE * GRID_SIDE
N_PHASES = 4
N_MID = N_PHASES * 2 * N_GRID
N_SUP = 2 * N_GRID
N_CELLS = N_MID + N_SUP
TC_ORIENTATIONS: tuple[float, ...] = tuple(float(o) for o in range(0, 360, 5))
TRAINED_ORI = 55.0
UNTRAINED_ORI = 125.0
SLOPE_ORIS: tuple[float, float] = (TRAINED_ORI, UNTRAINED_ORI)
MVPA_ORIS: tuple[float, float, float] = (55.0, 125.0, 0.0)
LAYER_NAMES: tuple[str, str] = ("mid", "sup")
INTERP_STEP = 0.2
E_WEIGHT, I_WEIGHT = 0.8, 0.2
CROP = slice(2, 7)
TC_ID_COLUMNS: tuple[str, str] = ("run_index", "training_stage")
NON_VALUE_COLUMNS: tuple[str, ...] = ("run_index", "stage", "SGD_steps", "index")
CORRELATION_PREFIXES: tuple[str, ...] = ("J_", "c", "f_", "kappa_Jsup", "EI_ratio_J_")


# ------------------------------------------------------------------------------------------------------
# Cell bookkeeping (§0.3)
# ------------------------------------------------------------------------------------------------------
def cell_names() -> list[str]:
    """Names of the 810 cells: 648 mid cells (index 162p+81t+g), then 162 sup cells (index 648+81t+g)."""
    mid = [f"G{g + 1}_{t}_Ph{p}_M" for p in range(N_PHASES) for t in "EI" for g in range(N_GRID)]
    sup = [f"G{g + 1}_{t}_S" for t in "EI" for g in range(N_GRID)]
    return mid + sup


def cell_info() -> pd.DataFrame:
    """One row per cell: name, layer ('mid'/'sup'), type ('E'/'I'), phase (mid 0..3, sup -1), grid point."""
    idx = np.arange(N_CELLS)
    is_mid = idx < N_MID
    local = np.where(is_mid, idx % (2 * N_GRID), idx - N_MID)
    return pd.DataFrame(
        {
            "cell": idx,
            "name": cell_names(),
            "layer": np.where(is_mid, "mid", "sup"),
            "type": np.where(local < N_GRID, "E", "I"),
            "phase": np.where(is_mid, idx // (2 * N_GRID), -1),
            "grid": idx % N_GRID,
        }
    )


def wrap_orientation_difference(d: np.ndarray | float) -> np.ndarray:
    """Wrap orientation differences (degrees) into [-90, 90)."""
    return (np.asarray(d, dtype=float) + 90.0) % 180.0 - 90.0


# ------------------------------------------------------------------------------------------------------
# Tuning-curve CSV files (§3)
# ------------------------------------------------------------------------------------------------------
def tuning_curve_frame(run_index: int, stage: int, curves: np.ndarray) -> pd.DataFrame:
    """Rows of the tuning-curve CSV for one (run, stage): curves has shape (n_orientations, 810)."""
    curves = np.asarray(curves, dtype=float)
    if curves.ndim != 2 or curves.shape[1] != N_CELLS:
        raise ValueError(f"expected (n_orientations, {N_CELLS}) curves, got {curves.shape}")
    frame = pd.DataFrame(curves, columns=cell_names())
    frame.insert(0, "training_stage", int(stage))
    frame.insert(0, "run_index", int(run_index))
    return frame


def write_tuning_curves_csv(tc_df: pd.DataFrame, path: str | Path, append: bool = False) -> Path:
    """Write tuning curves WITH a header (fixes the header-less file); append adds rows to a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exists = append and path.exists() and path.stat().st_size > 0
    tc_df.to_csv(path, mode="a" if exists else "w", header=not exists, index=False, float_format="%.4f")
    return path


def _first_line_has_header(path: Path) -> bool:
    """True if any cell of the first line is not a number."""
    with path.open() as handle:
        first = handle.readline().strip()
    for cell in first.split(","):
        try:
            float(cell)
        except ValueError:
            return True
    return False


def read_tuning_curves_csv(path: str | Path) -> pd.DataFrame:
    """Read a tuning-curve CSV with or without a header line; run_index and training_stage become ints."""
    path = Path(path)
    if _first_line_has_header(path):
        df = pd.read_csv(path)
    else:
        df = pd.read_csv(path, header=None, names=list(TC_ID_COLUMNS) + cell_names())
    for col in TC_ID_COLUMNS:
        df[col] = df[col].astype(float).astype(int)
    return df


# ------------------------------------------------------------------------------------------------------
# Tuning-curve features (§4)
# ------------------------------------------------------------------------------------------------------
def feature_names(slope_oris: Sequence[float] = SLOPE_ORIS) -> list[str]:
    """Feature order of the features CSV (fwhm, slopes, pref_ori, min, max, ratio, mean, std, slope_hm)."""
    slopes = [f"slope_{o:g}" for o in slope_oris]
    return ["fwhm", *slopes, "pref_ori", "min", "max", "max_min_ratio", "mean", "std", "slope_hm"]


def interpolation_grid(step: float = INTERP_STEP) -> np.ndarray:
    """Evaluation grid 0, step, ..., 360 - step (1800 points for step 0.2)."""
    return np.arange(int(round(360.0 / step))) * step


def _periodic_spline_values(
    oris: np.ndarray, curves: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
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
    trained_ori: float = TRAINED_ORI,
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
    trained_ori: float = TRAINED_ORI,
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


# ------------------------------------------------------------------------------------------------------
# Voxel patterns (§5.1)
# ------------------------------------------------------------------------------------------------------
def softplus(x: np.ndarray) -> np.ndarray:
    """Numerically stable log(1 + exp(x)) (NaN stays NaN)."""
    with np.errstate(invalid="ignore"):
        return np.logaddexp(0.0, x)


def add_readout_noise(r: np.ndarray, rng: np.random.Generator, scale: float = 0.2) -> np.ndarray:
    """Readout-like noise r + scale * xi * sqrt(softplus(r)), xi ~ N(0, 1) per entry."""
    return r + scale * rng.standard_normal(r.shape) * np.sqrt(softplus(r))


def gaussian_kernel_1d(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian kernel of length 2*ceil(3*sigma)+1 (13 taps for sigma = 2)."""
    half = int(math.ceil(3.0 * sigma))
    t = np.arange(-half, half + 1, dtype=float)
    g = np.exp(-(t**2) / (2.0 * sigma**2))
    return g / g.sum()


def smoothing_matrix(sigma: float, side: int = GRID_SIDE) -> np.ndarray:
    """(side², side²) matrix of the zero-padded 'same' convolution with the normalised 2-D Gaussian kernel."""
    if sigma <= 0:
        return np.eye(side * side)
    g = gaussian_kernel_1d(sigma)
    half = g.size // 2
    offsets = np.arange(side)[None, :] - np.arange(side)[:, None]
    k1 = np.where(np.abs(offsets) <= half, g[np.clip(offsets + half, 0, g.size - 1)], 0.0)
    return np.kron(k1, k1)


def _normalise_block(pattern: np.ndarray) -> np.ndarray:
    """Divide a condition's (T, 81) block by its overall std (left unchanged if the std is 0)."""
    sd = np.std(pattern)
    if sd == 0:
        logger.warning("condition block has zero std; not normalised")
        return pattern
    return pattern / sd


def _crop_centre(pattern: np.ndarray) -> np.ndarray:
    """Central 5x5 grid points (rows/cols 2..6) of (T, 81) maps, flattened to (T, 25)."""
    return pattern.reshape(-1, GRID_SIDE, GRID_SIDE)[:, CROP, CROP].reshape(pattern.shape[0], -1)


def voxel_patterns(
    r_mid: np.ndarray,
    r_sup: np.ndarray,
    rng: np.random.Generator,
    sigma_filter: float = 2.0,
    readout_noise: bool = True,
    normalise: bool = True,
    noise_std: float = 1.0,
    readout_noise_scale: float = 0.2,
) -> dict[str, np.ndarray]:
    """§5.1 steps 3-9 for one condition: (T,648) mid, (T,162) sup rates -> {'mid','sup'}: (T,25)."""
    # Draw order: readout noise mid, sup; post-filter noise mid, sup.
    r_mid = np.asarray(r_mid, dtype=float)
    r_sup = np.asarray(r_sup, dtype=float)
    n = r_mid.shape[0]
    if readout_noise:
        r_mid = add_readout_noise(r_mid, rng, readout_noise_scale)
        r_sup = add_readout_noise(r_sup, rng, readout_noise_scale)
    m = smoothing_matrix(sigma_filter)
    mid = r_mid.reshape(n, N_PHASES, 2, N_GRID) @ m.T
    mid = (E_WEIGHT * mid[:, :, 0] + I_WEIGHT * mid[:, :, 1]).sum(axis=1)
    sup = r_sup.reshape(n, 2, N_GRID) @ m.T
    sup = E_WEIGHT * sup[:, 0] + I_WEIGHT * sup[:, 1]
    out = {}
    for name, pattern in (("mid", mid), ("sup", sup)):
        pattern = _normalise_block(pattern) if normalise else pattern
        out[name] = _crop_centre(pattern)
    for name in ("mid", "sup"):
        out[name] = out[name] + noise_std * rng.standard_normal(out[name].shape)
    return out


# ------------------------------------------------------------------------------------------------------
# PCA, MVPA and Mahalanobis distances (§5.2-§5.4)
# ------------------------------------------------------------------------------------------------------
def pca_reduce(
    X: np.ndarray, max_components: int = 20, var_threshold: float = 0.70, min_components: int = 2
) -> tuple[np.ndarray, int]:
    """PCA scores with k = first count whose cumulative explained variance exceeds var_threshold (k >= 2)."""
    n_comp = min(max_components, X.shape[0], X.shape[1])
    pca = PCA(n_components=n_comp, svd_solver="full").fit(X)
    cum = np.cumsum(pca.explained_variance_ratio_)
    cum[-1] = 1.0
    k = min(max(int(np.argmax(cum > var_threshold)) + 1, min_components), n_comp)
    return pca.transform(X)[:, :k], k


def mvpa_accuracy(Xa: np.ndarray, Xb: np.ndarray, n_splits: int = 10, test_size: float = 0.5) -> float:
    """Mean test accuracy of z-score + linear SVM (SGD hinge) over stratified splits seeded 0..n_splits-1."""
    X = np.vstack([Xa, Xb])
    y = np.r_[np.zeros(len(Xa), dtype=int), np.ones(len(Xb), dtype=int)]
    if not np.isfinite(X).all():
        return math.nan
    accs = []
    for seed in range(n_splits):
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
        clf = SGDClassifier(loss="hinge", alpha=1e-4, max_iter=1000, tol=1e-3, random_state=seed)
        model = make_pipeline(StandardScaler(), clf).fit(X_tr, y_tr)
        accs.append(model.score(X_te, y_te))
    return float(np.mean(accs))


def mahal(ref: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Mahalanobis DISTANCE (not squared) of each row of Y from ref's mean, unbiased covariance, via QR."""
    ref = np.atleast_2d(np.asarray(ref, dtype=float))
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    n, d = ref.shape
    if n <= d:
        raise ValueError(f"need more reference rows ({n}) than dimensions ({d})")
    mu = ref.mean(axis=0)
    r = np.linalg.qr(ref - mu, mode="r")
    z = solve_triangular(r, (Y - mu).T, trans="T", lower=False)
    return np.sqrt((n - 1) * np.sum(z**2, axis=0))


def mahal_leave_one_out(X: np.ndarray) -> np.ndarray:
    """Distance of each row of X from the other rows (leave-one-out within-condition distance).

    Equal to ``mahal(np.delete(X, t, 0), X[t])`` for every row t, from one QR factorisation: with the
    centred rows d_t, the scatter A = Σ d dᵀ and q_t = d_tᵀ A⁻¹ d_t, leaving row t out moves the mean by
    -d_t/(n-1) and the scatter to A - c d_t d_tᵀ (c = n/(n-1)), so by Sherman-Morrison the squared
    distance is c² (n-2) q_t / (1 - c q_t).
    """
    X = np.atleast_2d(np.asarray(X, dtype=float))
    n, d = X.shape
    if n - 1 <= d:
        raise ValueError(f"need more reference rows ({n - 1}) than dimensions ({d})")
    centred = X - X.mean(axis=0)
    r = np.linalg.qr(centred, mode="r")
    q = np.sum(solve_triangular(r, centred.T, trans="T", lower=False) ** 2, axis=0)
    c = n / (n - 1)
    return np.sqrt(c**2 * (n - 2) * q / (1 - c * q))


def mahal_condition_scores(X_control: np.ndarray, X_ori: np.ndarray) -> dict[str, float]:
    """Trial means of across (to control) and within (leave-one-out) distances, SNR = ratio of the means."""
    if not (np.isfinite(X_control).all() and np.isfinite(X_ori).all()):
        return {"across": math.nan, "within": math.nan, "snr": math.nan}
    across = float(np.mean(mahal(X_control, X_ori)))
    within = float(np.mean(mahal_leave_one_out(X_ori)))
    return {"across": across, "within": within, "snr": across / within if within > 0 else math.nan}


def learning_modulation_indices(details: pd.DataFrame, oris: Sequence[float] = (55.0, 125.0)) -> pd.DataFrame:
    """LMI between consecutive stages: change of the trained minus change of the untrained measure."""
    rows = []
    keys = [c for c in ("run_index", "layer") if c in details.columns]
    for key, group in details.groupby(keys, sort=False):
        g = group.set_index(["stage", "ori"])
        stages = sorted(group["stage"].unique())
        for s0, s1 in zip(stages[:-1], stages[1:], strict=True):
            row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            row.update({"from_stage": s0, "to_stage": s1})
            for measure in ("across", "within", "snr"):
                delta = [g.loc[(s1, o), measure] - g.loc[(s0, o), measure] for o in oris]
                row[f"LMI_{measure}"] = delta[0] - delta[1]
            rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RunScores:
    """MVPA and Mahalanobis results of one run: arrays indexed [layer, stage position, ori (55, 125)]."""

    mvpa: np.ndarray
    mahal: np.ndarray
    n_components: np.ndarray
    stages: tuple[int, ...]
    mahal_details: pd.DataFrame
    lmi: pd.DataFrame


def _stack_conditions(patterns: list[list[dict[str, np.ndarray]]], layer: str) -> np.ndarray:
    """Stack voxel patterns stage-major, then orientation, into (S*O*T, 25)."""
    return np.vstack([cond[layer] for stage in patterns for cond in stage])


def mvpa_mahal_for_run(
    r_mid: np.ndarray,
    r_sup: np.ndarray,
    rng: np.random.Generator,
    stages: Sequence[int] = (0, 1, 2),
    sigma_filter: float = 2.0,
    readout_noise: bool = True,
    normalise: bool = True,
    noise_std: float = 1.0,
    n_splits: int = 10,
) -> RunScores:
    """MVPA, Mahalanobis scores and PCA k of one run from (S, 3 oris [55,125,0], T, cells) rates."""
    r_mid, r_sup = np.asarray(r_mid, dtype=float), np.asarray(r_sup, dtype=float)
    n_stages, n_oris, n_trials = r_mid.shape[:3]
    if n_oris != len(MVPA_ORIS) or n_stages != len(stages):
        raise ValueError(f"expected ({len(stages)}, {len(MVPA_ORIS)}, T, 648) responses, got {r_mid.shape}")
    patterns = [
        [
            voxel_patterns(r_mid[s, o], r_sup[s, o], rng, sigma_filter, readout_noise, normalise, noise_std)
            for o in range(n_oris)
        ]
        for s in range(n_stages)
    ]
    mvpa = np.full((2, n_stages, 2), np.nan)
    mahal_arr = np.full_like(mvpa, np.nan)
    k_arr = np.full(2, np.nan)
    details = []
    for li, layer in enumerate(LAYER_NAMES):
        X = _stack_conditions(patterns, layer)
        if not np.isfinite(X).all():
            logger.warning("NaN in %s-layer responses: scores set to NaN", layer)
            details += [
                {
                    "layer": li,
                    "stage": stages[s],
                    "ori": MVPA_ORIS[o],
                    "across": np.nan,
                    "within": np.nan,
                    "snr": np.nan,
                }
                for s in range(n_stages)
                for o in range(2)
            ]
            continue
        scores, k = pca_reduce(X)
        k_arr[li] = k
        blocks = scores.reshape(n_stages, n_oris, n_trials, k)
        for s in range(n_stages):
            control = blocks[s, 2]
            for o in range(2):
                mvpa[li, s, o] = mvpa_accuracy(blocks[s, o], control, n_splits)
                cond = mahal_condition_scores(control, blocks[s, o])
                mahal_arr[li, s, o] = cond["across"]
                details.append({"layer": li, "stage": stages[s], "ori": MVPA_ORIS[o], **cond})
    details_df = pd.DataFrame(details)
    return RunScores(
        mvpa,
        mahal_arr,
        k_arr,
        tuple(int(s) for s in stages),
        details_df,
        learning_modulation_indices(details_df),
    )


def scores_long_frame(results: Mapping[int, RunScores], kind: str = "mvpa") -> pd.DataFrame:
    """Long MVPA/Mahal table: run_index (real id), layer, stage, ori (deg), score, n_components."""
    if kind not in ("mvpa", "mahal"):
        raise ValueError("kind must be 'mvpa' or 'mahal'")
    rows = []
    for run, res in results.items():
        arr = res.mvpa if kind == "mvpa" else res.mahal
        for li in range(arr.shape[0]):
            for si, stage in enumerate(res.stages):
                for oi in range(arr.shape[2]):
                    rows.append((int(run), li, stage, MVPA_ORIS[oi], arr[li, si, oi], res.n_components[li]))
    return pd.DataFrame(rows, columns=["run_index", "layer", "stage", "ori", "score", "n_components"])


def write_scores_csvs(results: Mapping[int, RunScores], folder: str | Path) -> dict[str, Path]:
    """Write MVPA_scores.csv, Mahal_scores.csv, Mahal_details.csv and LMI.csv into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "MVPA_scores": scores_long_frame(results, "mvpa"),
        "Mahal_scores": scores_long_frame(results, "mahal"),
        "Mahal_details": mahal_details_frame(results),
        "LMI": lmi_frame(results),
    }
    paths = {}
    for name, table in tables.items():
        paths[name] = folder / f"{name}.csv"
        atomic_write_csv(table, paths[name])
    return paths


def mahal_details_frame(results: Mapping[int, RunScores]) -> pd.DataFrame:
    """Across/within/SNR trial means of every run, layer, stage and orientation."""
    frames = [res.mahal_details.assign(run_index=int(run)) for run, res in results.items()]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return df[["run_index", *[c for c in df.columns if c != "run_index"]]] if len(df) else df


def lmi_frame(results: Mapping[int, RunScores]) -> pd.DataFrame:
    """Learning modulation indices of every run and layer."""
    frames = [res.lmi.assign(run_index=int(run)) for run, res in results.items()]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return df[["run_index", *[c for c in df.columns if c != "run_index"]]] if len(df) else df


# ------------------------------------------------------------------------------------------------------
# Run exclusion (§2, binding decision 7)
# ------------------------------------------------------------------------------------------------------
def _column_values(df: pd.DataFrame, column: str) -> np.ndarray:
    """Non-missing numeric values of a column (empty if the column is absent)."""
    if column not in df.columns:
        return np.array([])
    return pd.to_numeric(df[column], errors="coerce").dropna().to_numpy(float)


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
    for run in run_indices:
        sub = train_df[train_df["run_index"] == run]
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


def excluded_runs(
    train_df: pd.DataFrame, run_indices: Iterable[int], max_train_offset: float = 10.0
) -> list[int]:
    """Sorted indices of the runs excluded from one configuration's analysis."""
    table = exclusion_table(train_df, run_indices, max_train_offset)
    return sorted(int(r) for r in table.loc[table["excluded"], "run_index"])


def write_excluded_runs(runs: Iterable[int], path: str | Path) -> Path:
    """Write run indices one per line, no header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        fh.write("".join(f"{int(r)}\n" for r in sorted(runs)))
    return path


def read_excluded_runs(path: str | Path) -> list[int]:
    """Read a one-index-per-line file (empty file -> empty list)."""
    text = Path(path).read_text().split()
    return sorted(int(float(t)) for t in text)


def write_exclusion_files(
    results_root: str | Path, excluded_by_conf: Mapping[str, Iterable[int]]
) -> list[int]:
    """Write <conf>/excluded_runs.csv, excluded_runs_all.csv (union) and excluded_runs_details.csv."""
    root = Path(results_root)
    lists = {conf: sorted(int(r) for r in runs) for conf, runs in excluded_by_conf.items()}
    for conf, runs in lists.items():
        write_excluded_runs(runs, root / conf / "excluded_runs.csv")
    union = sorted(set().union(*lists.values())) if lists else []
    write_excluded_runs(union, root / "excluded_runs_all.csv")
    details = pd.DataFrame(
        {
            "excluded_runs": [" ".join(map(str, runs)) for runs in lists.values()],
            "n_excluded": [len(runs) for runs in lists.values()],
        },
        index=pd.Index(list(lists), name="configuration"),
    )
    with atomic_open(root / "excluded_runs_details.csv") as fh:
        details.to_csv(fh)
    return union


# ------------------------------------------------------------------------------------------------------
# Relative changes and pre/post values (§6)
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


def _window_bounds(table: pd.DataFrame, window: str) -> tuple[int, int] | None:
    """[a, b] of the 'train' window (first stage-2 row .. last row) or the 'pretrain' window."""
    t = time_indices(table)
    if window == "train":
        return None if t["tT"] is None else (t["tT"], t["tE"])
    if window == "pretrain":
        return t["t0"], (t["tE"] if t["tT"] is None else t["tT"] - 1)
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
        bounds = _window_bounds(table, window) if len(table) else None
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


# ------------------------------------------------------------------------------------------------------
# Statistics (§7)
# ------------------------------------------------------------------------------------------------------
def change_column(rel_changes: pd.DataFrame, name: str) -> str:
    """The column holding the change of name: the percent column, else d_<name>."""
    if name in rel_changes.columns:
        return name
    if f"d_{name}" in rel_changes.columns:
        return f"d_{name}"
    raise KeyError(name)


def correlation_parameters(
    rel_changes: pd.DataFrame, prefixes: Sequence[str] = CORRELATION_PREFIXES
) -> list[str]:
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


def paired_tests(
    scores: pd.DataFrame, pre_stage: int = 1, post_stage: int = 2, measure: str = ""
) -> pd.DataFrame:
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
    """Two-sided Mann-Whitney U (continuity correction) of v1 vs v2 in sliding windows of x (B21 fix)."""
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
    orimap: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per run and cell: Δ|slope_θ| (post - pre) and x = pref - θ wrapped to [-90, 90)."""
    # pref = tuning-curve pref_ori at the pre stage (B13 fix), or the orimap if given.
    name = f"slope_{slope_ori:g}"
    pre = feature_matrix(features_df, name, pre_stage).abs()
    post = feature_matrix(features_df, name, post_stage).abs()
    runs = pre.index.intersection(post.index)
    if orimap is None:
        pref = feature_matrix(features_df, "pref_ori", pre_stage).loc[runs].to_numpy(float)
    else:
        om = orimap.set_index(orimap["run_index"].astype(int)).drop(columns="run_index").loc[runs]
        pref = om.to_numpy(float)[:, np.arange(N_CELLS) % N_GRID]
    info = cell_info()
    frames = []
    for i, run in enumerate(runs):
        frame = info[["cell", "layer", "type", "phase"]].copy()
        frame.insert(0, "run_index", int(run))
        frame["pref_ori"] = pref[i]
        frame["x"] = wrap_orientation_difference(pref[i] - slope_ori)
        frame["dslope"] = post.loc[run].to_numpy(float) - pre.loc[run].to_numpy(float)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def mvpa_percent_change(
    scores: pd.DataFrame, layer: int, ori: float, pre: int = 1, post: int = 2
) -> pd.Series:
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
