"""The default gradient mode 'auto' is exact at every state training visits: the implicit gradient where the
batch has settled, reverse mode through the Euler loop elsewhere; and the step records the path it took."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from parameters import build_parameters
from store.schema import pretraining_columns
from store.tables import read_results_csv
from tests.conftest import TINY_OVERRIDES, golden_log_params, golden_path, with_gradient_mode
from tests.test_fixed_point import small_batch_loss
from training import training_functions
from training.evaluation import StepBatch, StepSpec, loss_and_grads, sgd_gradients
from training.loss import default_loss_constants
from training.model import build_static, zero_kappas
from training.readout import Readout
from training.stages import pretraining_stage
from training.training_functions import RunSetup, StageState, train_ori_discr
from training.trials import fine_task_batch, trial_inputs

KEY = jax.random.PRNGKey(3)
# Shifts of log-parameters from golden case 1. "settled": the Euler loop converges for every stimulus.
# "unsettled": states with a convergence penalty (dx > 0) such as stage 2 visits, where the implicit
# gradient is wrong both in the rates' part and in the dx term's.
SETTLED = {"golden": {}, "weaker_sup_inhibition": {"log_J_II_s": -0.6}, "stronger_sup_excitation": {"log_J_EE_s": 0.05}}
UNSETTLED = {"slow_sup_inhibition": {"log_J_II_s": -1.1}, "sup_excitation_near_instability": {"log_J_EE_s": 0.1},
             "mid_excitation_near_instability": {"log_J_EE_m": 0.05}}  # fmt: skip


def shifted(log_params: dict, shifts: dict) -> dict:
    return {k: v + shifts.get(k, 0.0) for k, v in log_params.items()}


_small_batch_gradient = jax.jit(jax.grad(small_batch_loss), static_argnums=3)  # one compilation per mode


def gradient(mode, log_params, readout, static, params):
    return _small_batch_gradient(log_params, readout, static, with_gradient_mode(params, mode), KEY)


@functools.partial(jax.jit, static_argnums=2)
def small_batch_responses(log_params, static, params):
    """The responses to the images small_batch_loss simulates (same batch, same key), without gradients."""
    batch = fine_task_batch(jax.random.fold_in(KEY, 0), 3, jnp.float32(4.0), params)
    return trial_inputs(batch, jax.random.fold_in(KEY, 1), static, params, log_params).frozen


def settled_flags(log_params, static, params) -> np.ndarray:
    return np.asarray(small_batch_responses(log_params, static, params).settled)


def relative_difference(a: dict, b: dict) -> float:
    scale = max(float(jnp.max(jnp.abs(v))) for v in b.values())
    return max(float(jnp.max(jnp.abs(a[k] - b[k]))) for k in b) / scale


def assert_gradients_close(a: dict, b: dict, rtol: float) -> None:
    scale = max(float(jnp.max(jnp.abs(v))) for v in b.values())
    for key in b:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=rtol * scale, err_msg=key)


def test_default_mode_is_auto(params):
    assert params.conv.gradient_mode == "auto"


@pytest.mark.parametrize("name", SETTLED)
def test_auto_is_the_implicit_gradient_at_settled_states(golden_setup, params, name):
    log_params, readout, static = golden_setup
    lp = shifted(log_params, SETTLED[name])
    assert settled_flags(lp, static, params).all()
    g_auto = gradient("auto", lp, readout, static, params)
    assert_gradients_close(g_auto, gradient("implicit", lp, readout, static, params), rtol=1e-5)
    assert_gradients_close(g_auto, gradient("unrolled", lp, readout, static, params), rtol=1e-3)


@pytest.mark.parametrize("name", UNSETTLED)
def test_auto_is_the_unrolled_gradient_at_unconverged_states(golden_setup, params, name):
    log_params, readout, static = golden_setup
    lp = shifted(log_params, UNSETTLED[name])
    assert not settled_flags(lp, static, params).all()
    g_auto, g_unrolled = (gradient(mode, lp, readout, static, params) for mode in ("auto", "unrolled"))
    assert_gradients_close(g_auto, g_unrolled, rtol=1e-3)
    # The test has teeth: here the implicit gradient is far from the exact one.
    assert relative_difference(gradient("implicit", lp, readout, static, params), g_unrolled) > 0.1


def test_a_zero_penalty_is_not_convergence(golden_setup, params):
    """With a loose xtol, dx = 0 although the loop stopped far from the fixed point: the batch is not
    settled (so 'auto' follows the loop), and the implicit gradient would indeed be wrong there."""
    log_params, readout, static = golden_setup
    loose = dataclasses.replace(params, conv=dataclasses.replace(params.conv, Tmax=100.0, xtol=0.01))
    response = small_batch_responses(log_params, static, loose)
    assert float(jnp.max(response.dx_mid)) == 0.0 and float(jnp.max(response.dx_sup)) == 0.0
    assert not np.asarray(response.settled).any()
    g_unrolled = gradient("unrolled", log_params, readout, static, loose)
    assert relative_difference(gradient("implicit", log_params, readout, static, loose), g_unrolled) > 1e-2


def test_settled_implies_implicit_equals_unrolled_along_a_path_to_instability(golden_setup, params):
    """The criterion is safe: on a sweep from converged to unconverged states, every batch it calls
    settled has implicit = unrolled gradients to 1e-3, and it stops calling them settled before they differ."""
    log_params, readout, static = golden_setup
    verdicts = []
    for shift in np.linspace(0.0, 0.125, 6):
        lp = shifted(log_params, {"log_J_EE_s": float(shift)})
        difference = relative_difference(gradient("implicit", lp, readout, static, params),
                                         gradient("unrolled", lp, readout, static, params))  # fmt: skip
        verdicts.append((bool(settled_flags(lp, static, params).all()), difference))
    assert all(difference < 1e-3 for settled, difference in verdicts if settled)
    assert {settled for settled, _ in verdicts} == {True, False}  # the sweep crosses the boundary


def test_auto_matches_finite_differences_in_float64_at_unconverged_states(golden_setup, params):
    log_params, readout, static = golden_setup
    p = with_gradient_mode(params, "auto")
    loss = jax.jit(small_batch_loss, static_argnums=3)
    grad = jax.jit(jax.grad(small_batch_loss), static_argnums=3)
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
        ro, st = to64(readout), to64(static)
        for name in ("slow_sup_inhibition", "mid_excitation_near_instability"):
            lp = to64(shifted(log_params, UNSETTLED[name]))
            grads = grad(lp, ro, st, p, KEY)
            rng = np.random.default_rng(0)
            direction = {k: jnp.asarray(rng.normal(size=np.shape(x))) for k, x in lp.items()}
            eps = 1e-7  # the loss is strongly curved off the fixed point: eps = 1e-5 is 0.6 % off, 1e-7 agrees to 1e-7
            plus = {k: lp[k] + eps * direction[k] for k in lp}
            minus = {k: lp[k] - eps * direction[k] for k in lp}
            fd = (loss(plus, ro, st, p, KEY) - loss(minus, ro, st, p, KEY)) / (2 * eps)
            analytic = sum(jnp.sum(grads[k] * direction[k]) for k in lp)
            assert float(analytic) == pytest.approx(float(fd), rel=1e-4), name
    jax.clear_caches()  # float64 entries in JAX's tracing caches would otherwise leak into later float32 tests


def test_sgd_gradients_reports_the_path_it_took(golden_setup, params):
    log_params, readout, static = golden_setup
    spec = StepSpec(batch_size=3, general_task=False, shuffle_labels=False, contributions=(1.0, 0.0), trains_ssn=True,
                    trains_readout=False)  # fmt: skip
    args = (readout, {}, static, KEY, jnp.float32(4.0), default_loss_constants(params.loss), params, spec)
    for shifts, expect_unrolled in ((UNSETTLED["slow_sup_inhibition"], True), (SETTLED["golden"], False)):
        lp = shifted(log_params, shifts)
        step = sgd_gradients(lp, *args)
        assert step.unrolled is expect_unrolled
        batch = StepBatch(KEY, jnp.float32(4.0))
        _, exact, _ = loss_and_grads(lp, readout, {}, static, batch, *args[-3:], adjoint="unrolled")
        assert_gradients_close(step.ssn_grads, exact, rtol=1e-5 if expect_unrolled else 1e-3)
    readout_only = dataclasses.replace(spec, trains_ssn=False, trains_readout=True)
    assert not sgd_gradients(log_params, *args[:-1], readout_only).unrolled


def test_the_csv_records_the_path_each_step_took(params, tmp_path, monkeypatch):
    with np.load(golden_path(1)) as data:
        golden = {k: data[k] for k in data.files}
    tiny = build_parameters(TINY_OVERRIDES)
    static = build_static(golden["orimap"], float(golden["gE"]), float(golden["gI"]), tiny)
    taken = []

    def recording(*args, **kwargs):
        step = sgd_gradients(*args, **kwargs)
        taken.append(int(step.unrolled))
        return step

    monkeypatch.setattr(training_functions, "sgd_gradients", recording)
    recorded = []
    for shifts in (SETTLED["golden"], UNSETTLED["mid_excitation_near_instability"]):
        log_params = {k: v for k, v in shifted(golden_log_params(golden), shifts).items() if not k.startswith("kappa")}
        setup = RunSetup(tiny, static, 0, 4e-3, jax.random.PRNGKey(1), jax.random.PRNGKey(2), progress=False)
        readout = Readout(jnp.zeros(81), jnp.float32(0.1))
        state = StageState(trained=log_params, untrained=zero_kappas(), readout=readout)
        result = train_ori_discr(pretraining_stage(tiny), state, setup)
        path = tmp_path / "rows.csv"
        pd.DataFrame(result.rows).reindex(columns=pretraining_columns(81)).to_csv(path, index=False)
        recorded += read_results_csv(path)["gradient_unrolled"].astype(int).tolist()
    assert recorded == taken
    assert set(recorded) == {0, 1}



def test_evaluations_without_a_gradient_relax_each_batch_once(golden_setup, params, monkeypatch):
    """Probes, validations and regression features take no gradient, so they must not pay for AUTO's run-time
    choice of adjoint: under vmap (the probe's repeats) that choice runs both adjoints' forward passes, which
    doubled the cost of every probe. Each traces the Euler loop once, as a forward-only evaluation does."""
    from training import model
    from training.evaluation import fine_task_test, psychometric_accuracies
    from training.readout_regression import _feature_chunk

    relaxations = []
    unrolled = model._unrolled_responses
    monkeypatch.setattr(model, "_unrolled_responses", lambda *args: relaxations.append(1) or unrolled(*args))
    log_params, readout, static = golden_setup
    constants = default_loss_constants(params.loss)
    calls = {  # the undecorated functions, so that each call is traced afresh
        "probe": lambda: psychometric_accuracies.__wrapped__(log_params, readout, static, KEY, constants, params,
                                                             (1.0, 0.0)),  # fmt: skip
        "validation": lambda: fine_task_test.__wrapped__(log_params, readout, static, KEY, jnp.float32(4.0),
                                                         jnp.float32(55.0), constants, params, 6,
                                                         (1.0, 0.0)),  # fmt: skip
        "regression": lambda: _feature_chunk.__wrapped__(log_params, static, KEY, params, 6, 25, False),
    }
    assert params.conv.gradient_mode == "auto"
    for name, call in calls.items():
        relaxations.clear()
        jax.make_jaxpr(call)()
        assert len(relaxations) == 1, name
    # the spy sees AUTO's second relaxation where a caller does not ask for the forward-only evaluation
    relaxations.clear()
    jax.make_jaxpr(lambda: model.evaluate_model_response_batch(
        model.build_layers(log_params, static, params), jnp.zeros((2, 2 * params.grid.gridsize_Nx ** 2)), params))()
    assert len(relaxations) == 2
