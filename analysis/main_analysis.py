"""The analysis pipeline of a finished results folder (ANALYSIS.md §1, with the fixes of its
bug list §11).

The outputs are declared as targets (files, inputs, builder) in :mod:`analysis.pipeline` and brought up to
date by one scheduler (:mod:`analysis.scheduler`); this module is the entry point.

``python -m analysis.main_analysis RESULTS_FOLDER [--configs ...] [--overwrite] [--parts ...]`` or
:func:`run_analysis`. Parts, in pipeline order (each reads what earlier parts wrote):

* ``exclusion``: ``R/<conf>/excluded_runs.csv``, ``R/excluded_runs_all.csv``, ``R/excluded_runs_details.csv``
  (the exclusion rule of :mod:`analysis.changes`, applied to every configuration). Exclusion is always
  evaluated because every other part needs it; this part writes the files (only when missing or changed).
* ``tuning_curves``: stages 0 and 1 of every run into ``R/pretraining_tuning_curves.csv``; stage 2 of each
  configuration's valid runs into ``R/<conf>/tuning_curves.csv`` (one block per (run, stage) appended as
  soon as it is computed, so an interrupted analysis resumes where it stopped).
* ``features``: ``R/pretraining_tuning_curve_features.csv`` (stages 0, 1), ``R/<conf>/tuning_curve_features.csv``.
* ``changes``: ``R/rel_changes_pretrain.csv`` (every run), ``R/<conf>/rel_changes_train.csv`` (every run with
  training rows; exclusion is applied when they are used).
* ``mvpa``: ``MVPA_scores.csv``, ``Mahal_scores.csv``, ``Mahal_details.csv``, ``LMI.csv`` and
  ``MVPA_settings.json`` per configuration (valid runs, stages 0, 1, 2; rewritten after every run).
* ``stats``: every statistic the figures and the report show, computed once (:mod:`analysis.build_stats`):
  ``stats_paired_tests.csv`` and ``stats_rm_anova.csv`` (MVPA and Mahalanobis, pre = stage 1, post = stage 2),
  ``stats_param_offset_correlations.csv`` and ``stats_param_offset_fits.csv``, ``corr_triangle_data.csv``,
  ``stats_corr_triangles.csv`` and ``stats_corr_triangle_fits.csv``, ``stats_tc_slope_lowess.csv`` and
  ``stats_tc_slope_mann_whitney.csv`` per configuration; ``pretraining_stats_tc_slope_lowess.csv``,
  ``pretraining_stats_tc_slope_mann_whitney.csv``, ``study_summary.csv`` and ``study_stats.csv`` at the root.
* ``figures``: F1-F9 into ``R/<conf>/figures/`` (F1 in ``figures/per_run/``) and, for the first configuration,
  the pretraining figures into ``R/pretraining_figures/``, and ``R/headline.png``; they draw the tables.
* ``report``: ``R/<conf>/summary.pdf`` and ``R/report.html``.

Caching: an output that exists is kept unless ``overwrite`` is set, or an output it is declared to depend
on was (re)computed in the same call; per-run tables (tuning curves, features, MVPA) compute only the missing
(run, stage) blocks, and MVPA results computed with other settings are recomputed.

Documented choices: the first configuration is the one named ``*baseline`` (else the first given); figures
of a configuration show its valid runs (excluded runs are excluded everywhere, ANALYSIS.md B5), the F2 files
without suffix show every run with training rows
(as the reference's post-training call did), F1 is drawn for every run; root-level pretraining figures use
the runs not excluded by any configuration (the union); the slope figure F7 does not depend on the colouring,
so it is written once as ``tc_slope_<pretrain|train>_color_by_type.png``; pre-training changes use every
pretraining row of a run (stage-2 rows are never part of that window).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

from analysis.cli import ALL_PARTS, parse_analysis_args

if __name__ == "__main__":  # parse before the slow imports below, so that --help and bad arguments answer at once
    parse_analysis_args()

from analysis.build_figures import draw_headline
from analysis.pipeline import run_pipeline
from analysis.settings import QUICK_SETTINGS, AnalysisSettings
from analysis.study_inputs import compute_exclusion, discover_configurations, load_study
from analysis.tables import TableCache, TableReader
from store.errors import ResultsFileError, run_entry_point
from store.layout import STUDY_STATS
from store.logs import setup_logging

logger = logging.getLogger(__name__)


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
    start = time.perf_counter()
    run_pipeline(load_study(Path(results_root), conf_names), settings or AnalysisSettings(), overwrite, parts)
    logger.info("analysis of %s finished in %.1f min", results_root, (time.perf_counter() - start) / 60)


def draw_headline_figure(results_root: Path, conf_names: list[str], path: Path) -> Path:
    """Draw a study's headline figure to ``path`` from its CSV files (the analysis' tables, study_stats.csv
    included, must exist), e.g. beside a comparison of studies; the study folder is not written to."""
    inputs = load_study(Path(results_root), conf_names)
    reader = TableReader(inputs.root, TableCache())
    if reader.csv(inputs.root / STUDY_STATS) is None:
        raise ResultsFileError(f"cannot draw the headline of {results_root}: {STUDY_STATS} missing (run its analysis)")
    return draw_headline(path, inputs, compute_exclusion(inputs), reader)


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
    check_study_files(args.results_folder)
    confs = args.configs if args.configs is not None else discover_configurations(args.results_folder)
    run_analysis(
        args.results_folder,
        confs,
        args.overwrite,
        tuple(p for p in ALL_PARTS if p in args.parts),
        settings_from_args(args),
    )


def check_study_files(folder: Path) -> None:
    """ResultsFileError naming the first missing or cut file of a study folder (study.inventory), before any
    work: a kept study restored from git with a damaged file is refused in one line."""
    from study import inventory

    damage = inventory.damage_report(Path(folder))
    if damage:
        raise ResultsFileError(f"cannot analyse {folder}: {damage}")


if __name__ == "__main__":
    sys.exit(run_entry_point(main))
