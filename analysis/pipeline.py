"""The analysis of a results folder as declared outputs (:mod:`analysis.scheduler`), part by part.

:class:`Pipeline` declares every output of one analysis call as a :class:`~analysis.scheduler.Target` (its
files, the targets it is computed from, its builder) and lets one scheduler bring them up to date. The
parts, in order (each reads what earlier parts wrote):

* ``exclusion``: the exclusion files (rewritten when they no longer list the runs the rule excludes);
* ``tuning_curves``: stages 0 and 1 of every run, stage 2 of each configuration's valid runs (resumable);
* ``features``: tuning-curve features of each tuning-curve file (only the blocks they lack);
* ``changes``: relative changes over pretraining (every run) and training (runs with training rows);
* ``mvpa``: MVPA and Mahalanobis scores of each configuration's valid runs (resumable, run by run);
* ``stats``: ``stats_*.csv`` per configuration, ``study_summary.csv`` and ``study_stats.csv``;
* ``figures``: F1-F9 per configuration, the pretraining figures and the headline figure;
* ``report``: ``summary.pdf`` per configuration and ``report.html``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from analysis import report
from analysis import study_summary as ss
from analysis import visualization as vis
from analysis.cells import CellLayout, TaskOrientations
from analysis.changes import exclusion_table, pre_post_values, relative_changes, run_table, write_exclusion_files
from analysis.cli import ALL_PARTS
from analysis.decoding import score_tables
from analysis.mvpa_responses import ResponseCache, mvpa_scores_for_run
from analysis.scheduler import Scheduler, Target
from analysis.settings import AnalysisSettings
from analysis.statistics import (
    paired_tests,
    param_offset_correlations,
    pearson_finite,
    rm_anova,
    triangle_data,
    write_stats_csv,
)
from analysis.study_inputs import Study, compute_exclusion, exclusion_files_match
from analysis.tuning_curve_files import (
    TC_ID_COLUMNS,
    read_complete_tuning_curves,
    stage_blocks,
    write_tuning_curves_csv,
)
from analysis.tuning_curves import tuning_curve_blocks
from analysis.tuning_features import tuning_curve_features_table
from store.errors import ResultsFileError
from store.files import atomic_open, atomic_write_csv, has_stored, remove_stored, stored
from store.layout import (
    CONF_FEATURES,
    CONF_TC,
    EXCLUDED_ALL,
    EXCLUDED_CONF,
    EXCLUDED_DETAILS,
    MVPA_SETTINGS,
    PER_RUN,
    PRETRAINING_FEATURES,
    PRETRAINING_FIGURES,
    PRETRAINING_TC,
    REL_PRETRAIN,
    REL_TRAIN,
    REPORT,
    SCORE_TABLES,
    STATS_ANOVA,
    STATS_CORR,
    STATS_PAIRED,
    STATS_TRIANGLES,
    SUMMARY_PDF,
    StudyLayout,
    table_name,
)

logger = logging.getLogger(__name__)

COLOR_BY: tuple[str, ...] = ("type", "run_index", "pref_ori", "phase")
CORRELATION_TARGETS: tuple[str, ...] = ("psychometric_offset", "staircase_offset", "loss_binary_cross_entr")
TRIANGLES: tuple[tuple[int, str, float], ...] = (
    (0, "mid", 55.0),
    (0, "mid", 125.0),
    (1, "sup", 55.0),
    (1, "sup", 125.0),
)
"""(layer index, layer name, orientation) of the four correlation triangles (F8)."""
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
"""Figure order of summary.pdf (the pages of the reference PDF, ANALYSIS.md §8.1); the other figures follow."""


# ------------------------------------------------------------------------------------------------------
# Reading the tables the parts wrote
# ------------------------------------------------------------------------------------------------------
_CSV_CACHE: dict[Path, tuple[tuple[int, int], pd.DataFrame]] = {}


def _read_csv_or_none(path: Path) -> pd.DataFrame | None:
    """A CSV if it exists, plain or packed (None otherwise); a file read before and unchanged since is not
    parsed again."""
    path = stored(path)
    if not path.is_file():
        return None
    stat = path.stat()
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _CSV_CACHE.get(path)
    if cached is None or cached[0] != key:
        cached = (key, pd.read_csv(path))
        _CSV_CACHE[path] = cached
    return cached[1].copy()


def triangle_statistics(mvpa: pd.DataFrame, rel_changes: pd.DataFrame) -> pd.DataFrame:
    """Pearson r, p, n of the three pairs (ΔMVPA, ΔE/I ratio, Δthreshold) for each layer and orientation."""
    rows = []
    for layer, name, ori in TRIANGLES:
        data = triangle_data(mvpa, rel_changes, layer, ori)
        for x, y in (("dmvpa", "dratio"), ("doffset", "dratio"), ("dmvpa", "doffset")):
            r, p, n = pearson_finite(data[x], data[y])
            rows.append({"layer": layer, "layer_name": name, "ori": ori, "x": x, "y": y, "r": r, "p": p, "n": n})
    return pd.DataFrame(rows)


def summary_entries(fig_dir: Path, n: int | None = None) -> list[report.FigureEntry]:
    """The configuration's figures in the summary order (the reference PDF's pages first, then the others by
    name); n: the number of runs they show (for the captions)."""
    figures = {p.stem: p for p in sorted(fig_dir.glob("*.png"))}
    ordered = [figures[s] for s in SUMMARY_ORDER if s in figures]
    ordered += [p for s, p in figures.items() if s not in SUMMARY_ORDER]
    return [(p, report.caption_for(p, n)) for p in ordered]


@dataclass
class _MvpaJob:
    """The MVPA work of one configuration: its folder, score tables and missing runs."""

    folder: Path
    tables: dict[str, pd.DataFrame]
    todo: list[int]


@dataclass(frozen=True)
class _ConfTargets:
    """The targets of one configuration that later targets read."""

    tuning_curves: Target
    features: Target
    changes: Target
    mvpa: Target


class Pipeline:
    """One analysis call: the declared outputs of a study and the scheduler that brings them up to date."""

    def __init__(self, study: Study, settings: AnalysisSettings, overwrite: bool, parts: Sequence[str]) -> None:
        unknown = sorted(set(parts) - set(ALL_PARTS))
        if unknown:
            raise ValueError(f"unknown parts {unknown}; valid: {list(ALL_PARTS)}")
        self.study = study
        self.root = study.root
        self.settings = settings
        self.overwrite = overwrite
        self.parts = tuple(parts)
        first = study.params[study.first_conf]
        self.layout = CellLayout.from_parameters(first)
        self.orientations = TaskOrientations.from_parameters(first)
        self.scheduler = Scheduler(ALL_PARTS)
        self._mvpa_written: set[str] | None = None
        self._declare()

    @property
    def failed(self) -> list[str]:
        """Figures that failed in this call ('path: error')."""
        return self.scheduler.failed

    def run(self) -> None:
        """Every requested part in pipeline order."""
        self.study.excluded = compute_exclusion(self.study)
        for conf in self.study.confs:
            logger.info("%s: %d runs, excluded %s", conf, len(self.study.runs), self.study.excluded[conf])
        self._mvpa_written = None
        for part in ALL_PARTS:
            if part in self.parts:
                start = time.perf_counter()
                self.scheduler.run_part(part, self.overwrite)
                logger.info("part %s done in %.1f s", part, time.perf_counter() - start)
        if self.failed:
            raise RuntimeError("figures failed (every other output was written):\n" + "\n".join(self.failed))

    def report(self) -> None:
        """Only the report part: summary.pdf per configuration and report.html."""
        self.scheduler.run_part("report", self.overwrite)

    # ---------------------------------------------------------------------------------- folders
    def conf_dir(self, conf: str) -> Path:
        """``R/<conf>``."""
        return StudyLayout(self.root).configuration(conf).folder

    def fig_dir(self, conf: str) -> Path:
        """``R/<conf>/figures``."""
        return StudyLayout(self.root).configuration(conf).figures

    # ------------------------------------------------------------------------------- declarations
    def _declare(self) -> None:
        """Every output of the analysis, in pipeline order."""
        study, root = self.study, self.root
        exclusion = self.scheduler.add(
            "exclusion", "exclusion",
            [root / EXCLUDED_ALL, root / EXCLUDED_DETAILS, *(root / c / EXCLUDED_CONF for c in study.confs)],
            lambda: write_exclusion_files(root, study.excluded),
            current=lambda: exclusion_files_match(root, study.excluded),
        )  # fmt: skip
        tc_pre = self._incremental(
            "tuning_curves/pretraining", "tuning_curves", root / PRETRAINING_TC,
            lambda: self._tuning_curve_file(root / PRETRAINING_TC, [(r, s) for r in study.runs for s in (0, 1)], None),
        )  # fmt: skip
        tc = {
            conf: self._incremental(
                f"tuning_curves/{conf}", "tuning_curves", self.conf_dir(conf) / CONF_TC,
                lambda c=conf: self._tuning_curve_file(
                    self.conf_dir(c) / CONF_TC, [(r, 2) for r in study.valid(c)], c
                ),
                (exclusion,),
            )
            for conf in study.confs
        }  # fmt: skip
        features_pre = self._incremental(
            "features/pretraining", "features", root / PRETRAINING_FEATURES,
            lambda: self._feature_file(root / PRETRAINING_TC, root / PRETRAINING_FEATURES, (0, 1)), (tc_pre,),
        )  # fmt: skip
        features = {
            conf: self._incremental(
                f"features/{conf}", "features", self.conf_dir(conf) / CONF_FEATURES,
                lambda c=conf: self._feature_file(self.conf_dir(c) / CONF_TC, self.conf_dir(c) / CONF_FEATURES, (2,)),
                (tc[conf],),
            )
            for conf in study.confs
        }  # fmt: skip
        empty = pd.DataFrame({"run_index": pd.Series(dtype=int), "stage": pd.Series(dtype=int)})
        changes_pre = self._incremental(
            "changes/pretraining", "changes", root / REL_PRETRAIN,
            lambda: self._changes_file(
                root / REL_PRETRAIN,
                lambda: relative_changes(study.pre_df, empty, study.runs, "pretrain"),
                study.runs,
            ),
        )  # fmt: skip
        changes = {
            conf: self._incremental(
                f"changes/{conf}", "changes", self.conf_dir(conf) / REL_TRAIN,
                lambda c=conf: self._changes_file(
                    self.conf_dir(c) / REL_TRAIN,
                    lambda: relative_changes(study.pre_df, study.train[c], study.training_runs(c), "train"),
                    study.training_runs(c),
                ),
            )
            for conf in study.confs
        }  # fmt: skip
        mvpa = {
            conf: self._incremental(
                f"mvpa/{conf}", "mvpa",
                [self.conf_dir(conf) / table_name(name) for name in SCORE_TABLES],
                lambda c=conf: c in self._mvpa_all(),
                (exclusion,),
            )
            for conf in study.confs
        }  # fmt: skip
        confs = {c: _ConfTargets(tc[c], features[c], changes[c], mvpa[c]) for c in study.confs}
        for conf in study.confs:
            self._declare_stats(conf, exclusion, confs[conf])
        study_tables = self.scheduler.add(
            "study_tables", "stats", (root / ss.STUDY_SUMMARY, root / ss.STUDY_STATS), self._write_study_tables,
            (exclusion, *changes.values()),
        )  # fmt: skip
        for conf in study.confs:
            self._declare_training_figures(conf, exclusion, confs[conf])
            self._declare_tuning_figures(conf, (exclusion, tc_pre, tc[conf], features_pre, features[conf]))
            self._declare_mvpa_figures(conf, exclusion, confs[conf])
        self._declare_pretraining_figures(exclusion, tc_pre, features_pre, changes_pre)
        self._figure("headline", root / ss.HEADLINE, (exclusion, study_tables), self.draw_headline)
        self._declare_report()

    def _incremental(
        self,
        name: str,
        part: str,
        paths: Path | Sequence[Path],
        build: Callable[[], bool],
        inputs: Iterable[Target] = (),
    ) -> Target:
        """A resumable table: its builder computes what the file lacks and says whether it wrote anything."""
        return self.scheduler.add(name, part, paths, build, inputs, incremental=True)

    def _figure(
        self,
        name: str,
        path: Path,
        inputs: Iterable[Target],
        draw: Callable[[Path], object],
        group: Sequence[Path] = (),
        ready: Callable[[], bool] | None = None,
    ) -> Target:
        """A figure (or a group of files written by one call): drawn when any of its files is stale.

        A failing figure is logged and remembered; :meth:`run` raises after every other output is written.
        """
        options: dict = {"fallible": True}
        if ready is not None:
            options["ready"] = ready
        paths = (path, *[p for p in group if p != path])
        return self.scheduler.add(name, "figures", paths, lambda: draw(path), inputs, **options)

    # ----------------------------------------------------------------------------- tuning curves
    def _tuning_curve_file(self, path: Path, wanted: list[tuple[int, int]], conf: str | None) -> bool:
        """Append the missing (run, stage) blocks of one tuning-curve file; True if any was computed."""
        oris = self.settings.tc_orientations
        if self.overwrite:
            remove_stored(path)
        done = stage_blocks(read_complete_tuning_curves(path, len(oris), self.layout))
        todo = [b for b in wanted if b not in done]
        if not todo:
            return False
        loader = self.study.loader
        for run, stage in tqdm(todo, desc=f"tuning curves {conf or 'pretraining'}", disable=None):
            try:
                snapshot = loader.snapshot(run, stage, conf)
            except ResultsFileError as error:
                logger.warning("tuning curves of run %d stage %d skipped: %s", run, stage, error)
                continue
            write_tuning_curves_csv(tuning_curve_blocks([snapshot], oris), path, append=True)
        return True

    # ---------------------------------------------------------------------------------- features
    def _feature_file(self, tc_path: Path, out: Path, stages: Sequence[int]) -> bool:
        """Compute the features of the tuning-curve blocks that the features file lacks (drop vanished blocks)."""
        if not has_stored(tc_path):
            logger.warning("%s missing: no features for it (run the tuning_curves part)", tc_path)
            return False
        oris = self.settings.tc_orientations
        tc = read_complete_tuning_curves(tc_path, len(oris), self.layout)
        tc = tc[tc["training_stage"].isin(stages)]
        present = stage_blocks(tc)
        old = None if self.overwrite else _read_csv_or_none(out)
        if old is not None:
            in_tc = [(int(r), int(s)) in present for r, s in zip(old["run_index"], old["stage"], strict=True)]
            kept = old[in_tc]
            if len(kept) == len(old) and stage_blocks(kept, ("run_index", "stage")) == present:
                return False
            old = kept
        have = stage_blocks(old, ("run_index", "stage")) if old is not None else set()
        slopes, trained = self.orientations.slopes, self.orientations.trained
        new = [
            tuning_curve_features_table(block, stages, oris, slopes, trained)
            for (run, stage), block in tc.groupby(list(TC_ID_COLUMNS), sort=False)
            if (int(run), int(stage)) not in have
        ]
        table = pd.concat([t for t in (old, *new) if t is not None and len(t)], ignore_index=True)
        table = table.sort_values(["run_index", "stage"], kind="stable").reset_index(drop=True)
        atomic_write_csv(table, out)
        return True

    def pretraining_features(self) -> pd.DataFrame | None:
        """The pretraining features table (None if missing)."""
        return _read_csv_or_none(self.root / PRETRAINING_FEATURES)

    def _features(self, conf: str, runs: Sequence[int]) -> pd.DataFrame | None:
        """Pretraining (stages 0, 1) and configuration (stage 2) features of runs (None if missing)."""
        pre = self.pretraining_features()
        conf_feats = _read_csv_or_none(self.conf_dir(conf) / CONF_FEATURES)
        if pre is None or conf_feats is None:
            logger.warning("%s: tuning-curve features missing (run the features part)", conf)
            return None
        table = pd.concat([pre, conf_feats], ignore_index=True)
        return table[table["run_index"].astype(int).isin(list(runs))].reset_index(drop=True)

    # ------------------------------------------------------------------------------ relative changes
    def _changes_file(self, path: Path, compute: Callable[[], pd.DataFrame], runs: list[int]) -> bool:
        """Write a relative-change table if it is missing, to be overwritten or covers other runs."""
        old = None if self.overwrite else _read_csv_or_none(path)
        if old is not None and sorted(old["run_index"].astype(int)) == sorted(runs):
            return False
        atomic_write_csv(compute(), path)
        return True

    def rel_changes(self, conf: str | None, runs: Iterable[int]) -> pd.DataFrame | None:
        """A relative-change table (pretraining if conf is None) restricted to runs."""
        path = self.root / REL_PRETRAIN if conf is None else self.conf_dir(conf) / REL_TRAIN
        df = _read_csv_or_none(path)
        if df is None:
            logger.warning("%s missing (run the changes part)", path)
            return None
        return df[df["run_index"].astype(int).isin(list(runs))].reset_index(drop=True)

    # ------------------------------------------------------------------------------------------ MVPA
    def _mvpa_all(self) -> set[str]:
        """Run the MVPA of every configuration once per call; the configurations whose tables were written.

        Runs are taken one at a time across the configurations, so that their shared stages 0 and 1 are
        simulated once per run (:data:`analysis.mvpa_responses.ResponseCache`).
        """
        if self._mvpa_written is not None:
            return self._mvpa_written
        jobs = {conf: job for conf in self.study.confs if (job := self._mvpa_job(conf)) is not None}
        runs = sorted({run for job in jobs.values() for run in job.todo})
        for run in tqdm(runs, desc="MVPA", disable=None):
            cache: ResponseCache = {}
            for conf, job in jobs.items():
                if run in job.todo:
                    self._mvpa_run(conf, job, run, cache)
        for job in jobs.values():
            if not job.todo:  # nothing to compute, but runs were dropped from the tables
                self._write_scores(job.folder, job.tables, self.settings.mvpa_record())
        self._mvpa_written = set(jobs)
        return self._mvpa_written

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
        new = score_tables({run: mvpa_scores_for_run(snapshots, self.settings.mvpa, cache)})
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
        tables = {name: _read_csv_or_none(folder / table_name(name)) for name in SCORE_TABLES}
        if any(t is None or "run_index" not in t.columns for t in tables.values()):
            return {}
        return tables

    @staticmethod
    def _write_scores(folder: Path, tables: dict[str, pd.DataFrame], record: dict) -> None:
        """Write the score tables (sorted by run) and the settings they were computed with."""
        for name, table in tables.items():
            table = table if len(table.columns) else pd.DataFrame(columns=["run_index"])
            atomic_write_csv(table.sort_values("run_index", kind="stable"), folder / table_name(name))
        with atomic_open(folder / MVPA_SETTINGS) as fh:  # the cache trusts any settings file it finds
            fh.write(json.dumps(record, indent=1))

    def scores(self, conf: str, kind: str) -> pd.DataFrame | None:
        """MVPA ('MVPA_scores') or Mahalanobis ('Mahal_scores') scores of the valid runs (None if missing)."""
        df = _read_csv_or_none(self.conf_dir(conf) / table_name(kind))
        if df is None or df.empty:
            logger.warning("%s/%s.csv missing or empty (run the mvpa part)", conf, kind)
            return None
        return df[df["run_index"].astype(int).isin(self.study.valid(conf))].reset_index(drop=True)

    def _both_scores(self, conf: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """MVPA and Mahalanobis scores of the valid runs (None if either is missing)."""
        mvpa, mahal = self.scores(conf, "MVPA_scores"), self.scores(conf, "Mahal_scores")
        return None if mvpa is None or mahal is None else (mvpa, mahal)

    # ----------------------------------------------------------------------------------------- stats
    def _declare_stats(self, conf: str, exclusion: Target, targets: _ConfTargets) -> None:
        """Paired tests, repeated-measures ANOVA, parameter-offset correlations and triangle correlations."""
        folder, inputs = self.conf_dir(conf), (exclusion, targets.mvpa, targets.changes)
        has_scores = lambda: self._both_scores(conf) is not None  # noqa: E731
        has_changes = lambda: self.rel_changes(conf, self.study.valid(conf)) is not None  # noqa: E731

        def paired() -> None:
            mvpa, mahal = self._both_scores(conf)
            tables = [paired_tests(mvpa, 1, 2, "MVPA"), paired_tests(mahal, 1, 2, "Mahal")]
            write_stats_csv(pd.concat(tables), folder / STATS_PAIRED)

        def anova() -> None:
            mvpa, mahal = self._both_scores(conf)
            write_stats_csv(pd.concat([rm_anova(mvpa, (1, 2), "MVPA"), rm_anova(mahal, (1, 2), "Mahal")]),
                            folder / STATS_ANOVA)  # fmt: skip

        def correlations() -> None:
            rc = self.rel_changes(conf, self.study.valid(conf))
            targets = [t for t in CORRELATION_TARGETS if t in rc.columns or f"d_{t}" in rc.columns]
            write_stats_csv(pd.concat([param_offset_correlations(rc, t) for t in targets]), folder / STATS_CORR)

        def triangles() -> None:
            rc = self.rel_changes(conf, self.study.valid(conf))
            write_stats_csv(triangle_statistics(self.scores(conf, "MVPA_scores"), rc), folder / STATS_TRIANGLES)

        add = self.scheduler.add
        add(f"stats_paired/{conf}", "stats", folder / STATS_PAIRED, paired, inputs, ready=has_scores)
        add(f"stats_anova/{conf}", "stats", folder / STATS_ANOVA, anova, inputs, ready=has_scores)
        add(f"stats_correlations/{conf}", "stats", folder / STATS_CORR, correlations, inputs, ready=has_changes)
        add(f"stats_triangles/{conf}", "stats", folder / STATS_TRIANGLES, triangles, inputs,
            ready=lambda: has_changes() and self.scores(conf, "MVPA_scores") is not None)  # fmt: skip

    def _write_study_tables(self) -> None:
        """study_summary.csv and study_stats.csv at the root."""
        data = self.configuration_data()
        write_stats_csv(ss.summary_table(data), self.root / ss.STUDY_SUMMARY)
        write_stats_csv(ss.stats_table(data), self.root / ss.STUDY_STATS)

    def exclusion_reasons(self, conf: str) -> dict[int, str]:
        """Excluded run -> reason (the verdicts of compute_exclusion)."""
        table = exclusion_table(self.study.train[conf], self.study.runs,
                                self.study.params[conf].stimuli.max_train_offset)  # fmt: skip
        return {int(r): str(why) for r, why in zip(table["run_index"], table["reason"], strict=True) if why}

    def configuration_data(self) -> list[ss.ConfigurationData]:
        """The inputs of the study summary: per configuration its retained runs' changes and behaviour."""
        out = []
        for conf in self.study.confs:
            valid = self.study.valid(conf)
            rc = self.rel_changes(conf, valid)
            present = [r for r in self.study.training_runs(conf) if r in valid]
            pre_post = pre_post_values(self.study.pre_df, self.study.train[conf], present) if present else None
            if pre_post is not None:
                pre_post = pre_post.reindex(columns=["run_index", "time", *ss.BEHAVIOUR])
            out.append(ss.ConfigurationData(
                conf, list(self.study.runs), self.exclusion_reasons(conf),
                rc if rc is not None else pd.DataFrame(columns=["run_index"]),
                pre_post if pre_post is not None else pd.DataFrame(columns=["run_index", "time", *ss.BEHAVIOUR]),
            ))  # fmt: skip
        return out

    # --------------------------------------------------------------------------------------- figures
    def draw_headline(self, path: Path) -> Path:
        """headline.png from the same inputs and tests as study_summary.csv and study_stats.csv."""
        data = self.configuration_data()
        stats_path = self.root / ss.STUDY_STATS
        table = _read_csv_or_none(stats_path)
        table = table if table is not None else ss.stats_table(data)
        lookup = ss.stats_lookup(table)
        return vis.plot_headline(
            {d.name: d.changes for d in data},
            {d.name: {c: ss.behaviour_wide(d.pre_post, c) for c in ss.BEHAVIOUR} for d in data},
            lambda conf, comparison: ss.format_test(lookup.get((conf, comparison))),
            path,
        )

    def _declare_training_figures(self, conf: str, exclusion: Target, targets: _ConfTargets) -> None:
        """F1 (every run), F2 (all training runs, and valid runs with suffix _train), F3, F4."""
        study, figs = self.study, self.fig_dir(conf)
        pre, train = study.pre_df, study.train[conf]
        if self.settings.per_run_figures:
            for run in study.runs:
                self._figure(
                    f"per_run/{conf}/{run}", figs / PER_RUN / f"resultsfig_{run}.png", (),
                    lambda p, r=run: vis.plot_training_run(run_table(pre, train, r), p, run_index=r),
                )  # fmt: skip
        pre_post_runs = {"": (study.training_runs, ()), "_train": (study.valid, (exclusion,))}
        for suffix, (runs_of, inputs) in pre_post_runs.items():
            group = [figs / f"{stem}{suffix}.png" for stem in vis.PRE_POST_FIGURES]
            self._figure(
                f"pre_post{suffix}/{conf}", group[0], inputs,
                lambda p, r=runs_of, s=suffix: vis.plot_all_pre_post_bars(pre_post_values(pre, train, r(conf)),
                                                                            p.parent, s),
                group, ready=lambda r=runs_of: bool(r(conf)),
            )  # fmt: skip
        inputs = (exclusion, targets.changes)

        def rc() -> pd.DataFrame | None:
            return self.rel_changes(conf, study.valid(conf))

        def has_rc() -> bool:
            table = rc()
            return table is not None and not table.empty

        def title() -> str:
            return f"{conf}: changes during training (first to last stage-2 row), {len(rc())} runs"

        self._figure(
            f"boxplot/{conf}", figs / "boxplot_relative_changes.png", inputs,
            lambda p: vis.plot_relative_change_boxes(rc(), p, title()), ready=has_rc,
        )  # fmt: skip
        self._figure(
            f"boxplot_ylim/{conf}", figs / "boxplot_relative_changes_ylim.png", inputs,
            lambda p: vis.plot_relative_change_boxes(rc(), p, title(), fixed_ylim=True), ready=has_rc,
        )  # fmt: skip
        group = [figs / f"{stem}.png" for stem in vis.CORRELATION_FIGURES]
        self._figure(
            f"correlations/{conf}", group[0], inputs,
            lambda p: vis.plot_all_param_offset_correlations(rc(), p.parent), group, ready=has_rc,
        )  # fmt: skip

    def _declare_tuning_figures(self, conf: str, inputs: tuple[Target, ...]) -> None:
        """F5 (example tuning curves), F6 (feature scatter, 4 colourings) and F7 (slope changes), stage 1 -> 2."""
        figs, oris = self.fig_dir(conf), self.settings.tc_orientations
        tc_paths = [self.root / PRETRAINING_TC, self.conf_dir(conf) / CONF_TC]

        def draw_tc(path: Path) -> Path:
            tc = pd.concat([read_complete_tuning_curves(p, len(oris), self.layout) for p in tc_paths],
                           ignore_index=True)  # fmt: skip
            valid = self.study.valid(conf)
            return vis.plot_example_tuning_curves(tc[tc["run_index"].isin(valid)], path, oris=oris, layout=self.layout)

        self._figure(f"tc_fig/{conf}", figs / "tc_fig.png", inputs, draw_tc,
                     ready=lambda: all(has_stored(p) for p in tc_paths))  # fmt: skip
        self._declare_feature_figures(
            f"train/{conf}", lambda: self._features(conf, self.study.valid(conf)), figs, "train", 1, 2, inputs
        )

    def _declare_feature_figures(
        self,
        name: str,
        features: Callable[[], pd.DataFrame | None],
        folder: Path,
        stem: str,
        pre: int,
        post: int,
        inputs: tuple[Target, ...],
    ) -> None:
        """F6 for every colouring and F7 of one stage pair (skipped when there are no features)."""

        def ready() -> bool:
            table = features()
            return table is not None and not table.empty

        for color_by in COLOR_BY:
            self._figure(
                f"tc_features_{color_by}/{name}", folder / f"tc_features_{stem}_color_by_{color_by}.png", inputs,
                lambda p, c=color_by: vis.plot_tc_feature_scatter(features(), p, pre, post, c, layout=self.layout),
                ready=ready,
            )  # fmt: skip
        self._figure(
            f"tc_slope/{name}", folder / f"tc_slope_{stem}_color_by_type.png", inputs,
            lambda p: vis.plot_slope_changes(features(), p, pre, post, step=self.settings.mw_step,
                                             layout=self.layout, orientations=self.orientations),
            ready=ready,
        )  # fmt: skip

    def _declare_mvpa_figures(self, conf: str, exclusion: Target, targets: _ConfTargets) -> None:
        """F8 (correlation triangles and their montage) and F9 (score boxes, paper-style bars)."""
        figs, inputs = self.fig_dir(conf), (exclusion, targets.mvpa, targets.changes)
        has_scores = lambda: self._both_scores(conf) is not None  # noqa: E731
        orientations = self.orientations

        def mvpa() -> pd.DataFrame:
            return self.scores(conf, "MVPA_scores")

        def rc() -> pd.DataFrame | None:
            return self.rel_changes(conf, self.study.valid(conf))

        self._figure(f"mvpa_boxes/{conf}", figs / "MVPA_scores.png", inputs,
                     lambda p: vis.plot_scores_boxes(mvpa(), p, "mvpa", orientations=orientations),
                     ready=has_scores)  # fmt: skip
        self._figure(f"mahal_boxes/{conf}", figs / "Mahal_scores.png", inputs,
                     lambda p: vis.plot_scores_boxes(self.scores(conf, "Mahal_scores"), p, "mahal",
                                                     orientations=orientations),
                     ready=has_scores)  # fmt: skip
        self._figure(f"mvpa_paper/{conf}", figs / "MVPA_match_paper_fig.png", inputs,
                     lambda p: vis.plot_mvpa_paper_bars(mvpa(), p, orientations=orientations),
                     ready=has_scores)  # fmt: skip
        has_triangle_data = lambda: has_scores() and rc() is not None  # noqa: E731
        paths, titles = [], []
        for layer, name, ori in TRIANGLES:
            path = figs / f"corr_triangle_{name}_{ori:g}.png"
            title = f"{conf}: {name} layer, {ori:g}°: ΔMVPA (stage 1 → 2), ΔE/I ratio, Δthreshold"
            self._figure(
                f"corr_triangle_{name}_{ori:g}/{conf}", path, inputs,
                lambda p, la=layer, o=ori, t=title: vis.plot_corr_triangle(triangle_data(mvpa(), rc(), la, o), p, t),
                ready=has_triangle_data,
            )  # fmt: skip
            paths.append(path)
            titles.append(f"{name} {ori:g}")
        self._figure(
            f"combined_corr_triangles/{conf}", figs / "combined_corr_triangles.png", inputs,
            lambda p: vis.plot_image_montage(paths, titles, p, f"{conf}: correlation triangles"),
            ready=lambda: has_triangle_data() and all(p.is_file() for p in paths),
        )  # fmt: skip

    def _declare_pretraining_figures(
        self, exclusion: Target, tc_pre: Target, features_pre: Target, changes_pre: Target
    ) -> None:
        """Pretraining changes (1x8 boxes), F6 and F7 of stage 0 -> 1, for the runs no configuration excludes."""
        folder = self.root / PRETRAINING_FIGURES

        def rc() -> pd.DataFrame | None:
            return self.rel_changes(None, self.study.root_valid())

        def has_rc() -> bool:
            table = rc()
            return table is not None and not table.empty

        def draw_boxes(path: Path) -> Path:
            table = rc()
            title = f"Changes during pretraining (stages 0-1), {len(table)} runs"
            return vis.plot_relative_change_boxes(table, path, title, ncols=8)

        self._figure("boxplot/pretraining", folder / "boxplot_relative_changes.png", (exclusion, changes_pre),
                     draw_boxes, ready=has_rc)  # fmt: skip

        def features() -> pd.DataFrame | None:
            pre = self.pretraining_features()
            if pre is None:
                logger.warning("pretraining features missing: no pretraining feature figures")
                return None
            return pre[pre["run_index"].astype(int).isin(self.study.root_valid())]

        self._declare_feature_figures("pretraining", features, folder, "pretrain", 0, 1,
                                      (exclusion, tc_pre, features_pre))  # fmt: skip

    # ---------------------------------------------------------------------------------------- report
    def _declare_report(self) -> None:
        """summary.pdf per configuration (after any figure was drawn) and report.html (after anything)."""
        figures = tuple(self.scheduler.of_part("figures"))
        for conf in self.study.confs:
            self.scheduler.add(
                f"summary_pdf/{conf}", "report", self.conf_dir(conf) / SUMMARY_PDF,
                lambda c=conf: self._write_summary_pdf(c), figures,
            )  # fmt: skip
        self.scheduler.add("report_html", "report", self.root / REPORT, self._write_report_html,
                           tuple(self.scheduler.targets))  # fmt: skip

    def _configuration_report(self, conf: str) -> report.ConfigurationReport:
        """What the summary PDF and the report page show of one configuration."""
        n = len(self.study.valid(conf))
        return report.ConfigurationReport(
            conf, list(self.study.runs), self.exclusion_reasons(conf), summary_entries(self.fig_dir(conf), n),
            report.figures_with_captions(self.fig_dir(conf) / PER_RUN),
        )  # fmt: skip

    def _study_settings(self) -> dict:
        """The study settings shown by the report."""
        return report.read_study_settings(self.root, self.study.confs, len(self.study.runs))

    def _write_summary_pdf(self, conf: str) -> None:
        """summary.pdf of one configuration."""
        entry = self._configuration_report(conf)
        report.write_summary_pdf(entry.figures, self.conf_dir(conf) / SUMMARY_PDF, self._study_settings(), entry)

    def _write_report_html(self) -> None:
        """report.html at the root."""
        pdfs = {conf: self.conf_dir(conf) / SUMMARY_PDF for conf in self.study.confs}
        report.write_report_html(
            self.root, self._study_settings(), [self._configuration_report(c) for c in self.study.confs],
            report.figures_with_captions(self.root / PRETRAINING_FIGURES, n=len(self.study.root_valid())),
            self.root / ss.HEADLINE, _read_csv_or_none(self.root / ss.STUDY_SUMMARY),
            _read_csv_or_none(self.root / ss.STUDY_STATS), pdfs,
        )  # fmt: skip
