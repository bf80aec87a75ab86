"""Geometry of the model: grid, orientation map, ring distances, grating images and Gabor filters.

Spec §1-§5. Host-side constructions (maps, filters, normalisation) run in float64 numpy; grating images
are written once against an array module ``xp`` so the same code produces float64 host images and
float32 jitted JAX batches.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np
from scipy.stats import chisquare

from parameters import FilterPars, GridPars, Parameters, StimuliPars

logger = logging.getLogger(__name__)

# Phase slots of the middle layer: (index of the base phase 0 or pi/2, sign), spec §5.3.
PHASE_SLOTS: tuple[tuple[int, float], ...] = ((0, 1.0), (1, 1.0), (0, -1.0), (1, -1.0))


# ---------------------------------------------------------------------------------------------- grid (§1)
def grid_maps(grid: GridPars) -> tuple[np.ndarray, np.ndarray]:
    """Cortical x and y maps (mm), shape (Nx, Nx); y increases towards row 0."""
    xs = np.linspace(0.0, grid.gridsize_mm, grid.gridsize_Nx)
    xs = xs - xs[grid.gridsize_Nx // 2]
    x_map, y_map = np.meshgrid(xs, -xs)
    return x_map, y_map


def grid_distances(grid: GridPars) -> np.ndarray:
    """Pairwise Euclidean distances between grid points (mm), shape (Nx², Nx²), row-major order."""
    x_map, y_map = grid_maps(grid)
    x, y = x_map.ravel(), y_map.ravel()
    return np.sqrt((x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2)


def grid_positions_deg(grid: GridPars) -> tuple[np.ndarray, np.ndarray]:
    """Visual-field positions (degrees) of the grid points, row-major order."""
    x_map, y_map = grid_maps(grid)
    return x_map.ravel() / grid.magnif_factor, y_map.ravel() / grid.magnif_factor


def readout_indices(grid_size: int, readout_size: int) -> np.ndarray:
    """Row-major indices of the central readout_size² block of a grid_size² grid (spec §8.1)."""
    o = (grid_size - readout_size) // 2
    rows = np.arange(o, grid_size - o)
    return (grid_size * rows[:, None] + rows[None, :]).ravel()


# ------------------------------------------------------------------------------------ orientation map (§2)
def make_orimap(grid: GridPars, rng: np.random.Generator) -> np.ndarray:
    """One orientation map (degrees in [0, 180]) as a superposition of plane waves, shape (Nx, Nx)."""
    x_map, y_map = grid_maps(grid)
    z = np.zeros_like(x_map, dtype=complex)
    n = grid.orimap_num_waves
    for j in range(n):
        kvec = np.array([math.cos(j * math.pi / n), math.sin(j * math.pi / n)]) * 2 * math.pi / grid.hyper_col
        sign = 2 * rng.integers(0, 2) - 1
        phase = rng.random() * 2 * math.pi
        z += np.exp(1j * (sign * (kvec[0] * x_map + kvec[1] * y_map) + phase))
    return (np.angle(z) + math.pi) * 180 / (2 * math.pi)


def test_uniformity(orimap: np.ndarray, grid: GridPars, readout_size: int = 5) -> bool:
    """True if the central readout cells cover every orientation bin and pass the chi-square test."""
    central = np.asarray(orimap).ravel()[readout_indices(grid.gridsize_Nx, readout_size)]
    bins = np.minimum(np.floor(central / 180.0 * grid.uniformity_bins).astype(int), grid.uniformity_bins - 1)
    counts = np.bincount(bins, minlength=grid.uniformity_bins)
    if np.any(counts == 0):
        return False
    return bool(chisquare(counts).pvalue > grid.uniformity_p_threshold)


def make_uniform_orimap(grid: GridPars, rng: np.random.Generator, readout_size: int = 5) -> np.ndarray:
    """An orientation map passing :func:`test_uniformity`, flattened to Nx² values (degrees)."""
    for _ in range(grid.orimap_max_attempts):
        orimap = make_orimap(grid, rng)
        if test_uniformity(orimap, grid, readout_size):
            return orimap.ravel()
    logger.warning("no uniform orientation map after %d attempts; keeping the last one",
                   grid.orimap_max_attempts)  # fmt: skip
    return orimap.ravel()


# ------------------------------------------------------------------------------------ ring distance (§3)
def ring_distance(delta: Any, period: float = 180.0, xp: Any = np) -> Any:
    """Cosine-based distance on a ring of the given period: (L/pi)|sin(pi delta / L)|."""
    return period / math.pi * xp.abs(xp.sin(math.pi * delta / period))


# ------------------------------------------------------------------------------------------- images (§4)
@dataclass(frozen=True)
class ImageGeometry:
    """Pixel coordinates (degrees), alpha weights and hard mask of the stimulus images."""

    axis: np.ndarray
    """Pixel coordinate values along either image axis, degrees, shape (Npx,)."""
    alpha: np.ndarray
    """Blend weight in [0, 255] of the grating against the grey background, shape (Npx, Npx)."""
    outside: np.ndarray
    """True where the pixel lies outside the hard circular mask."""

    @property
    def X(self) -> np.ndarray:
        """Pixel x coordinate, varying along rows (first axis), degrees."""
        return np.broadcast_to(self.axis[:, None], self.alpha.shape)

    @property
    def Y(self) -> np.ndarray:
        """Pixel y coordinate, varying along columns (second axis), degrees."""
        return np.broadcast_to(self.axis[None, :], self.alpha.shape)

    @property
    def num_pixels(self) -> int:
        """Number of pixels of an image."""
        return self.alpha.size


def image_geometry(grid: GridPars, stimuli: StimuliPars, full_field: bool = False) -> ImageGeometry:
    """Coordinates and masks of the images; ``full_field`` gives alpha 255 everywhere and no mask."""
    npx = int(grid.magnif_factor * grid.gridsize_deg / stimuli.degree_per_pixel) + 1
    half_extent = stimuli.degree_per_pixel * (npx - 1) / 2
    axis = np.linspace(-half_extent, half_extent, npx)
    px_per_deg = 1.0 / stimuli.degree_per_pixel
    xp, yp = np.round(axis[:, None] * px_per_deg), np.round(axis[None, :] * px_per_deg)
    rho = np.sqrt(xp**2 + yp**2)
    inner_px = stimuli.inner_radius * px_per_deg
    fade_sd = px_per_deg / 6.0
    fade = np.where(rho / px_per_deg <= stimuli.inner_radius, 1.0,
                    np.exp(-((rho - inner_px) ** 2) / (2 * fade_sd**2)))  # fmt: skip
    outside = rho > (npx - 1) // 2
    if full_field:
        fade, outside = np.ones_like(fade), np.zeros_like(outside)
    return ImageGeometry(axis=axis, alpha=255.0 * fade, outside=outside)


def grating_images(ori: Any, jitter: Any, geometry: ImageGeometry, stimuli: StimuliPars,
                   phase: Any = 0.0, centre: tuple[Any, Any] = (0.0, 0.0), xp: Any = jnp) -> Any:
    """Noise-free flattened grating images for arrays of orientations and jitters (degrees), spec §4.3.

    ``centre`` moves the grating's coordinate origin (degrees). The result has shape
    ``broadcast(ori, jitter, phase, centre).shape + (Npx²,)`` and dtype float32 for ``xp=jnp``.
    The carrier cos(a_p + b_q) is evaluated as cos a_p cos b_q - sin a_p sin b_q from per-row and
    per-column phases, which needs O(Npx) instead of O(Npx²) trigonometric evaluations per image.
    """
    theta = (xp.asarray(ori) + xp.asarray(jitter)) * (math.pi / 180.0)
    theta, phase, cx, cy = xp.broadcast_arrays(theta, xp.asarray(phase), xp.asarray(centre[0]),
                                               xp.asarray(centre[1]))  # fmt: skip
    axis = xp.asarray(geometry.axis)
    omega = 2 * math.pi * stimuli.k
    row_phase = omega * (axis - cx[..., None]) * xp.cos(theta)[..., None] + phase[..., None]
    col_phase = omega * (axis - cy[..., None]) * xp.sin(theta)[..., None]
    rows = xp.stack([xp.cos(row_phase), -xp.sin(row_phase)], axis=-1)
    cols = xp.stack([xp.cos(col_phase), xp.sin(col_phase)], axis=-1)
    carrier = xp.einsum("...pk,...qk->...pq", rows, cols)
    luminance = stimuli.gray * (1 + stimuli.grating_contrast * carrier)
    luminance = xp.where(xp.asarray(geometry.outside), stimuli.gray, luminance)
    weight = xp.asarray(geometry.alpha) / 256.0  # 256 although white is 255: as the reference does (spec §18.16)
    image = xp.floor(weight * luminance + (1 - weight) * stimuli.gray)
    return stimuli.pixel_scale * image.reshape(image.shape[:-2] + (-1,))


def BW_image_jax(ori: Any, jitter: Any, geometry: ImageGeometry, stimuli: StimuliPars) -> jnp.ndarray:
    """Batch of noise-free phase-0 task images in float32 (jit-able), shape (B, Npx²)."""
    return grating_images(ori, jitter, geometry, stimuli, xp=jnp)


# ------------------------------------------------------------------------------------------ filters (§5)
def gabor_filter(theta: float, phase: float, centre: tuple[float, float], geometry: ImageGeometry,
                 filters: FilterPars) -> np.ndarray:
    """One Gabor filter (not demeaned, not scaled) on the image pixels, flattened, float64."""
    dx, dy = geometry.X - centre[0], geometry.Y - centre[1]
    t = theta * math.pi / 180.0
    envelope = np.exp(-(dx**2 + dy**2) / (2 * filters.sigma_g**2))
    return (envelope * np.cos(2 * math.pi * filters.k * (dx * math.cos(t) + dy * math.sin(t)) + phase)).ravel()


def find_gabor_A(orimap: np.ndarray, phase: float, geometry: ImageGeometry, stimuli: StimuliPars,
                 filters: FilterPars) -> float:
    """Normalisation constant A_phase: target response / mean matched response over the map (§5.2)."""
    # float32 images, as the model sees them (the floor makes the last bit matter at a few pixels)
    images = np.asarray(grating_images(jnp.asarray(orimap, jnp.float32), 0.0, geometry, stimuli, phase=phase),
                        dtype=np.float64)  # fmt: skip
    responses = []
    for theta, image in zip(np.asarray(orimap).ravel(), images, strict=True):
        g = gabor_filter(float(theta), phase, (0.0, 0.0), geometry, filters)
        responses.append(np.dot(g - g.mean(), image))
    return filters.target_response / float(np.mean(responses))


def gabor_base_bank(orimap: np.ndarray, grid: GridPars, geometry: ImageGeometry, stimuli: StimuliPars,
                    filters: FilterPars) -> tuple[np.ndarray, np.ndarray]:
    """Demeaned, A-scaled filters for the base phases (0, pi/2): shape (2, Nx², Npx²), and the two A's."""
    x_deg, y_deg = grid_positions_deg(grid)
    bank, constants = [], []
    for phase in (0.0, math.pi / 2):
        A = find_gabor_A(orimap, phase, geometry, stimuli, filters)
        rows = [gabor_filter(float(t), phase, (x, y), geometry, filters)
                for t, x, y in zip(np.asarray(orimap).ravel(), x_deg, y_deg, strict=True)]  # fmt: skip
        rows = np.stack(rows)
        bank.append(A * (rows - rows.mean(axis=1, keepdims=True)))
        constants.append(A)
    return np.stack(bank), np.array(constants)


def phase_gain_matrix(gE: float, gI: float, phases: int, num_grid: int) -> np.ndarray:
    """Matrix S (phases·2·Nx², 2·Nx²) with F = S @ base: row 162p+81t+g = sign_p g_t base[phi_p, g]."""
    S = np.zeros((phases, 2, num_grid, 2, num_grid))
    eye = np.eye(num_grid)
    for p in range(phases):
        base_phase, sign = PHASE_SLOTS[p]
        for t, gain in enumerate((gE, gI)):
            S[p, t, :, base_phase, :] = sign * gain * eye
    return S.reshape(phases * 2 * num_grid, 2 * num_grid)


def create_gabor_filters_ori_map(orimap: np.ndarray, gE: float, gI: float, params: Parameters) -> np.ndarray:
    """The full filter bank F (phases·2·Nx², Npx²) in the documented row order (spec §5.3), float64."""
    geometry = image_geometry(params.grid, params.stimuli)
    base, _ = gabor_base_bank(orimap, params.grid, geometry, params.stimuli, params.filters)
    num_grid = base.shape[1]
    S = phase_gain_matrix(gE, gI, params.ssn.phases, num_grid)
    return S @ base.reshape(2 * num_grid, -1)


def projected_noise_factor(base: np.ndarray, pixel_std: float) -> np.ndarray:
    """Lower-triangular L with L Lᵀ = pixel_std² · B Bᵀ for the flattened base bank B (2·Nx², Npx²).

    Pixel noise enters the model only through the (linear) filters, so drawing L z with z ~ N(0, I)
    gives exactly the distribution of B·n for i.i.d. pixel noise n ~ N(0, pixel_std²).
    """
    flat = base.reshape(base.shape[0] * base.shape[1], -1)
    cov = pixel_std**2 * flat @ flat.T
    return np.linalg.cholesky(cov)
