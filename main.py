"""Run the whole study: pretraining, every selected stage-2 configuration, then the analysis.

    python main.py                                # conf_baseline, TrainingPars.num_runs runs, base seed 0
    python main.py --quick                        # a look at the whole pipeline in minutes (study/quick.py)
    python main.py --preset corrected             # every corrected behaviour instead of the reference's (README)
    python main.py --configs special readout --runs 50 --jobs 4 --note "first full study"
    python main.py --resume results/Jan08_v0      # finish an interrupted study: the same final CSVs
    python main.py --resume studies/reference --runs 38   # grow a (kept) study to 38 runs (docs/studies.md)
    python main.py --executor slurm --jobs 200 --slurm-partition gpu --slurm-gpus 1 --slurm-time 720

Results folder (``<results-root>/<Mon><DD>_v<k>/``; every name in store/layout.py): ``note.txt``, ``scripts/``
(the code), ``environment.json`` (Python, package versions, JAX backend and devices, command line, base seed, the
study settings, the results-format version), ``log.txt`` (everything logged, job output included),
``parameters.py`` (the repository's parameters.py plus this study's ``OVERRIDES``), ``logs/`` (one log per job),
``pretraining_runs/run_<i>/`` and the pretraining CSVs, and per configuration ``<conf>/parameters_<conf>.py``
(plus the configuration's overrides), ``<conf>/training_runs/run_<i>/`` and ``<conf>/training_results.csv``,
``training_results_val.csv``.

The code is the package study/: cli (settings, parser, plan), design (what determines a study's results),
records (environment.json, scripts/, lock), folder (creating the results folder), jobs (jobs and launchers),
stages (the study stages), growth, keep and quick (the small presets). Below it, the package store/ holds the
results folder's layout (every file name), its files and their reading, the parameter files and logging.

Jobs: each pretraining run and each (configuration, run) stage-2 job is its own process
(``python -m training.main_pretraining FOLDER ... --runs I`` and
``python -m training.main_training CONF_DIR ... --runs I``), with ``--jobs 1`` too. A job writes only into its own
folder and its job marker last; the combined CSVs are assembled from completed jobs in run order, so they
do not depend on which job finished first. ``--jobs N`` keeps N jobs running at once (local processes, or SLURM
jobs submitted with submitit for ``--executor slurm``; ``--submitit-cluster local`` runs that path on this
machine). Ctrl-C or a kill loses at most the jobs in flight; ``--resume FOLDER`` redoes only incomplete jobs with
the settings recorded in the folder (the repository's current code is used; changed files are logged);
``--resume FOLDER --runs N`` grows the study to N runs (study/growth.py), and FOLDER may be a study kept in
``studies/`` (study/keep.py, docs/studies.md).

``--preset NAME`` (``reference``, the default, or ``corrected``; parameters.PRESETS) is recorded in every parameters
copy (``PRESET = "..."``), in environment.json and note.txt. ``--overrides-json`` adds ``OVERRIDES``
(``{"ClassName": {"field": value}}``, JSON text or a ``.json`` file) on top of the preset, the repository's
parameters and the ``--quick`` settings; the tests use it for settings smaller than
``--quick``. A configuration's own changes (configurations.py) are applied last.

Exit status: 0 done; 1 a job or the analysis failed (finished work is kept: rerun with ``--resume``); 2 bad input,
reported in one line before any work; 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:  # parameters.py is the file users edit: a syntax (or any import) error in it is bad input, not a crash
    import configurations
    from store.errors import ResultsFolderError
    from store.files import remove_stale_temporaries, write_marker
    from store.layout import ANALYSIS_DONE, StudyLayout
    from store.logs import close_logging, setup_logging
    from study import lazy_module, records
    from study.cli import (
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_OK,
        EXIT_USAGE,
        RESUME_FORBIDDEN,
        Execution,
        Plan,
        UsageError,
        build_parser,
        plan_from_args,
    )
    from study.design import StudyDesign
    from study.folder import (
        complete_study_folder,
        create_study_folder,
        record_resume,
        write_configuration_files,
    )
    from study.growth import grow_study
    from study.jobs import Job, child_environment, marker_payload, run_jobs, training_job
    from study.quick import QUICK_CONFIGS, QUICK_OVERRIDES
    from study.stages import run_study, stopped
except Exception as import_error:
    if __name__ != "__main__":
        raise
    where = f" ({import_error.filename}, line {import_error.lineno})" if isinstance(import_error, SyntaxError) else ""
    sys.stderr.write(f"ERROR: the code cannot be imported{where}: {type(import_error).__name__}: {import_error}\n")
    sys.exit(2)

__all__ = [  # the entry point, and the names of the study package that code and tests reach through main
    "ANALYSIS_DONE", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "QUICK_CONFIGS", "QUICK_OVERRIDES",
    "RESUME_FORBIDDEN", "Execution", "Job", "Plan", "StudyDesign", "UsageError", "analysis_stage", "build_parser",
    "child_environment", "complete_study_folder", "configurations", "create_study_folder", "main", "main_analysis",
    "marker_payload", "plan_from_args", "pretraining_files", "run_jobs", "start", "training_job",
    "write_configuration_files",
]  # fmt: skip

compilation_cache = lazy_module("training.compilation_cache")
main_analysis = lazy_module("analysis.main_analysis")

logger = logging.getLogger("main")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def pretraining_files() -> tuple[str, ...]:
    """The root files of a finished pretraining."""
    return tuple(path.name for path in StudyLayout(Path(".")).pretraining_files())


# ------------------------------------------------------------------------------------------------ entry points
@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated (like Ctrl-C), so that jobs in flight are stopped cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start(plan: Plan, argv: Sequence[str]) -> int:
    """Create or reopen the results folder and run the study; the exit status."""
    folder = create_study_folder(plan, argv) if plan.resume is None else plan.resume
    # the lock comes first: a refused concurrent --resume must not write into the running study's log
    with records.folder_lock(folder):
        if plan.resume is not None:
            setup_logging(StudyLayout(folder).log)
            logger.info("resuming %s", folder)
            record_resume(folder, argv)
            remove_stale_temporaries(folder)  # jobs die with their main process: none is alive
            complete_study_folder(folder, plan, argv)  # a kill may have come right after environment.json
        try:
            if plan.grow_to is not None:
                plan = dataclasses.replace(plan, study=grow_study(folder, plan.study, plan.grow_to))
            status = run_study(folder, plan)
            return analysis_stage(folder, plan) if status == EXIT_OK else status
        except KeyboardInterrupt:
            logger.error("interrupted; finished jobs are kept, continue with: python main.py --resume %s", folder)
            return EXIT_INTERRUPTED


def analysis_stage(folder: Path, plan: Plan) -> int:
    """Run the analysis once stage 2 is complete (study files -> tables -> figures); the exit status.

    An analysis of fewer runs than the study has (it grew since) is redone from scratch (overwrite): its
    outputs are tables over all runs, which must come out as in a study started with its runs. A finished
    analysis whose report is missing (a kept study keeps its tables, not its figures) draws what is missing.
    """
    if not plan.execution.analysis:
        logger.info("analysis skipped (--no-analysis); study complete in %s", folder)
        return EXIT_OK
    layout = StudyLayout(folder)
    done = marker_payload(layout.analysis_done)
    current = done is not None and done.get("runs", plan.study.runs) == plan.study.runs
    if current and layout.report.is_file():
        logger.info("analysis already done; study complete in %s; the report: %s", folder, layout.report)
        return EXIT_OK
    overwrite = done is not None and not current
    if current:  # the analysis keeps every output it finds and draws the rest
        logger.info("analysis done, its figures and report missing (a kept study): drawing them")
    elif overwrite:
        logger.info("the analysis covered %s runs, the study has %d: redoing it", done.get("runs"), plan.study.runs)
    settings = main_analysis.QUICK_SETTINGS if plan.study.quick else None
    try:
        main_analysis.run_analysis(folder, list(plan.study.configs), overwrite=overwrite, settings=settings)
    except Exception:
        logger.exception("analysis failed")
        return stopped(folder, "the analysis failed")
    write_marker(layout.analysis_done, {"configs": list(plan.study.configs), "runs": plan.study.runs})
    logger.info("study complete in %s; the report: %s", folder, layout.report)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python main.py``; the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)  # --help ends here, before the slow modules are loaded
    except UsageError as error:
        args = error
    setup_logging(None)
    compilation_cache.enable_compilation_cache()
    try:
        with sigterm_as_interrupt():
            try:
                if isinstance(args, UsageError):
                    raise args
                plan = plan_from_args(args)
            except UsageError as error:
                logger.error("%s", error)
                return EXIT_USAGE
            try:
                return start(plan, argv)
            except ResultsFolderError as error:
                logger.error("%s", error)
                return EXIT_USAGE
    except KeyboardInterrupt:
        logger.error("interrupted")
        return EXIT_INTERRUPTED
    finally:
        close_logging()


if __name__ == "__main__":
    sys.exit(main())
