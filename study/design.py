"""The design of a study: what determines its results, kept in environment.json so that --resume repeats it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parameters import DEFAULT_PRESET, check_preset
from store.errors import ResultsFolderError
from store.parameter_files import check_overrides_shape
from store.records import read_environment_record


@dataclass(frozen=True)
class StudyDesign:
    """What determines the results of a study (kept in environment.json, so that --resume repeats it)."""

    runs: int
    configs: tuple[str, ...]
    base_seed: int
    run_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    skip_pretraining: str | None = None
    quick: bool = False
    preset: str = DEFAULT_PRESET

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {**dataclasses.asdict(self), "configs": list(self.configs)}

    @classmethod
    def from_json(cls, data: Any, origin: Path) -> StudyDesign:
        """The study recorded in a results folder (ResultsFolderError if the record is unusable)."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ResultsFolderError(f"{origin}: environment.json has no valid 'study' record; start a new study")
        try:
            check_overrides_shape(data["run_overrides"], str(origin))
            study = cls(int(data["runs"]), tuple(str(c) for c in data["configs"]), int(data["base_seed"]),
                        data["run_overrides"], data["skip_pretraining"], bool(data["quick"]),
                        check_preset(str(data["preset"])))  # fmt: skip
            if study.runs < 1 or not study.configs:
                raise ValueError(f"runs {study.runs}, configurations {list(study.configs)}")
            return study
        except (TypeError, ValueError) as error:
            raise ResultsFolderError(f"{origin}: environment.json has an invalid 'study' record: {error}") from error


def read_study_design(folder: str | os.PathLike) -> StudyDesign:
    """The study recorded in a results folder's environment.json (ResultsFolderError if unusable)."""
    folder = Path(folder)
    return StudyDesign.from_json(read_environment_record(folder).get("study"), folder)
