"""The analysis of a results folder as declared outputs (:mod:`analysis.scheduler`), part by part.

:func:`declare_targets` is the table of every output of one analysis call: each row a
:class:`~analysis.scheduler.Target` with its name, part, files, the targets it is computed from and its
builder, a plain function of :mod:`analysis.build_tables`, :mod:`analysis.build_stats`,
:mod:`analysis.build_figures` or :mod:`analysis.build_report` bound to explicit arguments. Nothing here
computes; :func:`run_pipeline` declares and lets the scheduler bring the requested parts up to date. The parts,
in order (each reads what earlier parts wrote):

* ``exclusion``: the exclusion files (rewritten when they no longer list the runs the rule excludes);
* ``tuning_curves``: stages 0 and 1 of every run, stage 2 of each configuration's valid runs (resumable);
* ``features``: tuning-curve features of each tuning-curve file (only the blocks they lack);
* ``changes``: relative changes over pretraining (every run) and training (runs with training rows);
* ``mvpa``: MVPA and Mahalanobis scores of each configuration's valid runs (resumable, run by run);
* ``stats``: every statistics table (``stats_*.csv`` and the triangle data per configuration, the pretraining
  slope tables, ``study_summary.csv`` and ``study_stats.csv``);
* ``figures``: F1-F9 per configuration, the pretraining figures and the headline figure;
* ``report``: ``summary.pdf`` per configuration and ``report.html``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from analysis import build_figures as bf
from analysis import build_report as br
from analysis import build_stats as bs
from analysis import build_tables as bt
from analysis.cells import CellLayout, TaskOrientations
from analysis.changes import write_exclusion_files
from analysis.cli import ALL_PARTS
from analysis.figures.training import CORRELATION_FIGURES, PRE_POST_FIGURES
from analysis.scheduler import Scheduler, Target
from analysis.settings import AnalysisSettings
from analysis.statistics import TRIANGLES
from analysis.study_inputs import AnalysisInputs, RunExclusion, compute_exclusion, exclusion_files_match
from analysis.tables import TableCache, TableReader
from store.layout import (
    CONF_FEATURES,
    CONF_TC,
    EXCLUDED_ALL,
    EXCLUDED_CONF,
    EXCLUDED_DETAILS,
    HEADLINE,
    PER_RUN,
    PRETRAINING_FEATURES,
    PRETRAINING_FIGURES,
    PRETRAINING_STATS_SLOPE_LOWESS,
    PRETRAINING_STATS_SLOPE_MANN_WHITNEY,
    PRETRAINING_TC,
    REL_PRETRAIN,
    REL_TRAIN,
    REPORT,
    SCORE_TABLES,
    STATS_ANOVA,
    STATS_CORR,
    STATS_CORR_FITS,
    STATS_PAIRED,
    STATS_SLOPE_LOWESS,
    STATS_SLOPE_MANN_WHITNEY,
    STATS_TRIANGLE_FITS,
    STATS_TRIANGLES,
    STUDY_STATS,
    STUDY_SUMMARY,
    TRIANGLE_DATA,
    StudyLayout,
    table_name,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    """What every declaration of one analysis call refers to (read only)."""

    inputs: AnalysisInputs
    exclusion: RunExclusion
    settings: AnalysisSettings
    overwrite: bool
    reader: TableReader
    layout: CellLayout
    orientations: TaskOrientations

    @property
    def root(self) -> Path:
        """The results folder."""
        return self.inputs.root

    def conf_dir(self, conf: str) -> Path:
        """A configuration's folder."""
        return StudyLayout(self.inputs.root).configuration(conf).folder

    def fig_dir(self, conf: str) -> Path:
        """A configuration's figure folder."""
        return StudyLayout(self.inputs.root).configuration(conf).figures


@dataclass(frozen=True)
class ConfTargets:
    """The targets of one configuration that later targets read."""

    tuning_curves: Target
    features: Target
    changes: Target
    mvpa: Target


def run_pipeline(inputs: AnalysisInputs, settings: AnalysisSettings, overwrite: bool, parts: Sequence[str]) -> None:
    """Every requested part in pipeline order; RuntimeError naming the figures that failed (after every other
    output was written)."""
    unknown = sorted(set(parts) - set(ALL_PARTS))
    if unknown:
        raise ValueError(f"unknown parts {unknown}; valid: {list(ALL_PARTS)}")
    exclusion = compute_exclusion(inputs)
    for conf in inputs.confs:
        logger.info("%s: %d runs, excluded %s", conf, len(inputs.runs), exclusion.excluded[conf])
    scheduler = declare_targets(inputs, exclusion, settings, overwrite, TableCache())
    for part in ALL_PARTS:
        if part in parts:
            start = time.perf_counter()
            scheduler.run_part(part, overwrite)
            logger.info("part %s done in %.1f s", part, time.perf_counter() - start)
    if scheduler.failed:
        raise RuntimeError("figures failed (every other output was written):\n" + "\n".join(scheduler.failed))


def new_call(inputs: AnalysisInputs, exclusion: RunExclusion, settings: AnalysisSettings, overwrite: bool,
             cache: TableCache) -> Call:  # fmt: skip
    """The read-only context of one analysis call (layout and orientations of the first configuration)."""
    first = inputs.params[inputs.first_conf]
    return Call(inputs, exclusion, settings, overwrite, TableReader(inputs.root, cache),
                CellLayout.from_parameters(first), TaskOrientations.from_parameters(first))  # fmt: skip


def declare_targets(inputs: AnalysisInputs, exclusion: RunExclusion, settings: AnalysisSettings, overwrite: bool,
                    cache: TableCache) -> Scheduler:  # fmt: skip
    """Every output of the analysis of a results folder, in pipeline order."""
    call = new_call(inputs, exclusion, settings, overwrite, cache)
    scheduler = Scheduler(ALL_PARTS)
    excl, tc_pre, features_pre, changes_pre, confs = declare_tables(scheduler, call)
    study_tables = declare_stats(scheduler, call, excl, features_pre, confs)
    declare_figures(scheduler, call, excl, tc_pre, features_pre, changes_pre, confs, study_tables)
    declare_report(scheduler, call)
    return scheduler


# ------------------------------------------------------------------------------------------------------ tables
def declare_tables(
    scheduler: Scheduler, call: Call
) -> tuple[Target, Target, Target, Target, dict[str, ConfTargets]]:
    """Exclusion, tuning curves, features, relative changes and MVPA scores."""
    inputs, root, excluded, add = call.inputs, call.root, call.exclusion.excluded, scheduler.add
    oris, tc_args = call.settings.tc_orientations, (call.inputs.loader, call.settings.tc_orientations, call.layout)
    feature_args = (oris, call.layout, call.orientations, call.reader.cache, call.overwrite)
    exclusion_files = [root / EXCLUDED_ALL, root / EXCLUDED_DETAILS, *(root / c / EXCLUDED_CONF for c in inputs.confs)]
    exclusion = add("exclusion", "exclusion", exclusion_files, partial(write_exclusion_files, root, excluded),
                    current=partial(exclusion_files_match, root, excluded))  # fmt: skip
    tc_pre = add("tuning_curves/pretraining", "tuning_curves", root / PRETRAINING_TC,
                 partial(bt.build_tuning_curves, root / PRETRAINING_TC,
                         [(r, s) for r in inputs.runs for s in (0, 1)], None, *tc_args, call.overwrite),
                 incremental=True)  # fmt: skip
    features_pre = add("features/pretraining", "features", root / PRETRAINING_FEATURES,
                       partial(bt.build_features, root / PRETRAINING_TC, root / PRETRAINING_FEATURES,
                               (0, 1), *feature_args), (tc_pre,), incremental=True)  # fmt: skip
    empty = pd.DataFrame({"run_index": pd.Series(dtype=int), "stage": pd.Series(dtype=int)})
    changes_pre = add("changes/pretraining", "changes", root / REL_PRETRAIN,
                      partial(bt.build_relative_changes, root / REL_PRETRAIN, inputs.pre_df, empty, inputs.runs,
                              "pretrain", call.reader.cache, call.overwrite), incremental=True)  # fmt: skip
    batch = bt.MvpaBatch({c: call.conf_dir(c) for c in inputs.confs},
                         {c: call.exclusion.valid(c) for c in inputs.confs}, inputs.loader, call.settings.mvpa,
                         call.settings.mvpa_record(), call.reader.cache, call.overwrite)  # fmt: skip
    confs = {}
    for conf in inputs.confs:
        folder = call.conf_dir(conf)
        tc = add(f"tuning_curves/{conf}", "tuning_curves", folder / CONF_TC,
                 partial(bt.build_tuning_curves, folder / CONF_TC,
                         [(r, 2) for r in call.exclusion.valid(conf)], conf, *tc_args, call.overwrite),
                 (exclusion,), incremental=True)  # fmt: skip
        features = add(f"features/{conf}", "features", folder / CONF_FEATURES,
                       partial(bt.build_features, folder / CONF_TC, folder / CONF_FEATURES, (2,),
                               *feature_args), (tc,), incremental=True)  # fmt: skip
        changes = add(f"changes/{conf}", "changes", folder / REL_TRAIN,
                      partial(bt.build_relative_changes, folder / REL_TRAIN, inputs.pre_df, inputs.train[conf],
                              inputs.training_runs(conf), "train", call.reader.cache, call.overwrite),
                      incremental=True)  # fmt: skip
        mvpa = add(f"mvpa/{conf}", "mvpa", [folder / table_name(name) for name in SCORE_TABLES],
                   partial(batch.wrote, conf), (exclusion,), incremental=True)  # fmt: skip
        confs[conf] = ConfTargets(tc, features, changes, mvpa)
    return exclusion, tc_pre, features_pre, changes_pre, confs


# ------------------------------------------------------------------------------------------------------- stats
def slope_tables(root: Path, conf: str | None) -> tuple[Path, Path]:
    """The LOWESS and Mann-Whitney tables of the slope figure of a configuration (None: the pretraining)."""
    if conf is None:
        return root / PRETRAINING_STATS_SLOPE_LOWESS, root / PRETRAINING_STATS_SLOPE_MANN_WHITNEY
    return root / conf / STATS_SLOPE_LOWESS, root / conf / STATS_SLOPE_MANN_WHITNEY


def triangle_tables(folder: Path) -> tuple[Path, Path, Path]:
    """The triangle data, correlation and fit tables of a configuration folder."""
    return folder / TRIANGLE_DATA, folder / STATS_TRIANGLES, folder / STATS_TRIANGLE_FITS


def declare_slope_statistics(scheduler: Scheduler, call: Call, conf: str | None, inputs: Sequence[Target]) -> None:
    """The F7 tables of a configuration (stage 1 -> 2) or of the pretraining (conf None, stage 0 -> 1)."""
    runs = call.exclusion.valid(conf) if conf else call.exclusion.root_valid()
    stages = (1, 2) if conf else (0, 1)
    paths = slope_tables(call.root, conf)
    scheduler.add(f"stats_slopes/{conf or 'pretraining'}", "stats", paths,
                  partial(bs.write_slope_statistics, call.reader, conf, runs, stages, call.layout, call.orientations,
                          call.settings.mw_step, *paths),
                  inputs, ready=partial(bs.has_features, call.reader, conf, runs))  # fmt: skip


def declare_stats(
    scheduler: Scheduler, call: Call, exclusion: Target, features_pre: Target, confs: dict[str, ConfTargets]
) -> Target:
    """Every statistics table; returns the study tables' target."""
    reader, add = call.reader, scheduler.add
    for conf, targets in confs.items():
        folder, valid = call.conf_dir(conf), call.exclusion.valid(conf)
        inputs = (exclusion, targets.mvpa, targets.changes)
        scores, changes = partial(bs.has_scores, reader, conf, valid), partial(bs.has_changes, reader, conf, valid)
        add(f"stats_paired/{conf}", "stats", folder / STATS_PAIRED,
            partial(bs.write_paired_tests, reader, conf, valid, folder / STATS_PAIRED), inputs, ready=scores)
        add(f"stats_anova/{conf}", "stats", folder / STATS_ANOVA,
            partial(bs.write_rm_anova, reader, conf, valid, folder / STATS_ANOVA), inputs, ready=scores)
        add(f"stats_correlations/{conf}", "stats", folder / STATS_CORR,
            partial(bs.write_correlations, reader, conf, valid, folder / STATS_CORR), inputs, ready=changes)
        add(f"stats_correlation_fits/{conf}", "stats", folder / STATS_CORR_FITS,
            partial(bs.write_correlation_fits, reader, conf, valid, folder / STATS_CORR_FITS), inputs,
            ready=changes)  # fmt: skip
        add(f"stats_triangles/{conf}", "stats", triangle_tables(folder),
            partial(bs.write_triangles, reader, conf, valid, *triangle_tables(folder)), inputs,
            ready=partial(bs.has_triangle_inputs, reader, conf, valid))  # fmt: skip
        declare_slope_statistics(scheduler, call, conf, (exclusion, features_pre, targets.features))
    declare_slope_statistics(scheduler, call, None, (exclusion, features_pre))
    root = call.root
    return add("study_tables", "stats", (root / STUDY_SUMMARY, root / STUDY_STATS),
               partial(bs.write_study_tables, call.inputs, call.exclusion, reader, root / STUDY_SUMMARY,
                       root / STUDY_STATS),
               (exclusion, *(t.changes for t in confs.values())))  # fmt: skip


# ----------------------------------------------------------------------------------------------------- figures
def figure(scheduler: Scheduler, name: str, path: Path, inputs: Sequence[Target], draw: Callable[[Path], object],
           group: Sequence[Path] = (), ready: Callable[[], bool] | None = None) -> Target:  # fmt: skip
    """A figure (or a group of files drawn by one call, ``path`` first): drawn when any of its files is stale by
    ``draw(path)``. A failing figure is logged and remembered; run_pipeline raises after every other output."""
    options: dict = {"fallible": True}
    if ready is not None:
        options["ready"] = ready
    paths = (path, *[p for p in group if p != path])
    return scheduler.add(name, "figures", paths, partial(draw, path), inputs, **options)


def declare_training_figures(scheduler: Scheduler, call: Call, conf: str, exclusion: Target, targets: ConfTargets
                             ) -> None:  # fmt: skip
    """F1 (every run), F2 (all training runs, and valid runs with suffix _train), F3, F4."""
    inputs, reader, figs, valid = call.inputs, call.reader, call.fig_dir(conf), call.exclusion.valid(conf)
    if call.settings.per_run_figures:
        for run in inputs.runs:
            figure(scheduler, f"per_run/{conf}/{run}", figs / PER_RUN / f"resultsfig_{run}.png",
                   (targets.changes,), partial(bf.draw_training_run, inputs=inputs, reader=reader, conf=conf, run=run),
                   ready=partial(bs.has_changes, reader, conf, [run]))  # fmt: skip
    for suffix, runs, pre_post_inputs in (("", inputs.training_runs(conf), ()), ("_train", valid, (exclusion,))):
        group = [figs / f"{stem}{suffix}.png" for stem in PRE_POST_FIGURES]
        figure(scheduler, f"pre_post{suffix}/{conf}", group[0], pre_post_inputs,
               partial(bf.draw_pre_post, inputs=inputs, conf=conf, runs=runs, suffix=suffix), group,
               ready=partial(bool, runs))  # fmt: skip
    changes, has_rows = (exclusion, targets.changes), partial(bf.has_rows, reader, conf, valid)
    for name, stem, fixed in (("boxplot", "boxplot_relative_changes", False),
                              ("boxplot_ylim", "boxplot_relative_changes_ylim", True)):
        figure(scheduler, f"{name}/{conf}", figs / f"{stem}.png", changes,
               partial(bf.draw_change_boxes, reader=reader, conf=conf, runs=valid, fixed_ylim=fixed),
               ready=has_rows)  # fmt: skip
    tables = (call.conf_dir(conf) / STATS_CORR, call.conf_dir(conf) / STATS_CORR_FITS)
    group = [figs / f"{stem}.png" for stem in CORRELATION_FIGURES]
    stats = (scheduler[f"stats_correlations/{conf}"], scheduler[f"stats_correlation_fits/{conf}"])
    figure(scheduler, f"correlations/{conf}", group[0], (*changes, *stats),
           partial(bf.draw_correlations, reader=reader, conf=conf, runs=valid, correlations=tables[0], fits=tables[1]),
           group, ready=partial(bf.all_ready, has_rows, partial(bf.tables_exist, reader, tables)))  # fmt: skip


def declare_feature_figures(scheduler: Scheduler, call: Call, conf: str | None, stem: str, inputs: Sequence[Target]
                            ) -> None:  # fmt: skip
    """F6 for every colouring and F7 of one stage pair (stage 1 -> 2 of a configuration, or 0 -> 1 of the
    pretraining for conf None; skipped when there are no features)."""
    reader, name = call.reader, conf or "pretraining"
    runs = call.exclusion.valid(conf) if conf else call.exclusion.root_valid()
    folder = call.fig_dir(conf) if conf else call.root / PRETRAINING_FIGURES
    stages = (1, 2) if conf else (0, 1)
    ready = partial(bs.has_features, reader, conf, runs)
    for color_by in bf.COLOR_BY:
        figure(scheduler, f"tc_features_{color_by}/{stem}/{name}" if conf else f"tc_features_{color_by}/{name}",
               folder / f"tc_features_{stem}_color_by_{color_by}.png", inputs,
               partial(bf.draw_feature_scatter, reader=reader, conf=conf, runs=runs, stages=stages, color_by=color_by,
                       layout=call.layout), ready=ready)  # fmt: skip
    tables = slope_tables(call.root, conf)
    figure(scheduler, f"tc_slope/{stem}/{name}" if conf else f"tc_slope/{name}",
           folder / f"tc_slope_{stem}_color_by_type.png", (*inputs, scheduler[f"stats_slopes/{name}"]),
           partial(bf.draw_slope_changes, reader=reader, conf=conf, runs=runs, stages=stages, tables=tables,
                   layout=call.layout, orientations=call.orientations),
           ready=partial(bf.all_ready, ready, partial(bf.tables_exist, reader, tables)))  # fmt: skip


def declare_mvpa_figures(scheduler: Scheduler, call: Call, conf: str, exclusion: Target, targets: ConfTargets
                         ) -> None:  # fmt: skip
    """F8 (correlation triangles and their montage) and F9 (score boxes, paper-style bars)."""
    reader, figs, valid, orientations = call.reader, call.fig_dir(conf), call.exclusion.valid(conf), call.orientations
    inputs = (exclusion, targets.mvpa, targets.changes)
    scores = partial(bs.has_scores, reader, conf, valid)
    for name, kind in (("mvpa_boxes", "mvpa"), ("mahal_boxes", "mahal")):
        figure(scheduler, f"{name}/{conf}", figs / f"{'MVPA' if kind == 'mvpa' else 'Mahal'}_scores.png", inputs,
               partial(bf.draw_scores, reader=reader, conf=conf, runs=valid, kind=kind, orientations=orientations),
               ready=scores)  # fmt: skip
    figure(scheduler, f"mvpa_paper/{conf}", figs / "MVPA_match_paper_fig.png", inputs,
           partial(bf.draw_mvpa_paper_bars, reader=reader, conf=conf, runs=valid, orientations=orientations),
           ready=scores)  # fmt: skip
    tables = triangle_tables(call.conf_dir(conf))
    has_tables = partial(bf.tables_exist, reader, tables)
    triangle_inputs = (*inputs, scheduler[f"stats_triangles/{conf}"])
    paths, titles = [], []
    for layer, name, ori in TRIANGLES:
        path = figs / f"corr_triangle_{name}_{ori:g}.png"
        title = f"{conf}: {name} layer, {ori:g}°: ΔMVPA (stage 1 → 2), ΔE/I ratio, Δthreshold"
        figure(scheduler, f"corr_triangle_{name}_{ori:g}/{conf}", path, triangle_inputs,
               partial(bf.draw_triangle, reader=reader, tables=tables, layer=layer, ori=ori, title=title),
               ready=has_tables)  # fmt: skip
        paths.append(path)
        titles.append(f"{name} {ori:g}")
    figure(scheduler, f"combined_corr_triangles/{conf}", figs / "combined_corr_triangles.png", triangle_inputs,
           partial(bf.draw_triangle_montage, paths=paths, titles=titles, conf=conf),
           ready=partial(bf.all_ready, has_tables, partial(bf.has_images, paths)))  # fmt: skip


def declare_figures(scheduler: Scheduler, call: Call, exclusion: Target, tc_pre: Target, features_pre: Target,
                    changes_pre: Target, confs: dict[str, ConfTargets], study_tables: Target) -> None:  # fmt: skip
    """Every figure: per configuration F1-F9, then the pretraining figures and the headline."""
    root, reader = call.root, call.reader
    for conf, targets in confs.items():
        declare_training_figures(scheduler, call, conf, exclusion, targets)
        tc_paths = (root / PRETRAINING_TC, call.conf_dir(conf) / CONF_TC)
        tuning_inputs = (exclusion, tc_pre, targets.tuning_curves, features_pre, targets.features)
        figure(scheduler, f"tc_fig/{conf}", call.fig_dir(conf) / "tc_fig.png", tuning_inputs,
               partial(bf.draw_example_tuning_curves, tc_paths=tc_paths, runs=call.exclusion.valid(conf),
                       oris=call.settings.tc_orientations, layout=call.layout),
               ready=partial(bf.has_tuning_curves, tc_paths))  # fmt: skip
        declare_feature_figures(scheduler, call, conf, "train", tuning_inputs)
        declare_mvpa_figures(scheduler, call, conf, exclusion, targets)
    root_valid = call.exclusion.root_valid()
    figure(scheduler, "boxplot/pretraining", root / PRETRAINING_FIGURES / "boxplot_relative_changes.png",
           (exclusion, changes_pre), partial(bf.draw_change_boxes, reader=reader, conf=None, runs=root_valid),
           ready=partial(bf.has_rows, reader, None, root_valid))  # fmt: skip
    declare_feature_figures(scheduler, call, None, "pretrain", (exclusion, tc_pre, features_pre))
    figure(scheduler, "headline", root / HEADLINE, (exclusion, study_tables),
           partial(bf.draw_headline, inputs=call.inputs, exclusion=call.exclusion, reader=reader),
           ready=partial(bf.tables_exist, reader, (root / STUDY_STATS,)))  # fmt: skip


# ------------------------------------------------------------------------------------------------------ report
def declare_report(scheduler: Scheduler, call: Call) -> None:
    """summary.pdf per configuration (after any figure was drawn) and report.html (after anything)."""
    figures = tuple(scheduler.of_part("figures"))
    for conf in call.inputs.confs:
        path = StudyLayout(call.root).configuration(conf).summary_pdf
        scheduler.add(f"summary_pdf/{conf}", "report", path,
                      partial(br.write_summary_pdf, path, call.inputs, call.exclusion, conf), figures)  # fmt: skip
    scheduler.add("report_html", "report", call.root / REPORT,
                  partial(br.write_report_html, call.inputs, call.exclusion, call.reader),
                  tuple(scheduler.targets))  # fmt: skip
