"""Noisy responses to the training stimuli for the MVPA and Mahalanobis analysis (ANALYSIS.md §5.1 steps 1-2).

For each stage snapshot and each orientation in [55, 125, 0]: T images built with the TRAINING stimulus
settings of the snapshot's parameters (annular grating centred on the grid, phase 0, jitter 0) plus
i.i.d. Gaussian pixel noise of std ``StimuliPars.std``. Pixel noise enters the model only through the
linear Gabor filters, so it is drawn directly in filter space (``draw_projected_noise``: exact in
distribution). Randomness comes from an explicit JAX key per (run, stage, orientation), derived from the
seed by ``fold_in`` (explicit seeding instead of the global numpy RNG, ANALYSIS.md B11), so results do
not depend on the chunk size or on the call order. Steps 3-9
(readout noise, smoothing, voxel patterns, PCA, MVPA, Mahalanobis) are ``mvpa_mahal_for_run``, fed with a
numpy Generator seeded with (seed, run index).

Stages 0 and 1 of a run are the same model in every configuration (they come from the shared
pretraining), and their noisy responses depend only on (seed, run, stage, trials): a
:data:`ResponseCache` passed along lets the configurations of one run share them instead of simulating
them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from analysis.cells import CellLayout, TaskOrientations
from analysis.decoding import RunScores, mvpa_mahal_for_run
from analysis.snapshots import Snapshot
from parameters import Parameters
from training.adjoint import FORWARD
from training.model import (
    ModelStatic,
    base_projection,
    build_layers,
    draw_projected_noise,
    evaluate_model_response_batch,
    projected_noise,
)
from training.util_gabor import grating_images, image_geometry

logger = logging.getLogger(__name__)

Array = jnp.ndarray
DEFAULT_CHUNK = 600

ResponseCache = MutableMapping[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]]
"""Responses of configuration-independent snapshots by (seed, run, stage, trials)."""


@dataclass(frozen=True)
class MvpaSettings:
    """What the MVPA and Mahalanobis scores of a run depend on (ANALYSIS.md §5; defaults: its constants, §10)."""

    trials: int = 200
    """Noisy trials per (stage, orientation); at least 22 (leave-one-out Mahalanobis with up to 20 PCs)."""
    seed: int = 0
    """Seed of every random draw of the analysis: stimulus noise (JAX keys), voxel noise (numpy Generator)."""
    sigma_filter: float = 2.0
    """Gaussian smoothing of the voxel maps, grid units."""
    readout_noise: bool = True
    """Add readout-like noise 0.2·ξ·sqrt(softplus(r)) before smoothing."""
    normalise: bool = True
    """Divide each (stage, orientation) block by its own std (this removes gain effects of learning, hence
    switchable; ANALYSIS.md B7)."""
    noise_std: float = 1.0
    """Std of the post-filter voxel noise."""
    n_splits: int = 10
    """Cross-validation splits of the MVPA classifier."""
    chunk_size: int = DEFAULT_CHUNK
    """Trials simulated per compiled call (does not change the results)."""

    def __post_init__(self) -> None:
        if self.trials < 22:
            raise ValueError(f"MVPA trials (--mvpa-trials) must be at least 22, got {self.trials}")
        if self.chunk_size < 1 or self.n_splits < 1:
            raise ValueError(f"chunk_size and n_splits must be positive, got {self.chunk_size}, {self.n_splits}")
        if self.sigma_filter < 0 or self.noise_std < 0:
            raise ValueError(f"sigma_filter and noise_std must be non-negative, got {self.sigma_filter}, "
                             f"{self.noise_std}")  # fmt: skip


def condition_key(seed: int, run_index: int, stage: int, ori_index: int) -> Array:
    """The JAX key of one (run, stage, orientation) condition."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), run_index)
    return jax.random.fold_in(jax.random.fold_in(key, stage), ori_index)


def run_generator(seed: int, run_index: int) -> np.random.Generator:
    """The numpy Generator of one run's steps 3-9 (readout noise, post-filter noise)."""
    return np.random.default_rng([seed, run_index])


@partial(jax.jit, static_argnames=("params", "n_trials"))
def noisy_projections(key: Array, static: ModelStatic, ori: Array, params: Parameters, n_trials: int) -> Array:
    """Base-filter projections (n_trials, 2·Nx²) of noisy training-stimulus images of one orientation."""
    geometry = image_geometry(params.grid, params.stimuli)
    image = grating_images(ori[None], 0.0, geometry, params.stimuli)  # (1, Npx²), phase 0, centred
    clean = base_projection(image, static)
    if params.stimuli.std == 0:
        return jnp.broadcast_to(clean, (n_trials, clean.shape[-1]))
    return clean + projected_noise(draw_projected_noise(key, (n_trials,), static), static)


@partial(jax.jit, static_argnames=("params",))
def layer_responses(log_params: dict, static: ModelStatic, b: Array, params: Parameters) -> tuple[Array, Array]:
    """Steady-state rates of all mid (B, 648) and sup (B, 162) cells for base projections b (B, 2·Nx²)."""
    layers = build_layers(log_params, static, params)
    resp = evaluate_model_response_batch(layers, b, params, FORWARD)
    return resp.r_mid.reshape(b.shape[0], -1), resp.r_sup


def _chunked_responses(
    log_params: dict, static: ModelStatic, b: Array, params: Parameters, chunk_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """layer_responses over fixed-size chunks (the last one zero-padded, so one compilation serves all)."""
    n = b.shape[0]
    size = max(1, min(chunk_size, n))
    mids, sups = [], []
    for start in range(0, n, size):
        part = b[start : start + size]
        pad = size - part.shape[0]
        if pad:
            part = jnp.concatenate([part, jnp.zeros((pad, part.shape[1]), part.dtype)])
        r_mid, r_sup = layer_responses(log_params, static, part, params)
        mids.append(np.asarray(r_mid)[: size - pad])
        sups.append(np.asarray(r_sup)[: size - pad])
    return np.concatenate(mids), np.concatenate(sups)


def mvpa_responses(
    snapshot: Snapshot, n_trials: int, seed: int, oris: Sequence[float], chunk_size: int = DEFAULT_CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """Mid (O, T, 648) and sup (O, T, 162) rates to T noisy training stimuli per orientation of a snapshot."""
    log_params = {k: jnp.asarray(v) for k, v in snapshot.log_params.items()}
    b = jnp.concatenate(
        [
            noisy_projections(
                condition_key(seed, snapshot.run_index, snapshot.stage, i),
                snapshot.static,
                jnp.float32(ori),
                snapshot.params,
                n_trials,
            )
            for i, ori in enumerate(oris)
        ]
    )
    r_mid, r_sup = _chunked_responses(log_params, snapshot.static, b, snapshot.params, chunk_size)
    return r_mid.reshape(len(oris), n_trials, -1), r_sup.reshape(len(oris), n_trials, -1)


def run_mvpa_responses(
    snapshots: Sequence[Snapshot],
    n_trials: int,
    seed: int,
    chunk_size: int = DEFAULT_CHUNK,
    cache: ResponseCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Responses (S, 3, T, 648) and (S, 3, T, 162) of one run's stage snapshots (orientations 55, 125, 0).

    Responses of snapshots without a configuration (stages 0 and 1) are taken from and stored in ``cache``.
    """
    runs = {snap.run_index for snap in snapshots}
    if len(runs) != 1:
        raise ValueError(f"snapshots must belong to one run, got runs {sorted(runs)}")
    pairs = []
    for snap in snapshots:
        key = (seed, snap.run_index, snap.stage, n_trials)
        shared = cache is not None and snap.conf is None
        if shared and key in cache:
            pairs.append(cache[key])
            continue
        oris = TaskOrientations.from_parameters(snap.params).mvpa
        pairs.append(mvpa_responses(snap, n_trials, seed, oris, chunk_size))
        if shared:
            cache[key] = pairs[-1]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def mvpa_scores_for_run(
    snapshots: Sequence[Snapshot], settings: MvpaSettings = MvpaSettings(), cache: ResponseCache | None = None
) -> RunScores:
    """The MVPA and Mahalanobis analysis (ANALYSIS.md §5) of one run: noisy responses of each stage snapshot,
    then voxel patterns, PCA, MVPA, Mahalanobis."""
    start = time.perf_counter()
    r_mid, r_sup = run_mvpa_responses(snapshots, settings.trials, settings.seed, settings.chunk_size, cache)
    simulated = time.perf_counter()
    run_index = snapshots[0].run_index
    params = snapshots[0].params
    scores = mvpa_mahal_for_run(
        r_mid,
        r_sup,
        run_generator(settings.seed, run_index),
        CellLayout.from_parameters(params),
        TaskOrientations.from_parameters(params).mvpa,
        stages=[snap.stage for snap in snapshots],
        sigma_filter=settings.sigma_filter,
        readout_noise=settings.readout_noise,
        normalise=settings.normalise,
        noise_std=settings.noise_std,
        n_splits=settings.n_splits,
    )
    logger.info(
        "MVPA of run %d: responses %.1f s, scores %.1f s", run_index, simulated - start, time.perf_counter() - simulated
    )
    return scores
