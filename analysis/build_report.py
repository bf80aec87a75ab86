"""Builders of the report (part ``report``): ``summary.pdf`` per configuration and ``report.html`` at the root,
from the figures and tables the earlier parts wrote. Plain functions over explicit arguments, declared as
targets by :mod:`analysis.pipeline`."""

from __future__ import annotations

from pathlib import Path

from analysis import report
from analysis.captions import caption_for, figures_with_captions
from analysis.study_inputs import AnalysisInputs, RunExclusion, exclusion_reasons
from analysis.tables import TableReader
from store.layout import HEADLINE, PER_RUN, PRETRAINING_FIGURES, STUDY_STATS, STUDY_SUMMARY, StudyLayout

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


def summary_entries(fig_dir: Path, n: int | None = None) -> list[report.FigureEntry]:
    """The configuration's figures in the summary order (the reference PDF's pages first, then the others by
    name); n: the number of runs they show (for the captions)."""
    figures = {p.stem: p for p in sorted(fig_dir.glob("*.png"))}
    ordered = [figures[s] for s in SUMMARY_ORDER if s in figures]
    ordered += [p for s, p in figures.items() if s not in SUMMARY_ORDER]
    return [(p, caption_for(p, n)) for p in ordered]


def configuration_report(inputs: AnalysisInputs, exclusion: RunExclusion, conf: str) -> report.ConfigurationReport:
    """What the summary PDF and the report page show of one configuration."""
    fig_dir = StudyLayout(inputs.root).configuration(conf).figures
    return report.ConfigurationReport(
        conf, list(inputs.runs), exclusion_reasons(inputs, conf), summary_entries(fig_dir, len(exclusion.valid(conf))),
        figures_with_captions(fig_dir / PER_RUN),
    )  # fmt: skip


def study_settings(inputs: AnalysisInputs) -> report.StudySettings:
    """The study settings shown by the report."""
    return report.read_study_settings(inputs.root, inputs.confs, len(inputs.runs))


def write_summary_pdf(path: Path, inputs: AnalysisInputs, exclusion: RunExclusion, conf: str) -> None:
    """summary.pdf of one configuration."""
    entry = configuration_report(inputs, exclusion, conf)
    report.write_summary_pdf(entry.figures, path, study_settings(inputs), entry)


def write_report_html(inputs: AnalysisInputs, exclusion: RunExclusion, reader: TableReader) -> None:
    """report.html at the root."""
    root = inputs.root
    report.write_report_html(
        root, study_settings(inputs), [configuration_report(inputs, exclusion, c) for c in inputs.confs],
        figures_with_captions(root / PRETRAINING_FIGURES, n=len(exclusion.root_valid())), root / HEADLINE,
        reader.csv(root / STUDY_SUMMARY), reader.csv(root / STUDY_STATS),
        {conf: StudyLayout(root).configuration(conf).summary_pdf for conf in inputs.confs},
    )  # fmt: skip
