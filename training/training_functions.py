"""The SGD loop of a stage: a plain loop of small steps around the compiled pieces of ``evaluation``.

``train_ori_discr`` runs one :class:`training.stages.Stage` of one run and returns its log rows and final
state. Rows record the parameters used at each step (before its update); a stage's final state is that of
its last row, which is also what the next stage reloads from the files: the update computed at a stage's
last step is not applied (as in the reference implementation, spec §18.28).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from parameters import Parameters
from store.schema import format_offset, kappa_columns, ssn_columns
from training.evaluation import StepMetrics, fine_task_test, merge_params, psychometric_accuracies, sgd_gradients
from training.loss import LossConstants, default_loss_constants
from training.model import LogParams, ModelStatic
from training.psychometrics import StaircaseState, fit_threshold, staircase_update
from training.readout import Readout
from training.stages import Stage, StageLog
from training.util_gabor import readout_indices

logger = logging.getLogger(__name__)

Array = jnp.ndarray

# Sub-streams of the evaluation key of a step.
PROBE, VALIDATION, PROBE_125, FLIP_TEST = range(4)
STAT_COLUMNS = {f"{kind}{t}_{layer}": f"{kind}r_{t}_{layer}" for kind in ("max", "mean") for layer in ("mid", "sup")
                for t in ("E", "I")}  # fmt: skip
LOSS_COLUMNS = {"bce": "loss_binary_cross_entr", "dx": "loss_dx_max", "rmax": "loss_r_max", "rmean": "loss_r_mean",
                "w": "loss_w_sig", "b": "loss_b_sig", "total": "loss_all"}  # fmt: skip


class StageFailedError(RuntimeError):
    """A stage hit a NaN loss; nothing of it was recorded."""


@dataclass(frozen=True)
class RunSetup:
    """Everything fixed during one run: parameters, per-run constants, learning rate and key streams."""

    params: Parameters
    static: ModelStatic
    run_index: int
    eta: float
    train_key: Array
    """Stream of training batches and their readout noise."""
    eval_key: Array
    """Stream of probes, validations and the flip test."""
    progress: bool = True


@dataclass
class StageState:
    """Parameters a stage starts from; the stage returns its final state in the same form."""

    trained: LogParams
    """Log-parameters trained in this stage."""
    untrained: LogParams
    """The other log-parameters (kappas included)."""
    readout: Readout
    offset: float = 4.0
    """Fine-task offset (the staircase value in stage 2)."""
    constants: LossConstants | None = None


class StageResult(NamedTuple):
    """Log rows and final state of a stage."""

    rows: list
    val_rows: list
    final: StageState
    thresholds: list
    seconds: dict
    """Wall time per activity: sgd, probe, validation."""


# ------------------------------------------------------------------------------------------ row building
def metrics_columns(metrics: StepMetrics) -> dict:
    """Accuracy, loss terms and rate statistics as CSV columns."""
    row = {"acc": float(metrics.acc)}
    row.update({LOSS_COLUMNS[k]: float(v) for k, v in metrics.loss_terms.items()})
    rates = {**metrics.max_rates, **metrics.mean_rates}
    row.update({STAT_COLUMNS[k]: float(v) for k, v in rates.items()})
    return row


def readout_row(readout: Readout, indices: np.ndarray) -> dict:
    """w_sig_<grid index> and b_sig columns."""
    row = {f"w_sig_{int(i)}": float(w) for i, w in zip(indices, np.asarray(readout.w), strict=True)}
    row["b_sig"] = float(readout.b)
    return row


def parameter_row(log_params: LogParams, readout: Readout, stage: Stage, params: Parameters) -> dict:
    """SSN parameter columns, then the kappas or the readout weights (:attr:`Stage.logs_kappas`)."""
    row = ssn_columns(log_params, coupled=params.ssn.couple_c_ms)
    if stage.logs_kappas:
        row.update(kappa_columns(log_params["kappa_Jsup"], log_params["kappa_Jmid"], log_params["kappa_f"]))
    else:
        row.update(readout_row(readout, readout_indices(params.grid.gridsize_Nx, stage.readout_side)))
    return row


def probe_columns(accuracies: np.ndarray, params: Parameters) -> dict:
    """acc_mean_offset_o, acc_std_offset_o from probe accuracies (repeats, offsets)."""
    row = {}
    for j, offset in enumerate(params.training.test_offsets):
        row[f"acc_mean_offset_{format_offset(offset)}"] = float(np.mean(accuracies[:, j]))
        row[f"acc_std_offset_{format_offset(offset)}"] = float(np.std(accuracies[:, j]))
    return row


# --------------------------------------------------------------------------------------------- the pieces
def step_keys(setup: RunSetup, stage: Stage, step: int) -> tuple[Array, Array]:
    """Training and evaluation keys of one step (independent of everything else that runs)."""
    train = jax.random.fold_in(jax.random.fold_in(setup.train_key, stage.number), step)
    evaluation = jax.random.fold_in(jax.random.fold_in(setup.eval_key, stage.number), step)
    return train, evaluation


def run_probe(log_params: LogParams, readout: Readout, setup: RunSetup, key: Array, constants: LossConstants,
              contributions: tuple[float, float]) -> np.ndarray:
    """Probe accuracies (repeats, offsets) of a readout with the given mix (superficial, middle)."""
    accuracies = psychometric_accuracies(log_params, readout, setup.static, key, constants, setup.params,
                                         contributions)  # fmt: skip
    return np.asarray(accuracies, dtype=np.float64)


def run_validation(log_params: LogParams, readout: Readout, stage: Stage, setup: RunSetup, key: Array,
                   offset: float, constants: LossConstants) -> dict:
    """val_acc and val_loss on fresh fine-task trials at the current offset, and accs_125: the accuracy on
    the probe of TrainingPars.accs_125_probe (see :func:`accs_125_trials`), spec §13.6."""
    p = setup.params
    trials = p.training.validation_trials
    acc, loss = fine_task_test(log_params, readout, setup.static, jax.random.fold_in(key, VALIDATION),
                               jnp.float32(offset), jnp.float32(p.stimuli.ref_ori), constants, p, trials,
                               stage.contributions)  # fmt: skip
    ref_125, offset_125 = accs_125_trials(offset, p)
    acc_125, _ = fine_task_test(log_params, readout, setup.static, jax.random.fold_in(key, PROBE_125),
                                jnp.float32(offset_125), jnp.float32(ref_125), constants, p, trials,
                                stage.contributions)  # fmt: skip
    return {"val_acc": float(acc), "val_loss": float(loss), "accs_125": float(acc_125)}


def accs_125_trials(offset: float, params: Parameters) -> tuple[float, float]:
    """(reference orientation, offset) of the accs_125 probe.

    'reference_125': the untrained orientation at the current offset. 'offset_125' (the reference): the
    trained reference orientation at an offset of 125°, so the targets lie at −70° or 180°.
    """
    if params.training.accs_125_probe == "reference_125":
        return params.stimuli.untrained_ori, offset
    return params.stimuli.ref_ori, params.stimuli.untrained_ori


def flip_applies(log: StageLog, log_params: LogParams, readout: Readout, stage: Stage, setup: RunSetup,
                 key: Array, constants: LossConstants) -> bool:
    """Whether the stage's flip rule (:attr:`Stage.flip`) applies at this step; a rule that asks for a fine-task
    test gets it on the step's flip-test key, at StimuliPars.offset, with the stage's test readout."""
    if stage.flip is None:
        return False
    p = setup.params

    def fine_test(num_trials: int) -> float:
        acc, _ = fine_task_test(log_params, readout, setup.static, jax.random.fold_in(key, FLIP_TEST),
                                jnp.float32(p.stimuli.offset), jnp.float32(p.stimuli.ref_ori), constants, p,
                                num_trials, stage.contributions)  # fmt: skip
        return float(acc)

    return stage.flip.applies(log, fine_test)


def flip_readout(readout: Readout, readout_opt_state: optax.OptState, params: Parameters):
    """Negate the central weights and the bias, and the same entries of Adam's first moment."""
    central = readout_indices(params.grid.gridsize_Nx, params.readout.readout_grid_size[1])
    sign = jnp.ones_like(readout.w).at[central].set(-1.0)
    flipped = Readout(readout.w * sign, -readout.b)

    def negate_mu(state):
        if isinstance(state, optax.ScaleByAdamState):
            mu = Readout(state.mu.w * sign, -state.mu.b)
            return state._replace(mu=mu)
        return state

    new_state = jax.tree_util.tree_map(negate_mu, readout_opt_state,
                                       is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))  # fmt: skip
    return flipped, new_state


def log_gradient_paths(run_index: int, stage: int, rows: list[dict], trains_ssn: bool = True) -> None:
    """Log the share of a stage's steps whose gradient went through the Euler loop, and with dx > 0."""
    if not rows:
        return
    unrolled = np.mean([row["gradient_unrolled"] for row in rows])
    unconverged = np.mean([row["loss_dx_max"] > 0 for row in rows])
    largest = max(row["loss_dx_max"] for row in rows)
    paths = (f"{100 * unrolled:.0f} % of steps through the Euler loop ({100 * (1 - unrolled):.0f} % implicit)"
             if trains_ssn else "readout only, no gradient passes a fixed point")  # fmt: skip
    logger.info("run %d stage %d: %s, %.0f %% with dx > 0, largest dx penalty %.3g", run_index, stage, paths,
                100 * unconverged, largest)  # fmt: skip


PROGRESS_SECONDS = 30.0
"""At most one progress line per this many seconds of a stage (main.py shows them in its console)."""
PROGRESS_PREFIX = "progress:"
"""Start of a progress line's message (main.py forwards the job-log lines that carry it)."""


def report_progress(run_index: int, stage: int, step: int, total: int, log: StageLog) -> None:
    """Log steps done, the latest threshold and the time left at most every PROGRESS_SECONDS."""
    now = time.perf_counter()
    if now - log.reported < PROGRESS_SECONDS:
        return
    log.reported = now
    left = (now - log.started) / (step + 1) * (total - step - 1)
    threshold = f"{log.thresholds[-1]:.3g} deg" if log.thresholds else "not yet measured"
    logger.info("%s run %d stage %d: step %d of at most %d, threshold %s, at most %.0f s left", PROGRESS_PREFIX,
                run_index, stage, step + 1, total, threshold, left)  # fmt: skip


# ------------------------------------------------------------------------------------------ the stage loop
def train_ori_discr(stage: Stage, state: StageState, setup: RunSetup) -> StageResult:
    """Run the SGD ``stage`` from ``state``; raise :class:`StageFailedError` on a NaN loss."""
    params = setup.params
    constants = state.constants if state.constants is not None else default_loss_constants(params.loss)
    optimizer = optax.adam(setup.eta)
    trained, readout, offset = state.trained, state.readout, state.offset
    ssn_opt, readout_opt = optimizer.init(trained), optimizer.init(readout)
    stair_state = StaircaseState()
    log = StageLog()
    recorded = (trained, readout)  # the final state of a stage that ends before recording a step
    steps = tqdm(range(stage.max_steps), desc=f"run {setup.run_index} stage {stage.number}", leave=False,
                 disable=not setup.progress)  # fmt: skip
    for step in steps:
        train_key, eval_key = step_keys(setup, stage, step)
        clock = time.perf_counter()
        metrics, ssn_grads, readout_grads, unrolled = sgd_gradients(trained, readout, state.untrained, setup.static,
                                                                    train_key, jnp.float32(offset), constants, params,
                                                                    stage.step)  # fmt: skip
        if not math.isfinite(float(metrics.loss_terms["total"])):
            raise StageFailedError(f"run {setup.run_index}: NaN loss in stage {stage.number} at step {step}")
        if stage.stop_before_recording is not None and stage.stop_before_recording(stage, step, log, metrics):
            break
        log_params = merge_params(trained, state.untrained)
        test_readout = stage.test_readout(readout)
        row = {"run_index": setup.run_index, "stage": stage.number, "SGD_steps": step, **metrics_columns(metrics),
               "gradient_unrolled": int(unrolled), **parameter_row(log_params, readout, stage, params)}  # fmt: skip
        if stage.staircase is not None:
            row["staircase_offset"] = offset
        log.batch_accs.append(float(metrics.acc))
        probe = None
        clock = log.tick("sgd", clock)
        if stage.is_probe_step(step):
            probe = run_probe(log_params, test_readout, setup, jax.random.fold_in(eval_key, PROBE), constants,
                              stage.contributions)  # fmt: skip
            clock = log.tick("probe", clock)
            means = probe.mean(axis=0)
            log.probe_means.append(means)
            log.thresholds.append(fit_threshold(params.training.test_offsets, means, params.training.acc_th))
            row["psychometric_offset"] = log.thresholds[-1]
        if stage.staircase is not None:
            offset, stair_state = staircase_update(offset, stair_state, float(metrics.acc), stage.staircase)
        if stage.is_validation_step(step):
            row.update(run_validation(log_params, test_readout, stage, setup, eval_key, offset, constants))
            log.val_acc = row["val_acc"]
            clock = log.tick("validation", clock)
        log.rows.append(row)
        recorded = (trained, readout)
        if probe is not None:
            log.val_rows.append({**row, **probe_columns(probe, params)})
        if stage.stop(stage, step, log, metrics):
            break
        report_progress(setup.run_index, stage.number, step, stage.max_steps, log)
        flip = flip_applies(log, log_params, test_readout, stage, setup, eval_key, constants)
        clock = log.tick("validation", clock)
        if flip:
            readout, readout_opt = flip_readout(readout, readout_opt, params)
            stage.flip.flipped(log)
            logger.info("run %d: readout flipped at stage-%d step %d", setup.run_index, stage.number, step)
            continue
        if stage.trains_ssn:
            updates, ssn_opt = optimizer.update(ssn_grads, ssn_opt, trained)
            trained = optax.apply_updates(trained, updates)
        if stage.trains_readout:
            updates, readout_opt = optimizer.update(readout_grads, readout_opt, readout)
            readout = optax.apply_updates(readout, updates)
        log.tick("sgd", clock)
    logger.info("run %d stage %d: %d steps; seconds in SGD %.1f, probes %.1f, validation %.1f", setup.run_index,
                stage.number, len(log.rows), log.seconds["sgd"], log.seconds["probe"], log.seconds["validation"])
    log_gradient_paths(setup.run_index, stage.number, log.rows, stage.trains_ssn)
    final = StageState(trained=recorded[0], untrained=state.untrained, readout=recorded[1], offset=offset,
                       constants=constants)  # fmt: skip
    return StageResult(rows=log.rows, val_rows=log.val_rows, final=final, thresholds=log.thresholds,
                       seconds=log.seconds)
