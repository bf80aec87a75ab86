"""The results folder of a study: creating it, its records (environment.json, note.txt, scripts/, the
parameter copies) and completing them after an interruption."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from pathlib import Path

import configurations
from store import parameter_files
from store.errors import ResultsFolderError
from store.files import atomic_write_text, write_json
from store.layout import StudyLayout
from store.logs import setup_logging
from store.records import read_environment_record
from study import records
from study.cli import Plan, configuration_overrides
from study.design import StudyDesign
from study.quick import QUICK_NOTE

logger = logging.getLogger("main")


def create_study_folder(plan: Plan, argv: Sequence[str]) -> Path:
    """A new results folder holding, first of all, environment.json (the study record --resume needs).

    The JAX query, the slow part of the record, runs before the folder exists, so that a kill leaves
    either no folder or one that --resume can complete (see complete_study_folder).
    """
    record = records.environment_record(["main.py", *argv], plan.study.base_seed) | {"study": plan.study.to_json()}
    try:
        folder = records.make_results_folder(plan.results_root).resolve()
        write_json(StudyLayout(folder).environment, record)
    except OSError as error:
        raise ResultsFolderError(
            f"cannot create a results folder in {plan.results_root}: {error.strerror or error} "
            "(choose a writable folder with --results-root)"
        ) from error
    setup_logging(StudyLayout(folder).log)
    logger.info("results folder %s", folder)
    complete_study_folder(folder, plan, argv)
    return folder


def complete_study_folder(folder: Path, plan: Plan, argv: Sequence[str]) -> None:
    """Write scripts/, note.txt and parameters.py unless parameters.py, the last of them, exists."""
    layout = StudyLayout(folder)
    if layout.parameters.is_file():
        return
    records.snapshot_scripts(folder)
    write_text(layout.note, note_text(plan, argv))
    parameter_files.write_parameters_copy(layout.parameters, plan.study.run_overrides, layout.snapshot_parameters,
                                    title="Parameters of this study's pretraining (stages 0 and 1).",
                                    preset=plan.study.preset)  # fmt: skip


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""

    atomic_write_text(path, text)


def note_text(plan: Plan, argv: Sequence[str]) -> str:
    """note.txt: the user's note, the command line and what the quick preset or overrides change."""
    lines = [plan.note or "(no note given)", "", "command: python " + shlex.join(["main.py", *argv]),
             f"parameter preset: {plan.study.preset} (README, 'Presets')"]  # fmt: skip
    if plan.study.quick:
        lines.append(QUICK_NOTE)
    if plan.study.skip_pretraining:
        lines.append(f"Pretraining reused from {plan.study.skip_pretraining}.")
    return "\n".join(lines) + "\n"


def write_configuration_files(folder: Path, study: StudyDesign) -> None:
    """Each configuration's parameters_<conf>.py (missing ones only: a resumed study keeps its files)."""
    layout = StudyLayout(folder)
    for name in study.configs:
        path = layout.configuration(name).parameters
        if path.exists():
            continue
        own = configurations.configuration(name).overrides()
        conflicts = parameter_files.conflicting_overrides(study.run_overrides, own)
        if conflicts:
            logger.warning("%s replaces the study's values of %s", name, ", ".join(conflicts))
        path.parent.mkdir(parents=True, exist_ok=True)
        changes = configuration_overrides(study.run_overrides, name)
        title = f"Parameters of configuration {name} (stage 2)."
        parameter_files.write_parameters_copy(path, changes, layout.snapshot_parameters, title=title,
                                              preset=study.preset)  # fmt: skip


def record_resume(folder: Path, argv: Sequence[str]) -> None:
    """Append this resumption's environment to environment.json and log changed code files."""
    record = read_environment_record(folder)
    entry = records.environment_record(["main.py", *argv], record.get("base_seed", 0))
    entry.pop("results_format_version")
    record["resumes"] = [*record.get("resumes", []), entry]
    write_json(StudyLayout(folder).environment, record)
    if StudyLayout(folder).kept.is_file():  # a kept study keeps no code snapshot, only the code version
        logger.info("kept study made with code version %s, resumed with %s", record.get("code_version"),
                    entry.get("code_version"))  # fmt: skip
        return
    changed = records.changed_scripts(folder)
    if changed:
        logger.warning("code changed since the study started (running the current code): %s", ", ".join(changed))
