"""The command line of main.py: the study and execution settings, the parser, and the checked plan.

Everything a study needs is validated here, before any work: bad input becomes one UsageError line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import configurations
from parameters import (
    DEFAULT_PRESET,
    PRESET_DESCRIPTIONS,
    PRESETS,
    ParameterError,
    Parameters,
    check_preset,
    load_parameters_file,
)
from store import parameter_files
from store.errors import ResultsFileError, ResultsFolderError
from store.files import has_stored
from store.layout import StudyLayout, configuration_parameters
from store.records import read_environment_record
from study import inventory, lazy_module
from study.design import StudyDesign, read_study_design
from study.quick import QUICK_CONFIGS, QUICK_OVERRIDES

assembly = lazy_module("store.assembly")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CONFIGS: tuple[str, ...] = ("conf_baseline",)
MAX_SEED = 2**32 - 1
"""Largest base seed: jax.random.PRNGKey keeps 32 bits of it (2**32 gives the key of 0)."""
RESUME_FORBIDDEN = ("configs", "seed", "note", "quick", "preset", "overrides_json", "skip_pretraining",
                    "results_root")  # fmt: skip
"""The study options that --resume refuses; --runs is the one study option it takes: more runs grow the study."""


class UsageError(Exception):
    """Bad input; the message is one line that says what to fix."""


# ------------------------------------------------------------------------------------------------- settings
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

    study: StudyDesign
    execution: Execution
    results_root: Path
    note: str = ""
    resume: Path | None = None
    grow_to: int | None = None
    """With --resume: the runs the study grows to (None: it keeps its runs)."""


# ---------------------------------------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one UsageError line instead of usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see python main.py --help)")


def preset_help() -> str:
    """The presets with their one-line descriptions, for --help."""
    return "; ".join(f"{name} = {PRESET_DESCRIPTIONS[name]}" for name in PRESETS)


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
    study.add_argument("--runs", type=int, metavar="N", help="pretraining runs (default: TrainingPars.num_runs); "
                       "with --resume: grow the study to N runs (docs/studies.md)")
    study.add_argument("--configs", nargs="+", metavar="NAME_OR_GROUP",
                       help="configurations or groups for stage 2 (default: conf_baseline; with --quick: "
                            f"{' '.join(QUICK_CONFIGS)})")  # fmt: skip
    study.add_argument("--seed", type=int, metavar="S", help="base seed of every random stream (default: 0)")
    study.add_argument("--note", metavar="TEXT", help="free text for note.txt")
    study.add_argument("--quick", action="store_true", help="a few-minute look at the whole pipeline: 2 runs, few "
                       "SGD steps, small probes, no run exclusion (see study/quick.py)")  # fmt: skip
    study.add_argument("--preset", metavar="NAME",
                       help=f"parameter preset, one of: {preset_help()} (default: {DEFAULT_PRESET}, or the preset "
                            "of --skip-pretraining's folder); see docs/model.md, 'Lineage'")  # fmt: skip
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
        help="finish an interrupted study in FOLDER (a results folder or a kept one in studies/): only incomplete "
             "jobs run again; with --runs N, grow it to N runs",
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
    return fresh_plan(args, execution, source or parameter_files.REPO_PARAMETERS)


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
        run_overrides = parameter_files.read_overrides(source)
        if skip is not None:  # stage 2 continues with the settings the reused pretraining ran with
            reused = parameter_files.read_overrides(StudyLayout(skip[0]).parameters)
            run_overrides = parameter_files.merge_overrides(run_overrides, reused)
        run_overrides = parameter_files.merge_overrides(run_overrides, QUICK_OVERRIDES if args.quick else {})
    except ParameterError as error:
        raise UsageError(f"{source.name} is invalid: {error}; fix it") from error
    run_overrides = parameter_files.merge_overrides(run_overrides, parse_overrides_json(args.overrides_json))
    params = check_parameter_files(source, run_overrides, configs, preset)
    runs = args.runs if args.runs is not None else params.training.num_runs
    if skip is not None:
        runs = min(runs, skip[1]) if args.runs is not None else skip[1]
    elif not params.pretraining.is_on:
        raise UsageError("PretrainingPars.is_on is False: pass --skip-pretraining FOLDER to reuse a pretraining")
    if runs != params.training.num_runs:
        run_overrides = parameter_files.merge_overrides(run_overrides, {"TrainingPars": {"num_runs": runs}})
    seed = args.seed if args.seed is not None else (skip[2] if skip is not None else 0)
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed {seed}: the base seed must be an integer in 0..{MAX_SEED} (numpy seeds must "
                         "be non-negative; JAX keys keep 32 bits, so larger seeds would repeat smaller ones)")
    run_overrides = json.loads(json.dumps(run_overrides))  # as environment.json keeps it, for identical resumes
    study = StudyDesign(runs, configs, seed, run_overrides, str(skip[0]) if skip else None, bool(args.quick), preset)
    return Plan(study, execution, results_root, args.note or "")


def study_preset(name: str | None, reused_pretraining: Path | None) -> str:
    """The preset of a new study: --preset, else that of a reused pretraining, else the default."""
    if name is None:
        if reused_pretraining is None:
            return DEFAULT_PRESET
        try:
            return parameter_files.read_preset(StudyLayout(reused_pretraining).parameters)
        except ParameterError as error:
            raise UsageError(f"cannot reuse the pretraining: {error}") from error
    try:
        return check_preset(name)
    except ParameterError as error:
        raise UsageError(f"--preset: {error}") from error


def resume_plan(args: argparse.Namespace, execution: Execution) -> Plan:
    """Settings recorded in the folder to resume, with the folder checked."""
    # "is not": 0 == False, so --seed 0 would pass a membership test in (None, False)
    given = [f"--{name.replace('_', '-')}" for name in RESUME_FORBIDDEN
             if getattr(args, name) is not None and getattr(args, name) is not False]  # fmt: skip
    if given:
        raise UsageError(f"{', '.join(given)} cannot be combined with --resume: a resumed study keeps the settings "
                         "recorded in its environment.json")  # fmt: skip
    folder = args.resume.resolve()
    try:
        study = read_study_design(folder)
    except ResultsFolderError as error:
        raise UsageError(f"cannot resume: {error}") from error
    layout = StudyLayout(folder)
    if layout.parameters.is_file() and not layout.snapshot_parameters.is_file():
        raise UsageError(f"cannot resume: {layout.snapshot_parameters} is missing; start a new study")
    configuration_names(study.configs)
    for path in [layout.parameters, *(layout.configuration(c).parameters for c in study.configs)]:
        if path.exists():
            load_checked(path)
    grow_to = growth_target(args.runs, study, layout)
    if study.skip_pretraining and grow_to is None:
        pretraining_folder_info(layout.recorded_folder(study.skip_pretraining))
    damage = inventory.damage_report(folder)
    if damage:
        raise UsageError(f"cannot resume: {damage}")
    return Plan(study, execution, folder.parent, resume=folder, grow_to=grow_to)


def growth_target(runs: int | None, study: StudyDesign, layout: StudyLayout) -> int | None:
    """The runs a resumed study grows to (None: it keeps its runs); UsageError if it would shrink, or if a
    --skip-pretraining study would need runs that the reused pretraining does not retain (yet)."""
    if runs is None or runs == study.runs:
        return None
    if runs < study.runs:
        raise UsageError(f"--runs {runs} would shrink the study in {layout.root} ({study.runs} runs): a study only "
                         "grows; resume it without --runs")  # fmt: skip
    if study.skip_pretraining:
        reused = layout.recorded_folder(study.skip_pretraining)
        retained = pretraining_folder_info(reused)[1]
        if reused_pretraining_in_progress(reused):
            raise UsageError(f"cannot grow: the reused pretraining in {reused} is not assembled (is it growing?); "
                             f"finish it first: python main.py --resume {reused}")  # fmt: skip
        if retained < runs:
            raise UsageError(f"cannot grow to {runs} runs: the reused pretraining in {reused} retains {retained}; "
                             f"grow it first (python main.py --resume {reused} --runs M) or ask for at most "
                             f"{retained}")  # fmt: skip
    return runs


def reused_pretraining_in_progress(folder: Path) -> bool:
    """Whether a study folder whose pretraining is reused is still pretraining (e.g. growing): its files then
    hold an earlier assembly. A folder without a study record (made by hand) is taken as finished."""
    try:
        return inventory.study_state(folder).retained is None
    except ResultsFolderError:
        return False


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
        parameter_files.check_overrides_shape(data, "--overrides-json")
    except ParameterError as error:
        raise UsageError(str(error)) from error
    return data


def pretraining_folder_info(folder: Path) -> tuple[Path, int, int]:
    """(folder, retained runs, base seed) of a finished pretraining to reuse (UsageError if unusable)."""
    folder = folder.resolve()
    try:
        record = read_environment_record(folder)
        missing = [path.name for path in StudyLayout(folder).pretraining_files() if not has_stored(path)]
        if missing:
            raise ResultsFolderError(f"{folder} has no finished pretraining (missing {', '.join(missing)})")
        retained = assembly.retained_runs(folder)
    except (ResultsFolderError, ResultsFileError) as error:
        raise UsageError(f"cannot reuse the pretraining: {error}") from error
    if retained < 1:
        raise UsageError(f"cannot reuse the pretraining: {folder} retained no run")
    return folder, retained, int(record.get("base_seed", 0))


def configuration_overrides(run_overrides: Mapping, name: str) -> dict[str, dict[str, Any]]:
    """The run's overrides with the configuration's own changes applied last."""
    return parameter_files.merge_overrides(run_overrides, configurations.configuration(name).overrides())


def check_parameter_files(source: Path, run_overrides: Mapping, configs: Sequence[str],
                          preset: str = DEFAULT_PRESET) -> Parameters:  # fmt: skip
    """Write the study's parameter files into a scratch folder and load them; the run's parameters."""
    with tempfile.TemporaryDirectory() as scratch:
        layout = StudyLayout(Path(scratch))
        try:
            parameter_files.write_parameters_copy(layout.parameters, run_overrides, source, preset=preset)
            params = load_parameters_file(layout.parameters)
            for name in configs:
                parameter_files.write_parameters_copy(layout.file(configuration_parameters(name)),
                                                configuration_overrides(run_overrides, name), source,
                                                preset=preset)  # fmt: skip
        except (ParameterError, TypeError, ValueError) as error:
            raise UsageError(
                f"invalid parameters ({source.name} with the study's overrides): {error}; fix them"
            ) from error
    for name in configs:
        reason = configurations.unsupported_reason(configurations.configuration(name), params.absent_trainables)
        if reason:
            raise UsageError(f"--configs: {reason} (SSNPars.kappa_mid_f = False); choose other configurations")
    return params


def load_checked(path: Path) -> Parameters:
    """Load a parameters file of a results folder (UsageError naming it if invalid)."""
    try:
        return load_parameters_file(path)
    except (ParameterError, FileNotFoundError) as error:
        raise UsageError(f"invalid parameters file {path}: {error.__cause__ or error}; fix or remove it") from error
