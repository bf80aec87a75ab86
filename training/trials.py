"""Task data (spec §9) and the evaluation of trials: stimuli -> both layers -> readout -> loss terms.

Every function here is pure and jit-able; randomness comes from explicit ``jax.random`` keys and the
static configuration from the hashable :class:`parameters.Parameters`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from parameters import Parameters, PretrainingPars
from training.loss import LossConstants, trial_losses
from training.model import (
    LogParams,
    ModelStatic,
    Response,
    base_projection,
    build_layers,
    draw_projected_noise,
    evaluate_model_response_batch,
    frozen_responses,
    projected_noise,
)
from training.readout import Readout, add_readout_noise, predicted_label, readout_features, sigmoid_output
from training.util_gabor import ImageGeometry, grating_images, image_geometry, readout_indices

Array = jnp.ndarray

IMAGES_PER_CHUNK = 200
"""Images generated and projected at a time (a cache-size setting; results do not depend on it)."""


class TrialBatch(NamedTuple):
    """Orientations (degrees) and labels of a batch of reference/target pairs."""

    ref_ori: Array
    target_ori: Array
    jitter: Array
    """Jitter added to both images of a pair, degrees."""
    label: Array
    """1 where the reference orientation exceeds the target orientation."""


@functools.lru_cache(maxsize=8)
def task_geometry(params: Parameters) -> ImageGeometry:
    """Image geometry of the task stimuli (cached per parameter set)."""
    return image_geometry(params.grid, params.stimuli)


def readout_cells(params: Parameters, num_cells: int) -> np.ndarray:
    """Readout grid indices for a readout block of num_cells grid points (81 or 25)."""
    return readout_indices(params.grid.gridsize_Nx, int(round(num_cells**0.5)))


def _coin_flips(key: Array, batch_size: int) -> Array:
    return jax.random.bernoulli(key, 0.5, (batch_size,)).astype(jnp.int32)


def fine_task_batch(key: Array, batch_size: int, offset: Array, params: Parameters, ref_ori: Array | None = None,
                    shuffle_labels: bool = False) -> TrialBatch:
    """Fine task: target = ref - offset (label 1) or ref + offset (label 0), common jitter (spec §9.1)."""
    stimuli = params.stimuli
    ref = jnp.float32(stimuli.ref_ori) if ref_ori is None else ref_ori
    k_label, k_jitter, k_shuffle = jax.random.split(key, 3)
    label = jax.random.bernoulli(k_label, 0.5, (batch_size,)).astype(jnp.int32)
    target = jnp.where(label == 1, ref - offset, ref + offset)
    jitter = jax.random.uniform(k_jitter, (batch_size,), minval=-stimuli.jitter_val, maxval=stimuli.jitter_val)
    if shuffle_labels:
        label = _coin_flips(k_shuffle, batch_size)
    return TrialBatch(jnp.full(batch_size, ref, jnp.float32), target, jitter, label)


def general_task_batch(key: Array, batch_size: int, pretraining: PretrainingPars,
                       shuffle_labels: bool = False) -> TrialBatch:
    """General task: independent pairs with differences 5-20 degrees in random order (spec §9.2)."""
    k1, k_sign, k_dist, k_swap, k_shuffle = jax.random.split(key, 5)
    o1 = jax.random.uniform(k1, (batch_size,), minval=pretraining.ori_interval[0],
                            maxval=pretraining.ori_interval[1])  # fmt: skip
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (batch_size,)), 1.0, -1.0)
    dist = sign * jax.random.uniform(k_dist, (batch_size,), minval=pretraining.ori_dist_int[0],
                                     maxval=pretraining.ori_dist_int[1])  # fmt: skip
    o2 = o1 - dist
    swap = jax.random.bernoulli(k_swap, 0.5, (batch_size,))
    ref, target = jnp.where(swap, o2, o1), jnp.where(swap, o1, o2)
    label = (ref - target > 0).astype(jnp.int32)
    if shuffle_labels:
        label = _coin_flips(k_shuffle, batch_size)
    return TrialBatch(ref, target, jnp.zeros(batch_size), label)


def task_batch(key: Array, batch_size: int, offset: Array, params: Parameters, general: bool,
               shuffle_labels: bool) -> TrialBatch:
    """A batch of the general or the fine task."""
    if general:
        return general_task_batch(key, batch_size, params.pretraining, shuffle_labels)
    return fine_task_batch(key, batch_size, offset, params, shuffle_labels=shuffle_labels)


def grating_projections(ori: Array, jitter: Array, static: ModelStatic, params: Parameters) -> Array:
    """Noise-free base projections (B, 2·Nx²) of the phase-0 task gratings for orientations and jitters (B,).

    Images are generated and projected IMAGES_PER_CHUNK at a time: the chunk's images stay in cache
    between the two, which is markedly faster than materialising every image first (docs/performance.md).
    """
    geometry = task_geometry(params)

    def project(ori_chunk, jitter_chunk):
        return base_projection(grating_images(ori_chunk, jitter_chunk, geometry, params.stimuli), static)

    n = ori.shape[0]
    if n <= IMAGES_PER_CHUNK:
        return project(ori, jitter)
    num_chunks = -(-n // IMAGES_PER_CHUNK)
    size = -(-n // num_chunks)
    padded = [jnp.pad(x, (0, num_chunks * size - n)).reshape(num_chunks, size) for x in (ori, jitter)]
    out = jax.lax.map(lambda chunk: project(*chunk), tuple(padded))
    return out.reshape(num_chunks * size, -1)[:n]


def pair_projections(key: Array, batch: TrialBatch, static: ModelStatic, params: Parameters) -> tuple[Array, Array]:
    """Base-filter projections of the noisy reference and target images, each (B, 2·Nx²)."""
    k_ref, k_target = jax.random.split(key)
    shape = batch.ref_ori.shape
    clean = grating_projections(jnp.concatenate([batch.ref_ori, batch.target_ori]),
                                jnp.concatenate([batch.jitter, batch.jitter]), static, params)  # fmt: skip
    ref, target = clean[: shape[0]], clean[shape[0] :]
    if params.stimuli.std > 0:
        ref = ref + projected_noise(draw_projected_noise(k_ref, shape, static), static)
        target = target + projected_noise(draw_projected_noise(k_target, shape, static), static)
    return ref, target


class TrialOutputs(NamedTuple):
    """Everything a step needs from a batch of trials."""

    p: Array
    """Probability of label 1 per trial."""
    correct: Array
    """1 where the decision equals the label."""
    terms: dict
    """Per-trial loss terms (spec §10)."""
    ref_stats: dict
    """Per-trial rate statistics of the reference stimulus."""


def readout_noise(key: Array, batch_size: int, num_weights: int, params: Parameters) -> tuple[Array, Array]:
    """Scaled readout noise for the reference and the target, each (B, num_weights)."""
    k_ref, k_target = jax.random.split(key)
    std = params.readout.noise_std
    return (std * jax.random.normal(k_ref, (batch_size, num_weights)),
            std * jax.random.normal(k_target, (batch_size, num_weights)))  # fmt: skip


class TrialInputs(NamedTuple):
    """A batch of trials as the model receives it, built from one key by :func:`trial_inputs`."""

    batch: TrialBatch
    b: Array
    """Base projections of the noisy reference images, then of the target images, (2B, 2·Nx²)."""
    noise_key: Array
    """Key of the readout noise."""
    frozen: Response | None = None
    """The responses to ``b`` relaxed without gradients, where they were asked for: what the IMPLICIT adjoint
    attaches its gradient to and what AUTO decides on (:func:`training.adjoint.with_adjoint`)."""

    @property
    def batch_size(self) -> int:
        """Number of trials (pairs)."""
        return self.batch.label.shape[0]


def trial_inputs(batch: TrialBatch, key: Array, static: ModelStatic, params: Parameters,
                 frozen_params: LogParams | None = None) -> TrialInputs:
    """The model's input for a batch of trials from the trials' key: the one place that key is split.

    With ``frozen_params``, also the responses of the model with those parameters, relaxed without gradients
    (:func:`training.model.frozen_responses`): they belong to these very projections, so a gradient attached
    to them belongs to this batch.
    """
    k_noise, k_images = jax.random.split(key)
    b_ref, b_target = pair_projections(k_images, batch, static, params)
    b = jnp.concatenate([b_ref, b_target])
    frozen = None
    if frozen_params is not None:
        frozen = frozen_responses(build_layers(frozen_params, static, params), b, params)
    return TrialInputs(batch, b, k_noise, frozen)


def evaluate_trials(log_params: LogParams, readout: Readout, static: ModelStatic, batch: TrialBatch, key: Array,
                    params: Parameters, constants: LossConstants, contributions: tuple[float, float],
                    adjoint: str | None = None) -> TrialOutputs:
    """Simulate a batch of pairs from the trials' key and compute decisions and per-trial loss terms
    (:func:`evaluate_inputs` of :func:`trial_inputs`)."""
    inputs = trial_inputs(batch, key, static, params)
    return evaluate_inputs(log_params, readout, static, inputs, params, constants, contributions, adjoint)


def evaluate_inputs(log_params: LogParams, readout: Readout, static: ModelStatic, inputs: TrialInputs,
                    params: Parameters, constants: LossConstants, contributions: tuple[float, float],
                    adjoint: str | None = None) -> TrialOutputs:
    """Decisions and per-trial loss terms of a batch of trials built by :func:`trial_inputs`.

    The readout cells follow from the readout size: len(w) grid points (or half of them when both
    layers contribute). ``adjoint`` and the inputs' frozen responses go to
    :func:`training.model.evaluate_model_response_batch`.
    """
    batch = inputs.batch
    num_weights = readout.w.shape[0]
    indices = readout_cells(params, num_weights // 2 if all(contributions) else num_weights)
    layers = build_layers(log_params, static, params)
    both = evaluate_model_response_batch(layers, inputs.b, params, adjoint, inputs.frozen)
    ref, target = split_pairs(both, inputs.batch_size)
    noise_ref, noise_target = readout_noise(inputs.noise_key, inputs.batch_size, num_weights, params)
    x_ref = add_readout_noise(readout_features(ref, indices, contributions), noise_ref)
    x_target = add_readout_noise(readout_features(target, indices, contributions), noise_target)
    p = sigmoid_output(readout.w, readout.b, x_ref, x_target, params.readout.sigmoid_eps)
    ref_stats = ref.rate_stats(params.ssn.sup_I_stats_drop_last)
    dxs = jnp.stack([ref.dx_mid, target.dx_mid, ref.dx_sup, target.dx_sup], axis=-1)
    terms = trial_losses(p, batch.label, ref_stats, dxs, readout.w, readout.b, params.loss, constants)
    correct = (predicted_label(p) == batch.label).astype(jnp.float32)
    return TrialOutputs(p=p, correct=correct, terms=terms, ref_stats=ref_stats)


def split_pairs(both: Response, batch_size: int) -> tuple[Response, Response]:
    """The responses to the reference images and to the target images of responses to both, in that order."""
    return (jax.tree_util.tree_map(lambda x: x[:batch_size], both),
            jax.tree_util.tree_map(lambda x: x[batch_size:], both))  # fmt: skip


def responses_to_batch(log_params: LogParams, static: ModelStatic, batch: TrialBatch, images_key: Array,
                       params: Parameters, adjoint: str | None = None) -> tuple[Response, Response]:
    """Noisy responses of both layers to the reference and the target images of a batch, whose noise comes
    from ``images_key`` (a key of images alone: these trials have no readout noise of their own)."""
    b_ref, b_target = pair_projections(images_key, batch, static, params)
    layers = build_layers(log_params, static, params)
    both = evaluate_model_response_batch(layers, jnp.concatenate([b_ref, b_target]), params, adjoint)
    return split_pairs(both, batch.label.shape[0])
