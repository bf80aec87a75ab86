"""Configurations of spec §16: groups, names, trained lists, lookup, and their parameter-file copies."""

from __future__ import annotations

import dataclasses

import pytest

import configurations
from configurations import Configuration, config, configuration, resolve
from parameters import Parameters, load_parameters_file
from store.parameter_files import write_parameters_copy

ALL = (
    "cE_m", "cI_m", "cE_s", "cI_s", "f_E", "f_I", "J_EE_m", "J_EI_m", "J_IE_m", "J_II_m",
    "J_EE_s", "J_EI_s", "J_IE_s", "J_II_s", "kappa_Jsup", "kappa_Jmid", "kappa_f",
)  # fmt: skip
CMS = {"cE_m", "cI_m", "cE_s", "cI_s"}
JI = {"J_EI_m", "J_II_m", "J_EI_s", "J_II_s"}
JE = {"J_EE_m", "J_IE_m", "J_EE_s", "J_IE_s"}
JM = {"J_EE_m", "J_EI_m", "J_IE_m", "J_II_m"}
JS = {"J_EE_s", "J_EI_s", "J_IE_s", "J_II_s"}
F = {"f_E", "f_I"}
SUBSETS = {"kappa_Jsup": {"kappa_Jsup"}, "kappa_Jmid": {"kappa_Jmid"}, "kappa_f": {"kappa_f"}, "cms": CMS, "JI": JI,
           "JE": JE, "Jm": JM, "Js": JS, "f": F}  # fmt: skip

# The §16 table, written out: name -> (trained set, readout contributions, general task, p_local_s, shuffle, opt)
D = ((1.0, 0.0), False, (0.4, 0.7), False, False)
TABLE = {
    "conf_baseline": (set(ALL), *D),
    "conf_gentask": (set(ALL), (1.0, 0.0), True, (0.4, 0.7), False, False),
    "conf_no_horiconn": (set(ALL), (1.0, 0.0), False, (1.0, 1.0), False, False),
    "conf_shuffled_labels": (set(ALL), (1.0, 0.0), False, (0.4, 0.7), True, False),
    "conf_suponly_readout": (set(ALL), (1.0, 0.0), False, (0.4, 0.7), False, True),
    "conf_mixed_readout": (set(ALL), (0.5, 0.5), False, (0.4, 0.7), False, True),
    "conf_midonly_readout": (set(ALL), (0.0, 1.0), False, (0.4, 0.7), False, True),
    "conf_suponly_no_hori_readout": (set(ALL), (1.0, 0.0), False, (1.0, 1.0), False, True),
    **{f"conf_{label}_excluded": (set(ALL) - subset, *D) for label, subset in SUBSETS.items()},
    **{f"conf_{label}_only": (subset, *D) for label, subset in SUBSETS.items()},
}
GROUP_NAMES = {
    "special": ["conf_baseline", "conf_gentask", "conf_no_horiconn", "conf_shuffled_labels"],
    "readout": ["conf_suponly_readout", "conf_mixed_readout", "conf_midonly_readout", "conf_suponly_no_hori_readout"],
    "excluded": [f"conf_{label}_excluded" for label in SUBSETS],
    "only": [f"conf_{label}_only" for label in SUBSETS],
}


def test_groups_have_the_names_and_counts_of_the_table():
    assert {group: [c.name for c in config(group)] for group in GROUP_NAMES} == GROUP_NAMES
    assert [len(config(group)) for group in GROUP_NAMES] == [4, 4, 9, 9]
    assert config("special")[0].name == "conf_baseline"
    every = config(list(GROUP_NAMES))
    assert len(every) == 26 == len({c.name for c in every})


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_configuration_matches_the_table(name):
    trained, contributions, general, p_local, shuffle, opt = TABLE[name]
    conf = configuration(name)
    assert set(conf.trained) == trained and len(conf.trained) == len(trained)
    assert list(conf.trained) == [n for n in ALL if n in trained]  # canonical order
    assert conf.readout_contributions == contributions
    assert conf.general_task is general
    assert conf.p_local_s == p_local
    assert conf.shuffle_labels is shuffle
    assert conf.opt_readout_before_training is opt


def test_configurations_are_immutable_values():
    conf = configuration("conf_baseline")
    with pytest.raises(dataclasses.FrozenInstanceError):
        conf.general_task = True  # type: ignore[misc]
    assert isinstance(conf.trained, tuple)
    assert configuration("conf_baseline") == Configuration("conf_baseline")
    overrides = conf.overrides()
    overrides["TrainingPars"]["general_task"] = True  # a copy: the configuration is unchanged
    assert conf.overrides()["TrainingPars"]["general_task"] is False


def test_unknown_names_and_groups_are_rejected_with_the_valid_ones():
    with pytest.raises(ValueError, match="conf_nope.*conf_baseline.*conf_f_only.*special"):
        configuration("conf_nope")
    with pytest.raises(ValueError, match="bogus.*special, readout, excluded, only"):
        config("bogus")
    with pytest.raises(ValueError, match="conf_nope"):
        resolve(["conf_baseline", "conf_nope"])
    with pytest.raises(ValueError, match="trained"):
        Configuration("conf_bad", trained=("J_EE_m", "not_a_parameter"))
    with pytest.raises(ValueError, match="trained"):
        Configuration("conf_empty", trained=())


def test_resolve_mixes_names_and_groups_without_duplicates():
    names = [c.name for c in resolve(["conf_midonly_readout", "readout", "conf_baseline", "special"])]
    assert names == ["conf_midonly_readout", "conf_suponly_readout", "conf_mixed_readout",
                     "conf_suponly_no_hori_readout", "conf_baseline", "conf_gentask", "conf_no_horiconn",
                     "conf_shuffled_labels"]  # fmt: skip
    assert config("special") == config(["special", "special"])
    assert configurations.BY_NAME["conf_JI_only"] is configuration("conf_JI_only")


def changed_fields(conf: Configuration) -> dict[tuple[str, str], object]:
    """What the configuration must change, written out from §16 and the binding decisions."""
    return {
        ("trained_ssn", "trained"): tuple(conf.trained),
        ("trained_ssn", "opt_readout_before_training"): conf.opt_readout_before_training,
        ("readout", "readout_contributions"): conf.readout_contributions,
        ("training", "general_task"): conf.general_task,
        ("training", "shuffle_labels"): conf.shuffle_labels,
        ("ssn", "p_local_s"): conf.p_local_s,
        ("pretraining", "is_on"): False,
    }


@pytest.mark.parametrize("name", sorted(TABLE))
def test_overrides_give_a_parameters_copy_with_exactly_the_configuration_changes(tmp_path, name):
    conf = configuration(name)
    path = tmp_path / f"parameters_{name}.py"
    write_parameters_copy(path, conf.overrides())
    loaded, defaults = load_parameters_file(path), Parameters()
    expected = changed_fields(conf)
    for group in dataclasses.fields(Parameters):
        for f in dataclasses.fields(getattr(defaults, group.name)):
            value = getattr(getattr(loaded, group.name), f.name)
            want = expected.get((group.name, f.name), getattr(getattr(defaults, group.name), f.name))
            assert value == want, f"{name}: {group.name}.{f.name} = {value!r}, expected {want!r}"
    # only the training-task flag follows the configuration (the pretraining flag keeps the preset's value)
    assert loaded.pretraining.shuffle_labels is defaults.pretraining.shuffle_labels


@pytest.mark.parametrize(("preset", "pretraining_flag"), [("reference", True), ("corrected", False)])
def test_shuffled_labels_changes_only_the_training_flag(tmp_path, preset, pretraining_flag):
    path = tmp_path / "parameters_conf_shuffled_labels.py"
    write_parameters_copy(path, configuration("conf_shuffled_labels").overrides(), preset=preset)
    loaded = load_parameters_file(path)
    assert loaded.training.shuffle_labels is True
    assert loaded.pretraining.shuffle_labels is pretraining_flag
