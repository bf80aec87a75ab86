"""Parameter validation: impossible values raise errors that name the parameter."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from parameters import (
    DEFAULT_PRESET,
    PRESET,
    PRESETS,
    ConvPars,
    GridPars,
    ParameterError,
    Parameters,
    PretrainingPars,
    RandomizePars,
    ReadoutPars,
    SSNPars,
    TrainedSSNPars,
    TrainingPars,
    build_parameters,
    load_parameters_file,
)

GROUP_OF_CLASS = {type(getattr(Parameters(), f.name)).__name__: f.name for f in dataclasses.fields(Parameters)}

# The switched behaviours and their values as docs/model.md ("Presets") documents them: (group, field) ->
# (reference, corrected).
PRESET_ORDER = ("reference", "corrected", "figure", "final")
SIGMA_FIGURE = 180 / 2**0.5
# Every switch of a preset with its value under (reference, corrected, figure, final): docs/model.md and LINEAGE.md.
DOCUMENTED_PRESETS = {
    ("ssn", "kappa_f_I_form"): ("linear", "squared", "linear", "linear"),
    ("ssn", "sup_I_stats_drop_last"): (True, False, True, True),
    ("ssn", "sigma_oris"): (90.0, 90.0, SIGMA_FIGURE, 90.0),
    ("ssn", "kappa_range"): (90.0, 90.0, 45.0, 90.0),
    ("ssn", "couple_c_ms"): (True, True, False, True),
    ("ssn", "sup_I_kernel"): ("own", "own", "reuse_E", "own"),
    ("ssn", "kappa_mid_f"): (True, True, False, True),
    ("loss", "lambda_task_stage0"): (1.0, 1.0, 1.0, 0.5),
    ("loss", "lambda_r_mean_stage1"): (0.01, 0.01, 0.01, 0.25),
    ("loss", "stage1_rate_targets"): ("fixed", "fixed", "fixed", "last_stage0"),
    ("pretraining", "shuffle_labels"): (True, False, False, True),
    ("pretraining", "offset_threshold"): ((5.0, 25.0), (5.0, 25.0), (3.0, 10.0), (5.0, 25.0)),
    ("pretraining", "min_acc_check_ind"): (50, 50, 100, 50),
    ("pretraining", "stage0_plateau"): (False, False, True, False),
    ("pretraining", "flip_rule"): ("reference", "reference", "figure", "reference"),
    ("pretraining", "stage1_placement"): ("pretraining", "pretraining", "training", "pretraining"),
    ("pretraining", "stage1_acc_threshold"): (0.65, 0.65, 0.51, 0.65),
    ("pretraining", "stage1_max_threshold"): (10.0, 10.0, 10.0, 20.0),
    ("pretraining", "exclude_runs"): (True, True, False, True),
    ("pretraining", "run_threshold_range"): ((5.0, 25.0), (5.0, 25.0), (5.0, 25.0), (0.0, 25.0)),
    ("training", "staircase_rule"): ("legacy", "3down1up", "legacy", "legacy"),
    ("training", "plateau_rule"): ("legacy", "equal", "legacy", "legacy"),
    ("training", "failure_budget"): ("study", "per_run", "study", "study"),
    ("training", "accs_125_probe"): ("offset_125", "reference_125", "offset_125", "reference_125"),
    ("training", "test_offsets"): ((1.0, 3.0, 7.0, 12.0, 20.0),) * 2 + ((1.0, 3.0, 7.0, 12.0),)
                                  + ((1.0, 3.0, 7.0, 12.0, 20.0),),
    ("training", "SGD_steps"): (1500, 1500, 2000, 1500),
    ("training", "plateau_alpha"): (0.05, 0.05, 0.1, 0.05),
    ("training", "plateau_curve_fit"): (False, False, False, False),
    ("training", "failure_reseed"): (True, True, False, True),
    ("trained_ssn", "honour_opt_readout"): (False, True, True, False),
    ("randomize", "rescale_readout_bias"): (False, True, False, False),
    ("randomize", "probe_trials"): (10, 10, 3, 10),
    ("randomize", "dx_max_fine"): (100.0, 100.0, 50.0, 100.0),
    ("randomize", "dx_max_general"): (200.0, 200.0, 1e30, 200.0),
    ("randomize", "draw_c_s"): (False, False, True, False),
    ("randomize", "J_EE"): ((4.0, 5.5), (4.0, 5.5), (4.0, 5.5), (4.0, 4.8)),
    ("randomize", "J_EI"): ((0.7, 2.0), (0.7, 2.0), (0.7, 2.0), (1.2, 2.0)),
    ("randomize", "J_IE"): ((4.0, 5.5), (4.0, 5.5), (4.0, 5.5), (4.6, 5.4)),
    ("randomize", "J_II"): ((0.7, 1.2), (0.7, 1.2), (0.7, 1.2), (0.8, 1.6)),
}  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (SSNPars, "tauE", 0.0),
        (SSNPars, "tauI", -1.0),
        (SSNPars, "phases", 3),
        (ConvPars, "dt", float("nan")),
        (ConvPars, "Tmax", 0.0),
        (ConvPars, "gradient_mode", "adjoint"),
        (PretrainingPars, "ori_dist_int", (20.0, 5.0)),
        (PretrainingPars, "ori_interval", (165.0, 15.0)),
        (GridPars, "hyper_col", float("nan")),
        (TrainedSSNPars, "trained", ("J_EE_m", "J_XX_m")),
        (SSNPars, "kappa_f_I_form", "cubic"),
        (SSNPars, "sup_I_stats_drop_last", "yes"),
        (PretrainingPars, "shuffle_labels", 1),
        (TrainingPars, "staircase_rule", "2down1up"),
        (TrainingPars, "plateau_rule", "short"),
        (TrainingPars, "failure_budget", "global"),
        (TrainingPars, "accs_125_probe", "ref_125"),
        (TrainedSSNPars, "honour_opt_readout", None),
        (RandomizePars, "rescale_readout_bias", "no"),
    ],
)
def test_invalid_value_names_the_parameter(cls, field, value):
    with pytest.raises(ParameterError, match=f"{cls.__name__}.{field}"):
        cls(**{field: value})


def test_readout_grid_larger_than_grid_is_rejected():
    with pytest.raises(ParameterError, match="readout_grid_size"):
        Parameters(readout=ReadoutPars(readout_grid_size=(11, 5)))


def test_defaults_are_valid_and_hashable():
    params = Parameters()
    assert hash(params) == hash(Parameters())
    assert params.conv.num_steps == 300
    assert params.grid.hyper_col == 3.2
    assert params.pretraining.shuffle_labels is True  # the reference preset is the default
    assert params.pretraining.ori_dist_int == (5.0, 20.0)


def test_overrides_apply_and_validate():
    params = build_parameters({"ReadoutPars": {"readout_contributions": [0.0, 1.0]}})
    assert params.readout.readout_contributions == (0.0, 1.0)
    with pytest.raises(ParameterError, match="unknown parameter class"):
        build_parameters({"NoSuchPars": {}})
    with pytest.raises(ParameterError, match="unknown fields"):
        build_parameters({"SSNPars": {"tau_E": 1.0}})
    with pytest.raises(ParameterError, match="SSNPars.tauE"):
        build_parameters({"SSNPars": {"tauE": -5.0}})


def test_load_parameters_file_applies_its_overrides(tmp_path):
    repo_file = Path(__file__).resolve().parents[1] / "parameters.py"
    copy = tmp_path / "parameters_copy.py"
    copy.write_text(repo_file.read_text() + '\nOVERRIDES = {"SSNPars": {"p_local_s": [1.0, 1.0]}}\n')
    params = load_parameters_file(copy)
    assert params.ssn.p_local_s == (1.0, 1.0)
    broken = tmp_path / "broken.py"
    broken.write_text(repo_file.read_text() + '\nOVERRIDES = {"SSNPars": {"tauE": 0.0}}\n')
    with pytest.raises(ParameterError, match="SSNPars.tauE"):
        load_parameters_file(broken)


@pytest.mark.parametrize("preset", PRESET_ORDER)
def test_each_preset_yields_the_documented_values(preset):
    params = build_parameters(preset=preset)
    column = PRESET_ORDER.index(preset)
    for (group, name), values in DOCUMENTED_PRESETS.items():
        assert getattr(getattr(params, group), name) == values[column], f"{group}.{name} under {preset}"


def test_presets_switch_exactly_the_documented_fields():
    switched = {(group, name) for preset in PRESETS.values() for class_name, fields in preset.items()
                for name in fields for group in [GROUP_OF_CLASS[class_name]]}  # fmt: skip
    assert switched == set(DOCUMENTED_PRESETS)
    assert build_parameters(preset="reference") == Parameters()  # the reference is the default
    assert PRESET == DEFAULT_PRESET == "reference"
    assert tuple(PRESETS) == PRESET_ORDER


@pytest.mark.parametrize(("group", "field", "value"), [
    ("SSNPars", "sup_I_kernel", "gaussian"), ("SSNPars", "kappa_mid_f", "no"),
    ("PretrainingPars", "flip_rule", "old"), ("PretrainingPars", "stage1_placement", "stage2"),
    ("PretrainingPars", "exclude_runs", 0), ("PretrainingPars", "stage0_plateau_alpha", 1.5),
    ("TrainingPars", "plateau_alpha", -0.1), ("TrainingPars", "failure_reseed", "yes"),
    ("LossPars", "stage1_rate_targets", "stage0"), ("RandomizePars", "draw_c_s", 1),
    ("RandomizePars", "dx_max_general", float("inf")),
])  # fmt: skip
def test_every_lineage_switch_refuses_a_bad_value_naming_itself(group, field, value):
    with pytest.raises(ParameterError, match=f"{group}.{field}"):
        build_parameters({group: {field: value}}, preset="figure")


def test_overrides_apply_on_top_of_the_preset():
    params = build_parameters({"TrainingPars": {"staircase_rule": "legacy", "num_runs": 3}}, preset="corrected")
    assert params.training.staircase_rule == "legacy" and params.training.num_runs == 3
    assert params.training.plateau_rule == "equal"  # the rest of the preset stays


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ParameterError, match="unknown preset 'faithful'; valid: reference, corrected, figure, final"):
        build_parameters(preset="faithful")


def test_parameters_file_records_and_applies_its_preset(tmp_path):
    repo_file = Path(__file__).resolve().parents[1] / "parameters.py"
    copy = tmp_path / "parameters_copy.py"
    copy.write_text(repo_file.read_text() + '\nOVERRIDES = {"TrainingPars": {"num_runs": 3}}\nPRESET = "corrected"\n')
    params = load_parameters_file(copy)
    assert params.training.staircase_rule == "3down1up" and params.training.num_runs == 3
    replaced = load_parameters_file(copy, preset="reference")  # a stage command's --preset
    assert replaced.training.staircase_rule == "legacy" and replaced.training.num_runs == 3
    bad = tmp_path / "bad.py"
    bad.write_text(repo_file.read_text() + '\nPRESET = "faithful"\n')
    with pytest.raises(ParameterError, match="unknown preset 'faithful'"):
        load_parameters_file(bad)


def copy_without_failure_reseed(repo_text: str) -> str:
    """parameters.py as it was before TrainingPars.failure_reseed existed (a study kept from that version)."""
    edits = [
        (r'\n    failure_reseed: bool = True\n    """[^"]*"""', ""),
        (r'"failure_reseed", ', ""),
        (r',\s*"failure_reseed": (True|False)', ""),
    ]
    for pattern, replacement in edits:
        repo_text, count = re.subn(pattern, replacement, repo_text)
        assert count, pattern
    return repo_text


def test_a_copy_from_an_earlier_version_loads_as_the_current_classes(tmp_path):
    repo_text = (Path(__file__).resolve().parents[1] / "parameters.py").read_text()
    old = tmp_path / "parameters.py"
    old.write_text(copy_without_failure_reseed(repo_text) + '\nOVERRIDES = {"TrainingPars": {"num_runs": 7}}\n')
    first, second = load_parameters_file(old), load_parameters_file(old)
    assert isinstance(first, Parameters) and type(first.training) is TrainingPars
    assert first == second and hash(first) == hash(second)  # one jit compilation per distinct value
    assert first.training.num_runs == 7 and first.training.failure_reseed is True  # the behaviour before the field
    newer = tmp_path / "newer.py"
    newer.write_text(repo_text.replace('    plateau_fit_slope: float = 1e-3\n',
                                       '    plateau_fit_slope: float = 1e-3\n    future_switch: int = 1\n'))
    with pytest.raises(ParameterError, match=r"TrainingPars: fields \['future_switch'\] are not parameters"):
        load_parameters_file(newer)
