"""The three SGD stages as values: what each one trains, on which task, when it probes, when it stops.

* Stage 0 (pretraining): the general task (pairs 5-20 degrees apart at any orientation); trains the
  pretrained SSN parameters and a readout over the whole readout grid; may flip its readout's sign
  (PretrainingPars.flip_rule: :class:`ReferenceFlip` or :class:`FigureFlip`).
* Stage 1 (readout): the fine task around the reference orientation; trains the readout only, restricted
  to the central block. It runs after stage 0 in the pretraining job (:func:`readout_stage`) or, with
  PretrainingPars.stage1_placement 'training' (figure era), at the start of every stage-2 job
  (:func:`training_readout_stage`).
* Stage 2 (training): the fine task at an offset set by a staircase; trains the configuration's SSN
  parameters (kappas included) and not the readout.

:func:`build_stage` makes the :class:`Stage` of a number from :class:`parameters.Parameters` once; the
training loop (:func:`training.training_functions.train_ori_discr`) reads its fields and has no
stage-specific branches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from parameters import Parameters, PretrainingPars, TrainingPars
from training.evaluation import StepMetrics, StepSpec
from training.psychometrics import (
    STAGE1_TRAINING_ACC_WINDOW,
    StaircaseSettings,
    figure_flip_applies,
    fine_accuracy_below_chance,
    probe_accuracy_falls,
    readout_stage_skipped,
    stage0_should_stop,
    stage1_should_stop,
    stage2_should_stop,
    trailing_accuracy_exceeds,
)
from training.readout import SUPERFICIAL_ONLY, Readout
from training.util_gabor import readout_indices

PRETRAINING, READOUT, TRAINING = 0, 1, 2
"""Stage numbers (the CSV ``stage`` column)."""


# ------------------------------------------------------------------------- what the stage rules read
@dataclass
class StageLog:
    """Rows recorded so far and the quantities the stopping rules look at."""

    rows: list = field(default_factory=list)
    val_rows: list = field(default_factory=list)
    thresholds: list = field(default_factory=list)
    probe_means: list = field(default_factory=list)
    batch_accs: list = field(default_factory=list)
    val_acc: float | None = None
    """The most recent validation accuracy (None before the first); the figure-era flip rule reads it and
    sets it to 1 − itself after a flip (training.stages.FigureFlip)."""
    seconds: dict = field(default_factory=lambda: {"sgd": 0.0, "probe": 0.0, "validation": 0.0})
    """Wall time spent in SGD steps, psychometric probes and validations (incl. the flip test)."""
    started: float = field(default_factory=time.perf_counter)
    """perf_counter() when the stage started."""
    reported: float = field(default_factory=time.perf_counter)
    """perf_counter() of the last progress line."""

    def tick(self, activity: str, since: float) -> float:
        """Add the time since ``since`` to an activity; returns the current time."""
        now = time.perf_counter()
        self.seconds[activity] += now - since
        return now


# ------------------------------------------------------------------------------------------ stop rules
class StopRule(Protocol):
    """Whether a stage stops after recording ``step`` (the step's update is then not applied)."""

    def __call__(self, stage: Stage, step: int, log: StageLog, metrics: StepMetrics) -> bool: ...


@dataclass(frozen=True)
class ThresholdSettles:
    """Stage 0: stop once the last two psychometric thresholds lie inside PretrainingPars.offset_threshold.

    With shuffled labels no threshold can settle: stop instead once the binary cross-entropy exceeds 95 %
    of the total loss. Neither applies before step min_acc_check_ind or before three thresholds exist.
    With PretrainingPars.stage0_plateau (the figure era) the rule is tested on probe steps only and the
    batch accuracies must also have plateaued.
    """

    pars: PretrainingPars

    def __call__(self, stage: Stage, step: int, log: StageLog, metrics: StepMetrics) -> bool:
        if self.pars.stage0_plateau and not stage.is_probe_step(step):
            return False  # the figure era tested its stop rule inside the probe step
        return stage0_should_stop(log.thresholds, step, float(metrics.loss_terms["bce"]),
                                  float(metrics.loss_terms["total"]), stage.step.shuffle_labels,
                                  self.pars, log.batch_accs)  # fmt: skip


@dataclass(frozen=True)
class ReadoutLearned:
    """Stage 1: stop once the recent batch accuracy exceeds stage1_acc_threshold and the latest threshold is
    below stage1_max_threshold."""

    pars: PretrainingPars

    def __call__(self, stage: Stage, step: int, log: StageLog, metrics: StepMetrics) -> bool:
        return stage1_should_stop(log.batch_accs, log.thresholds, step, self.pars)


@dataclass(frozen=True)
class AccuracyAboveAtStart:
    """Stage 1 inside a stage-2 job, before step 0 is recorded: end the stage (no rows) when step 0's batch
    accuracy already exceeds the threshold (LINEAGE.md E)."""

    threshold: float

    def __call__(self, stage: Stage, step: int, log: StageLog, metrics: StepMetrics) -> bool:
        return readout_stage_skipped(float(metrics.acc), step, self.threshold)


@dataclass(frozen=True)
class TrailingAccuracyAbove:
    """Stage 1 inside a stage-2 job: stop once the mean of the last min(step, window) batch accuracies
    exceeds the threshold; no threshold condition (LINEAGE.md E)."""

    threshold: float
    window: int = STAGE1_TRAINING_ACC_WINDOW

    def __call__(self, stage: Stage, step: int, log: StageLog, metrics: StepMetrics) -> bool:
        return trailing_accuracy_exceeds(log.batch_accs, step, self.threshold, self.window)


@dataclass(frozen=True)
class AccuracyPlateaus:
    """Stage 2: at a probe step after min_stop_step, stop once the probe accuracy at every plateau offset
    has stopped changing (Mann-Whitney test of the last window of probes against the one before)."""

    pars: TrainingPars

    def __call__(self, stage: Stage, step: int, log: StageLog, metrics: StepMetrics) -> bool:
        return stage.is_probe_step(step) and stage2_should_stop(log.probe_means, step, self.pars)


# ----------------------------------------------------------------------------------------- flip rules
FineTest = Callable[[int], float]
"""Accuracy of the stage's test readout on this many fresh fine-task trials at StimuliPars.offset (this
step's flip-test key)."""


class FlipRule(Protocol):
    """Stage 0's readout flip, tested at every step that did not stop, before the update. When it applies, the
    loop negates the central readout weights, the bias and their Adam first moments, skips the step's
    updates and then calls :meth:`flipped`."""

    def applies(self, log: StageLog, fine_test: FineTest) -> bool: ...

    def flipped(self, log: StageLog) -> None: ...


@dataclass(frozen=True)
class ReferenceFlip:
    """Spec §13.3: the latest probe's mean accuracies fall with the offset (slope < −0.01, p < 0.05) and a
    fresh test of ``test_trials`` fine-task trials is below chance. The test runs only when the probe half
    holds (a conjunction; evaluation keys are per step, so this changes no number)."""

    test_trials: int

    def applies(self, log: StageLog, fine_test: FineTest) -> bool:
        if not log.probe_means or not probe_accuracy_falls(log.probe_means[-1]):
            return False
        return fine_accuracy_below_chance(fine_test(self.test_trials))

    def flipped(self, log: StageLog) -> None:
        return None


@dataclass(frozen=True)
class FigureFlip:
    """The figure era (LINEAGE.md D): the most recent validation accuracy v is below 0.45 and the latest
    probe's mean accuracies fall with slope < −0.02; no p-value, no fresh test. A flip sets v := 1 − v,
    which blocks another flip until the next validation."""

    def applies(self, log: StageLog, fine_test: FineTest) -> bool:
        return figure_flip_applies(log.val_acc, log.probe_means[-1] if log.probe_means else None)

    def flipped(self, log: StageLog) -> None:
        log.val_acc = 1.0 - log.val_acc


def flip_rule(pars: PretrainingPars) -> FlipRule | None:
    """Stage 0's flip rule (PretrainingPars.flip_rule); none with shuffled labels (there is no task to flip)."""
    if pars.shuffle_labels:
        return None
    return FigureFlip() if pars.flip_rule == "figure" else ReferenceFlip(pars.flip_test_trials)


# --------------------------------------------------------------------------------------------- the stage
@dataclass(frozen=True, kw_only=True)
class Stage:
    """One SGD stage, built once from the parameters (see the module docstring for the three)."""

    number: int
    """0, 1 or 2: the CSV ``stage`` column and the index of the stage's random streams."""
    step: StepSpec
    """What one SGD step computes: batch size, task, label shuffling, readout mix, what is trained."""
    max_steps: int
    probe_every: int
    """The psychometric probe runs at every step that is a multiple of this."""
    probe_at_last_step: bool
    """Also probe at step max_steps - 1, so that a final threshold always exists."""
    validate_every: int
    """Validation (accuracy and loss at the current offset, and the accs_125 probe) every this many steps."""
    stop: StopRule
    readout_side: int
    """Side of the square block of grid points the stage's readout weights cover."""
    test_cells: tuple[int, ...] | None = None
    """Readout weights the fine-task tests use (None: all). Stage 0 trains a readout over the whole grid on
    the general task and tests it on the central block only."""
    flip: FlipRule | None = None
    """The flip rule (stage 0 with true labels): when it applies, negate the central readout weights and
    the bias instead of updating (:class:`ReferenceFlip`, :class:`FigureFlip`)."""
    staircase: StaircaseSettings | None = None
    """The offset staircase (stage 2): the fine-task offset follows the batch accuracy."""
    logs_kappas: bool = False
    """Rows record the kappas (stage 2, which trains them) instead of the readout weights."""
    stop_before_recording: StopRule | None = None
    """Checked right after a step's loss, before anything of the step (row, probe, validation) is made: the
    stage then ends with the state of its last recorded step, or its start state if there is none (stage 1
    inside a stage-2 job, whose step 0 may end it without a row)."""

    @property
    def trains_ssn(self) -> bool:
        """The stage updates SSN parameters."""
        return self.step.trains_ssn

    @property
    def trains_readout(self) -> bool:
        """The stage updates the readout."""
        return self.step.trains_readout

    @property
    def contributions(self) -> tuple[float, float]:
        """Readout mix (superficial, middle) of the stage."""
        return self.step.contributions

    def is_probe_step(self, step: int) -> bool:
        """Whether the psychometric probe runs at ``step``."""
        return step % self.probe_every == 0 or (self.probe_at_last_step and step == self.max_steps - 1)

    def is_validation_step(self, step: int) -> bool:
        """Whether the validation runs at ``step``."""
        return step % self.validate_every == 0

    def test_readout(self, readout: Readout) -> Readout:
        """The readout the fine-task tests use (:attr:`test_cells`)."""
        if self.test_cells is None:
            return readout
        return Readout(readout.w[np.asarray(self.test_cells)], readout.b)


def central_cells(params: Parameters) -> tuple[int, ...]:
    """Grid indices of the central readout block (ReadoutPars.readout_grid_size[1] on a side)."""
    return tuple(int(i) for i in readout_indices(params.grid.gridsize_Nx, params.readout.readout_grid_size[1]))


def pretraining_stage(params: Parameters) -> Stage:
    """Stage 0: general task, trains the pretrained SSN parameters and the whole-grid readout."""
    p = params.pretraining
    step = StepSpec(batch_size=p.batch_size, general_task=True, shuffle_labels=p.shuffle_labels,
                    contributions=SUPERFICIAL_ONLY, trains_ssn=True, trains_readout=True)  # fmt: skip
    return Stage(number=PRETRAINING, step=step, max_steps=p.SGD_steps, probe_every=p.acc_check_freq,
                 probe_at_last_step=False, validate_every=params.training.validation_freq, stop=ThresholdSettles(p),
                 readout_side=params.readout.readout_grid_size[0], test_cells=central_cells(params),
                 flip=flip_rule(p))  # fmt: skip


def readout_stage(params: Parameters) -> Stage:
    """Stage 1: fine task, trains the central-block readout only."""
    p = params.pretraining
    step = StepSpec(batch_size=p.stage1_batch_size, general_task=False, shuffle_labels=False,
                    contributions=SUPERFICIAL_ONLY, trains_ssn=False, trains_readout=True)  # fmt: skip
    return Stage(number=READOUT, step=step, max_steps=p.stage1_SGD_steps, probe_every=p.acc_check_freq,
                 probe_at_last_step=False, validate_every=params.training.validation_freq, stop=ReadoutLearned(p),
                 readout_side=params.readout.readout_grid_size[1])  # fmt: skip


def training_readout_stage(params: Parameters) -> Stage:
    """Stage 1 at the start of a stage-2 job (PretrainingPars.stage1_placement 'training', LINEAGE.md E).

    Trains the readout of the configuration's mix only, on the fine task at the stage-2 start offset (no
    staircase), batch stage1_batch_size, at most TrainingPars.SGD_steps steps; probe and validation on the
    stage-2 schedule. It ends before recording step 0 when that step's batch accuracy exceeds
    stage1_acc_threshold, else at the first step whose trailing mean accuracy does. Its rows go into
    training_results.csv before the stage-2 rows, so they record the kappas (still zero) like stage 2's.
    """
    p, t = params.pretraining, params.training
    step = StepSpec(batch_size=p.stage1_batch_size, general_task=False, shuffle_labels=False,
                    contributions=params.readout.readout_contributions, trains_ssn=False,
                    trains_readout=True)  # fmt: skip
    return Stage(number=READOUT, step=step, max_steps=t.SGD_steps, probe_every=t.acc_check_freq,
                 probe_at_last_step=False, validate_every=t.validation_freq,
                 stop=TrailingAccuracyAbove(p.stage1_acc_threshold),
                 stop_before_recording=AccuracyAboveAtStart(p.stage1_acc_threshold),
                 readout_side=params.readout.readout_grid_size[1], logs_kappas=True)  # fmt: skip


def training_stage(params: Parameters) -> Stage:
    """Stage 2: fine task (or the general one, TrainingPars.general_task) at the staircase offset; trains
    the configuration's SSN parameters with the readout mix of ReadoutPars.readout_contributions."""
    t = params.training
    step = StepSpec(batch_size=t.batch_size, general_task=t.general_task, shuffle_labels=t.shuffle_labels,
                    contributions=params.readout.readout_contributions, trains_ssn=True,
                    trains_readout=False)  # fmt: skip
    return Stage(number=TRAINING, step=step, max_steps=t.SGD_steps, probe_every=t.acc_check_freq,
                 probe_at_last_step=True, validate_every=t.validation_freq, stop=AccuracyPlateaus(t),
                 readout_side=params.readout.readout_grid_size[1],
                 staircase=StaircaseSettings.from_parameters(t, params.stimuli), logs_kappas=True)  # fmt: skip


STAGE_BUILDERS = {PRETRAINING: pretraining_stage, READOUT: readout_stage, TRAINING: training_stage}


def build_stage(number: int, params: Parameters) -> Stage:
    """The stage of a number (0, 1 or 2)."""
    return STAGE_BUILDERS[number](params)
