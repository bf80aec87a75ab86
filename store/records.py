"""Reading a results folder's records: environment.json, and where the folder's pretraining is.

environment.json holds the format version of the folder, Python, package versions, JAX backend and devices,
the command line, the base seed and the code version (plus, written by main.py, the study settings under
``study`` and every resumption); study.records writes it.

This module imports only the standard library.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from store.errors import ResultsFolderError
from store.files import has_stored, read_marker
from store.layout import StudyLayout

RESULTS_FORMAT_VERSION = "1.0"
"""Layout of a results folder (files, markers, environment.json). A different major number is incompatible."""


def read_environment_record(results_dir: str | os.PathLike, strict: bool = True) -> dict[str, Any]:
    """environment.json of a results folder, checked for a compatible format version (ResultsFolderError).

    With ``strict`` False (a report of a folder that may have been written by hand) nothing is checked: a
    missing, unreadable or malformed record gives {}.
    """
    folder = Path(results_dir)
    path = StudyLayout(folder).environment
    if not strict:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}
    if not folder.is_dir():
        raise ResultsFolderError(f"results folder not found: {folder}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ResultsFolderError(f"{path} is missing: {folder} is not a results folder written by main.py") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsFolderError(f"{path} is corrupt ({error}); the folder cannot be used") from error
    version = record.get("results_format_version") if isinstance(record, dict) else None
    if not is_compatible_format(version):
        raise ResultsFolderError(
            f"{folder} has results format version {version!r}, this code writes {RESULTS_FORMAT_VERSION!r}; "
            "use a matching code version or start a new folder"
        )
    return record


def is_compatible_format(version: Any) -> bool:
    """Whether a results-format version string has the same major number as RESULTS_FORMAT_VERSION."""
    return isinstance(version, str) and version.split(".")[0] == RESULTS_FORMAT_VERSION.split(".")[0]


def study_record(environment: dict[str, Any]) -> dict[str, Any]:
    """The study settings (``study``) of an environment record; {} where it has none."""
    study = environment.get("study")
    return study if isinstance(study, dict) else {}


def pretraining_folder(root: str | os.PathLike) -> Path:
    """The folder that holds a study's pretraining files.

    A study normally holds its own pretraining; one started with ``--skip-pretraining`` reuses another
    folder's, which its PRETRAINING_DONE.json names. The study's own files win where it has them (e.g. a
    reused pretraining copied into it by hand).
    """
    layout = StudyLayout(Path(root))
    if has_stored(layout.pretraining_results):
        return layout.root
    payload = read_marker(layout.pretraining_done)
    source = payload.get("pretraining_folder") if isinstance(payload, dict) else None
    return layout.recorded_folder(source) if source else layout.root
