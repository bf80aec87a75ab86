"""The behaviours the presets switch, each against a hand-worked case in both forms (spec §18, docs/model.md)."""

from __future__ import annotations

import html
import math

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from analysis.report import preset_label, read_study_settings, write_report_html
from parameters import SSNPars, build_parameters
from store.assembly import assemble_pretraining, runs_within_budget
from store.files import write_marker
from store.layout import JOB_DONE, ORIMAP, PRETRAINING_RESULTS
from store.parameter_files import write_parameters_copy
from store.tables import read_results_csv
from tests.conftest import golden_log_params, golden_path
from training import main_pretraining
from training.main_training import loads_regression_readout
from training.model import Response, build_layers, build_static, feedforward_kappa_exponent
from training.readout import Readout
from training.readout_regression import rescale_readout
from training.training_functions import accs_125_trials
from training.util_gabor import ring_distance

REFERENCE, CORRECTED = build_parameters(preset="reference"), build_parameters(preset="corrected")


# ----------------------------------------------------------------------------------- kappa_f form (§7.2)
def test_reference_kappa_f_I_term_is_linear_in_the_distance():
    kappa_f = jnp.asarray([math.atanh(0.5), math.atanh(-0.25)])  # tanh: 0.5 (E), -0.25 (I)
    d = jnp.asarray([0.0, 10.0, 90.0])
    # E in both forms: 0.5·d²/(2·90²) = 0, 100/32400, 0.25
    e_term = [0.0, 100 / 32400, 0.25]
    reference = feedforward_kappa_exponent(kappa_f, d, SSNPars(kappa_f_I_form="linear"))
    np.testing.assert_allclose(reference[0], e_term, rtol=1e-6)
    np.testing.assert_allclose(reference[1], [0.0, -2.5, -22.5], rtol=1e-6)  # -0.25·d
    corrected = feedforward_kappa_exponent(kappa_f, d, SSNPars(kappa_f_I_form="squared"))
    np.testing.assert_allclose(corrected[0], e_term, rtol=1e-6)
    np.testing.assert_allclose(corrected[1], [0.0, -0.25 * 100 / 16200, -0.125], rtol=1e-6)  # -0.25·d²/(2·90²)


def test_layers_use_the_presets_kappa_f_form():
    with np.load(golden_path(1)) as data:
        golden = {key: data[key] for key in data.files}
    log_params = {**golden_log_params(golden), "kappa_f": jnp.asarray([0.0, math.atanh(0.1)], jnp.float32)}
    static = build_static(golden["orimap"], float(golden["gE"]), float(golden["gI"]), REFERENCE)
    d = ring_distance(np.asarray(golden["orimap"], np.float64) - 55.0)
    f_I = math.exp(float(golden["log_f_I"]))
    reference = build_layers(log_params, static, REFERENCE).ff_gain
    corrected = build_layers(log_params, static, CORRECTED).ff_gain
    np.testing.assert_allclose(reference[1], f_I * np.exp(0.1 * d), rtol=1e-5)
    np.testing.assert_allclose(corrected[1], f_I * np.exp(0.1 * d**2 / (2 * 90**2)), rtol=1e-5)
    np.testing.assert_allclose(reference[0], corrected[0], rtol=1e-6)  # E is the same in both


# ----------------------------------------------------------------------------------- I statistics (§7.3)
@pytest.mark.parametrize("num_grid", [81, 25])
def test_reference_superficial_I_statistics_leave_out_the_last_I_cell(num_grid):
    r_sup = jnp.arange(2 * num_grid, dtype=jnp.float32)  # E: 0..N-1, I: N..2N-1
    response = Response(r_mid=jnp.ones((4, 2, num_grid)), r_sup=r_sup, dx_mid=0.0, dx_sup=0.0, settled=True,
                        u=jnp.zeros((4, 2, num_grid)))  # fmt: skip
    reference = response.rate_stats(drop_last_sup_I=REFERENCE.ssn.sup_I_stats_drop_last)
    corrected = response.rate_stats(drop_last_sup_I=CORRECTED.ssn.sup_I_stats_drop_last)
    n = num_grid
    assert float(reference["maxI_sup"]) == 2 * n - 2  # for 81: r[81:161] -> 160
    assert float(reference["meanI_sup"]) == pytest.approx((n + 2 * n - 2) / 2)  # 120.5
    assert float(corrected["maxI_sup"]) == 2 * n - 1
    assert float(corrected["meanI_sup"]) == pytest.approx((n + 2 * n - 1) / 2)  # 121
    for key in ("maxE_sup", "meanE_sup", "maxE_mid", "meanI_mid"):
        assert float(reference[key]) == float(corrected[key])


# ------------------------------------------------------------------------------- readout bias (§14.3)
def test_reference_keeps_the_regression_bias_unscaled():
    readout = Readout(jnp.asarray([1.0, -1.0, 1.0, -1.0]), jnp.float32(2.0))
    # std(w) = 1, floor(sqrt(4)) = 2: factor 0.25 / (1·2) = 0.125
    for params, bias in ((REFERENCE, 2.0), (CORRECTED, 0.25)):
        scaled = rescale_readout(readout, params.randomize.readout_std, params.randomize.rescale_readout_bias)
        np.testing.assert_allclose(scaled.w, [0.125, -0.125, 0.125, -0.125])
        assert float(scaled.b) == pytest.approx(bias)


# --------------------------------------------------------------------------------- accs_125 probe (§13.6)
def test_accs_125_trials_of_each_preset():
    assert accs_125_trials(3.5, REFERENCE) == (55.0, 125.0)  # reference 55°, offset 125°
    assert accs_125_trials(3.5, CORRECTED) == (125.0, 3.5)  # reference 125°, current offset


# ------------------------------------------------------------------------------ opt-readout flag (§16)
@pytest.mark.parametrize(
    ("contributions", "reference", "corrected"),
    [((1.0, 0.0), False, True), ((0.0, 1.0), False, True), ((0.5, 0.5), True, True)],
)  # fmt: skip
def test_regression_readout_is_loaded_per_preset(contributions, reference, corrected):
    overrides = {"TrainedSSNPars": {"opt_readout_before_training": True},
                 "ReadoutPars": {"readout_contributions": contributions}}  # fmt: skip
    assert loads_regression_readout(build_parameters(overrides, "reference")) is reference
    assert loads_regression_readout(build_parameters(overrides, "corrected")) is corrected
    plain = {"ReadoutPars": {"readout_contributions": contributions}}
    assert not loads_regression_readout(build_parameters(plain, "corrected"))


# ------------------------------------------------------------------------------ failure budget (§15)
def test_study_wide_failure_budget_keeps_the_leading_runs_within_it():
    # cumulative failures 3, 3, 13, 20, 21, 21: a budget of 20 keeps runs 0-3
    failures = [3, 0, 10, 7, 1, 0]
    assert runs_within_budget(failures, 20) == 4
    assert runs_within_budget(failures, 21) == 6
    assert runs_within_budget(failures, 2) == 0
    assert runs_within_budget([], 20) == 0


def fake_pretraining(root, failures):
    """Completed pretraining jobs with the given failed attempts each (all succeed, threshold 10)."""
    for run_index, count in enumerate(failures):
        folder = main_pretraining.run_folder(root, run_index)
        folder.mkdir(parents=True)
        table = pd.DataFrame({"run_index": [run_index] * 2, "stage": [0, 1], "psychometric_offset": [12.0, 10.0]})
        for name in main_pretraining.PIECES:
            table.to_csv(folder / name, index=False)
        write_marker(folder / JOB_DONE, {"run_index": run_index, "success": True,
                                                         "failures": [f"NaN {i}" for i in range(count)]})  # fmt: skip


@pytest.mark.parametrize(("budget", "retained"), [("study", 4), ("per_run", 6)])
def test_assembly_applies_the_failure_budget(tmp_path, budget, retained):
    fake_pretraining(tmp_path, [3, 0, 10, 7, 1, 0])
    params = build_parameters({"TrainingPars": {"failure_budget": budget, "max_failed_runs": 20}})
    assert assemble_pretraining(tmp_path, params, 6) == retained
    for name in (ORIMAP, PRETRAINING_RESULTS):
        table = read_results_csv(tmp_path / name)
        assert sorted(set(table["run_index"])) == list(range(retained))
        assert sorted(set(table["original_run_index"])) == list(range(retained))  # the leading runs


# ---------------------------------------------------------------------------------------------- report
@pytest.mark.parametrize("preset", ["reference", "corrected", "figure", "final"])
def test_report_names_the_studys_preset(tmp_path, preset):
    write_parameters_copy(tmp_path / "parameters.py", {}, preset=preset)
    settings = read_study_settings(tmp_path, [], 0)
    text = write_report_html(tmp_path, settings, []).read_text()
    assert settings.preset == preset and f"<td>Preset</td><td>{html.escape(preset_label(preset))}</td>" in text
    assert f"<td>Preset</td><td>{preset} (" in text  # the name first, then which version of the model it is
