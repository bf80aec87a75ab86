"""Builders of the figures (part ``figures``): each reads the tables a figure shows (through the call's
:class:`~analysis.tables.TableReader`), selects the runs it shows and hands them to one figure function of
:mod:`analysis.figures`. Plain functions over explicit arguments, declared as targets by
:mod:`analysis.pipeline`; the first argument is always the output path (the first file of the target).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from analysis import study_summary as ss
from analysis.build_stats import configuration_data
from analysis.cells import CellLayout, TaskOrientations
from analysis.changes import pre_post_values, run_table
from analysis.figures import decoding, headline, training, tuning
from analysis.statistics import one_triangle, slope_changes
from analysis.study_inputs import AnalysisInputs, RunExclusion
from analysis.tables import TableReader
from analysis.tuning_curve_files import read_complete_tuning_curves
from store.files import has_stored
from store.layout import STUDY_STATS

logger = logging.getLogger(__name__)

COLOR_BY: tuple[str, ...] = ("type", "run_index", "pref_ori", "phase")
"""The colourings of the feature scatter F6, one file each."""


# ------------------------------------------------------------------------------------------ readiness checks
def has_rows(reader: TableReader, conf: str | None, runs: list[int]) -> bool:
    """The relative-change table exists and holds rows of the runs."""
    table = reader.rel_changes(conf, runs)
    return table is not None and not table.empty


def tables_exist(reader: TableReader, paths: Sequence[Path]) -> bool:
    """Every table exists (a statistics table the figure draws; missing until the stats part ran)."""
    missing = [p for p in paths if reader.csv(p) is None]
    for path in missing:
        logger.warning("%s missing (run the stats part)", path)
    return not missing


def all_ready(*checks: Callable[[], bool]) -> bool:
    """Every check passes (evaluated in order, the first failing one ends it)."""
    return all(check() for check in checks)


# ------------------------------------------------------------------------------------------------ training
def draw_training_run(path: Path, inputs: AnalysisInputs, reader: TableReader, conf: str, run: int) -> Path:
    """F1 of one run: its pretraining and training rows, with its row of rel_changes_train.csv."""
    table = reader.rel_changes(conf, [run])
    changes = table.iloc[0] if table is not None and len(table) else pd.Series(dtype=float)
    return training.plot_training_run(run_table(inputs.pre_df, inputs.train[conf], run), changes, path, run_index=run)


def draw_pre_post(path: Path, inputs: AnalysisInputs, conf: str, runs: list[int], suffix: str) -> list[Path]:
    """F2 of the runs: pre (first stage-2 row) and post (last row) values, into the folder of ``path``."""
    return training.plot_all_pre_post_bars(pre_post_values(inputs.pre_df, inputs.train[conf], runs), path.parent,
                                           suffix)  # fmt: skip


def draw_change_boxes(
    path: Path, reader: TableReader, conf: str | None, runs: list[int], fixed_ylim: bool = False
) -> Path:
    """F3 of the runs: relative changes over stage 2 (of a configuration) or over pretraining (conf None)."""
    table = reader.rel_changes(conf, runs)
    if conf is None:
        title = f"Changes during pretraining (stages 0-1), {len(table)} runs"
        return training.plot_relative_change_boxes(table, path, title, ncols=8)
    title = f"{conf}: changes during training (first to last stage-2 row), {len(table)} runs"
    return training.plot_relative_change_boxes(table, path, title, fixed_ylim=fixed_ylim)


def draw_correlations(
    path: Path, reader: TableReader, conf: str, runs: list[int], correlations: Path, fits: Path
) -> list[Path]:
    """The four F4 files into the folder of ``path``, from the correlation and fit tables."""
    return training.plot_all_param_offset_correlations(reader.rel_changes(conf, runs), reader.csv(correlations),
                                                       reader.csv(fits), path.parent)  # fmt: skip


# -------------------------------------------------------------------------------------------------- tuning
def draw_example_tuning_curves(
    path: Path, tc_paths: Sequence[Path], runs: list[int], oris: Sequence[float], layout: CellLayout
) -> Path:
    """F5 of the runs, from the pretraining and the configuration's tuning-curve files."""
    tc = pd.concat([read_complete_tuning_curves(p, len(oris), layout) for p in tc_paths], ignore_index=True)
    return tuning.plot_example_tuning_curves(tc[tc["run_index"].isin(runs)], path, oris=oris, layout=layout)


def has_tuning_curves(tc_paths: Sequence[Path]) -> bool:
    """Every tuning-curve file exists."""
    return all(has_stored(p) for p in tc_paths)


def draw_feature_scatter(
    path: Path,
    reader: TableReader,
    conf: str | None,
    runs: list[int],
    stages: tuple[int, int],
    color_by: str,
    layout: CellLayout,
) -> Path:
    """F6 of the runs between two stages (conf None: the pretraining features)."""
    return tuning.plot_tc_feature_scatter(reader.features(conf, runs), path, *stages, color_by, layout=layout)


def draw_slope_changes(
    path: Path,
    reader: TableReader,
    conf: str | None,
    runs: list[int],
    stages: tuple[int, int],
    tables: tuple[Path, Path],
    layout: CellLayout,
    orientations: TaskOrientations,
) -> Path:
    """F7 of the runs between two stages: their slope changes and the LOWESS and Mann-Whitney tables."""
    changes = slope_changes(reader.features(conf, runs), *stages, layout, orientations)
    lowess, mann_whitney = (reader.csv(p) for p in tables)
    return tuning.plot_slope_changes(changes, lowess, mann_whitney, path, *stages, orientations=orientations)


# ------------------------------------------------------------------------------------------------ decoding
def draw_scores(
    path: Path, reader: TableReader, conf: str, runs: list[int], kind: str, orientations: TaskOrientations
) -> Path:
    """F9a (kind 'mvpa' or 'mahal') of the runs."""
    table = "MVPA_scores" if kind == "mvpa" else "Mahal_scores"
    return decoding.plot_scores_boxes(reader.scores(conf, table, runs), path, kind, orientations=orientations)


def draw_mvpa_paper_bars(
    path: Path, reader: TableReader, conf: str, runs: list[int], orientations: TaskOrientations
) -> Path:
    """F9b of the runs."""
    return decoding.plot_mvpa_paper_bars(reader.scores(conf, "MVPA_scores", runs), path, orientations=orientations)


def draw_triangle(path: Path, reader: TableReader, tables: tuple[Path, Path, Path], layer: int, ori: float,
                  title: str) -> Path:  # fmt: skip
    """F8 of one layer and orientation, from the triangle data, correlation and fit tables."""
    data, stats, fits = (one_triangle(reader.csv(p), layer, ori) for p in tables)
    return decoding.plot_corr_triangle(data, stats, fits, path, title)


def draw_triangle_montage(path: Path, paths: Sequence[Path], titles: Sequence[str], conf: str) -> Path:
    """The four F8 triangles in one image."""
    return decoding.plot_image_montage(paths, titles, path, f"{conf}: correlation triangles")


def has_images(paths: Sequence[Path]) -> bool:
    """Every image exists."""
    return all(p.is_file() for p in paths)


# ------------------------------------------------------------------------------------------------ headline
def draw_headline(path: Path, inputs: AnalysisInputs, exclusion: RunExclusion, reader: TableReader) -> Path:
    """headline.png from the same inputs as study_summary.csv and the tests of study_stats.csv."""
    data = configuration_data(inputs, exclusion, reader)
    lookup = ss.stats_lookup(reader.csv(inputs.root / STUDY_STATS))
    return headline.plot_headline(
        {d.name: d.changes for d in data},
        {d.name: {c: ss.behaviour_wide(d.pre_post, c) for c in ss.BEHAVIOUR} for d in data},
        lambda conf, comparison: ss.format_test(lookup.get((conf, comparison))),
        path,
    )
