"""Run the whole study: pretraining, every selected stage-2 configuration, then the analysis.

    python main.py                                # conf_baseline, TrainingPars.num_runs runs, base seed 0
    python main.py --quick                        # a look at the whole pipeline in minutes (QUICK_OVERRIDES)
    python main.py --preset corrected             # every corrected behaviour instead of the reference's (README)
    python main.py --configs special readout --runs 50 --jobs 4 --note "first full study"
    python main.py --resume results/Jan08_v0      # finish an interrupted study: the same final CSVs
    python main.py --executor slurm --jobs 200 --slurm-partition gpu --slurm-gpus 1 --slurm-time 720

Results folder (spec §17): ``<results-root>/<Mon><DD>_v<k>/`` with ``note.txt``, ``scripts/`` (the code),
``environment.json`` (Python, package versions, JAX backend and devices, command line, base seed, the study
settings, the results-format version), ``log.txt`` (everything logged, job output included), ``parameters.py``
(the repository's parameters.py plus this study's ``OVERRIDES``), ``logs/`` (one log per job),
``pretraining_runs/run_<i>/`` and the pretraining CSVs, and per configuration ``<conf>/parameters_<conf>.py``
(plus the configuration's overrides, binding decision 4), ``<conf>/training_runs/run_<i>/`` and
``<conf>/training_results.csv``, ``training_results_val.csv``.

Jobs: each pretraining run and each (configuration, run) stage-2 job is its own process
(``python -m training.main_pretraining FOLDER ... --runs I`` and
``python -m training.main_training CONF_DIR ... --runs I``), with ``--jobs 1`` too. A job writes only into its own
folder and a ``DONE.json`` marker last; the combined CSVs are assembled from completed jobs in run order, so they
do not depend on which job finished first. ``--jobs N`` keeps N jobs running at once (local processes, or SLURM
jobs submitted with submitit for ``--executor slurm``; ``--submitit-cluster local`` runs that path on this
machine). Ctrl-C or a kill loses at most the jobs in flight; ``--resume FOLDER`` redoes only incomplete jobs with
the settings recorded in the folder (the repository's current code is used; changed files are logged).

``--preset NAME`` (``reference``, the default, or ``corrected``; parameters.PRESETS) is recorded in every parameters
copy (``PRESET = "..."``), in environment.json and note.txt. ``--overrides-json`` adds ``OVERRIDES``
(``{"ClassName": {"field": value}}``, JSON text or a ``.json`` file) on top of the preset, the repository's
parameters and the ``--quick`` settings; the tests use it for settings smaller than
``--quick``. A configuration's own changes (spec §16) are applied last.

Exit status: 0 done; 1 a job or the analysis failed (finished work is kept: rerun with ``--resume``); 2 bad input,
reported in one line before any work; 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # parameters.py is the file users edit: a syntax (or any import) error in it is bad input, not a crash
    import configurations
    from parameters import DEFAULT_PRESET, PRESETS, ParameterError, Parameters, check_preset, load_parameters_file
except Exception as import_error:
    if __name__ != "__main__":
        raise
    where = f" ({import_error.filename}, line {import_error.lineno})" if isinstance(import_error, SyntaxError) else ""
    sys.stderr.write(f"ERROR: the code cannot be imported{where}: {type(import_error).__name__}: {import_error}\n")
    sys.exit(2)


def _lazy(name: str) -> types.ModuleType:
    """A module that is imported on its first attribute access (importlib's LazyLoader): ``--help`` and bad
    arguments are answered without loading JAX, pandas and matplotlib."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"module {name} not found")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


util = _lazy("util")
main_analysis = _lazy("analysis.main_analysis")
main_pretraining = _lazy("training.main_pretraining")
main_training = _lazy("training.main_training")
compilation_cache = _lazy("training.compilation_cache")
results_io = _lazy("training.results_io")

logger = logging.getLogger("main")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CONFIGS: tuple[str, ...] = ("conf_baseline",)
QUICK_CONFIGS: tuple[str, ...] = ("conf_baseline", "conf_midonly_readout")
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "TrainingPars": {
        "num_runs": 2, "SGD_steps": 6, "batch_size": 10, "probe_trials": 20, "probe_repeats": 2,
        "validation_trials": 40,
    },
    "PretrainingPars": {
        "SGD_steps": 6, "stage1_SGD_steps": 4, "batch_size": 10, "stage1_batch_size": 10, "min_acc_check_ind": 2,
        "flip_test_trials": 40, "regression_trials": 200, "post_stage1_regression_trials": 400,
        "regression_chunk": 200, "run_threshold_range": (0.0, 181.0),
    },
}  # fmt: skip
"""The --quick preset: 2 runs, a few SGD steps per stage, small probes and regressions, no run exclusion."""
QUICK_NOTE = (
    "Quick preset (--quick): 2 runs, at most 6/4/6 SGD steps in stages 0/1/2, small probes, validations and "
    "regressions. PretrainingPars.run_threshold_range is widened to (0, 181) so that no run is excluded. "
    "These numbers are a quick look at the pipeline, not results."
)
PRETRAINING_DONE = "PRETRAINING_DONE.json"
CONFIGURATION_DONE = "DONE.json"
ANALYSIS_DONE = "ANALYSIS_DONE.json"
PROGRESS_MARK = "progress:"
"""Marks the progress lines of a job's log (training.training_functions.PROGRESS_PREFIX), shown while it runs."""
REPORT = "report.html"
"""Written by the analysis (analysis.main_analysis.REPORT_HTML); the study's last line names it."""
JOB_LOGS = "logs"
SUBMITIT_FOLDER = "submitit"


def pretraining_files() -> tuple[str, ...]:
    """The root files of a finished pretraining."""
    return (*main_pretraining.PIECES, results_io.EXCLUDED_RUNS)


MAX_SEED = 2**32 - 1
"""Largest base seed: jax.random.PRNGKey keeps 32 bits of it (2**32 gives the key of 0)."""
RESUME_FORBIDDEN = ("runs", "configs", "seed", "note", "quick", "preset", "overrides_json", "skip_pretraining",
                    "results_root")  # fmt: skip


class UsageError(Exception):
    """Bad input; the message is one line that says what to fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


# ------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Study:
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
    def from_json(cls, data: Any, origin: Path) -> Study:
        """The study recorded in a results folder (ResultsFolderError if the record is unusable)."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise util.ResultsFolderError(f"{origin}: environment.json has no valid 'study' record; start a new study")
        try:
            util.check_overrides_shape(data["run_overrides"], str(origin))
            study = cls(int(data["runs"]), tuple(str(c) for c in data["configs"]), int(data["base_seed"]),
                        data["run_overrides"], data["skip_pretraining"], bool(data["quick"]),
                        check_preset(str(data["preset"])))  # fmt: skip
            if study.runs < 1 or not study.configs:
                raise ValueError(f"runs {study.runs}, configurations {list(study.configs)}")
            return study
        except (TypeError, ValueError) as error:
            raise util.ResultsFolderError(
                f"{origin}: environment.json has an invalid 'study' record: {error}"
            ) from error


@dataclass(frozen=True)
class Execution:
    """How jobs run (may change between a study and its resumption)."""

    jobs: int = 1
    executor: str = "local"
    submitit_cluster: str | None = None
    slurm_partition: str | None = None
    slurm_time: int = 24 * 60
    slurm_gpus: int = 0
    slurm_mem: int = 16
    analysis: bool = True


@dataclass(frozen=True)
class Plan:
    """A validated command line."""

    study: Study
    execution: Execution
    results_root: Path
    note: str = ""
    resume: Path | None = None


# ---------------------------------------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one UsageError line instead of usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see python main.py --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command line of main.py."""
    parser = _Parser(
        prog="main.py",
        description="Run the study: pretraining (stages 0-1) of every run, stage 2 of every selected "
        "configuration, then the analysis. Results go to <results-root>/<Mon><DD>_v<k>/.",
        epilog="Configuration groups: " + "; ".join(f"{g}: {', '.join(c.name for c in cs)}"
                                                    for g, cs in configurations.GROUPS.items()) + ".",
    )  # fmt: skip
    study = parser.add_argument_group("study (fixed when the results folder is created)")
    study.add_argument("--runs", type=int, metavar="N", help="pretraining runs (default: TrainingPars.num_runs)")
    study.add_argument("--configs", nargs="+", metavar="NAME_OR_GROUP",
                       help="configurations or groups for stage 2 (default: conf_baseline; with --quick: "
                            f"{' '.join(QUICK_CONFIGS)})")  # fmt: skip
    study.add_argument("--seed", type=int, metavar="S", help="base seed of every random stream (default: 0)")
    study.add_argument("--note", metavar="TEXT", help="free text for note.txt")
    study.add_argument("--quick", action="store_true", help="a few-minute look at the whole pipeline: 2 runs, few "
                       "SGD steps, small probes, no run exclusion (see QUICK_OVERRIDES in main.py)")  # fmt: skip
    study.add_argument("--preset", metavar="NAME",
                       help=f"parameter preset: {' or '.join(PRESETS)} (default: {DEFAULT_PRESET}, or the preset of "
                            "--skip-pretraining's folder); see README")  # fmt: skip
    study.add_argument(
        "--overrides-json",
        metavar="JSON_OR_FILE",
        help='extra OVERRIDES {"ClassName": {"field": value}} for every stage, applied after --preset and --quick',
    )
    study.add_argument("--results-root", type=Path, metavar="DIR", help="parent of results folders (default: results)")
    study.add_argument(
        "--skip-pretraining",
        type=Path,
        metavar="FOLDER",
        help="reuse the pretraining of an earlier results folder (its retained runs)",
    )
    resume = parser.add_argument_group("resuming")
    resume.add_argument(
        "--resume",
        type=Path,
        metavar="FOLDER",
        help="finish an interrupted study in FOLDER: only incomplete jobs run again",
    )
    run = parser.add_argument_group("execution")
    defaults = Execution()
    run.add_argument("--jobs", type=int, default=defaults.jobs, metavar="N",
                     help=f"jobs running at once (default: {defaults.jobs})")  # fmt: skip
    run.add_argument("--executor", choices=("local", "slurm"), default=defaults.executor,
                     help=f"local processes or SLURM jobs via submitit (default: {defaults.executor})")  # fmt: skip
    run.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition")
    run.add_argument("--slurm-time", type=int, default=defaults.slurm_time, metavar="MIN",
                     help=f"time limit per job in minutes (default: {defaults.slurm_time})")  # fmt: skip
    run.add_argument("--slurm-gpus", type=int, default=defaults.slurm_gpus, metavar="N",
                     help=f"GPUs per SLURM job (default: {defaults.slurm_gpus})")  # fmt: skip
    run.add_argument("--slurm-mem", type=int, default=defaults.slurm_mem, metavar="GB",
                     help=f"memory per SLURM job (default: {defaults.slurm_mem})")  # fmt: skip
    run.add_argument(
        "--submitit-cluster",
        choices=("slurm", "local"),
        default=None,
        help="with --executor slurm: 'local' runs the submitit jobs on this machine (for testing)",
    )
    run.add_argument("--no-analysis", action="store_true", help="stop after stage 2")
    return parser


def execution_from_args(args: argparse.Namespace) -> Execution:
    """Execution settings, checked."""
    for name, low in (("jobs", 1), ("slurm_time", 1), ("slurm_gpus", 0), ("slurm_mem", 1)):
        if getattr(args, name) < low:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(args, name)}")
    if args.submitit_cluster and args.executor != "slurm":
        raise UsageError("--submitit-cluster needs --executor slurm")
    if args.executor == "slurm" and args.submitit_cluster != "local" and shutil.which("sbatch") is None:
        raise UsageError("--executor slurm needs SLURM (sbatch not found); run on the cluster or use --executor local")
    return Execution(args.jobs, args.executor, args.submitit_cluster, args.slurm_partition, args.slurm_time,
                     args.slurm_gpus, args.slurm_mem, not args.no_analysis)  # fmt: skip


def plan_from_args(args: argparse.Namespace, source: Path | None = None) -> Plan:
    """Validate everything a study needs before any work; UsageError with one line otherwise."""
    execution = execution_from_args(args)
    if args.resume is not None:
        return resume_plan(args, execution)
    return fresh_plan(args, execution, source or util.REPO_PARAMETERS)


def fresh_plan(args: argparse.Namespace, execution: Execution, source: Path) -> Plan:
    """Settings of a new study, with its parameter files checked."""
    configs = configuration_names(args.configs or (QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS))
    if args.runs is not None and args.runs < 1:
        raise UsageError(f"--runs must be at least 1, got {args.runs}")
    results_root = args.results_root or Path("results")
    if results_root.exists() and not results_root.is_dir():
        raise UsageError(f"--results-root {results_root} is not a folder")
    skip = pretraining_folder_info(args.skip_pretraining) if args.skip_pretraining else None
    preset = study_preset(args.preset, skip[0] if skip else None)
    try:
        run_overrides = util.read_overrides(source)
        if skip is not None:  # stage 2 continues with the settings the reused pretraining ran with
            run_overrides = util.merge_overrides(run_overrides, util.read_overrides(skip[0] / "parameters.py"))
        run_overrides = util.merge_overrides(run_overrides, QUICK_OVERRIDES if args.quick else {})
    except ParameterError as error:
        raise UsageError(f"{source.name} is invalid: {error}; fix it") from error
    run_overrides = util.merge_overrides(run_overrides, parse_overrides_json(args.overrides_json))
    params = check_parameter_files(source, run_overrides, configs, preset)
    runs = args.runs if args.runs is not None else params.training.num_runs
    if skip is not None:
        runs = min(runs, skip[1]) if args.runs is not None else skip[1]
    elif not params.pretraining.is_on:
        raise UsageError("PretrainingPars.is_on is False: pass --skip-pretraining FOLDER to reuse a pretraining")
    if runs != params.training.num_runs:
        run_overrides = util.merge_overrides(run_overrides, {"TrainingPars": {"num_runs": runs}})
    seed = args.seed if args.seed is not None else (skip[2] if skip is not None else 0)
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed {seed}: the base seed must be an integer in 0..{MAX_SEED} (numpy seeds must "
                         "be non-negative; JAX keys keep 32 bits, so larger seeds would repeat smaller ones)")
    run_overrides = json.loads(json.dumps(run_overrides))  # as environment.json keeps it, for identical resumes
    study = Study(runs, configs, seed, run_overrides, str(skip[0]) if skip else None, bool(args.quick), preset)
    return Plan(study, execution, results_root, args.note or "")


def study_preset(name: str | None, reused_pretraining: Path | None) -> str:
    """The preset of a new study: --preset, else that of a reused pretraining, else the default."""
    if name is None:
        if reused_pretraining is None:
            return DEFAULT_PRESET
        try:
            return util.read_preset(reused_pretraining / "parameters.py")
        except ParameterError as error:
            raise UsageError(f"cannot reuse the pretraining: {error}") from error
    try:
        return check_preset(name)
    except ParameterError as error:
        raise UsageError(f"--preset: {error}") from error


def resume_plan(args: argparse.Namespace, execution: Execution) -> Plan:
    """Settings recorded in the folder to resume, with the folder checked."""
    given = [f"--{name.replace('_', '-')}" for name in RESUME_FORBIDDEN if getattr(args, name) not in (None, False)]
    if given:
        raise UsageError(f"{', '.join(given)} cannot be combined with --resume: a resumed study keeps the settings "
                         "recorded in its environment.json")  # fmt: skip
    folder = args.resume.resolve()
    try:
        record = util.read_environment_record(folder)
        study = Study.from_json(record.get("study"), folder)
    except util.ResultsFolderError as error:
        raise UsageError(f"cannot resume: {error}") from error
    if (folder / "parameters.py").is_file() and not (snapshot_parameters(folder)).is_file():
        raise UsageError(f"cannot resume: {snapshot_parameters(folder)} is missing; start a new study")
    configuration_names(study.configs)
    for path in [folder / "parameters.py", *(conf_parameters(folder, c) for c in study.configs)]:
        if path.exists():
            load_checked(path)
    if study.skip_pretraining:
        pretraining_folder_info(Path(study.skip_pretraining))
    return Plan(study, execution, folder.parent, resume=folder)


def configuration_names(names: Sequence[str]) -> tuple[str, ...]:
    """Configuration names for a mix of names and groups (UsageError for an unknown one)."""
    try:
        return tuple(c.name for c in configurations.resolve(names))
    except ValueError as error:
        raise UsageError(str(error)) from error


def parse_overrides_json(text: str | None) -> dict[str, dict[str, Any]]:
    """OVERRIDES from JSON text or a .json file ({} for None)."""
    if not text:
        return {}
    path = Path(text)
    try:
        data = json.loads(path.read_text(encoding="utf-8") if path.suffix == ".json" else text)
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"--overrides-json: cannot read {text!r}: {error}") from error
    try:
        util.check_overrides_shape(data, "--overrides-json")
    except ParameterError as error:
        raise UsageError(str(error)) from error
    return data


def pretraining_folder_info(folder: Path) -> tuple[Path, int, int]:
    """(folder, retained runs, base seed) of a finished pretraining to reuse (UsageError if unusable)."""
    folder = folder.resolve()
    try:
        record = util.read_environment_record(folder)
        missing = [name for name in pretraining_files() if not (folder / name).is_file()]
        if missing:
            raise util.ResultsFolderError(f"{folder} has no finished pretraining (missing {', '.join(missing)})")
        retained = main_training.retained_runs(folder)
    except (util.ResultsFolderError, results_io.ResultsFileError) as error:
        raise UsageError(f"cannot reuse the pretraining: {error}") from error
    if retained < 1:
        raise UsageError(f"cannot reuse the pretraining: {folder} retained no run")
    return folder, retained, int(record.get("base_seed", 0))


def configuration_overrides(run_overrides: Mapping, name: str) -> dict[str, dict[str, Any]]:
    """The run's overrides with the configuration's own changes applied last."""
    return util.merge_overrides(run_overrides, configurations.configuration(name).overrides())


def check_parameter_files(source: Path, run_overrides: Mapping, configs: Sequence[str],
                          preset: str = DEFAULT_PRESET) -> Parameters:  # fmt: skip
    """Write the study's parameter files into a scratch folder and load them; the run's parameters."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            util.write_parameters_copy(Path(scratch) / "parameters.py", run_overrides, source, preset=preset)
            params = load_parameters_file(Path(scratch) / "parameters.py")
            for name in configs:
                util.write_parameters_copy(Path(scratch) / f"parameters_{name}.py",
                                           configuration_overrides(run_overrides, name), source,
                                           preset=preset)  # fmt: skip
        except (ParameterError, TypeError, ValueError) as error:
            raise UsageError(
                f"invalid parameters ({source.name} with the study's overrides): {error}; fix them"
            ) from error
    return params


def load_checked(path: Path) -> Parameters:
    """Load a parameters file of a results folder (UsageError naming it if invalid)."""
    try:
        return load_parameters_file(path)
    except (ParameterError, FileNotFoundError) as error:
        raise UsageError(f"invalid parameters file {path}: {error.__cause__ or error}; fix or remove it") from error


def conf_parameters(folder: Path, name: str) -> Path:
    """The configuration's parameters file in a results folder."""
    return main_training.parameters_path(folder / name)


# --------------------------------------------------------------------------------------------- results folder
def create_study_folder(plan: Plan, argv: Sequence[str]) -> Path:
    """A new results folder holding, first of all, environment.json (the study record --resume needs).

    The JAX query, the slow part of the record, runs before the folder exists, so that a kill leaves
    either no folder or one that --resume can complete (see complete_study_folder).
    """
    record = util.environment_record(["main.py", *argv], plan.study.base_seed) | {"study": plan.study.to_json()}
    try:
        folder = util.make_results_folder(plan.results_root).resolve()
        util.atomic_write_text(folder / util.ENVIRONMENT_FILE, json.dumps(record, indent=2) + "\n")
    except OSError as error:
        raise util.ResultsFolderError(
            f"cannot create a results folder in {plan.results_root}: {error.strerror or error} "
            "(choose a writable folder with --results-root)"
        ) from error
    util.setup_logging(folder / util.LOG_FILE)
    logger.info("results folder %s", folder)
    complete_study_folder(folder, plan, argv)
    return folder


def complete_study_folder(folder: Path, plan: Plan, argv: Sequence[str]) -> None:
    """Write scripts/, note.txt and parameters.py unless parameters.py, the last of them, exists."""
    if (folder / "parameters.py").is_file():
        return
    util.snapshot_scripts(folder)
    util.atomic_write_text(folder / util.NOTE_FILE, note_text(plan, argv))
    util.write_parameters_copy(folder / "parameters.py", plan.study.run_overrides, snapshot_parameters(folder),
                               title="Parameters of this study's pretraining (stages 0 and 1).",
                               preset=plan.study.preset)  # fmt: skip


def snapshot_parameters(folder: Path) -> Path:
    """The copy of the repository's parameters.py taken when the folder was created."""
    return folder / util.SCRIPTS_DIR / "parameters.py"


def note_text(plan: Plan, argv: Sequence[str]) -> str:
    """note.txt: the user's note, the command line and what the quick preset or overrides change."""
    lines = [plan.note or "(no note given)", "", "command: python " + shlex.join(["main.py", *argv]),
             f"parameter preset: {plan.study.preset} (README, 'Presets')"]  # fmt: skip
    if plan.study.quick:
        lines.append(QUICK_NOTE)
    if plan.study.skip_pretraining:
        lines.append(f"Pretraining reused from {plan.study.skip_pretraining}.")
    return "\n".join(lines) + "\n"


def write_configuration_files(folder: Path, study: Study) -> None:
    """Each configuration's parameters_<conf>.py (missing ones only: a resumed study keeps its files)."""
    for name in study.configs:
        path = conf_parameters(folder, name)
        if path.exists():
            continue
        conflicts = util.conflicting_overrides(study.run_overrides, configurations.configuration(name).overrides())
        if conflicts:
            logger.warning("%s replaces the study's values of %s", name, ", ".join(conflicts))
        path.parent.mkdir(parents=True, exist_ok=True)
        overrides = configuration_overrides(study.run_overrides, name)
        title = f"Parameters of configuration {name} (stage 2)."
        util.write_parameters_copy(path, overrides, snapshot_parameters(folder), title=title, preset=study.preset)


def record_resume(folder: Path, argv: Sequence[str]) -> None:
    """Append this resumption's environment to environment.json and log changed code files."""
    record = util.read_environment_record(folder)
    entry = util.environment_record(["main.py", *argv], record.get("base_seed", 0))
    entry.pop("results_format_version")
    record["resumes"] = [*record.get("resumes", []), entry]
    util.atomic_write_text(folder / util.ENVIRONMENT_FILE, json.dumps(record, indent=2) + "\n")
    changed = util.changed_scripts(folder)
    if changed:
        logger.warning("code changed since the study started (running the current code): %s", ", ".join(changed))


# ------------------------------------------------------------------------------------------------------ jobs
@dataclass(frozen=True)
class Job:
    """One isolated unit of work: a command line, its log file and the marker it writes last."""

    name: str
    argv: tuple[str, ...]
    log_path: Path
    marker: Path


def pretraining_job(folder: Path, run_index: int, num_runs: int, base_seed: int) -> Job:
    """Pretraining (stages 0, 1) of one run."""
    argv = (sys.executable, "-m", "training.main_pretraining", str(folder), "--num-runs", str(num_runs),
            "--seed", str(base_seed), "--runs", str(run_index), "--no-assemble", "--no-progress")  # fmt: skip
    return Job(f"pretraining run {run_index}", argv, folder / JOB_LOGS / f"pretraining_run_{run_index}.log",
               main_pretraining.run_folder(folder, run_index) / main_pretraining.MARKER)  # fmt: skip


def training_job(folder: Path, name: str, run_index: int, num_runs: int, base_seed: int, pretraining: Path) -> Job:
    """Stage 2 of one run of one configuration."""
    conf_dir = folder / name
    argv = (sys.executable, "-m", "training.main_training", str(conf_dir), "--num-runs", str(num_runs),
            "--seed", str(base_seed), "--runs", str(run_index), "--pretraining-folder", str(pretraining),
            "--no-assemble", "--no-progress")  # fmt: skip
    return Job(f"{name} run {run_index}", argv, folder / JOB_LOGS / f"{name}_run_{run_index}.log",
               main_training.job_folder(conf_dir, run_index) / main_training.MARKER)  # fmt: skip


def marker_payload(path: Path) -> dict | None:
    """A job or stage marker; None if missing or corrupt.

    A corrupt marker is removed, so that the redone job (which checks its own marker first) sees it missing.
    """
    try:
        return util.read_marker(path)
    except results_io.ResultsFileError as error:
        logger.warning("%s; the job will be redone", error)
        path.unlink(missing_ok=True)
        return None


def child_environment(execution: Execution) -> dict[str, str]:
    """Environment additions of job processes (no GPU memory preallocation when local jobs share a device)."""
    env = {"PYTHONUNBUFFERED": "1"}
    shared = execution.executor == "local" and execution.jobs > 1
    if shared and not {"XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION"} & set(os.environ):
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


class LocalLauncher:
    """Jobs as child processes of this one."""

    poll_interval = 0.2

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = {**os.environ, **env}

    def launch(self, job: Job) -> subprocess.Popen:
        """Start a job with its output appended to its log."""
        with open(job.log_path, "a", encoding="utf-8") as log:
            log.write(f"# {dt.datetime.now().isoformat(timespec='seconds')}: {' '.join(job.argv)}\n")
            log.flush()
            return subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=util.REPO_ROOT, env=self.env,
                                    preexec_fn=util.die_with_parent(os.getpid()))  # fmt: skip

    def poll(self, process: subprocess.Popen) -> int | None:
        """Exit status, None while running."""
        return process.poll()

    def stop(self, process: subprocess.Popen) -> None:
        """Terminate a job (killed if it does not stop within 10 s)."""
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SubmititLauncher:
    """Jobs submitted with submitit (SLURM, or submitit's local executor)."""

    def __init__(self, execution: Execution, folder: Path, env: Mapping[str, str]) -> None:
        import cloudpickle
        import submitit

        cloudpickle.register_pickle_by_value(util)  # the job needs no import path to this repository
        self.env = dict(env)
        self.poll_interval = 1.0 if execution.submitit_cluster == "local" else 15.0  # SLURM: spare the scheduler
        cluster = execution.submitit_cluster or "slurm"
        self.executor = submitit.AutoExecutor(folder=folder / SUBMITIT_FOLDER, cluster=cluster)
        self.executor.update_parameters(timeout_min=execution.slurm_time, gpus_per_node=execution.slurm_gpus,
                                        mem_gb=execution.slurm_mem, name="ssn_study")  # fmt: skip
        if execution.slurm_partition:
            self.executor.update_parameters(slurm_partition=execution.slurm_partition)

    def launch(self, job: Job) -> Any:
        """Submit a job."""
        return self.executor.submit(util.run_job_command, list(job.argv), str(job.log_path), str(util.REPO_ROOT),
                                    self.env)  # fmt: skip

    def poll(self, submitted: Any) -> int | None:
        """Exit status, None while queued or running (-1 if submitit reports a failure)."""
        if not submitted.done():
            return None
        try:
            return int(submitted.result())
        except Exception as error:  # a job killed by the scheduler, out of memory, a timeout
            last_line = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            logger.error("submitit job %s failed: %s", submitted.job_id, last_line)
            return -1

    def stop(self, submitted: Any) -> None:
        """Cancel a job."""
        submitted.cancel(check=False)


def make_launcher(execution: Execution, folder: Path) -> LocalLauncher | SubmititLauncher:
    """The launcher for the chosen executor."""
    env = child_environment(execution)
    if execution.executor == "slurm":
        return SubmititLauncher(execution, folder, env)
    return LocalLauncher(env)


def run_jobs(jobs: Sequence[Job], execution: Execution, folder: Path, desc: str) -> list[Job]:
    """Run the jobs without a marker, at most ``execution.jobs`` at once; the jobs that did not complete."""
    from tqdm.auto import tqdm  # here, not at the top: --help does not need it

    pending = deque(job for job in jobs if marker_payload(job.marker) is None)
    if len(pending) < len(jobs):
        logger.info("%s: %d of %d jobs already complete", desc, len(jobs) - len(pending), len(jobs))
    if not pending:
        return []
    (folder / JOB_LOGS).mkdir(exist_ok=True)
    launcher = make_launcher(execution, folder)
    running: dict[Job, tuple[Any, int]] = {}
    failed: list[Job] = []
    progress: dict[Job, int] = {}
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=desc, unit="job",
                                       disable=None) as bar:  # fmt: skip
        try:
            while pending or running:
                while pending and len(running) < execution.jobs:
                    job = pending.popleft()
                    offset = job.log_path.stat().st_size if job.log_path.exists() else 0
                    running[job] = (launcher.launch(job), offset)
                    logger.info("started %s", job.name)
                for job, (handle, offset) in list(running.items()):
                    progress[job] = forward_progress(job, progress.get(job, offset))
                    status = launcher.poll(handle)
                    if status is not None:
                        del running[job]
                        if not finish_job(job, status, offset):
                            failed.append(job)
                        bar.update()
                time.sleep(launcher.poll_interval)
        except BaseException:
            for job, (handle, _) in running.items():
                launcher.stop(handle)
                logger.warning("stopped %s (incomplete; --resume redoes it)", job.name)
            raise
    return failed


def forward_progress(job: Job, position: int) -> int:
    """Show the progress lines (steps, threshold, time left) that a running job logged since byte ``position``
    in the console; the position after the last complete line."""
    try:
        with open(job.log_path, "rb") as fh:
            fh.seek(position)
            data = fh.read()
    except OSError:
        return position
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.decode("utf-8", errors="replace").splitlines():
        if PROGRESS_MARK in line:
            logger.info("[%s] %s", job.name, line[line.index(PROGRESS_MARK) + len(PROGRESS_MARK) :].strip())
    return position + len(complete)


def finish_job(job: Job, status: int, offset: int) -> bool:
    """Copy the job's output into log.txt and report it; whether it completed."""
    lines = job_log_lines(job.log_path, offset)
    for line in lines:
        logger.info("[%s] %s", job.name, line, extra=util.FILE_ONLY)
    payload = marker_payload(job.marker)
    if status == 0 and payload is not None:
        if payload.get("success", True):
            logger.info("finished %s", job.name)
        else:
            logger.warning("%s failed (recorded; the run has no rows): %s", job.name, payload)
        return True
    logger.error("%s did not complete (exit status %s); its log: %s", job.name, status, job.log_path)
    for line in lines[-5:]:
        logger.error("[%s] %s", job.name, line)
    return False


def job_log_lines(path: Path, offset: int) -> list[str]:
    """The lines a job wrote to its log from ``offset`` on."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            fh.seek(offset)
            return util.clean_log_text(fh.read())
    except OSError:
        return []


# ------------------------------------------------------------------------------------------------------ study
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
    done = marker_payload(folder / PRETRAINING_DONE)
    if done is not None:
        return Path(done["pretraining_folder"]), int(done["retained_runs"])
    if study.skip_pretraining:
        logger.info("reusing the pretraining of %s (%d runs)", study.skip_pretraining, study.runs)
        return finish_pretraining(folder, Path(study.skip_pretraining), study.runs)
    jobs = [pretraining_job(folder, i, study.runs, study.base_seed) for i in range(study.runs)]
    if run_jobs(jobs, plan.execution, folder, "pretraining"):
        return None
    try:
        retained = main_pretraining.assemble_pretraining(folder, load_checked(folder / "parameters.py"), study.runs)
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
    util.write_marker(folder / PRETRAINING_DONE, {"pretraining_folder": str(pretraining), "retained_runs": retained})
    return pretraining, retained


def training_stage(folder: Path, plan: Plan, pretraining: Path, retained: int) -> list[str]:
    """Stage-2 jobs of every configuration not yet assembled, then assembly; the incomplete configurations."""
    study = plan.study
    todo = [name for name in study.configs if marker_payload(folder / name / CONFIGURATION_DONE) is None]
    jobs = [training_job(folder, name, i, retained, study.base_seed, pretraining) for name in todo
            for i in range(retained)]  # fmt: skip
    failed_jobs = run_jobs(jobs, plan.execution, folder, "stage 2") if jobs else []
    incomplete = sorted({job.name.rsplit(" run ", 1)[0] for job in failed_jobs}, key=todo.index)
    for name in todo:
        if name in incomplete:
            continue
        try:
            main_training.assemble_training(folder / name, retained)
        except results_io.ResultsFileError as error:
            logger.error("%s cannot be assembled: %s", name, error)
            incomplete.append(name)
            continue
        util.write_marker(folder / name / CONFIGURATION_DONE, {"runs": retained})
        logger.info("%s assembled (%d runs)", name, retained)
    return incomplete


def analysis_stage(folder: Path, plan: Plan) -> int:
    """Run the analysis once stage 2 is complete; the exit status."""
    if not plan.execution.analysis:
        logger.info("analysis skipped (--no-analysis); study complete in %s", folder)
        return EXIT_OK
    if marker_payload(folder / ANALYSIS_DONE) is not None:
        logger.info("analysis already done; study complete in %s; the report: %s", folder, folder / REPORT)
        return EXIT_OK
    settings = main_analysis.QUICK_SETTINGS if plan.study.quick else None
    try:
        main_analysis.run_analysis(folder, list(plan.study.configs), overwrite=False, settings=settings)
    except Exception:
        logger.exception("analysis failed")
        return stopped(folder, "the analysis failed")
    util.write_marker(folder / ANALYSIS_DONE, {"configs": list(plan.study.configs)})
    logger.info("study complete in %s; the report: %s", folder, folder / REPORT)
    return EXIT_OK


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
    with util.folder_lock(folder):
        if plan.resume is not None:
            util.setup_logging(folder / util.LOG_FILE)
            logger.info("resuming %s", folder)
            record_resume(folder, argv)
            results_io.remove_stale_temporaries(folder)  # jobs die with their main process: none is alive
            complete_study_folder(folder, plan, argv)  # a kill may have come right after environment.json
        try:
            return run_study(folder, plan)
        except KeyboardInterrupt:
            logger.error("interrupted; finished jobs are kept, continue with: python main.py --resume %s", folder)
            return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python main.py``; the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)  # --help ends here, before the slow modules are loaded
    except UsageError as error:
        args = error
    util.setup_logging(None)
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
            except util.ResultsFolderError as error:
                logger.error("%s", error)
                return EXIT_USAGE
    except KeyboardInterrupt:
        logger.error("interrupted")
        return EXIT_INTERRUPTED
    finally:
        util.close_logging()


if __name__ == "__main__":
    sys.exit(main())
