"""Stage-2 training configurations (spec §16) as immutable values.

A configuration never edits ``parameters.py``: :meth:`Configuration.overrides` gives the
``{"ClassName": {"field": value}}`` changes that ``main.py`` appends to the configuration's own copy of
the parameters file. Per the binding decisions a configuration's shuffle flag changes only the training-task
flag (``TrainingPars.shuffle_labels``), and pretraining is switched off in every configuration's copy.

``config(groups)`` lists the configurations of one or more groups (``special``, ``readout``, ``excluded``,
``only``); :func:`configuration` looks one up by name; :func:`resolve` accepts a mix of names and groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from parameters import ALL_TRAINABLE, ReadoutPars, SSNPars, TrainedSSNPars, TrainingPars


def _default(cls: type, name: str) -> Any:
    """The declared default of a dataclass field (so configurations follow the repository's defaults)."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


@dataclass(frozen=True)
class Configuration:
    """One stage-2 configuration: which SSN quantities are trained and how the task and readout are set."""

    name: str
    trained: tuple[str, ...] = ALL_TRAINABLE
    readout_contributions: tuple[float, float] = _default(ReadoutPars, "readout_contributions")
    general_task: bool = _default(TrainingPars, "general_task")
    p_local_s: tuple[float, float] = _default(SSNPars, "p_local_s")
    shuffle_labels: bool = _default(TrainingPars, "shuffle_labels")
    opt_readout_before_training: bool = _default(TrainedSSNPars, "opt_readout_before_training")

    def __post_init__(self) -> None:
        unknown = [name for name in self.trained if name not in ALL_TRAINABLE]
        if unknown or not self.trained:
            raise ValueError(f"{self.name}: trained must be a non-empty subset of {list(ALL_TRAINABLE)}, "
                             f"got unknown names {unknown}")  # fmt: skip

    def overrides(self) -> dict[str, dict[str, Any]]:
        """The parameter changes of this configuration, as ``{"ClassName": {"field": value}}``."""
        return {
            "TrainedSSNPars": {
                "trained": tuple(self.trained),
                "opt_readout_before_training": self.opt_readout_before_training,
            },
            "ReadoutPars": {"readout_contributions": tuple(self.readout_contributions)},
            "TrainingPars": {"general_task": self.general_task, "shuffle_labels": self.shuffle_labels},
            "SSNPars": {"p_local_s": tuple(self.p_local_s)},
            "PretrainingPars": {"is_on": False},
        }


def unsupported_reason(conf: Configuration, absent: Iterable[str]) -> str | None:
    """Why ``conf`` means nothing for a model that lacks the trainables ``absent`` (None if it does mean something).

    The figure era's model has no kappa_Jmid and no kappa_f (SSNPars.kappa_mid_f False). A configuration that
    lists them trains the rest; but one that trains only them, or that differs from conf_baseline only by not
    training them, would silently repeat conf_baseline or train nothing, so it is refused.
    """
    absent = set(absent)
    lacking = sorted(absent & set(conf.trained))
    left_out = set(ALL_TRAINABLE) - set(conf.trained)
    if lacking and not set(conf.trained) - absent:
        return f"{conf.name} trains only {', '.join(lacking)}, which this model does not have"
    if left_out and left_out <= absent:
        return (f"{conf.name} differs from conf_baseline only by not training {', '.join(sorted(left_out))}, "
                "which this model does not have")
    return None


def _all_but(*names: str) -> tuple[str, ...]:
    """ALL_TRAINABLE without ``names`` (order kept)."""
    missing = set(names) - set(ALL_TRAINABLE)
    if missing:
        raise ValueError(f"unknown trainable names {sorted(missing)}")
    return tuple(name for name in ALL_TRAINABLE if name not in names)


def _only(*names: str) -> tuple[str, ...]:
    """``names`` in ALL_TRAINABLE order."""
    excluded = _all_but(*names)
    return tuple(name for name in ALL_TRAINABLE if name not in excluded)


CMS = ("cE_m", "cI_m", "cE_s", "cI_s")
JI = ("J_EI_m", "J_II_m", "J_EI_s", "J_II_s")
JE = ("J_EE_m", "J_IE_m", "J_EE_s", "J_IE_s")
JM = ("J_EE_m", "J_EI_m", "J_IE_m", "J_II_m")
JS = ("J_EE_s", "J_EI_s", "J_IE_s", "J_II_s")
F = ("f_E", "f_I")
NO_HORIZONTAL = (1.0, 1.0)

# Parameter subsets of the "excluded" and "only" groups, in the order of the §16 table.
_SUBSETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kappa_Jsup", ("kappa_Jsup",)), ("kappa_Jmid", ("kappa_Jmid",)), ("kappa_f", ("kappa_f",)),
    ("cms", CMS), ("JI", JI), ("JE", JE), ("Jm", JM), ("Js", JS), ("f", F),
)  # fmt: skip

GROUPS: Mapping[str, tuple[Configuration, ...]] = MappingProxyType({
    "special": (
        Configuration("conf_baseline"),
        Configuration("conf_gentask", general_task=True),
        Configuration("conf_no_horiconn", p_local_s=NO_HORIZONTAL),
        Configuration("conf_shuffled_labels", shuffle_labels=True),
    ),
    "readout": (
        Configuration("conf_suponly_readout", readout_contributions=(1.0, 0.0), opt_readout_before_training=True),
        Configuration("conf_mixed_readout", readout_contributions=(0.5, 0.5), opt_readout_before_training=True),
        Configuration("conf_midonly_readout", readout_contributions=(0.0, 1.0), opt_readout_before_training=True),
        Configuration("conf_suponly_no_hori_readout", readout_contributions=(1.0, 0.0), p_local_s=NO_HORIZONTAL,
                      opt_readout_before_training=True),
    ),
    "excluded": tuple(Configuration(f"conf_{label}_excluded", trained=_all_but(*names)) for label, names in _SUBSETS),
    "only": tuple(Configuration(f"conf_{label}_only", trained=_only(*names)) for label, names in _SUBSETS),
})  # fmt: skip
"""Configuration groups in the order of the §16 table (``special`` starts with ``conf_baseline``)."""

BY_NAME: Mapping[str, Configuration] = MappingProxyType({c.name: c for group in GROUPS.values() for c in group})


def _group_names(groups: str | Iterable[str]) -> list[str]:
    return [groups] if isinstance(groups, str) else list(groups)


def config(groups: str | Iterable[str]) -> list[Configuration]:
    """The configurations of one group or several groups, in table order; ValueError for an unknown group."""
    result: list[Configuration] = []
    for group in _group_names(groups):
        if group not in GROUPS:
            raise ValueError(f"unknown configuration group {group!r}; valid groups: {', '.join(GROUPS)}")
        result.extend(c for c in GROUPS[group] if c not in result)
    return result


def configuration(name: str) -> Configuration:
    """The configuration called ``name``; ValueError listing the valid names otherwise."""
    if name not in BY_NAME:
        raise ValueError(f"unknown configuration {name!r}; valid names: {', '.join(BY_NAME)}; "
                         f"valid groups: {', '.join(GROUPS)}")  # fmt: skip
    return BY_NAME[name]


def resolve(names_or_groups: Iterable[str]) -> list[Configuration]:
    """Configurations for a mix of configuration names and group names, without duplicates, in given order."""
    result: list[Configuration] = []
    for item in names_or_groups:
        found = config(item) if item in GROUPS else [configuration(item)]
        result.extend(c for c in found if c not in result)
    return result
