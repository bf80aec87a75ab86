"""The stages of a study that run jobs: pretraining, then stage 2 of every configuration (main.py runs the
analysis after them).

Each stage runs its jobs (study.jobs: command lines such as ``python -m training.main_pretraining``), assembles
their results (store.assembly) and writes its study-stage marker; a stage whose marker exists (for the study's
current runs) is skipped, so that ``--resume`` continues where a study stopped and a grown study (study.growth)
assembles again over all its runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from store.errors import ResultsFileError
from store.files import write_marker
from store.layout import StudyLayout
from study import lazy_module, pieces
from study.cli import EXIT_FAILED, EXIT_OK, Plan, load_checked
from study.folder import write_configuration_files
from study.jobs import marker_payload, pretraining_job, run_jobs, training_job

assembly = lazy_module("store.assembly")  # loads pandas: not needed to answer --help

logger = logging.getLogger("main")


def run_study(folder: Path, plan: Plan) -> int:
    """Pretraining, then stage 2 of every configuration; the exit status (EXIT_OK once stage 2 is complete)."""
    study = plan.study
    write_configuration_files(folder, study)
    pretraining = study_pretraining(folder, plan)
    if pretraining is None:
        return stopped(folder, "pretraining is incomplete")
    failed = study_training(folder, plan, *pretraining)
    if failed:
        return stopped(folder, f"stage 2 is incomplete for {', '.join(failed)}")
    return EXIT_OK


def stopped(folder: Path, reason: str) -> int:
    """Report an incomplete study; the exit status."""
    logger.error("%s; finished jobs are kept, continue with: python main.py --resume %s", reason, folder)
    return EXIT_FAILED


def study_pretraining(folder: Path, plan: Plan) -> tuple[Path, int] | None:
    """(pretraining folder, retained runs), running and assembling the pretraining if needed; None on failure."""
    study = plan.study
    layout = StudyLayout(folder)
    reused = layout.recorded_folder(study.skip_pretraining) if study.skip_pretraining else None
    done = marker_payload(layout.pretraining_done)
    # a marker of an earlier code version has no "runs": growth removes the markers before it records more runs
    if done is not None and done.get("runs", study.runs) == study.runs:
        # the folder itself, not the path recorded when it was made: the folder may have been moved or kept
        return reused or folder, int(done["retained_runs"])
    if reused is not None:
        logger.info("reusing the pretraining of %s (%d runs)", reused, study.runs)
        return finish_pretraining(folder, reused, study.runs, study.runs, study.skip_pretraining)
    jobs = [pretraining_job(folder, i, study.runs, study.base_seed) for i in range(study.runs)]
    if run_jobs(jobs, plan.execution, folder, "pretraining"):
        return None
    try:
        restore_pieces(folder)
        retained = assembly.assemble_pretraining(folder, load_checked(layout.parameters), study.runs)
    except ResultsFileError as error:
        logger.error("pretraining cannot be assembled: %s", error)
        return None
    logger.info("pretraining assembled: %d of %d runs retained", retained, study.runs)
    return finish_pretraining(folder, folder, retained, study.runs)


def finish_pretraining(folder: Path, pretraining: Path, retained: int, runs: int,
                       recorded: str | None = None) -> tuple[Path, int] | None:  # fmt: skip
    """Mark the pretraining stage complete for ``runs`` runs; None if no run is left for stage 2.

    ``recorded`` names a reused pretraining as the study's record does (relative in a kept study).
    """
    if retained < 1:
        logger.error("no pretraining run was retained; nothing to train")
        return None
    payload = {"pretraining_folder": recorded or str(pretraining), "retained_runs": retained, "runs": runs}
    write_marker(StudyLayout(folder).pretraining_done, payload)
    return pretraining, retained


def restore_pieces(folder: Path) -> None:
    """Write back the job pieces a kept study leaves out (study.pieces), before an assembly rewrites the files
    that hold their rows."""
    restored = pieces.restore_pieces(folder)
    if restored:
        logger.info("wrote back %d job files from the assembled files (a kept study stores each row once)",
                    len(restored))  # fmt: skip


def study_training(folder: Path, plan: Plan, pretraining: Path, retained: int) -> list[str]:
    """Stage-2 jobs of every configuration not yet assembled, then assembly; the incomplete configurations."""
    study, layout = plan.study, StudyLayout(folder)
    todo = [name for name in study.configs if not assembled(layout.configuration(name).done, retained)]
    jobs = [training_job(folder, name, i, retained, study.base_seed, pretraining) for name in todo
            for i in range(retained)]  # fmt: skip
    failed_jobs = run_jobs(jobs, plan.execution, folder, "stage 2") if jobs else []
    incomplete = sorted({job.name.rsplit(" run ", 1)[0] for job in failed_jobs}, key=todo.index)
    try:
        if todo:
            restore_pieces(folder)
    except ResultsFileError as error:
        logger.error("stage 2 cannot be assembled: %s", error)
        return todo
    for name in todo:
        if name in incomplete:
            continue
        try:
            assembly.assemble_training(layout.configuration(name).folder, retained)
        except ResultsFileError as error:
            logger.error("%s cannot be assembled: %s", name, error)
            incomplete.append(name)
            continue
        write_marker(layout.configuration(name).done, {"runs": retained})
        logger.info("%s assembled (%d runs)", name, retained)
    return incomplete


def assembled(marker: Path, retained: int) -> bool:
    """Whether a configuration's marker says its jobs are assembled for ``retained`` runs."""
    payload = marker_payload(marker)
    return payload is not None and payload.get("runs") == retained
