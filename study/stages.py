"""The stages of a study: pretraining, stage 2 of every configuration, then the analysis.

Each stage runs its jobs (study.jobs), assembles their results and writes its study-stage marker; a stage whose
marker exists is skipped, so that ``--resume`` continues where a study stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path

from study import lazy_module
from study.cli import EXIT_FAILED, EXIT_OK, Plan, load_checked
from study.folder import write_configuration_files
from study.jobs import marker_payload, pretraining_job, run_jobs, training_job
from study.layout import StudyLayout

main_analysis = lazy_module("analysis.main_analysis")
main_pretraining = lazy_module("training.main_pretraining")
main_training = lazy_module("training.main_training")
results_io = lazy_module("training.results_io")

logger = logging.getLogger("main")


def run_study(folder: Path, plan: Plan) -> int:
    """Pretraining, stage 2 of every configuration, analysis; the exit status."""
    study = plan.study
    write_configuration_files(folder, study)
    pretraining = pretraining_stage(folder, plan)
    if pretraining is None:
        return stopped(folder, "pretraining is incomplete")
    failed = training_stage(folder, plan, *pretraining)
    if failed:
        return stopped(folder, f"stage 2 is incomplete for {', '.join(failed)}")
    return analysis_stage(folder, plan)


def stopped(folder: Path, reason: str) -> int:
    """Report an incomplete study; the exit status."""
    logger.error("%s; finished jobs are kept, continue with: python main.py --resume %s", reason, folder)
    return EXIT_FAILED


def pretraining_stage(folder: Path, plan: Plan) -> tuple[Path, int] | None:
    """(pretraining folder, retained runs), running and assembling the pretraining if needed; None on failure."""
    study = plan.study
    layout = StudyLayout(folder)
    done = marker_payload(layout.pretraining_done)
    if done is not None:
        return Path(done["pretraining_folder"]), int(done["retained_runs"])
    if study.skip_pretraining:
        logger.info("reusing the pretraining of %s (%d runs)", study.skip_pretraining, study.runs)
        return finish_pretraining(folder, Path(study.skip_pretraining), study.runs)
    jobs = [pretraining_job(folder, i, study.runs, study.base_seed) for i in range(study.runs)]
    if run_jobs(jobs, plan.execution, folder, "pretraining"):
        return None
    try:
        retained = main_pretraining.assemble_pretraining(folder, load_checked(layout.parameters), study.runs)
    except results_io.ResultsFileError as error:
        logger.error("pretraining cannot be assembled: %s", error)
        return None
    logger.info("pretraining assembled: %d of %d runs retained", retained, study.runs)
    return finish_pretraining(folder, folder, retained)


def finish_pretraining(folder: Path, pretraining: Path, retained: int) -> tuple[Path, int] | None:
    """Mark the pretraining stage complete; None if no run is left for stage 2."""
    if retained < 1:
        logger.error("no pretraining run was retained; nothing to train")
        return None
    payload = {"pretraining_folder": str(pretraining), "retained_runs": retained}
    results_io.write_marker(StudyLayout(folder).pretraining_done, payload)
    return pretraining, retained


def training_stage(folder: Path, plan: Plan, pretraining: Path, retained: int) -> list[str]:
    """Stage-2 jobs of every configuration not yet assembled, then assembly; the incomplete configurations."""
    study, layout = plan.study, StudyLayout(folder)
    todo = [name for name in study.configs if marker_payload(layout.configuration(name).done) is None]
    jobs = [training_job(folder, name, i, retained, study.base_seed, pretraining) for name in todo
            for i in range(retained)]  # fmt: skip
    failed_jobs = run_jobs(jobs, plan.execution, folder, "stage 2") if jobs else []
    incomplete = sorted({job.name.rsplit(" run ", 1)[0] for job in failed_jobs}, key=todo.index)
    for name in todo:
        if name in incomplete:
            continue
        try:
            main_training.assemble_training(layout.configuration(name).folder, retained)
        except results_io.ResultsFileError as error:
            logger.error("%s cannot be assembled: %s", name, error)
            incomplete.append(name)
            continue
        results_io.write_marker(layout.configuration(name).done, {"runs": retained})
        logger.info("%s assembled (%d runs)", name, retained)
    return incomplete


def analysis_stage(folder: Path, plan: Plan) -> int:
    """Run the analysis once stage 2 is complete; the exit status."""
    if not plan.execution.analysis:
        logger.info("analysis skipped (--no-analysis); study complete in %s", folder)
        return EXIT_OK
    layout = StudyLayout(folder)
    if marker_payload(layout.analysis_done) is not None:
        logger.info("analysis already done; study complete in %s; the report: %s", folder, layout.report)
        return EXIT_OK
    settings = main_analysis.QUICK_SETTINGS if plan.study.quick else None
    try:
        main_analysis.run_analysis(folder, list(plan.study.configs), overwrite=False, settings=settings)
    except Exception:
        logger.exception("analysis failed")
        return stopped(folder, "the analysis failed")
    results_io.write_marker(layout.analysis_done, {"configs": list(plan.study.configs)})
    logger.info("study complete in %s; the report: %s", folder, layout.report)
    return EXIT_OK
