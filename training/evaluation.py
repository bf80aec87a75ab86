"""Compiled pieces of the training loop: loss and gradients, accuracy tests and the psychometric probe.

Each function is jitted once per (parameters, step description); every quantity that changes during training
(offset, loss constants, parameters, keys) is a traced argument, so nothing is frozen by tracing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from parameters import Parameters
from training.loss import LossConstants
from training.model import AUTO, FORWARD, IMPLICIT, UNROLLED, LogParams, ModelStatic, Response, resolve_adjoint
from training.readout import Readout
from training.trials import (
    TrialBatch,
    TrialOutputs,
    evaluate_trials,
    fine_task_batch,
    frozen_trial_responses,
    task_batch,
)

Array = jnp.ndarray


@dataclass(frozen=True, kw_only=True)
class StepSpec:
    """What one SGD step of a stage computes; static (hashable) for the compiled step functions."""

    batch_size: int
    general_task: bool
    """True: the general task (random pairs 5-20 degrees apart); False: the fine task around the reference."""
    shuffle_labels: bool
    """Replace the batch's labels by coin flips (a control that removes the task)."""
    contributions: tuple[float, float]
    """Readout mix (superficial, middle) of the stage's readout."""
    trains_ssn: bool
    """The step's gradient reaches the SSN parameters (it passes the fixed points)."""
    trains_readout: bool
    """The step's gradient reaches the readout weights and bias."""


class StepMetrics(NamedTuple):
    """Batch summaries of one SGD step: means of the loss terms and the accuracy, max and mean rates."""

    loss_terms: dict
    """Batch means of the loss terms."""
    acc: Array
    max_rates: dict
    """Batch maxima of the per-trial maximum rates."""
    mean_rates: dict
    """Batch means of the per-trial mean rates."""


def merge_params(trained: LogParams, untrained: LogParams) -> LogParams:
    """The full log-parameter dictionary: trained values override untrained ones."""
    return {**untrained, **trained}


def summarise(out: TrialOutputs) -> StepMetrics:
    """Batch aggregation of trial outputs."""
    stats = out.ref_stats
    return StepMetrics(
        loss_terms={k: jnp.mean(v) for k, v in out.terms.items()},
        acc=jnp.mean(out.correct),
        max_rates={k: jnp.max(v) for k, v in stats.items() if k.startswith("max")},
        mean_rates={k: jnp.mean(v) for k, v in stats.items() if k.startswith("mean")},
    )


def step_batch(key: Array, offset: Array, params: Parameters, spec: StepSpec) -> tuple[TrialBatch, Array]:
    """The task batch of a training step and the key of its trials (images, noise)."""
    k_batch, k_trials = jax.random.split(key)
    return task_batch(k_batch, spec.batch_size, offset, params, spec.general_task, spec.shuffle_labels), k_trials


def batch_loss(trained: LogParams, readout: Readout, untrained: LogParams, static: ModelStatic, key: Array,
               offset: Array, constants: LossConstants, params: Parameters, spec: StepSpec, adjoint: str,
               frozen: Response | None = None) -> tuple[Array, StepMetrics]:
    """Mean total loss of one training batch, and its metrics."""
    batch, k_trials = step_batch(key, offset, params, spec)
    out = evaluate_trials(merge_params(trained, untrained), readout, static, batch, k_trials, params, constants,
                          spec.contributions, adjoint, frozen)  # fmt: skip
    metrics = summarise(out)
    return metrics.loss_terms["total"], metrics


@partial(jax.jit, static_argnames=("params", "spec"))
def step_responses(trained: LogParams, untrained: LogParams, static: ModelStatic, key: Array, offset: Array,
                   params: Parameters, spec: StepSpec) -> Response:
    """The responses (no gradient) to every image of the training batch of a step, references then targets."""
    batch, k_trials = step_batch(key, offset, params, spec)
    return frozen_trial_responses(merge_params(trained, untrained), static, batch, k_trials, params)


@partial(jax.jit, static_argnames=("params", "spec", "adjoint"))
def loss_and_grads(trained: LogParams, readout: Readout, untrained: LogParams, static: ModelStatic, key: Array,
                   offset: Array, constants: LossConstants, params: Parameters, spec: StepSpec,
                   adjoint: str = UNROLLED, frozen: Response | None = None) -> tuple[StepMetrics, LogParams, Readout]:
    """Metrics and gradients (SSN dict, readout) of one step; gradients of untrained parts are zeros.

    ``adjoint`` (a resolved one: UNROLLED, IMPLICIT or FORWARD, see :mod:`training.model`) says how
    gradients pass the fixed points; with IMPLICIT, ``frozen`` may pass in the step's :func:`step_responses`
    so the forward pass is not repeated.
    """
    argnums = tuple(i for i, on in ((0, spec.trains_ssn), (1, spec.trains_readout)) if on)
    (_, metrics), grads = jax.value_and_grad(batch_loss, argnums=argnums, has_aux=True)(
        trained, readout, untrained, static, key, offset, constants, params, spec, adjoint, frozen)
    grads = dict(zip(argnums, grads, strict=True))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, (trained, readout))
    return metrics, grads.get(0, zeros[0]), grads.get(1, zeros[1])


class StepGradients(NamedTuple):
    """Metrics and gradients of one SGD step, and how the gradients passed the fixed points."""

    metrics: StepMetrics
    ssn_grads: LogParams
    readout_grads: Readout
    unrolled: bool
    """True where the SSN gradient went through the Euler loop; False for the implicit gradient and for
    readout-only steps (no gradient passes a fixed point there)."""


def sgd_gradients(trained: LogParams, readout: Readout, untrained: LogParams, static: ModelStatic, key: Array,
                  offset: Array, constants: LossConstants, params: Parameters, spec: StepSpec) -> StepGradients:
    """Gradients of one step, the adjoint resolved for this batch from ``params.conv.gradient_mode``.

    A readout-only step needs no gradient through the fixed points (FORWARD: the rates are constants).
    Otherwise 'auto' first relaxes the batch without gradients: if every stimulus has settled
    (:func:`training.model.settled_state`) the implicit gradient at those states equals reverse mode
    through the loop, and it is attached to them; otherwise the step differentiates through the loop.
    Either way the gradient is that of the unrolled Euler scheme, dx term included.
    """
    mode = params.conv.gradient_mode if spec.trains_ssn else FORWARD
    frozen = settled = None
    if mode in (IMPLICIT, AUTO):  # these attach their gradient to states relaxed without one, computed first
        frozen = step_responses(trained, untrained, static, key, offset, params, spec)
        settled = bool(jnp.all(frozen.settled)) if mode != IMPLICIT else None
    adjoint = resolve_adjoint(mode, settled)
    args = (trained, readout, untrained, static, key, offset, constants, params, spec)
    frozen = frozen if adjoint == IMPLICIT else None  # the other adjoints relax the batch themselves
    return StepGradients(*loss_and_grads(*args, adjoint=adjoint, frozen=frozen), unrolled=adjoint == UNROLLED)


@partial(jax.jit, static_argnames=("params", "num_trials", "contributions"))
def fine_task_test(log_params: LogParams, readout: Readout, static: ModelStatic, key: Array, offset: Array,
                   ref_ori: Array, constants: LossConstants, params: Parameters, num_trials: int,
                   contributions: tuple[float, float]) -> tuple[Array, Array]:
    """Accuracy and mean total loss on fresh fine-task trials (true labels) at one offset and reference."""
    k_batch, k_trials = jax.random.split(key)
    batch = fine_task_batch(k_batch, num_trials, offset, params, ref_ori=ref_ori)
    out = evaluate_trials(log_params, readout, static, batch, k_trials, params, constants, contributions, FORWARD)
    return jnp.mean(out.correct), jnp.mean(out.terms["total"])


@partial(jax.jit, static_argnames=("params", "contributions"))
def psychometric_accuracies(log_params: LogParams, readout: Readout, static: ModelStatic, key: Array,
                            constants: LossConstants, params: Parameters,
                            contributions: tuple[float, float]) -> Array:
    """Accuracies (repeats, offsets) of the psychometric probe: ``probe_trials`` fine-task trials at each of
    TrainingPars.test_offsets, repeated ``probe_repeats`` times; all repeats form one batch."""
    training = params.training
    offsets = jnp.asarray(training.test_offsets, jnp.float32)
    per_repeat = offsets.shape[0] * training.probe_trials
    trial_offsets = jnp.repeat(offsets, training.probe_trials)

    def one_repeat(repeat_key):
        k_batch, k_trials = jax.random.split(repeat_key)
        batch = fine_task_batch(k_batch, per_repeat, trial_offsets, params)
        out = evaluate_trials(log_params, readout, static, batch, k_trials, params, constants, contributions,
                              FORWARD)  # fmt: skip
        return jnp.mean(out.correct.reshape(offsets.shape[0], training.probe_trials), axis=1)

    return jax.vmap(one_repeat)(jax.random.split(key, training.probe_repeats))
