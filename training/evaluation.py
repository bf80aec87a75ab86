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

from parameters import IMPLICIT, UNROLLED, Parameters
from training.adjoint import FORWARD, attaches_to_frozen, requested_adjoint, with_adjoint
from training.loss import LossConstants
from training.model import LogParams, ModelStatic, Response
from training.readout import Readout
from training.trials import (
    TrialInputs,
    TrialOutputs,
    evaluate_inputs,
    evaluate_trials,
    fine_task_batch,
    task_batch,
    trial_inputs,
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


class StepBatch(NamedTuple):
    """One SGD step's batch as it passes between the compiled pieces of the step: the key and offset it is
    built from (by :func:`step_trials`, inside each piece) and, where the adjoint needs them, its responses
    relaxed without gradients (by :func:`frozen_step`, from the same key)."""

    key: Array
    offset: Array
    frozen: Response | None = None

    def without_frozen(self) -> StepBatch:
        """The same batch for an adjoint that relaxes it itself."""
        return self._replace(frozen=None)


def step_trials(step: StepBatch, static: ModelStatic, params: Parameters, spec: StepSpec,
                frozen_params: LogParams | None = None) -> TrialInputs:
    """The trials of one SGD step built from its key (the one place a step's key is split), with the
    step's frozen responses where it has them, or, with ``frozen_params``, responses relaxed now."""
    k_batch, k_trials = jax.random.split(step.key)
    batch = task_batch(k_batch, spec.batch_size, step.offset, params, spec.general_task, spec.shuffle_labels)
    inputs = trial_inputs(batch, k_trials, static, params, frozen_params)
    return inputs if step.frozen is None else inputs._replace(frozen=step.frozen)


@partial(jax.jit, static_argnames=("params", "spec"))
def _relaxed_step(trained: LogParams, untrained: LogParams, static: ModelStatic, key: Array, offset: Array,
                  params: Parameters, spec: StepSpec) -> Response:
    return step_trials(StepBatch(key, offset), static, params, spec, merge_params(trained, untrained)).frozen


def frozen_step(trained: LogParams, untrained: LogParams, static: ModelStatic, key: Array, offset: Array,
                params: Parameters, spec: StepSpec) -> StepBatch:
    """A step's batch with its responses at the step's parameters relaxed without gradients: what AUTO decides
    on and what IMPLICIT attaches its gradient to, built from the batch's own key so that they belong to it."""
    return StepBatch(key, offset, _relaxed_step(trained, untrained, static, key, offset, params, spec))


def batch_loss(trained: LogParams, readout: Readout, untrained: LogParams, static: ModelStatic, step: StepBatch,
               constants: LossConstants, params: Parameters, spec: StepSpec, adjoint: str) -> tuple[Array, StepMetrics]:
    """Mean total loss of one training batch, and its metrics."""
    out = evaluate_inputs(merge_params(trained, untrained), readout, static, step_trials(step, static, params, spec),
                          params, constants, spec.contributions, adjoint)  # fmt: skip
    metrics = summarise(out)
    return metrics.loss_terms["total"], metrics


@partial(jax.jit, static_argnames=("params", "spec", "adjoint"))
def loss_and_grads(trained: LogParams, readout: Readout, untrained: LogParams, static: ModelStatic,
                   step: StepBatch, constants: LossConstants, params: Parameters, spec: StepSpec,
                   adjoint: str = UNROLLED) -> tuple[StepMetrics, LogParams, Readout]:
    """Metrics and gradients (SSN dict, readout) of one step; gradients of untrained parts are zeros.

    ``adjoint`` (one that runs: UNROLLED, IMPLICIT or FORWARD, see :mod:`training.adjoint`) says how
    gradients pass the fixed points; IMPLICIT attaches its gradient to the step's frozen responses
    (:func:`frozen_step`), so the forward pass is not repeated.
    """
    argnums = tuple(i for i, on in ((0, spec.trains_ssn), (1, spec.trains_readout)) if on)
    (_, metrics), grads = jax.value_and_grad(batch_loss, argnums=argnums, has_aux=True)(
        trained, readout, untrained, static, step, constants, params, spec, adjoint)
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
    """Gradients of one step, under the adjoint that runs for ``params.conv.gradient_mode`` on this batch.

    A readout-only step needs no gradient through the fixed points (FORWARD: the rates are constants).
    Otherwise 'auto' first relaxes the batch without gradients: if every stimulus has settled
    (:func:`training.solver.settled_state`) the implicit gradient at those states equals reverse mode
    through the loop, and it is attached to them; otherwise the step differentiates through the loop.
    Either way the gradient is that of the unrolled Euler scheme, dx term included. The frozen responses
    (:func:`frozen_step`) are computed where the mode needs them, and their settled flags reach
    :func:`training.adjoint.with_adjoint` on the host, so only the adjoint that runs is compiled.
    """
    mode = requested_adjoint(params.conv, None if spec.trains_ssn else FORWARD)
    if attaches_to_frozen(mode):
        step = frozen_step(trained, untrained, static, key, offset, params, spec)
    else:
        step = StepBatch(key, offset)

    def differentiate(adjoint: str) -> StepGradients:
        given = step if adjoint == IMPLICIT else step.without_frozen()  # the others relax the batch themselves
        metrics, ssn_grads, readout_grads = loss_and_grads(trained, readout, untrained, static, given, constants,
                                                           params, spec, adjoint=adjoint)  # fmt: skip
        return StepGradients(metrics, ssn_grads, readout_grads, unrolled=adjoint == UNROLLED)

    return with_adjoint(mode, differentiate, settled=None if step.frozen is None else step.frozen.settled)


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
