"""The analysis pipeline of a finished results folder (ANALYSIS.md §1 with the fixes of §11).

``python -m analysis.main_analysis RESULTS_FOLDER [--configs ...] [--overwrite] [--parts ...]`` or
:func:`run_analysis`. Parts, in pipeline order (each reads what earlier parts wrote):

* ``exclusion``: ``R/<conf>/excluded_runs.csv``, ``R/excluded_runs_all.csv``, ``R/excluded_runs_details.csv``
  (binding decision 7; every configuration). Exclusion is always evaluated because every other part needs
  it; this part writes the files (only when missing or changed).
* ``tuning_curves``: stages 0 and 1 of every run into ``R/pretraining_tuning_curves.csv``; stage 2 of each
  configuration's valid runs into ``R/<conf>/tuning_curves.csv`` (one block per (run, stage) appended as
  soon as it is computed, so an interrupted analysis resumes where it stopped).
* ``features``: ``R/pretraining_tuning_curve_features.csv`` (stages 0, 1), ``R/<conf>/tuning_curve_features.csv``.
* ``changes``: ``R/rel_changes_pretrain.csv`` (every run), ``R/<conf>/rel_changes_train.csv`` (every run with
  training rows; exclusion is applied when they are used).
* ``mvpa``: ``MVPA_scores.csv``, ``Mahal_scores.csv``, ``Mahal_details.csv``, ``LMI.csv`` and
  ``MVPA_settings.json`` per configuration (valid runs, stages 0, 1, 2; rewritten after every run).
* ``stats``: ``stats_paired_tests.csv`` and ``stats_rm_anova.csv`` (MVPA and Mahalanobis, pre = stage 1,
  post = stage 2), ``stats_param_offset_correlations.csv``, ``stats_corr_triangles.csv`` per configuration.
* ``figures``: F1-F9 into ``R/<conf>/figures/`` (F1 in ``figures/per_run/``) and, for the first configuration,
  the pretraining figures into ``R/pretraining_figures/``.
* ``report``: ``R/<conf>/summary.pdf`` and ``R/report.html``.

Caching: an output that exists is kept unless ``overwrite`` is set, or an output it depends on was
(re)computed in the same call; per-run tables (tuning curves, features, MVPA) compute only the missing
(run, stage) blocks, and MVPA results computed with other settings are recomputed.

Documented choices: the first configuration is the one named ``*baseline`` (else the first given); figures
of a configuration show its valid runs (B5), the F2 files without suffix show every run with training rows
(as the reference's post-training call did), F1 is drawn for every run; root-level pretraining figures use
the runs not excluded by any configuration (the union); the slope figure F7 does not depend on the colouring,
so it is written once as ``tc_slope_<pretrain|train>_color_by_type.png``; pre-training changes use every
pretraining row of a run (stage-2 rows are never part of that window).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.cli import ALL_PARTS, parse_analysis_args

if __name__ == "__main__":  # parse before the slow imports below, so that --help and bad arguments answer at once
    parse_analysis_args()

import pandas as pd
from tqdm.auto import tqdm

from analysis import analysis_functions as af
from analysis import report
from analysis import study_summary as ss
from analysis import visualization as vis
from analysis.mvpa_responses import MvpaSettings, ResponseCache, mvpa_scores_for_run
from analysis.snapshots import SnapshotLoader, configuration_parameters_path, read_parameters, training_results_path
from analysis.tuning_curves import tuning_curve_blocks
from parameters import Parameters
from study.layout import EXCLUDED_ALL, EXCLUDED_CONF, EXCLUDED_DETAILS
from study.layout import REPORT as REPORT_HTML
from study.logs import setup_logging
from study.quick import QUICK_ANALYSIS_MVPA_TRIALS, QUICK_ANALYSIS_MW_STEP
from training.results_io import (
    PRETRAINING_RESULTS,
    SSN_COLUMNS,
    STEP_COLUMNS,
    ResultsFileError,
    atomic_open,
    atomic_write_csv,
    is_complete_output,
    read_results_csv,
    run_entry_point,
    training_columns,
)

logger = logging.getLogger(__name__)

PRETRAINING_TC = "pretraining_tuning_curves.csv"
PRETRAINING_FEATURES = "pretraining_tuning_curve_features.csv"
CONF_TC = "tuning_curves.csv"
CONF_FEATURES = "tuning_curve_features.csv"
REL_PRETRAIN = "rel_changes_pretrain.csv"
REL_TRAIN = "rel_changes_train.csv"
SCORE_TABLES: tuple[str, ...] = ("MVPA_scores", "Mahal_scores", "Mahal_details", "LMI")
MVPA_SETTINGS = "MVPA_settings.json"
STATS_PAIRED = "stats_paired_tests.csv"
STATS_ANOVA = "stats_rm_anova.csv"
STATS_CORR = "stats_param_offset_correlations.csv"
STATS_TRIANGLES = "stats_corr_triangles.csv"
PRETRAINING_FIGURES = "pretraining_figures"
FIGURES = "figures"
PER_RUN = "per_run"
SUMMARY_PDF = "summary.pdf"
COLOR_BY: tuple[str, ...] = ("type", "run_index", "pref_ori", "phase")
CORRELATION_TARGETS: tuple[str, ...] = ("psychometric_offset", "staircase_offset", "loss_binary_cross_entr")
TRIANGLES: tuple[tuple[int, str, float], ...] = (
    (0, "mid", 55.0),
    (0, "mid", 125.0),
    (1, "sup", 55.0),
    (1, "sup", 125.0),
)
SUMMARY_ORDER: tuple[str, ...] = (
    "offset_pre_post_train",
    "boxplot_relative_changes",
    "boxplot_relative_changes_ylim",
    *(f"tc_features_train_color_by_{c}" for c in ("phase", "run_index", "pref_ori", "type")),
    "tc_slope_train_color_by_type",
    "corr_psychometric_Jraw",
    "corr_psychometric_Jcombined",
    "corr_psychometric_f_c",
    "corr_psychometric_kappa_Jsup",
    "MVPA_match_paper_fig",
    "MVPA_scores",
    "Mahal_scores",
    "combined_corr_triangles",
)
"""Figure order of summary.pdf (the pages of the reference PDF, §8.1); the other figures follow."""


# ------------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnalysisSettings:
    """Sizes and switches of the analysis (defaults: ANALYSIS.md §10)."""

    mvpa: MvpaSettings = field(default_factory=MvpaSettings)
    """Trials, seed, noise and classifier settings of the MVPA and Mahalanobis scores."""
    tc_ori_step: float = 5.0
    """Step of the tuning-curve orientations over [0, 360), degrees."""
    mw_step: float = 0.2
    """Step of the sliding Mann-Whitney windows of F7, degrees."""
    per_run_figures: bool = True
    """Draw the per-run training figures F1."""

    def __post_init__(self) -> None:
        count = 360.0 / self.tc_ori_step
        if self.tc_ori_step <= 0 or abs(count - round(count)) > 1e-9 or round(count) < 4:
            raise ValueError(f"tc_ori_step must divide 360 into at least 4 steps, got {self.tc_ori_step}")
        if self.mw_step <= 0:
            raise ValueError(f"mw_step must be positive, got {self.mw_step}")

    @property
    def tc_orientations(self) -> tuple[float, ...]:
        """Tuning-curve orientations 0, step, ..., 360 - step (degrees)."""
        return tuple(float(i * self.tc_ori_step) for i in range(int(round(360.0 / self.tc_ori_step))))

    def mvpa_record(self) -> dict:
        """The settings the MVPA scores depend on (stored next to them; keys as in earlier results folders)."""
        m = self.mvpa
        return {"mvpa_trials": m.trials, "sigma_filter": m.sigma_filter, "readout_noise": m.readout_noise,
                "normalise": m.normalise, "noise_std": m.noise_std, "n_splits": m.n_splits, "seed": m.seed}  # fmt: skip


QUICK_SETTINGS = AnalysisSettings(mvpa=MvpaSettings(trials=QUICK_ANALYSIS_MVPA_TRIALS), mw_step=QUICK_ANALYSIS_MW_STEP)
"""Small sizes for a quick look (``--quick``, study.quick): 40 MVPA trials, 1° Mann-Whitney steps."""


# ------------------------------------------------------------------------------------------------------
# The study: tables, parameters, runs and exclusion
# ------------------------------------------------------------------------------------------------------
@dataclass
class Study:
    """The inputs of the analysis of one results folder."""

    root: Path
    confs: list[str]
    pre_df: pd.DataFrame
    train: dict[str, pd.DataFrame]
    params: dict[str, Parameters]
    runs: list[int]
    excluded: dict[str, list[int]] = field(default_factory=dict)
    loader: SnapshotLoader | None = None

    @property
    def first_conf(self) -> str:
        """The configuration whose analysis also writes the pretraining figures."""
        return self.confs[0]

    def training_runs(self, conf: str) -> list[int]:
        """Runs with stage-2 rows in the configuration."""
        present = set(pd.to_numeric(self.train[conf]["run_index"], errors="coerce").dropna().astype(int))
        return [r for r in self.runs if r in present]

    def valid(self, conf: str) -> list[int]:
        """Runs not excluded from the configuration's analysis."""
        excluded = set(self.excluded.get(conf, []))
        return [r for r in self.runs if r not in excluded]

    def excluded_union(self) -> list[int]:
        """Runs excluded by at least one configuration."""
        return sorted(set().union(*map(set, self.excluded.values()))) if self.excluded else []

    def root_valid(self) -> list[int]:
        """Runs not excluded by any configuration (pretraining figures)."""
        union = set(self.excluded_union())
        return [r for r in self.runs if r not in union]


def discover_configurations(results_root: Path) -> list[str]:
    """Sub-folders holding a training_results.csv, the ``*baseline`` ones first."""
    names = sorted(p.parent.name for p in Path(results_root).glob("*/training_results.csv"))
    return sorted(names, key=lambda n: (not n.endswith("baseline"), n))


def order_configurations(conf_names: Sequence[str]) -> list[str]:
    """Configurations with the first ``*baseline`` one moved to the front (it gets the pretraining figures)."""
    names = list(dict.fromkeys(conf_names))
    base = [n for n in names if n.endswith("baseline")]
    return ([base[0]] + [n for n in names if n != base[0]]) if base else names


def load_study(results_root: Path, conf_names: Sequence[str]) -> Study:
    """Read the pretraining and training tables and each configuration's parameters."""
    root = Path(results_root)
    if not root.is_dir():
        raise ResultsFileError(f"results folder not found: {root}")
    confs = order_configurations(conf_names)
    if not confs:
        raise ResultsFileError(f"no configuration to analyse in {root} (no */training_results.csv)")
    # every parameter and metric column the analysis reads: a missing one must stop it, not give NaNs
    pre_df = read_results_csv(root / PRETRAINING_RESULTS, [*STEP_COLUMNS, *SSN_COLUMNS, "psychometric_offset"])
    train = {c: read_results_csv(training_results_path(root, c), training_columns()) for c in confs}
    params = {c: read_parameters(configuration_parameters_path(root, c)) for c in confs}
    run_ids = pd.to_numeric(pre_df["run_index"], errors="coerce").dropna().astype(int)
    runs = list(range(int(run_ids.max()) + 1)) if len(run_ids) else []
    missing = sorted(set(runs) - set(run_ids))
    if missing:
        logger.warning("runs %s have no pretraining rows", missing)
    return Study(root, confs, pre_df, train, params, runs, loader=SnapshotLoader(root))


def compute_exclusion(study: Study) -> dict[str, list[int]]:
    """Excluded runs of every configuration (no training rows, or stuck at the offset ceiling)."""
    return {
        conf: af.excluded_runs(study.train[conf], study.runs, study.params[conf].stimuli.max_train_offset)
        for conf in study.confs
    }


def _exclusion_files_match(root: Path, excluded: dict[str, list[int]]) -> bool:
    """True if the exclusion files exist and list exactly these runs for exactly these configurations."""
    details = root / EXCLUDED_DETAILS
    paths = [root / EXCLUDED_ALL, details, *(root / c / EXCLUDED_CONF for c in excluded)]
    if not all(p.is_file() for p in paths):
        return False
    confs = pd.read_csv(details, index_col=0).index.astype(str).tolist()
    same_lists = all(af.read_excluded_runs(root / c / EXCLUDED_CONF) == runs for c, runs in excluded.items())
    union = sorted(set().union(*map(set, excluded.values())))
    return same_lists and confs == list(excluded) and af.read_excluded_runs(root / EXCLUDED_ALL) == union


# ------------------------------------------------------------------------------------------------------
# File helpers
# ------------------------------------------------------------------------------------------------------
def _truncate_partial_line(path: Path) -> None:
    """Cut an incomplete last line (an append interrupted mid-write) from a text file."""
    with path.open("rb+") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        pos = size
        while pos > 0:
            step = min(65536, pos)
            fh.seek(pos - step)
            chunk = fh.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                fh.truncate(pos - step + newline + 1)
                break
            pos -= step
        else:
            fh.truncate(0)
    logger.warning("%s ended with an incomplete line (interrupted write); it was removed", path)


def read_complete_tuning_curves(path: Path, n_oris: int) -> pd.DataFrame:
    """The complete (run, stage) blocks of a tuning-curve CSV; incomplete blocks are removed from the file."""
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=[*af.TC_ID_COLUMNS, *af.cell_names()])
    _truncate_partial_line(path)
    df = af.read_tuning_curves_csv(path)
    sizes = df.groupby(list(af.TC_ID_COLUMNS))["run_index"].transform("size")
    keep = (sizes == n_oris).to_numpy()
    complete = df[keep].reset_index(drop=True)
    if len(complete) < len(df):
        logger.warning("%s: dropping %d rows of incomplete tuning-curve blocks", path, len(df) - len(complete))
        _keep_lines(path, keep)
    return complete


def _keep_lines(path: Path, keep: Sequence[bool]) -> None:
    """Rewrite a CSV with only the data lines flagged in keep, byte for byte (header kept).

    Re-serialising the parsed table would format floats differently from the appends, so a recovered
    file would differ from one that was never interrupted.
    """
    lines = path.read_bytes().splitlines(keepends=True)
    header = lines[: len(lines) - len(keep)]
    rows = lines[len(header) :]
    with atomic_open(path, "wb") as fh:
        fh.writelines([*header, *(line for line, k in zip(rows, keep, strict=True) if k)])


def _blocks(df: pd.DataFrame, columns: Sequence[str] = af.TC_ID_COLUMNS) -> set[tuple[int, int]]:
    """The (run, stage) pairs present in a table."""
    if df.empty:
        return set()
    return {(int(r), int(s)) for r, s in df[list(columns)].drop_duplicates().itertuples(index=False)}


def _read_csv_or_none(path: Path) -> pd.DataFrame | None:
    """A CSV if it exists (None otherwise)."""
    return pd.read_csv(path) if path.is_file() else None


# ------------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------------
@dataclass
class _MvpaJob:
    """The MVPA work of one configuration: its folder, score tables and missing runs."""

    folder: Path
    tables: dict[str, pd.DataFrame]
    todo: list[int]


class Pipeline:
    """One analysis call: what to compute, what was recomputed (to refresh what depends on it)."""

    def __init__(self, study: Study, settings: AnalysisSettings, overwrite: bool, parts: Sequence[str]) -> None:
        unknown = sorted(set(parts) - set(ALL_PARTS))
        if unknown:
            raise ValueError(f"unknown parts {unknown}; valid: {list(ALL_PARTS)}")
        self.study = study
        self.root = study.root
        self.settings = settings
        self.overwrite = overwrite
        self.parts = tuple(parts)
        self.changed: set[str] = set()
        self.failed: list[str] = []

    # ---------------------------------------------------------------------------------- bookkeeping
    def _stale(self, path: Path, depends: Iterable[str] = ()) -> bool:
        """True if the output must be (re)written: missing or cut, overwrite, or an input changed in this call."""
        return self.overwrite or not is_complete_output(path) or bool(self.changed & set(depends))

    def conf_dir(self, conf: str) -> Path:
        """``R/<conf>``."""
        return self.root / conf

    def fig_dir(self, conf: str) -> Path:
        """``R/<conf>/figures``."""
        return self.root / conf / FIGURES

    # ----------------------------------------------------------------------------------------- steps
    def run(self) -> None:
        """Every requested part in pipeline order."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("exclusion", self.exclusion),
            ("tuning_curves", self.tuning_curves),
            ("features", self.features),
            ("changes", self.changes),
            ("mvpa", self.mvpa),
            ("stats", self.stats),
            ("figures", self.figures),
            ("report", self.report),
        ]
        self.study.excluded = compute_exclusion(self.study)
        for conf in self.study.confs:
            logger.info("%s: %d runs, excluded %s", conf, len(self.study.runs), self.study.excluded[conf])
        for name, step in steps:
            if name in self.parts:
                start = time.perf_counter()
                step()
                logger.info("part %s done in %.1f s", name, time.perf_counter() - start)
        if self.failed:
            raise RuntimeError("figures failed (every other output was written):\n" + "\n".join(self.failed))

    def exclusion(self) -> None:
        """Write the exclusion files when they are missing or no longer match."""
        if not self.overwrite and _exclusion_files_match(self.root, self.study.excluded):
            return
        af.write_exclusion_files(self.root, self.study.excluded)
        self.changed.add("exclusion")

    # ------------------------------------------------------------------------------- tuning curves
    def tuning_curves(self) -> None:
        """Pretraining (stages 0, 1, every run) and per-configuration (stage 2, valid runs) tuning curves."""
        wanted = [(r, s) for r in self.study.runs for s in (0, 1)]
        self._tuning_curve_file(self.root / PRETRAINING_TC, wanted, None, "tc:pre")
        for conf in self.study.confs:
            wanted = [(r, 2) for r in self.study.valid(conf)]
            self._tuning_curve_file(self.conf_dir(conf) / CONF_TC, wanted, conf, f"tc:{conf}")

    def _tuning_curve_file(self, path: Path, wanted: list[tuple[int, int]], conf: str | None, key: str) -> None:
        """Append the missing (run, stage) blocks of one tuning-curve file."""
        oris = self.settings.tc_orientations
        if self.overwrite and path.is_file():
            path.unlink()
        done = _blocks(read_complete_tuning_curves(path, len(oris)))
        todo = [b for b in wanted if b not in done]
        if not todo:
            return
        self.changed.add(key)
        loader = self.study.loader
        for run, stage in tqdm(todo, desc=f"tuning curves {conf or 'pretraining'}", disable=None):
            try:
                snapshot = loader.snapshot(run, stage, conf)
            except ResultsFileError as error:
                logger.warning("tuning curves of run %d stage %d skipped: %s", run, stage, error)
                continue
            af.write_tuning_curves_csv(tuning_curve_blocks([snapshot], oris), path, append=True)

    # ------------------------------------------------------------------------------------ features
    def features(self) -> None:
        """Tuning-curve features of the pretraining file (stages 0, 1) and of each configuration (stage 2)."""
        self._feature_file(self.root / PRETRAINING_TC, self.root / PRETRAINING_FEATURES, (0, 1), "features:pre")
        for conf in self.study.confs:
            folder = self.conf_dir(conf)
            self._feature_file(folder / CONF_TC, folder / CONF_FEATURES, (2,), f"features:{conf}")

    def _feature_file(self, tc_path: Path, out: Path, stages: Sequence[int], key: str) -> None:
        """Compute the features of the tuning-curve blocks that the features file lacks (drop vanished blocks)."""
        if not tc_path.is_file():
            logger.warning("%s missing: no features for it (run the tuning_curves part)", tc_path)
            return
        oris = self.settings.tc_orientations
        tc = read_complete_tuning_curves(tc_path, len(oris))
        tc = tc[tc["training_stage"].isin(stages)]
        present = _blocks(tc)
        old = None if self.overwrite else _read_csv_or_none(out)
        if old is not None:
            in_tc = [(int(r), int(s)) in present for r, s in zip(old["run_index"], old["stage"], strict=True)]
            kept = old[in_tc]
            if len(kept) == len(old) and _blocks(kept, ("run_index", "stage")) == present:
                return
            old = kept
        have = _blocks(old, ("run_index", "stage")) if old is not None else set()
        new = [
            af.tuning_curve_features_table(block, stages, oris)
            for (run, stage), block in tc.groupby(list(af.TC_ID_COLUMNS), sort=False)
            if (int(run), int(stage)) not in have
        ]
        table = pd.concat([t for t in (old, *new) if t is not None and len(t)], ignore_index=True)
        table = table.sort_values(["run_index", "stage"], kind="stable").reset_index(drop=True)
        atomic_write_csv(table, out)
        self.changed.add(key)

    def pretraining_features(self) -> pd.DataFrame | None:
        """The pretraining features table (None if missing)."""
        return _read_csv_or_none(self.root / PRETRAINING_FEATURES)

    # ------------------------------------------------------------------------------ relative changes
    def changes(self) -> None:
        """rel_changes_pretrain.csv (every run) and rel_changes_train.csv (runs with training rows)."""
        empty = pd.DataFrame({"run_index": pd.Series(dtype=int), "stage": pd.Series(dtype=int)})
        self._changes_file(
            self.root / REL_PRETRAIN,
            lambda: af.relative_changes(self.study.pre_df, empty, self.study.runs, "pretrain"),
            self.study.runs,
            "changes:pre",
        )
        for conf in self.study.confs:
            runs = self.study.training_runs(conf)
            self._changes_file(
                self.conf_dir(conf) / REL_TRAIN,
                lambda c=conf, r=runs: af.relative_changes(self.study.pre_df, self.study.train[c], r, "train"),
                runs,
                f"changes:{conf}",
            )

    def _changes_file(self, path: Path, compute: Callable[[], pd.DataFrame], runs: list[int], key: str) -> None:
        """Write a relative-change table if it is missing, outdated or covers other runs."""
        old = None if self.overwrite else _read_csv_or_none(path)
        if old is not None and sorted(old["run_index"].astype(int)) == sorted(runs):
            return
        atomic_write_csv(compute(), path)
        self.changed.add(key)

    def rel_changes(self, conf: str | None, runs: Iterable[int]) -> pd.DataFrame | None:
        """A relative-change table (pretraining if conf is None) restricted to runs."""
        path = self.root / REL_PRETRAIN if conf is None else self.conf_dir(conf) / REL_TRAIN
        df = _read_csv_or_none(path)
        if df is None:
            logger.warning("%s missing (run the changes part)", path)
            return None
        return df[df["run_index"].astype(int).isin(list(runs))].reset_index(drop=True)

    # ------------------------------------------------------------------------------------------ MVPA
    def mvpa(self) -> None:
        """MVPA and Mahalanobis scores of each configuration's valid runs (resumable, run by run).

        Runs are taken one at a time across the configurations, so that their shared stages 0 and 1 are
        simulated once per run (:data:`analysis.mvpa_responses.ResponseCache`).
        """
        jobs = {conf: job for conf in self.study.confs if (job := self._mvpa_job(conf)) is not None}
        runs = sorted({run for job in jobs.values() for run in job.todo})
        for run in tqdm(runs, desc="MVPA", disable=None):
            cache: ResponseCache = {}
            for conf, job in jobs.items():
                if run in job.todo:
                    self._mvpa_run(conf, job, run, cache)
        for conf, job in jobs.items():
            if not job.todo:
                self._write_scores(job.folder, job.tables, self.settings.mvpa_record())
            self.changed.add(f"mvpa:{conf}")

    def _mvpa_job(self, conf: str) -> _MvpaJob | None:
        """The configuration's score tables restricted to its valid runs and the runs they lack (None if
        the tables on disk are complete and current)."""
        folder, record, valid = self.conf_dir(conf), self.settings.mvpa_record(), self.study.valid(conf)
        tables = self._existing_scores(folder, record)
        done = set(tables["MVPA_scores"]["run_index"].astype(int)) if tables else set()
        filtered = {name: t[t["run_index"].astype(int).isin(valid)] for name, t in tables.items()}
        todo = [r for r in valid if r not in done]
        if tables and not todo and all(len(filtered[n]) == len(tables[n]) for n in SCORE_TABLES):
            return None
        return _MvpaJob(folder, filtered or {name: pd.DataFrame() for name in SCORE_TABLES}, todo)

    def _mvpa_run(self, conf: str, job: _MvpaJob, run: int, cache: ResponseCache) -> None:
        """Scores of one run of a configuration, appended to its tables, which are then written."""
        try:
            snapshots = [self.study.loader.snapshot(run, st, conf if st == 2 else None) for st in (0, 1, 2)]
        except ResultsFileError as error:
            logger.warning("MVPA of run %d skipped: %s", run, error)
            return
        res = mvpa_scores_for_run(snapshots, self.settings.mvpa, cache)
        new = {
            "MVPA_scores": af.scores_long_frame({run: res}, "mvpa"),
            "Mahal_scores": af.scores_long_frame({run: res}, "mahal"),
            "Mahal_details": af.mahal_details_frame({run: res}),
            "LMI": af.lmi_frame({run: res}),
        }
        job.tables = {
            name: pd.concat([t for t in (job.tables[name], new[name]) if len(t)], ignore_index=True)
            for name in SCORE_TABLES
        }
        self._write_scores(job.folder, job.tables, self.settings.mvpa_record())

    def _existing_scores(self, folder: Path, record: dict) -> dict[str, pd.DataFrame]:
        """The score tables of the folder if all exist and were computed with these settings, else {}."""
        settings_path = folder / MVPA_SETTINGS
        if self.overwrite or not settings_path.is_file() or json.loads(settings_path.read_text()) != record:
            return {}
        tables = {name: _read_csv_or_none(folder / f"{name}.csv") for name in SCORE_TABLES}
        if any(t is None or "run_index" not in t.columns for t in tables.values()):
            return {}
        return tables

    @staticmethod
    def _write_scores(folder: Path, tables: dict[str, pd.DataFrame], record: dict) -> None:
        """Write the score tables (sorted by run) and the settings they were computed with."""
        for name, table in tables.items():
            table = table if len(table.columns) else pd.DataFrame(columns=["run_index"])
            atomic_write_csv(table.sort_values("run_index", kind="stable"), folder / f"{name}.csv")
        with atomic_open(folder / MVPA_SETTINGS) as fh:  # the cache trusts any settings file it finds
            fh.write(json.dumps(record, indent=1))

    def scores(self, conf: str, kind: str) -> pd.DataFrame | None:
        """MVPA ('MVPA_scores') or Mahalanobis ('Mahal_scores') scores of the valid runs (None if missing)."""
        df = _read_csv_or_none(self.conf_dir(conf) / f"{kind}.csv")
        if df is None or df.empty:
            logger.warning("%s/%s.csv missing or empty (run the mvpa part)", conf, kind)
            return None
        return df[df["run_index"].astype(int).isin(self.study.valid(conf))].reset_index(drop=True)

    # ----------------------------------------------------------------------------------------- stats
    def stats(self) -> None:
        """stats_*.csv of each configuration, then study_summary.csv and study_stats.csv at the root."""
        for conf in self.study.confs:
            self._stats_conf(conf)
        deps = ["exclusion", *(f"changes:{c}" for c in self.study.confs)]
        if any(self._stale(self.root / name, deps) for name in (ss.STUDY_SUMMARY, ss.STUDY_STATS)):
            data = self.configuration_data()
            af.write_stats_csv(ss.summary_table(data), self.root / ss.STUDY_SUMMARY)
            af.write_stats_csv(ss.stats_table(data), self.root / ss.STUDY_STATS)
            self.changed.add("study")

    def exclusion_reasons(self, conf: str) -> dict[int, str]:
        """Excluded run -> reason (the verdicts of compute_exclusion)."""
        table = af.exclusion_table(self.study.train[conf], self.study.runs,
                                   self.study.params[conf].stimuli.max_train_offset)  # fmt: skip
        return {int(r): str(why) for r, why in zip(table["run_index"], table["reason"], strict=True) if why}

    def configuration_data(self) -> list[ss.ConfigurationData]:
        """The inputs of the study summary: per configuration its retained runs' changes and behaviour."""
        out = []
        for conf in self.study.confs:
            valid = self.study.valid(conf)
            rc = self.rel_changes(conf, valid)
            present = [r for r in self.study.training_runs(conf) if r in valid]
            pre_post = af.pre_post_values(self.study.pre_df, self.study.train[conf], present) if present else None
            if pre_post is not None:
                pre_post = pre_post.reindex(columns=["run_index", "time", *ss.BEHAVIOUR])
            out.append(ss.ConfigurationData(
                conf, list(self.study.runs), self.exclusion_reasons(conf),
                rc if rc is not None else pd.DataFrame(columns=["run_index"]),
                pre_post if pre_post is not None else pd.DataFrame(columns=["run_index", "time", *ss.BEHAVIOUR]),
            ))  # fmt: skip
        return out

    def _stats_conf(self, conf: str) -> None:
        """Paired tests, repeated-measures ANOVA, parameter-offset correlations and triangle correlations."""
        folder = self.conf_dir(conf)
        deps = ["exclusion", f"mvpa:{conf}", f"changes:{conf}"]
        mvpa, mahal = self.scores(conf, "MVPA_scores"), self.scores(conf, "Mahal_scores")
        if mvpa is not None and mahal is not None:
            if self._stale(folder / STATS_PAIRED, deps):
                af.write_stats_csv(
                    pd.concat([af.paired_tests(mvpa, 1, 2, "MVPA"), af.paired_tests(mahal, 1, 2, "Mahal")]),
                    folder / STATS_PAIRED,
                )
            if self._stale(folder / STATS_ANOVA, deps):
                af.write_stats_csv(
                    pd.concat([af.rm_anova(mvpa, (1, 2), "MVPA"), af.rm_anova(mahal, (1, 2), "Mahal")]),
                    folder / STATS_ANOVA,
                )
        rc = self.rel_changes(conf, self.study.valid(conf))
        if rc is not None and self._stale(folder / STATS_CORR, deps):
            targets = [t for t in CORRELATION_TARGETS if t in rc.columns or f"d_{t}" in rc.columns]
            af.write_stats_csv(pd.concat([af.param_offset_correlations(rc, t) for t in targets]), folder / STATS_CORR)
        if rc is not None and mvpa is not None and self._stale(folder / STATS_TRIANGLES, deps):
            af.write_stats_csv(triangle_statistics(mvpa, rc), folder / STATS_TRIANGLES)

    # --------------------------------------------------------------------------------------- figures
    def figures(self) -> None:
        """F1-F9 of every configuration; the pretraining figures with the first configuration."""
        total = len(self.study.confs) + 1
        for i, conf in enumerate(self.study.confs, start=1):
            logger.info("figures %d of %d: %s", i, total, conf)  # the figure part runs for minutes
            self._training_figures(conf)
            self._tuning_figures(conf)
            self._mvpa_figures(conf)
        logger.info("figures %d of %d: pretraining and headline", total, total)
        self._pretraining_figures()
        self._figure(self.root / ss.HEADLINE, ["exclusion", "study"], lambda p: self.draw_headline(p))

    def draw_headline(self, path: Path) -> Path:
        """headline.png from the same inputs and tests as study_summary.csv and study_stats.csv."""
        data = self.configuration_data()
        stats_path = self.root / ss.STUDY_STATS
        table = pd.read_csv(stats_path) if stats_path.is_file() else ss.stats_table(data)
        lookup = ss.stats_lookup(table)
        return vis.plot_headline(
            {d.name: d.changes for d in data},
            {d.name: {c: ss.behaviour_wide(d.pre_post, c) for c in ss.BEHAVIOUR} for d in data},
            lambda conf, comparison: ss.format_test(lookup.get((conf, comparison))),
            path,
        )

    def _figure(
        self, path: Path, depends: Iterable[str], draw: Callable[[Path], object], group: Sequence[Path] = ()
    ) -> None:
        """Draw a figure (or a group of files written by one call) if any of them is stale.

        A failing figure is logged and remembered; :meth:`run` raises after every other output is written.
        """
        if not any(self._stale(p, depends) for p in (path, *group)):
            return
        self.changed.add("figures")
        try:
            draw(path)
        except Exception as error:  # one broken figure must not stop the analysis
            logger.exception("figure %s failed", path)
            self.failed.append(f"{path}: {error!r}")

    def _training_figures(self, conf: str) -> None:
        """F1 (every run), F2 (all training runs, and valid runs with suffix _train), F3, F4."""
        study, figs = self.study, self.fig_dir(conf)
        pre, train = study.pre_df, study.train[conf]
        if self.settings.per_run_figures:
            for run in tqdm(study.runs, desc=f"per-run figures {conf}", disable=None):
                self._figure(
                    figs / PER_RUN / f"resultsfig_{run}.png",
                    [],
                    lambda p, r=run: vis.plot_training_run(af.run_table(pre, train, r), p, run_index=r),
                )
        for suffix, runs, deps in (("", study.training_runs(conf), []), ("_train", study.valid(conf), ["exclusion"])):
            if not runs:
                continue
            group = [figs / f"{stem}{suffix}.png" for stem in vis.PRE_POST_FIGURES]
            self._figure(
                group[0],
                deps,
                lambda p, r=runs, s=suffix: vis.plot_all_pre_post_bars(af.pre_post_values(pre, train, r), p.parent, s),
                group,
            )
        rc = self.rel_changes(conf, study.valid(conf))
        if rc is None or rc.empty:
            return
        deps = ["exclusion", f"changes:{conf}"]
        title = f"{conf}: changes during training (first to last stage-2 row), {len(rc)} runs"
        self._figure(
            figs / "boxplot_relative_changes.png", deps, lambda p: vis.plot_relative_change_boxes(rc, p, title)
        )
        self._figure(
            figs / "boxplot_relative_changes_ylim.png",
            deps,
            lambda p: vis.plot_relative_change_boxes(rc, p, title, fixed_ylim=True),
        )
        group = [figs / f"{stem}.png" for stem in vis.CORRELATION_FIGURES]
        self._figure(group[0], deps, lambda p: vis.plot_all_param_offset_correlations(rc, p.parent), group)

    def _features(self, conf: str, runs: Sequence[int]) -> pd.DataFrame | None:
        """Pretraining (stages 0, 1) and configuration (stage 2) features of runs (None if missing)."""
        pre = self.pretraining_features()
        conf_feats = _read_csv_or_none(self.conf_dir(conf) / CONF_FEATURES)
        if pre is None or conf_feats is None:
            logger.warning("%s: tuning-curve features missing (run the features part)", conf)
            return None
        table = pd.concat([pre, conf_feats], ignore_index=True)
        return table[table["run_index"].astype(int).isin(list(runs))].reset_index(drop=True)

    def _tuning_figures(self, conf: str) -> None:
        """F5 (example tuning curves), F6 (feature scatter, 4 colourings) and F7 (slope changes), stage 1 -> 2."""
        figs, valid = self.fig_dir(conf), self.study.valid(conf)
        deps = ["exclusion", "tc:pre", f"tc:{conf}", "features:pre", f"features:{conf}"]
        oris = self.settings.tc_orientations
        tc_paths = [self.root / PRETRAINING_TC, self.conf_dir(conf) / CONF_TC]
        if all(p.is_file() for p in tc_paths):

            def draw_tc(path: Path) -> Path:
                tc = pd.concat([read_complete_tuning_curves(p, len(oris)) for p in tc_paths], ignore_index=True)
                return vis.plot_example_tuning_curves(tc[tc["run_index"].isin(valid)], path, oris=oris)

            self._figure(figs / "tc_fig.png", deps, draw_tc)
        features = self._features(conf, valid)
        if features is None or features.empty:
            return
        self._feature_figures(features, figs, "train", 1, 2, deps)

    def _feature_figures(
        self, features: pd.DataFrame, folder: Path, name: str, pre: int, post: int, deps: Sequence[str]
    ) -> None:
        """F6 for every colouring and F7 of one stage pair."""
        for color_by in COLOR_BY:
            self._figure(
                folder / f"tc_features_{name}_color_by_{color_by}.png",
                deps,
                lambda p, c=color_by: vis.plot_tc_feature_scatter(features, p, pre, post, c),
            )
        self._figure(
            folder / f"tc_slope_{name}_color_by_type.png",
            deps,
            lambda p: vis.plot_slope_changes(features, p, pre, post, step=self.settings.mw_step),
        )

    def _mvpa_figures(self, conf: str) -> None:
        """F8 (correlation triangles and their montage) and F9 (score boxes, paper-style bars)."""
        figs = self.fig_dir(conf)
        deps = ["exclusion", f"mvpa:{conf}", f"changes:{conf}"]
        mvpa, mahal = self.scores(conf, "MVPA_scores"), self.scores(conf, "Mahal_scores")
        if mvpa is None or mahal is None:
            return
        self._figure(figs / "MVPA_scores.png", deps, lambda p: vis.plot_scores_boxes(mvpa, p, "mvpa"))
        self._figure(figs / "Mahal_scores.png", deps, lambda p: vis.plot_scores_boxes(mahal, p, "mahal"))
        self._figure(figs / "MVPA_match_paper_fig.png", deps, lambda p: vis.plot_mvpa_paper_bars(mvpa, p))
        rc = self.rel_changes(conf, self.study.valid(conf))
        if rc is None:
            return
        paths, titles = [], []
        for layer, name, ori in TRIANGLES:
            path = figs / f"corr_triangle_{name}_{ori:g}.png"
            title = f"{conf}: {name} layer, {ori:g}°: ΔMVPA (stage 1 → 2), ΔE/I ratio, Δthreshold"
            self._figure(
                path,
                deps,
                lambda p, la=layer, o=ori, t=title: vis.plot_corr_triangle(af.triangle_data(mvpa, rc, la, o), p, t),
            )
            if path.is_file():
                paths.append(path)
                titles.append(f"{name} {ori:g}")
        if len(paths) == len(TRIANGLES):
            self._figure(
                figs / "combined_corr_triangles.png",
                deps,
                lambda p: vis.plot_image_montage(paths, titles, p, f"{conf}: correlation triangles"),
            )

    def _pretraining_figures(self) -> None:
        """Pretraining changes (1x8 boxes), F6 and F7 of stage 0 -> 1, for the runs no configuration excludes."""
        folder = self.root / PRETRAINING_FIGURES
        runs = self.study.root_valid()
        rc = self.rel_changes(None, runs)
        if rc is not None and not rc.empty:
            title = f"Changes during pretraining (stages 0-1), {len(rc)} runs"
            self._figure(
                folder / "boxplot_relative_changes.png",
                ["exclusion", "changes:pre"],
                lambda p: vis.plot_relative_change_boxes(rc, p, title, ncols=8),
            )
        pre = self.pretraining_features()
        if pre is None:
            logger.warning("pretraining features missing: no pretraining feature figures")
            return
        pre = pre[pre["run_index"].astype(int).isin(runs)]
        if not pre.empty:
            self._feature_figures(pre, folder, "pretrain", 0, 1, ["exclusion", "tc:pre", "features:pre"])

    # ---------------------------------------------------------------------------------------- report
    def report(self) -> None:
        """summary.pdf per configuration and report.html at the root (rewritten when anything changed)."""
        study = self.study
        settings = report.read_study_settings(self.root, study.confs, len(study.runs))
        confs, pdfs = [], {}
        for conf in study.confs:
            n = len(study.valid(conf))
            entry = report.ConfigurationReport(
                conf, list(study.runs), self.exclusion_reasons(conf), summary_entries(self.fig_dir(conf), n),
                report.figures_with_captions(self.fig_dir(conf) / PER_RUN),
            )
            pdfs[conf] = self.conf_dir(conf) / SUMMARY_PDF
            if self._stale(pdfs[conf], ["figures"]):
                report.write_summary_pdf(entry.figures, pdfs[conf], settings, entry)
                self.changed.add("summary")
            confs.append(entry)
        if self.overwrite or self.changed or not (self.root / REPORT_HTML).is_file():
            report.write_report_html(
                self.root, settings, confs,
                report.figures_with_captions(self.root / PRETRAINING_FIGURES, n=len(study.root_valid())),
                self.root / ss.HEADLINE, _read_csv_or_none(self.root / ss.STUDY_SUMMARY),
                _read_csv_or_none(self.root / ss.STUDY_STATS), pdfs,
            )  # fmt: skip


def summary_entries(fig_dir: Path, n: int | None = None) -> list[report.FigureEntry]:
    """The configuration's figures in the summary order (§8.1 pages first, then the others by name); n: the
    number of runs they show (for the captions)."""
    figures = {p.stem: p for p in sorted(fig_dir.glob("*.png"))}
    ordered = [figures[s] for s in SUMMARY_ORDER if s in figures]
    ordered += [p for s, p in figures.items() if s not in SUMMARY_ORDER]
    return [(p, report.caption_for(p, n)) for p in ordered]


def triangle_statistics(mvpa: pd.DataFrame, rel_changes: pd.DataFrame) -> pd.DataFrame:
    """Pearson r, p, n of the three pairs (ΔMVPA, ΔE/I ratio, Δthreshold) for each layer and orientation."""
    rows = []
    for layer, name, ori in TRIANGLES:
        data = af.triangle_data(mvpa, rel_changes, layer, ori)
        for x, y in (("dmvpa", "dratio"), ("doffset", "dratio"), ("dmvpa", "doffset")):
            r, p, n = af.pearson_finite(data[x], data[y])
            rows.append({"layer": layer, "layer_name": name, "ori": ori, "x": x, "y": y, "r": r, "p": p, "n": n})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------------
def run_analysis(
    results_root: Path,
    conf_names: list[str],
    overwrite: bool = False,
    parts: tuple[str, ...] = ALL_PARTS,
    settings: AnalysisSettings | None = None,
) -> None:
    """The analysis of a results folder for the given configurations (sub-folder names)."""
    settings = settings or AnalysisSettings()
    start = time.perf_counter()
    study = load_study(Path(results_root), conf_names)
    Pipeline(study, settings, overwrite, parts).run()
    logger.info("analysis of %s finished in %.1f min", results_root, (time.perf_counter() - start) / 60)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of ``python -m analysis.main_analysis`` (:func:`analysis.cli.parse_analysis_args`)."""
    return parse_analysis_args(argv)


def settings_from_args(args: argparse.Namespace) -> AnalysisSettings:
    """AnalysisSettings of the command line."""
    settings = QUICK_SETTINGS if args.quick else AnalysisSettings()
    changes = {k: v for k, v in (("trials", args.mvpa_trials), ("seed", args.seed)) if v is not None}
    return dataclasses.replace(settings, mvpa=dataclasses.replace(settings.mvpa, **changes))


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m analysis.main_analysis``."""
    args = parse_args(argv)
    setup_logging(None, level=logging.DEBUG if args.verbose else logging.INFO)
    confs = args.configs if args.configs is not None else discover_configurations(args.results_folder)
    run_analysis(
        args.results_folder,
        confs,
        args.overwrite,
        tuple(p for p in ALL_PARTS if p in args.parts),
        settings_from_args(args),
    )


if __name__ == "__main__":
    sys.exit(run_entry_point(main))
