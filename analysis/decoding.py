"""Decoding of simulated "voxel" patterns (ANALYSIS.md §5): MVPA accuracies and Mahalanobis distances.

Nothing here simulates the network: callers pass steady-state rates (:mod:`analysis.mvpa_responses`).
All randomness comes from an explicit ``numpy.random.Generator`` or a fixed seed (the reference used the
global numpy RNG and unseeded classifiers, ANALYSIS.md B11).

* Voxel patterns: readout-like noise, Gaussian smoothing of each cell map (the normalised 13x13 kernel for
  sigma = 2, zero padding, applied as one matrix), E/I mixing 0.8 E + 0.2 I (middle layer summed over its
  phases), per-condition std normalisation (switchable: it erases gain differences, B7), the central readout
  block, then N(0, noise_std²) noise.
* PCA: k = first count whose cumulative explained variance exceeds 70 %, at least 2; k is returned and written
  with the scores (B8).
* MVPA: z-score + linear SVM (SGD, hinge), stratified 50/50 splits seeded 0..9, classifier ``random_state`` =
  split seed.
* Mahalanobis: distances (not squared); the SNR is the ratio of the trial means mean(across)/mean(within)
  instead of the reference's arbitrary trial-by-trial pairing; the learning-modulation indices are returned
  (B9).
* NaN responses give NaN scores, not 0 (B10); score files carry the real run index (B6) and the orientation
  in degrees (B6).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular
from sklearn.decomposition import PCA
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from analysis.cells import CELL_TYPES, DEFAULT_ORIENTATIONS, LAYER_NAMES, CellLayout
from store.files import atomic_write_csv
from store.layout import SCORE_TABLES, table_name

logger = logging.getLogger(__name__)

E_WEIGHT, I_WEIGHT = 0.8, 0.2
"""Weights of the E and I cells of a grid point in its voxel value."""


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


def smoothing_matrix(sigma: float, side: int) -> np.ndarray:
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


def _crop_centre(pattern: np.ndarray, layout: CellLayout) -> np.ndarray:
    """Central readout block of (T, n_grid) maps, flattened (5x5 = rows/cols 2..6 of 9x9: (T, 81) -> (T, 25))."""
    side, crop = layout.grid_side, layout.crop
    return pattern.reshape(-1, side, side)[:, crop, crop].reshape(pattern.shape[0], -1)


def voxel_patterns(
    r_mid: np.ndarray,
    r_sup: np.ndarray,
    rng: np.random.Generator,
    layout: CellLayout,
    sigma_filter: float = 2.0,
    readout_noise: bool = True,
    normalise: bool = True,
    noise_std: float = 1.0,
    readout_noise_scale: float = 0.2,
) -> dict[str, np.ndarray]:
    """Voxel patterns of one condition: readout noise, smoothing, E/I mixing, normalisation, central crop and
    voxel noise (ANALYSIS.md §5.1 steps 3-9). (T, n_mid) mid and (T, n_sup) sup rates -> {'mid', 'sup'}:
    (T, readout_side²), e.g. (T, 648), (T, 162) -> (T, 25)."""
    # Draw order: readout noise mid, sup; post-filter noise mid, sup.
    r_mid = np.asarray(r_mid, dtype=float)
    r_sup = np.asarray(r_sup, dtype=float)
    n = r_mid.shape[0]
    if readout_noise:
        r_mid = add_readout_noise(r_mid, rng, readout_noise_scale)
        r_sup = add_readout_noise(r_sup, rng, readout_noise_scale)
    m = smoothing_matrix(sigma_filter, layout.grid_side)
    mid = r_mid.reshape(n, layout.phases, len(CELL_TYPES), layout.n_grid) @ m.T
    mid = (E_WEIGHT * mid[:, :, 0] + I_WEIGHT * mid[:, :, 1]).sum(axis=1)
    sup = r_sup.reshape(n, len(CELL_TYPES), layout.n_grid) @ m.T
    sup = E_WEIGHT * sup[:, 0] + I_WEIGHT * sup[:, 1]
    out = {}
    for name, pattern in (("mid", mid), ("sup", sup)):
        pattern = _normalise_block(pattern) if normalise else pattern
        out[name] = _crop_centre(pattern, layout)
    for name in ("mid", "sup"):
        out[name] = out[name] + noise_std * rng.standard_normal(out[name].shape)
    return out


# ------------------------------------------------------------------------------------------------------
# PCA, MVPA and Mahalanobis distances (ANALYSIS.md §5.2-§5.4; choices in the module docstring)
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


def learning_modulation_indices(
    details: pd.DataFrame, oris: Sequence[float] = DEFAULT_ORIENTATIONS.slopes
) -> pd.DataFrame:
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
    """MVPA and Mahalanobis results of one run: arrays indexed [layer, stage position, tested orientation]."""

    mvpa: np.ndarray
    mahal: np.ndarray
    n_components: np.ndarray
    stages: tuple[int, ...]
    mahal_details: pd.DataFrame
    lmi: pd.DataFrame
    oris: tuple[float, ...]
    """The tested orientations, degrees (trained, untrained), in the order of the arrays' last axis."""


def _stack_conditions(patterns: list[list[dict[str, np.ndarray]]], layer: str) -> np.ndarray:
    """Stack voxel patterns stage-major, then orientation, into (S*O*T, 25)."""
    return np.vstack([cond[layer] for stage in patterns for cond in stage])


def mvpa_mahal_for_run(
    r_mid: np.ndarray,
    r_sup: np.ndarray,
    rng: np.random.Generator,
    layout: CellLayout,
    oris: Sequence[float] = DEFAULT_ORIENTATIONS.mvpa,
    stages: Sequence[int] = (0, 1, 2),
    sigma_filter: float = 2.0,
    readout_noise: bool = True,
    normalise: bool = True,
    noise_std: float = 1.0,
    n_splits: int = 10,
) -> RunScores:
    """MVPA, Mahalanobis scores and PCA k of one run from (S, 3, T, cells) rates.

    The orientation axis follows oris: trained, untrained, then the control that both are decoded against.
    """
    r_mid, r_sup = np.asarray(r_mid, dtype=float), np.asarray(r_sup, dtype=float)
    n_stages, n_oris, n_trials = r_mid.shape[:3]
    expected = (len(stages), len(oris), n_trials, layout.n_mid)
    if r_mid.shape != expected or n_oris != 3:
        raise ValueError(f"expected {expected} middle-layer responses, got {r_mid.shape}")
    patterns = [
        [
            voxel_patterns(r_mid[s, o], r_sup[s, o], rng, layout, sigma_filter, readout_noise, normalise, noise_std)
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
                    "ori": oris[o],
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
                details.append({"layer": li, "stage": stages[s], "ori": oris[o], **cond})
    details_df = pd.DataFrame(details)
    return RunScores(
        mvpa,
        mahal_arr,
        k_arr,
        tuple(int(s) for s in stages),
        details_df,
        learning_modulation_indices(details_df, oris[:2]),
        tuple(float(o) for o in oris[:2]),
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
                    rows.append((int(run), li, stage, res.oris[oi], arr[li, si, oi], res.n_components[li]))
    return pd.DataFrame(rows, columns=["run_index", "layer", "stage", "ori", "score", "n_components"])


def score_tables(results: Mapping[int, RunScores]) -> dict[str, pd.DataFrame]:
    """The score tables (keys: the SCORE_TABLES file stems) of the runs' results."""
    tables = (
        scores_long_frame(results, "mvpa"),
        scores_long_frame(results, "mahal"),
        mahal_details_frame(results),
        lmi_frame(results),
    )
    return dict(zip(SCORE_TABLES, tables, strict=True))


def write_scores_csvs(results: Mapping[int, RunScores], folder: str | Path) -> dict[str, Path]:
    """Write MVPA_scores.csv, Mahal_scores.csv, Mahal_details.csv and LMI.csv into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = score_tables(results)
    paths = {}
    for name, table in tables.items():
        paths[name] = folder / table_name(name)
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
