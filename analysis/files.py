"""File and folder names the analysis writes into a results folder ``R`` (one place for all of them).

``R/`` gets the pretraining tables and figures and the study-wide report; ``R/<conf>/`` the tables of one
training configuration and ``R/<conf>/figures/`` its figures.
"""

from __future__ import annotations

PRETRAINING_TC = "pretraining_tuning_curves.csv"
PRETRAINING_FEATURES = "pretraining_tuning_curve_features.csv"
CONF_TC = "tuning_curves.csv"
CONF_FEATURES = "tuning_curve_features.csv"
REL_PRETRAIN = "rel_changes_pretrain.csv"
REL_TRAIN = "rel_changes_train.csv"
EXCLUDED_CONF = "excluded_runs.csv"
EXCLUDED_ALL = "excluded_runs_all.csv"
EXCLUDED_DETAILS = "excluded_runs_details.csv"
SCORE_TABLES: tuple[str, ...] = ("MVPA_scores", "Mahal_scores", "Mahal_details", "LMI")
"""Stems of the score CSV files of a configuration (``<stem>.csv``)."""
MVPA_SETTINGS = "MVPA_settings.json"
STATS_PAIRED = "stats_paired_tests.csv"
STATS_ANOVA = "stats_rm_anova.csv"
STATS_CORR = "stats_param_offset_correlations.csv"
STATS_TRIANGLES = "stats_corr_triangles.csv"
PRETRAINING_FIGURES = "pretraining_figures"
FIGURES = "figures"
PER_RUN = "per_run"
SUMMARY_PDF = "summary.pdf"
REPORT_HTML = "report.html"
