"""Tuning curves of all 810 cells of a snapshot (ANALYSIS.md §3), in two compiled calls per (run, stage).

Stimulus: a full-field grating (alpha 255 everywhere, no mask), no pixel noise, jitter 0, the contrast,
spatial frequency, grey level and pixel scale of the snapshot's parameters, with its coordinate origin at
the visual position of the probed grid point g (grid position in mm / magnification) and phase p·π/2.

* Phase 0: both layers are simulated for every (g, θ); mid cells (0, E/I, g) and sup cells (E/I, g) are kept.
* Phases 1-3: only mid cells (p, E/I, g) are kept. The middle layer is a set of isolated 2-cell E/I circuits
  (MODEL.md §6.2: no coupling across phases or grid points), so the rate of cell (p, t, g) depends only on
  the two base-filter responses at g. For these phases only those two filter responses are computed and
  only the circuits at g are relaxed, with the model's own input map (``middle_input``), layer class
  (``SSN_mid``) and Euler solver (``middle_layer_fixed_point``): the result equals a full simulation
  (tested) at a small fraction of the cost.

The result is an array (n_orientations, 810) in the documented cell order (mid 162p+81t+g, then sup
648+81t+g), which :func:`write_tuning_curves` turns into the tuning-curve CSV rows (ANALYSIS.md §3).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from analysis.cells import CellLayout
from analysis.snapshots import Snapshot
from analysis.tuning_curve_files import tuning_curve_frame, write_tuning_curves_csv
from analysis.tuning_features import TC_ORIENTATIONS
from parameters import Parameters
from training.adjoint import FORWARD
from training.model import (
    ModelStatic,
    base_projection,
    build_layers,
    evaluate_model_response_batch,
    middle_input,
    middle_layer_fixed_point,
)
from training.util_gabor import grating_images, grid_positions_deg, image_geometry

logger = logging.getLogger(__name__)

Array = jnp.ndarray
TC_PHASES = 4
"""Middle-layer phases the tuning-curve stimuli are built for: the grating of phase index p has phase p·π/2,
which matches the cell's own filter only when the filters are the 4 phases 0, π/2, π, 3π/2."""


def check_layout(params: Parameters) -> CellLayout:
    """The cell layout of params, checked to have the 4 middle-layer phases the tuning-curve stimuli assume."""
    if params.ssn.phases != TC_PHASES:
        raise ValueError(f"tuning curves need {TC_PHASES} middle-layer phases, got phases={params.ssn.phases}")
    return CellLayout.from_parameters(params)


def _centres(params: Parameters) -> tuple[Array, Array]:
    """Visual positions (degrees) of the grid points, float32."""
    x_deg, y_deg = grid_positions_deg(params.grid)
    return jnp.asarray(x_deg, jnp.float32), jnp.asarray(y_deg, jnp.float32)


def _images(oris: Array, phase: Array, cx: Array, cy: Array, params: Parameters) -> Array:
    """Noise-free full-field gratings (len(oris), Npx²) of one phase centred at (cx, cy) degrees."""
    geometry = image_geometry(params.grid, params.stimuli, full_field=True)
    return grating_images(oris, 0.0, geometry, params.stimuli, phase=phase, centre=(cx, cy))


@partial(jax.jit, static_argnames=("params",))
def phase0_responses(log_params: dict, static: ModelStatic, oris: Array, params: Parameters) -> tuple[Array, Array]:
    """Mid (G, O, 2) and sup (G, O, 2) rates of the cells at g to phase-0 gratings centred at g."""
    cx, cy = _centres(params)
    n_grid = cx.shape[0]

    def project(centre):
        return base_projection(_images(oris, 0.0, centre[0], centre[1], params), static)

    b = jax.lax.map(project, (cx, cy))  # (G, O, 2·G)
    layers = build_layers(log_params, static, params)
    n_oris, row = oris.shape[0], params.grid.gridsize_Nx

    def simulate(rows_b):  # one grid row of stimulus centres at a time: a cache-friendly batch size
        resp = evaluate_model_response_batch(layers, rows_b.reshape(-1, rows_b.shape[-1]), params, FORWARD)
        return resp.r_mid, resp.r_sup

    r_mid, r_sup = jax.lax.map(simulate, b.reshape(n_grid // row, row, n_oris, b.shape[-1]))
    r_mid = r_mid.reshape(n_grid, n_oris, params.ssn.phases, 2, n_grid)
    r_sup = r_sup.reshape(n_grid, n_oris, 2, n_grid)
    g = jnp.arange(n_grid)
    mid = r_mid[g, :, 0, :, g]  # (G, O, 2): phase 0, type t, the stimulus's own grid point
    sup = r_sup[g, :, :, g]
    return mid, sup


@partial(jax.jit, static_argnames=("params", "phases"))
def middle_phase_responses(
    log_params: dict, static: ModelStatic, oris: Array, params: Parameters, phases: tuple[int, ...] = (1, 2, 3)
) -> Array:
    """Mid rates (len(phases), G, O, 2) of cells (p, E/I, g) to phase-p·π/2 gratings centred at g."""
    cx, cy = _centres(params)
    n_grid = cx.shape[0]
    phase_values = jnp.asarray([p * math.pi / 2 for p in phases], jnp.float32)

    def project(args):
        x, y, g = args
        imgs = _images(oris[None, :], phase_values[:, None], x, y, params)  # (P, O, Npx²)
        columns = jnp.take(static.gabor_T, jnp.stack([g, g + n_grid]), axis=1)  # base phases 0, π/2 at g
        return imgs @ columns  # (P, O, 2)

    b = jax.lax.map(project, (cx, cy, jnp.arange(n_grid)))  # (G, P, O, 2)
    b = jnp.moveaxis(b, 0, 1)  # (P, G, O, 2)
    layers = build_layers(log_params, static, params)
    n_trials = b.shape[0] * b.shape[1] * b.shape[2]
    grid_of_trial = jnp.broadcast_to(jnp.arange(n_grid)[None, :, None], b.shape[:3]).ravel()
    columns = dataclasses.replace(layers.mid, W=layers.mid.W[:, :, grid_of_trial])
    u = middle_input(jnp.moveaxis(b.reshape(n_trials, 2), 1, 0).ravel(), static.gains, params.ssn.phases)
    h = jnp.maximum(u, 0.0) + layers.c_mid[None, :, None]  # (4, 2, trials): every phase slot of each circuit
    r, _ = middle_layer_fixed_point(columns, h, params.conv)
    r = r.reshape(params.ssn.phases, 2, len(phases), n_grid, -1)
    return jnp.stack([jnp.moveaxis(r[p, :, i], 0, -1) for i, p in enumerate(phases)])


def snapshot_tuning_curves(snapshot: Snapshot, oris: Sequence[float] = TC_ORIENTATIONS) -> np.ndarray:
    """Tuning curves (len(oris), 810) of a snapshot, columns in the cell order of
    :mod:`analysis.cells` (mid cells by phase, type, grid point, then sup cells; ANALYSIS.md §0.3)."""
    layout = check_layout(snapshot.params)
    oris_arr = jnp.asarray(np.asarray(oris, dtype=np.float32))
    log_params = {k: jnp.asarray(v) for k, v in snapshot.log_params.items()}
    mid0, sup = phase0_responses(log_params, snapshot.static, oris_arr, snapshot.params)
    mid_rest = middle_phase_responses(log_params, snapshot.static, oris_arr, snapshot.params)
    mid = jnp.concatenate([mid0[None], mid_rest])  # (4, G, O, 2)
    mid = jnp.transpose(mid, (2, 0, 3, 1)).reshape(len(oris), layout.n_mid)  # (O, p, t, g)
    sup = jnp.transpose(sup, (1, 2, 0)).reshape(len(oris), layout.n_sup)  # (O, t, g)
    return np.asarray(jnp.concatenate([mid, sup], axis=1), dtype=np.float64)


def tuning_curve_blocks(snapshots: Iterable[Snapshot], oris: Sequence[float] = TC_ORIENTATIONS) -> pd.DataFrame:
    """Tuning-curve CSV rows (run_index, training_stage, 810 cells) of several snapshots, in order."""
    frames = []
    for snap in snapshots:
        start = time.perf_counter()
        curves = snapshot_tuning_curves(snap, oris)
        logger.info("tuning curves of run %d stage %d: %.1f s", snap.run_index, snap.stage, time.perf_counter() - start)
        frames.append(tuning_curve_frame(snap.run_index, snap.stage, curves, CellLayout.from_parameters(snap.params)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_tuning_curves(
    snapshots: Iterable[Snapshot], path: str | Path, oris: Sequence[float] = TC_ORIENTATIONS, append: bool = True
) -> Path:
    """Compute and write (append by default) the tuning-curve CSV rows (ANALYSIS.md §3) of each snapshot, one
    write per snapshot."""
    path = Path(path)
    for snap in snapshots:
        frame = tuning_curve_blocks([snap], oris)
        write_tuning_curves_csv(frame, path, append=append)
        append = True
    return path
