"""File and folder names the analysis writes into a results folder ``R`` (``R/`` the pretraining tables and
figures and the study-wide report, ``R/<conf>/`` a configuration's tables, ``R/<conf>/figures/`` its figures).

The names are owned by :mod:`study.layout`; this module gathers the analysis' own for its modules.
"""

from __future__ import annotations

from study.layout import (  # noqa: F401  (re-exported)
    CONF_FEATURES,
    CONF_TC,
    EXCLUDED_ALL,
    EXCLUDED_CONF,
    EXCLUDED_DETAILS,
    FIGURES,
    MVPA_SETTINGS,
    PER_RUN,
    PRETRAINING_FEATURES,
    PRETRAINING_FIGURES,
    PRETRAINING_TC,
    REL_PRETRAIN,
    REL_TRAIN,
    SCORE_TABLES,
    STATS_ANOVA,
    STATS_CORR,
    STATS_PAIRED,
    STATS_TRIANGLES,
    SUMMARY_PDF,
)
from study.layout import REPORT as REPORT_HTML  # noqa: F401
