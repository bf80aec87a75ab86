"""Logistic-regression readouts (spec §14.3, §14.4): features from simulated general-task trials, in chunks."""

from __future__ import annotations

import logging
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression

from parameters import Parameters
from training.adjoint import FORWARD
from training.model import LogParams, ModelStatic
from training.readout import Readout, add_readout_noise
from training.trials import general_task_batch, readout_cells, readout_noise, responses_to_batch

logger = logging.getLogger(__name__)

Array = jnp.ndarray


class RegressionData(NamedTuple):
    """Noisy readout differences x̃_ref - x̃_target of both layers at the readout cells, and labels."""

    sup: np.ndarray
    """Superficial E differences (n_trials, n_cells)."""
    mid: np.ndarray
    """Phase-summed middle E differences (n_trials, n_cells)."""
    labels: np.ndarray


@partial(jax.jit, static_argnames=("params", "num_trials", "num_cells", "shuffle_labels"))
def _feature_chunk(log_params: LogParams, static: ModelStatic, key: Array, params: Parameters, num_trials: int,
                   num_cells: int, shuffle_labels: bool) -> tuple[Array, Array, Array]:
    k_batch, k_images, k_noise_sup, k_noise_mid = jax.random.split(key, 4)
    batch = general_task_batch(k_batch, num_trials, params.pretraining, shuffle_labels)
    ref, target = responses_to_batch(log_params, static, batch, k_images, params, FORWARD)
    indices = readout_cells(params, num_cells)
    features = []
    for noise_key, layer in ((k_noise_sup, "sup_E"), (k_noise_mid, "mid_output")):
        noise_ref, noise_target = readout_noise(noise_key, num_trials, num_cells, params)
        x_ref = add_readout_noise(getattr(ref, layer)[:, indices], noise_ref)
        x_target = add_readout_noise(getattr(target, layer)[:, indices], noise_target)
        features.append(x_ref - x_target)
    return features[0], features[1], batch.label


def regression_data(log_params: LogParams, static: ModelStatic, key: Array, params: Parameters, num_trials: int,
                    num_cells: int, shuffle_labels: bool = False) -> RegressionData:
    """Features of num_trials general-task trials, simulated params.pretraining.regression_chunk at a time."""
    chunk = min(params.pretraining.regression_chunk, num_trials)
    parts = []
    for i, start in enumerate(range(0, num_trials, chunk)):
        size = min(chunk, num_trials - start)
        parts.append(_feature_chunk(log_params, static, jax.random.fold_in(key, i), params, size, num_cells,
                                    shuffle_labels))  # fmt: skip
    sup, mid, labels = (np.concatenate([np.asarray(p[j]) for p in parts]) for j in range(3))
    return RegressionData(sup=sup.astype(np.float64), mid=mid.astype(np.float64), labels=labels.astype(int))


def fit_logistic_readout(features: np.ndarray, labels: np.ndarray, train_fraction: float) -> tuple[Readout, float]:
    """Logistic regression on the first train_fraction of trials (no shuffling); readout and test accuracy."""
    n_train = int(round(train_fraction * len(labels)))
    if len(np.unique(labels[:n_train])) < 2:
        raise ValueError("logistic-regression training trials contain a single label")
    model = LogisticRegression(max_iter=100).fit(features[:n_train], labels[:n_train])
    test_acc = model.score(features[n_train:], labels[n_train:]) if n_train < len(labels) else float("nan")
    readout = Readout(jnp.asarray(model.coef_[0], jnp.float32), jnp.float32(model.intercept_[0]))
    return readout, float(test_acc)


def rescale_readout(readout: Readout, target_std: float, scale_bias: bool) -> Readout:
    """Scale weights to population std target_std / floor(sqrt(n)) (§14.3).

    With ``scale_bias`` the bias is scaled by the same factor, so the readout keeps the fitted decisions; without
    it (the reference) the bias keeps its fitted value.
    """
    w = np.asarray(readout.w, np.float64)
    factor = target_std / (np.std(w) * np.floor(np.sqrt(w.size)))
    b = float(readout.b) * factor if scale_bias else float(readout.b)
    return Readout(jnp.asarray(w * factor, jnp.float32), jnp.float32(b))


def mixed_features(data: RegressionData, contributions: tuple[float, float]) -> np.ndarray:
    """Regression features of a readout mix (superficial, middle), combined as the readout combines its layers
    (:func:`training.readout.readout_features`): one layer scaled by its contribution, or both, middle first."""
    c_sup, c_mid = contributions
    if c_sup and c_mid:
        return np.hstack([c_mid * data.mid, c_sup * data.sup])
    return c_sup * data.sup if c_sup else c_mid * data.mid


def fit_mix_readout(data: RegressionData, contributions: tuple[float, float], train_fraction: float) -> Readout:
    """The logistic-regression readout of a readout mix, unscaled (w and b as fitted)."""
    return fit_logistic_readout(mixed_features(data, contributions), data.labels, train_fraction)[0]
