"""The model core against the golden cases of ../shared/golden (see its README for the keys)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from parameters import build_parameters
from tests.conftest import PARAMETER_KEYS, golden_log_params, with_gradient_mode
from training.loss import default_loss_constants, trial_losses
from training.model import build_layers, build_static, response_to_images
from training.readout import add_readout_noise, readout_features, sigmoid_output
from training.util_gabor import readout_indices

RATE = {"rtol": 1e-4, "atol": 1e-3}
GRAD = {"rtol": 1e-3}


def golden_trial_loss(log_params, golden, static, params):
    """Loss of the golden trial: reference = image 0, target = image 2, given readout noise."""
    response = response_to_images(log_params, static, jnp.asarray(golden["images"]), params)
    x = readout_features(response, readout_indices(9, 5), params.readout.readout_contributions)
    x_ref = add_readout_noise(x[0], jnp.asarray(golden["noise_ref"]))
    x_target = add_readout_noise(x[2], jnp.asarray(golden["noise_target"]))
    w, b = jnp.asarray(golden["w_sig"]), jnp.asarray(golden["b_sig"])
    p = sigmoid_output(w, b, x_ref, x_target, params.readout.sigmoid_eps)
    stats = {k: v[0] for k, v in response.rate_stats(params.ssn.sup_I_stats_drop_last).items()}
    dxs = jnp.stack([response.dx_mid[0], response.dx_mid[2], response.dx_sup[0], response.dx_sup[2]])
    terms = trial_losses(p, golden["label"], stats, dxs, w, b, params.loss, default_loss_constants(params.loss))
    return terms["total"], (response, terms, p)


@pytest.fixture(scope="module", params=["reference", "corrected"])
def params(request):
    """The settings the golden cases were computed with, under both presets of the seed's model: the superficial
    I statistics over all I cells (their README); kappa_f = 0 there, so both kappa_f forms give the same input."""
    return build_parameters({"SSNPars": {"sup_I_stats_drop_last": False}}, preset=request.param)


@pytest.fixture(scope="module")
def golden_static(golden, params):
    return build_static(golden["orimap"], float(golden["gE"]), float(golden["gI"]), params)


def test_weights(golden, golden_static, params):
    layers = build_layers(golden_log_params(golden), golden_static, params)
    np.testing.assert_allclose(layers.mid.W, golden["W_mid"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(layers.sup.W, golden["W_sup"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["unrolled", "implicit", "auto"])
def test_responses_losses_and_gradients(golden, golden_static, params, mode):
    params = with_gradient_mode(params, mode)
    log_params = golden_log_params(golden)
    value_and_grad = jax.jit(jax.value_and_grad(golden_trial_loss, has_aux=True), static_argnums=3)
    (total, (response, terms, p)), grads = value_and_grad(log_params, golden, golden_static, params)
    stats = response.rate_stats(params.ssn.sup_I_stats_drop_last)
    for i in range(3):
        np.testing.assert_allclose(np.ravel(response.u[i]), golden[f"u_{i}"], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(np.ravel(response.r_mid[i]), golden[f"r_mid_{i}"], **RATE)
        np.testing.assert_allclose(response.r_sup[i], golden[f"r_sup_{i}"], **RATE)
        assert float(response.dx_mid[i]) == float(golden[f"dx_mid_{i}"])
        assert float(response.dx_sup[i]) == float(golden[f"dx_sup_{i}"])
        for stat in ("maxE_mid", "maxI_mid", "meanE_mid", "meanI_mid", "maxE_sup", "maxI_sup", "meanE_sup",
                     "meanI_sup"):  # fmt: skip
            np.testing.assert_allclose(stats[stat][i], golden[f"{stat}_{i}"], **RATE)
    for name in ("bce", "dx", "rmax", "rmean", "w", "b", "total"):
        np.testing.assert_allclose(terms[name], golden[f"loss_{name}"], rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(p, golden["loss_p"], rtol=1e-4)
    for key in PARAMETER_KEYS:
        scale = np.max(np.abs([golden[f"grad_{k}"] for k in PARAMETER_KEYS if golden[f"grad_{k}"].ndim == 0]))
        np.testing.assert_allclose(grads[key], golden[f"grad_{key}"], rtol=1e-3, atol=1e-3 * scale,
                                   err_msg=f"gradient of {key} ({mode})")  # fmt: skip
