"""The results folder of a study: every file, folder and marker name, and the paths built from them.

Nothing else in the repository spells a results file or folder name; code asks a layout for a path instead
(only the figures inside the figure folders are named by the figure code that draws them)::

    <root>/                                  StudyLayout(root)
        environment.json  note.txt  log.txt  parameters.py  report.html  .main.lock
        kept.json                            only in a kept copy (study.keep): where and when it was kept
        scripts/                             the code at the study's start (scripts/parameters.py included)
        logs/<job>.log                       one log per job
        submitit/                            submitit's own files (--executor slurm)
        PRETRAINING_DONE.json  ANALYSIS_DONE.json         study-stage markers
        pretraining_results.csv ... excluded_runs_from_pretraining.csv   the assembled pretraining (absent in a
                                             --skip-pretraining study: PRETRAINING_DONE.json names its folder)
        pretraining_runs/run_<i>/            one pretraining job: its pieces, then DONE.json (job marker)
        excluded_runs_all.csv  excluded_runs_details.csv                 analysis exclusion lists
        pretraining_tuning_curves.csv ... study_stats.csv  headline.png    study-wide analysis outputs
        pretraining_figures/                 the pretraining figures
        <conf>/                              ConfigurationLayout(root / conf)
            parameters_<conf>.py  training_results.csv  training_results_val.csv  excluded_runs.csv
            DONE.json                        study-stage marker: the configuration is assembled
            training_runs/run_<i>/           one stage-2 job: its CSVs, then DONE.json (job marker)
            tuning_curves.csv ... LMI.csv  stats_*.csv  MVPA_settings.json  summary.pdf   analysis outputs
            figures/                         the configuration's figures (per_run/ inside: one figure per run)

Three markers share the name ``DONE.json`` in different places: a pretraining job's, a stage-2 job's (both in
their job folder) and a configuration's (in its folder, written once its jobs are assembled). They are named
separately here (JOB_DONE, CONFIGURATION_DONE) so that a reader sees which one is meant.

A kept copy of a study (``studies/<name>/``, made by ``python -m study.keep``) stores every CSV file gzip-packed
as ``<name>.csv.gz`` (PACKED_SUFFIX); readers find a file's content with ``store.files.stored``.

This module imports only the standard library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------------------------------- study records
PARAMETERS = "parameters.py"
"""The study's parameters (the repository's parameters.py plus the study's OVERRIDES): stages 0 and 1."""
ENVIRONMENT = "environment.json"
NOTE = "note.txt"
LOG = "log.txt"
REPORT = "report.html"
"""The analysis report; the study's last log line names it."""
LOCK = ".main.lock"
SCRIPTS = "scripts"
"""The copy of the code taken when the folder was created."""
JOB_LOGS = "logs"
SUBMITIT = "submitit"
KEPT = "kept.json"
"""The record of a kept copy of a study (study.keep): the folder it was kept from, when, with which code."""
CSV_WRITE_OPTIONS: dict[str, object] = {"index": False, "float_format": None, "lineterminator": "\n"}
"""How every results CSV is written (pandas ``to_csv``: no index, full float precision, Unix line ends); the one
format that a derived file must reproduce byte for byte (store.renumbering)."""
DERIVED = "derived.json"
"""The retained per-run files a kept study stores only as their unfiltered copies (store.renumbering)."""
PACKED_SUFFIX = ".gz"
"""Suffix of a gzip-packed results file in a kept study: ``pretraining_results.csv.gz``."""

# ------------------------------------------------------------------------------------------------ markers
PRETRAINING_DONE = "PRETRAINING_DONE.json"
"""Study-stage marker: the pretraining is assembled (payload: pretraining folder, retained runs)."""
CONFIGURATION_DONE = "DONE.json"
"""Study-stage marker in a configuration folder: its stage-2 jobs are assembled."""
ANALYSIS_DONE = "ANALYSIS_DONE.json"
"""Study-stage marker: the analysis finished."""
JOB_DONE = "DONE.json"
"""Job marker in a job folder, written last by a pretraining or stage-2 job (payload: success, row counts)."""

# ------------------------------------------------------------------------------------------------ job folders
PRETRAINING_RUNS = "pretraining_runs"
TRAINING_RUNS = "training_runs"
RUN_FOLDER_PREFIX = "run_"
"""A job folder is ``run_<i>`` (run_folder_name)."""

# ---------------------------------------------------------------------------------------------- results CSVs
PRETRAINING_RESULTS = "pretraining_results.csv"
PRETRAINING_RESULTS_VAL = "pretraining_results_val.csv"
ORIMAP = "orimap.csv"
INITIAL_PARAMETERS = "initial_parameters.csv"
INIT_READOUT_PARAMS = "init_readout_params.csv"
EXCLUDED_RUNS = "excluded_runs_from_pretraining.csv"
"""Original indices of the runs whose pretraining ended outside the accepted threshold range."""
PRETRAINING_PIECES: tuple[str, ...] = (
    PRETRAINING_RESULTS, PRETRAINING_RESULTS_VAL, ORIMAP, INITIAL_PARAMETERS, INIT_READOUT_PARAMS,
)  # fmt: skip
"""The per-run pretraining files: written by each job, assembled at the root, filtered by run exclusion."""
TRAINING_RESULTS = "training_results.csv"
TRAINING_RESULTS_VAL = "training_results_val.csv"
TRAINING_PIECES: tuple[str, ...] = (TRAINING_RESULTS, TRAINING_RESULTS_VAL)
"""The stage-2 files: written by each job, assembled in the configuration folder."""
EXCLUDED_CONF = "excluded_runs.csv"
"""The analysis's excluded runs of one configuration (one index per line), in the configuration folder."""
EXCLUDED_ALL = "excluded_runs_all.csv"
"""Runs excluded by at least one configuration."""
EXCLUDED_DETAILS = "excluded_runs_details.csv"
"""Excluded runs per configuration."""
COMPLETE_SUFFIX = "_complete"
"""Run exclusion keeps each unfiltered per-run file as ``<stem>_complete.csv``."""

# --------------------------------------------------------------------------------------- analysis outputs
PRETRAINING_TC = "pretraining_tuning_curves.csv"
PRETRAINING_FEATURES = "pretraining_tuning_curve_features.csv"
CONF_TC = "tuning_curves.csv"
CONF_FEATURES = "tuning_curve_features.csv"
REL_PRETRAIN = "rel_changes_pretrain.csv"
REL_TRAIN = "rel_changes_train.csv"
SCORE_TABLES: tuple[str, ...] = ("MVPA_scores", "Mahal_scores", "Mahal_details", "LMI")
"""Stems of the score CSV files of a configuration (``<stem>.csv``)."""
MVPA_SETTINGS = "MVPA_settings.json"
STATS_PAIRED = "stats_paired_tests.csv"
STATS_ANOVA = "stats_rm_anova.csv"
STATS_CORR = "stats_param_offset_correlations.csv"
STATS_TRIANGLES = "stats_corr_triangles.csv"
STATS_CORR_FITS = "stats_param_offset_fits.csv"
"""The fitted lines (with bootstrap bands) of the parameter-offset correlation figures."""
TRIANGLE_DATA = "corr_triangle_data.csv"
"""Per run: ΔMVPA, ΔE/I ratio and Δthreshold of each correlation triangle."""
STATS_TRIANGLE_FITS = "stats_corr_triangle_fits.csv"
STATS_SLOPE_LOWESS = "stats_tc_slope_lowess.csv"
STATS_SLOPE_MANN_WHITNEY = "stats_tc_slope_mann_whitney.csv"
PRETRAINING_STATS_SLOPE_LOWESS = "pretraining_stats_tc_slope_lowess.csv"
PRETRAINING_STATS_SLOPE_MANN_WHITNEY = "pretraining_stats_tc_slope_mann_whitney.csv"
STUDY_SUMMARY = "study_summary.csv"
STUDY_STATS = "study_stats.csv"
HEADLINE = "headline.png"
PRETRAINING_FIGURES = "pretraining_figures"
FIGURES = "figures"
PER_RUN = "per_run"
SUMMARY_PDF = "summary.pdf"


def complete_copy(name: str) -> str:
    """The name of the unfiltered copy of a per-run file: ``orimap.csv`` -> ``orimap_complete.csv``."""
    return f"{Path(name).stem}{COMPLETE_SUFFIX}.csv"


def packed(path: Path) -> Path:
    """The packed twin of a results file: ``a/orimap.csv`` -> ``a/orimap.csv.gz``."""
    return path.with_name(path.name + PACKED_SUFFIX)


def configuration_parameters(conf: str) -> str:
    """The name of a configuration's parameters file: ``parameters_<conf>.py``."""
    return f"parameters_{conf}.py"


def table_name(stem: str) -> str:
    """The file name of an analysis table: ``MVPA_scores`` -> ``MVPA_scores.csv`` (SCORE_TABLES hold stems)."""
    return f"{stem}.csv"


def run_folder_name(run_index: int) -> str:
    """``run_<i>``: the folder of one job."""
    return f"{RUN_FOLDER_PREFIX}{run_index}"


# ----------------------------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class JobLayout:
    """The folder of one job (a pretraining run or a stage-2 run): its files and its marker."""

    folder: Path

    @property
    def marker(self) -> Path:
        """The job marker, written last."""
        return self.folder / JOB_DONE

    def file(self, name: str) -> Path:
        """One of the job's result files (a name of PRETRAINING_PIECES or TRAINING_PIECES)."""
        return self.folder / name


@dataclass(frozen=True)
class ConfigurationLayout:
    """The folder of one stage-2 configuration (its name is the folder's name)."""

    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def parameters(self) -> Path:
        """``parameters_<conf>.py``: the study's parameters with the configuration's changes applied last."""
        return self.folder / configuration_parameters(self.name)

    @property
    def done(self) -> Path:
        """Study-stage marker: the configuration's jobs are assembled."""
        return self.folder / CONFIGURATION_DONE

    @property
    def training_results(self) -> Path:
        return self.folder / TRAINING_RESULTS

    @property
    def training_results_val(self) -> Path:
        return self.folder / TRAINING_RESULTS_VAL

    @property
    def excluded_runs(self) -> Path:
        return self.folder / EXCLUDED_CONF

    def file(self, name: str) -> Path:
        """A file of the configuration folder."""
        return self.folder / name

    def score_table(self, stem: str) -> Path:
        """A score table of the configuration (a stem of SCORE_TABLES): ``<conf>/<stem>.csv``."""
        return self.folder / table_name(stem)

    @property
    def figures(self) -> Path:
        """The configuration's figures: ``<conf>/figures``."""
        return self.folder / FIGURES

    @property
    def summary_pdf(self) -> Path:
        return self.folder / SUMMARY_PDF

    def run(self, run_index: int) -> JobLayout:
        """The folder of the stage-2 job of one run."""
        return JobLayout(self.folder / TRAINING_RUNS / run_folder_name(run_index))


@dataclass(frozen=True)
class StudyLayout:
    """The results folder of a study (also a folder that holds only a pretraining, e.g. one being reused)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # records
    @property
    def parameters(self) -> Path:
        return self.root / PARAMETERS

    @property
    def environment(self) -> Path:
        return self.root / ENVIRONMENT

    @property
    def note(self) -> Path:
        return self.root / NOTE

    @property
    def log(self) -> Path:
        return self.root / LOG

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def scripts(self) -> Path:
        return self.root / SCRIPTS

    @property
    def snapshot_parameters(self) -> Path:
        """The copy of the repository's parameters.py taken when the folder was created."""
        return self.scripts / PARAMETERS

    @property
    def job_logs(self) -> Path:
        return self.root / JOB_LOGS

    def job_log(self, job: str) -> Path:
        """``logs/<job>.log``."""
        return self.job_logs / f"{job}.log"

    @property
    def submitit(self) -> Path:
        return self.root / SUBMITIT

    @property
    def kept(self) -> Path:
        return self.root / KEPT

    @property
    def derived(self) -> Path:
        """The list of retained pretraining files stored as derivations (a kept study; store.files)."""
        return self.root / DERIVED

    def recorded_folder(self, recorded: str) -> Path:
        """A folder named in this study's records (a reused pretraining): absolute as recorded, or relative to
        the study's root (a kept copy names its reused pretraining as ``../<kept name>``, valid in any clone)."""
        path = Path(recorded)
        return path if path.is_absolute() else Path(os.path.normpath(self.root / path))

    # study-stage markers
    @property
    def pretraining_done(self) -> Path:
        return self.root / PRETRAINING_DONE

    @property
    def analysis_done(self) -> Path:
        return self.root / ANALYSIS_DONE

    # pretraining
    def file(self, name: str) -> Path:
        """A file at the root (a name of this module, e.g. ORIMAP)."""
        return self.root / name

    @property
    def pretraining_results(self) -> Path:
        return self.root / PRETRAINING_RESULTS

    @property
    def orimap(self) -> Path:
        return self.root / ORIMAP

    @property
    def initial_parameters(self) -> Path:
        return self.root / INITIAL_PARAMETERS

    @property
    def init_readout_params(self) -> Path:
        return self.root / INIT_READOUT_PARAMS

    @property
    def excluded_runs(self) -> Path:
        """The runs excluded after pretraining."""
        return self.root / EXCLUDED_RUNS

    @property
    def excluded_all(self) -> Path:
        return self.root / EXCLUDED_ALL

    @property
    def excluded_details(self) -> Path:
        return self.root / EXCLUDED_DETAILS

    @property
    def pretraining_figures(self) -> Path:
        return self.root / PRETRAINING_FIGURES

    def pretraining_files(self) -> tuple[Path, ...]:
        """The root files of a finished pretraining."""
        return tuple(self.root / name for name in (*PRETRAINING_PIECES, EXCLUDED_RUNS))

    def pretraining_run(self, run_index: int) -> JobLayout:
        """The folder of the pretraining job of one run."""
        return JobLayout(self.root / PRETRAINING_RUNS / run_folder_name(run_index))

    # configurations
    def configuration(self, conf: str) -> ConfigurationLayout:
        """The folder of a stage-2 configuration."""
        return ConfigurationLayout(self.root / conf)
