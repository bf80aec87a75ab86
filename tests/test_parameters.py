"""Parameter validation: impossible values raise errors that name the parameter."""

from __future__ import annotations

from pathlib import Path

import pytest

from parameters import (
    ConvPars,
    GridPars,
    ParameterError,
    Parameters,
    PretrainingPars,
    ReadoutPars,
    SSNPars,
    TrainedSSNPars,
    build_parameters,
    load_parameters_file,
)


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
    assert params.pretraining.shuffle_labels is False
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
