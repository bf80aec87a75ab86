"""The stages as values: what each one trains, when it probes and which hooks it carries; the adjoint rule."""

from __future__ import annotations

import dataclasses

import pytest

from parameters import AUTO, IMPLICIT, UNROLLED, build_parameters
from training.adjoint import FORWARD, resolve_adjoint, with_adjoint
from training.readout import SUPERFICIAL_ONLY, Readout
from training.stages import (
    FigureFlip,
    ReferenceFlip,
    StageLog,
    ThresholdSettles,
    build_stage,
    pretraining_stage,
    readout_stage,
    training_stage,
)


def test_each_stage_trains_what_its_description_says(params):
    s0, s1, s2 = pretraining_stage(params), readout_stage(params), training_stage(params)
    assert [s.number for s in (s0, s1, s2)] == [0, 1, 2]
    assert (s0.step.general_task, s0.trains_ssn, s0.trains_readout) == (True, True, True)
    assert (s1.step.general_task, s1.trains_ssn, s1.trains_readout) == (False, False, True)
    assert (s2.step.general_task, s2.trains_ssn, s2.trains_readout) == (params.training.general_task, True, False)
    assert s0.contributions == s1.contributions == SUPERFICIAL_ONLY
    assert s2.contributions == params.readout.readout_contributions
    assert (s0.step.batch_size, s1.step.batch_size, s2.step.batch_size) == (
        params.pretraining.batch_size, params.pretraining.stage1_batch_size, params.training.batch_size)
    assert (s0.max_steps, s1.max_steps, s2.max_steps) == (
        params.pretraining.SGD_steps, params.pretraining.stage1_SGD_steps, params.training.SGD_steps)
    assert [build_stage(n, params) for n in range(3)] == [s0, s1, s2]


def test_hooks_belong_to_their_stage(params):
    s0, s1, s2 = pretraining_stage(params), readout_stage(params), training_stage(params)
    assert s0.staircase is None and s1.staircase is None and s2.staircase is not None
    assert (s0.logs_kappas, s1.logs_kappas, s2.logs_kappas) == (False, False, True)
    assert s1.flip is None and s2.flip is None
    true_labels = build_parameters({"PretrainingPars": {"shuffle_labels": False}})
    shuffled = build_parameters({"PretrainingPars": {"shuffle_labels": True}})
    assert pretraining_stage(true_labels).flip == ReferenceFlip(true_labels.pretraining.flip_test_trials)
    assert pretraining_stage(shuffled).flip is None  # shuffled labels: no flip rule
    assert pretraining_stage(shuffled).step.shuffle_labels
    assert pretraining_stage(build_parameters(preset="figure")).flip == FigureFlip()
    one_switch = build_parameters({"PretrainingPars": {"flip_rule": "figure", "shuffle_labels": False}})
    assert pretraining_stage(one_switch).flip == FigureFlip()


def _no_fine_test(num_trials: int) -> float:
    raise AssertionError("the figure-era flip rule runs no fresh test")


def test_figure_flip_fires_once_then_waits_for_the_next_validation():
    log = StageLog(probe_means=[[0.8, 0.75, 0.72, 0.7]], val_acc=0.4)  # falling probe, validation below 0.45
    rule = FigureFlip()
    assert rule.applies(log, _no_fine_test)
    rule.flipped(log)
    assert log.val_acc == pytest.approx(0.6)  # v := 1 - v
    assert not rule.applies(log, _no_fine_test)  # blocked, although the probe still falls
    log.val_acc = 0.42  # the next validation
    assert rule.applies(log, _no_fine_test)
    assert not rule.applies(StageLog(probe_means=[[0.8, 0.75, 0.72, 0.7]]), _no_fine_test)  # no validation yet
    assert not rule.applies(StageLog(val_acc=0.4), _no_fine_test)  # no probe yet


def test_reference_flip_runs_its_test_only_when_the_probe_falls():
    calls = []

    def fine_test(num_trials: int) -> float:
        calls.append(num_trials)
        return 0.3

    rule = ReferenceFlip(300)
    assert not rule.applies(StageLog(probe_means=[[0.5, 0.6, 0.7, 0.8, 0.9]]), fine_test) and calls == []
    log = StageLog(probe_means=[[0.9, 0.81, 0.69, 0.6, 0.52]], val_acc=0.9)  # the validation plays no part
    assert rule.applies(log, fine_test) and calls == [300]
    rule.flipped(log)
    assert log.val_acc == 0.9


def _metrics():
    from training.evaluation import StepMetrics

    return StepMetrics(loss_terms={"bce": 0.5, "total": 1.0}, acc=0.8, max_rates={}, mean_rates={})


def test_figure_stop_rule_is_tested_on_probe_steps_only():
    flat = [0.8 + 0.02 * (-1) ** k * (k % 5) / 4 for k in range(104)]  # plateaued batch accuracies
    log = StageLog(thresholds=[30.0, 9.5, 3.5], batch_accs=flat)
    figure = pretraining_stage(build_parameters(preset="figure"))
    assert isinstance(figure.stop, ThresholdSettles) and figure.stop.pars.stage0_plateau
    assert figure.stop(figure, 102, log, _metrics())
    assert not figure.stop(figure, 103, log, _metrics())  # not a probe step
    without = build_parameters({"PretrainingPars": {"offset_threshold": [3.0, 10.0], "shuffle_labels": False,
                                                    "min_acc_check_ind": 100}})  # fmt: skip
    reference = pretraining_stage(without)
    assert reference.stop(reference, 103, log, _metrics())  # the reference rule runs at every step


def test_probe_schedule(params):
    s0, s2 = pretraining_stage(params), training_stage(params)
    every = params.pretraining.acc_check_freq
    assert [s0.is_probe_step(k) for k in range(2 * every)] == [k % every == 0 for k in range(2 * every)]
    last = params.training.SGD_steps - 1
    assert s2.is_probe_step(last) and s2.is_probe_step(0)  # stage 2 also probes its last step
    assert not s0.probe_at_last_step


def test_stage0_tests_its_readout_on_the_central_block(params):
    import jax.numpy as jnp

    s0, s1 = pretraining_stage(params), readout_stage(params)
    readout = Readout(jnp.arange(81.0), jnp.float32(1.0))
    central = s0.test_readout(readout)
    assert central.w.shape == (params.readout.readout_grid_size[1] ** 2,)
    assert float(central.w[0]) == 20.0  # first cell of the central 5x5 block of the 9x9 grid
    assert s1.test_readout(readout) is readout


def test_the_adjoint_rule():
    assert resolve_adjoint(UNROLLED) == UNROLLED
    assert resolve_adjoint(IMPLICIT, settled=False) == IMPLICIT
    assert resolve_adjoint(FORWARD) == FORWARD
    assert resolve_adjoint(AUTO, settled=True) == IMPLICIT
    assert resolve_adjoint(AUTO, settled=False) == UNROLLED
    assert resolve_adjoint(AUTO) == UNROLLED  # a lone stimulus: nothing known about a batch
    with pytest.raises(ValueError):
        resolve_adjoint("adjoint")


def test_a_stage_is_immutable(params):
    with pytest.raises(dataclasses.FrozenInstanceError):
        pretraining_stage(params).max_steps = 1


def test_with_adjoint_decides_auto_on_host_flags_and_on_traced_flags():
    import jax
    import jax.numpy as jnp

    def run(adjoint):
        return adjoint

    assert with_adjoint(AUTO, run, settled=jnp.array([True, True])) == IMPLICIT
    assert with_adjoint(AUTO, run, settled=jnp.array([True, False])) == UNROLLED
    assert with_adjoint(AUTO, run) == UNROLLED  # a lone stimulus
    assert with_adjoint(IMPLICIT, run, settled=jnp.array([False])) == IMPLICIT
    assert with_adjoint(FORWARD, run) == FORWARD
    implicit_chosen = jax.jit(lambda s: with_adjoint(AUTO, lambda a: jnp.float32(a == IMPLICIT), settled=s))
    assert float(implicit_chosen(jnp.array([True, True]))) == 1.0
    assert float(implicit_chosen(jnp.array([False, True]))) == 0.0
