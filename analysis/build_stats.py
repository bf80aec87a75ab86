"""Builders of the statistics tables (part ``stats``): every statistic the figures and the report show is
computed here, once, into a CSV file; the figures draw these files.

Per configuration ``R/<conf>/`` (its valid runs):

* ``stats_paired_tests.csv``, ``stats_rm_anova.csv``: MVPA and Mahalanobis scores, pre = stage 1, post = stage 2;
* ``stats_param_offset_correlations.csv`` and ``stats_param_offset_fits.csv`` (the fitted lines of F4);
* ``corr_triangle_data.csv``, ``stats_corr_triangles.csv`` and ``stats_corr_triangle_fits.csv`` (F8);
* ``stats_tc_slope_lowess.csv`` and ``stats_tc_slope_mann_whitney.csv`` (F7, stage 1 -> 2).

At the root ``R/``: the same two slope tables of stage 0 -> 1 (``pretraining_stats_tc_slope_*.csv``, the runs
no configuration excludes), ``study_summary.csv`` and ``study_stats.csv``.

Builders are plain functions over explicit arguments (the declarations are in :mod:`analysis.pipeline`); a
builder reads its inputs through the call's :class:`~analysis.tables.TableReader`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import study_summary as ss
from analysis.cells import CellLayout, TaskOrientations
from analysis.changes import pre_post_values
from analysis.statistics import (
    FIT_COLUMNS,
    paired_tests,
    param_offset_correlations,
    param_offset_fits,
    rm_anova,
    slope_changes,
    slope_lowess_table,
    slope_mann_whitney_table,
    triangle_fits,
    triangle_statistics,
    triangle_table,
    write_stats_csv,
)
from analysis.study_inputs import AnalysisInputs, RunExclusion, exclusion_reasons
from analysis.tables import TableReader

CORRELATION_TARGETS: tuple[str, ...] = ("psychometric_offset", "staircase_offset", "loss_binary_cross_entr")
"""The changes the parameter changes are correlated with (stats_param_offset_correlations.csv)."""
FIT_TARGET = "psychometric_offset"
"""The change whose fitted lines F4 draws (stats_param_offset_fits.csv)."""


# ------------------------------------------------------------------------------------------ readiness checks
def has_scores(reader: TableReader, conf: str, runs: list[int]) -> bool:
    """Both score tables of the configuration exist and are not empty."""
    return reader.both_scores(conf, runs) is not None


def has_changes(reader: TableReader, conf: str | None, runs: list[int]) -> bool:
    """The relative-change table exists (pretraining if conf is None)."""
    return reader.rel_changes(conf, runs) is not None


def has_triangle_inputs(reader: TableReader, conf: str, runs: list[int]) -> bool:
    """The relative changes and the MVPA scores of the configuration exist."""
    return has_changes(reader, conf, runs) and reader.scores(conf, "MVPA_scores", runs) is not None


def has_features(reader: TableReader, conf: str | None, runs: list[int]) -> bool:
    """Tuning-curve features of the runs exist (the pretraining ones if conf is None)."""
    table = reader.features(conf, runs)
    return table is not None and not table.empty


# ------------------------------------------------------------------------------------------- configuration
def write_paired_tests(reader: TableReader, conf: str, runs: list[int], path: Path) -> None:
    """stats_paired_tests.csv: paired t and Wilcoxon tests of the MVPA and Mahalanobis scores, stage 1 vs 2."""
    mvpa, mahal = reader.both_scores(conf, runs)
    write_stats_csv(pd.concat([paired_tests(mvpa, 1, 2, "MVPA"), paired_tests(mahal, 1, 2, "Mahal")]), path)


def write_rm_anova(reader: TableReader, conf: str, runs: list[int], path: Path) -> None:
    """stats_rm_anova.csv: repeated-measures ANOVA of the MVPA and Mahalanobis scores, stages 1 and 2."""
    mvpa, mahal = reader.both_scores(conf, runs)
    write_stats_csv(pd.concat([rm_anova(mvpa, (1, 2), "MVPA"), rm_anova(mahal, (1, 2), "Mahal")]), path)


def correlation_targets(rel_changes: pd.DataFrame) -> list[str]:
    """The CORRELATION_TARGETS with a change column in the table."""
    return [t for t in CORRELATION_TARGETS if t in rel_changes.columns or f"d_{t}" in rel_changes.columns]


def write_correlations(reader: TableReader, conf: str, runs: list[int], path: Path) -> None:
    """stats_param_offset_correlations.csv: Pearson r, p of every parameter change with every target change."""
    rc = reader.rel_changes(conf, runs)
    write_stats_csv(pd.concat([param_offset_correlations(rc, t) for t in correlation_targets(rc)]), path)


def write_correlation_fits(reader: TableReader, conf: str, runs: list[int], path: Path) -> None:
    """stats_param_offset_fits.csv: the fitted line of the threshold change on every parameter change."""
    rc = reader.rel_changes(conf, runs)
    if FIT_TARGET in correlation_targets(rc):
        write_stats_csv(param_offset_fits(rc, FIT_TARGET), path)
    else:  # no threshold change to fit: an empty table, so that the figure finds no line
        write_stats_csv(pd.DataFrame(columns=["target", "parameter", *FIT_COLUMNS]), path)


def write_triangles(reader: TableReader, conf: str, runs: list[int], data: Path, stats: Path, fits: Path) -> None:
    """corr_triangle_data.csv (per run ΔMVPA, ΔE/I ratio, Δthreshold of each triangle), its correlations
    stats_corr_triangles.csv and its fitted lines stats_corr_triangle_fits.csv, from one triangle table."""
    table = triangle_table(reader.scores(conf, "MVPA_scores", runs), reader.rel_changes(conf, runs))
    write_stats_csv(table, data)
    write_stats_csv(triangle_statistics(table), stats)
    write_stats_csv(triangle_fits(table), fits)


def write_slope_statistics(
    reader: TableReader,
    conf: str | None,
    runs: list[int],
    stages: tuple[int, int],
    layout: CellLayout,
    orientations: TaskOrientations,
    step: float,
    lowess: Path,
    mann_whitney: Path,
) -> None:
    """The LOWESS fits and sliding Mann-Whitney tests of the slope changes between two stages (F7)."""
    changes = slope_changes(reader.features(conf, runs), *stages, layout, orientations)
    write_stats_csv(slope_lowess_table(changes, orientations), lowess)
    write_stats_csv(slope_mann_whitney_table(changes, orientations, step), mann_whitney)


# --------------------------------------------------------------------------------------------------- study
def configuration_data(inputs: AnalysisInputs, exclusion: RunExclusion, reader: TableReader
                       ) -> list[ss.ConfigurationData]:  # fmt: skip
    """The inputs of the study summary: per configuration its retained runs' changes and behaviour."""
    out = []
    for conf in inputs.confs:
        valid = exclusion.valid(conf)
        rc = reader.rel_changes(conf, valid)
        present = [r for r in inputs.training_runs(conf) if r in valid]
        pre_post = pre_post_values(inputs.pre_df, inputs.train[conf], present) if present else None
        if pre_post is not None:
            pre_post = pre_post.reindex(columns=["run_index", "time", *ss.BEHAVIOUR])
        out.append(ss.ConfigurationData(
            conf, list(inputs.runs), exclusion_reasons(inputs, conf),
            rc if rc is not None else pd.DataFrame(columns=["run_index"]),
            pre_post if pre_post is not None else pd.DataFrame(columns=["run_index", "time", *ss.BEHAVIOUR]),
        ))  # fmt: skip
    return out


def write_study_tables(
    inputs: AnalysisInputs, exclusion: RunExclusion, reader: TableReader, summary: Path, stats: Path
) -> None:
    """study_summary.csv and study_stats.csv at the root."""
    data = configuration_data(inputs, exclusion, reader)
    write_stats_csv(ss.summary_table(data), summary)
    write_stats_csv(ss.stats_table(data), stats)
