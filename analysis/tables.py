"""Reading the tables the analysis wrote, through one explicit cache per analysis call.

A :class:`TableCache` belongs to one analysis call (it is made by :func:`analysis.pipeline.run_analysis` and
handed to every builder that reads a table): a CSV read before and unchanged since (same modification time
and size) is not parsed again, and every reader gets its own copy. :class:`TableReader` knows where each table
of a results folder lives and restricts it to the runs asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from store.files import stored
from store.layout import CONF_FEATURES, PRETRAINING_FEATURES, REL_PRETRAIN, REL_TRAIN, table_name

logger = logging.getLogger(__name__)


@dataclass
class TableCache:
    """CSV tables parsed in one analysis call, keyed by path and (modification time, size)."""

    tables: dict[Path, tuple[tuple[int, int], pd.DataFrame]] = field(default_factory=dict)

    def read(self, path: Path) -> pd.DataFrame | None:
        """A CSV if it exists, plain or packed (None otherwise); a copy of the parsed table when the file is
        unchanged since it was last read."""
        path = stored(path)
        if not path.is_file():
            return None
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self.tables.get(path)
        if cached is None or cached[0] != key:
            cached = (key, pd.read_csv(path))
            self.tables[path] = cached
        return cached[1].copy()


def _runs_only(table: pd.DataFrame, runs: Iterable[int]) -> pd.DataFrame:
    """The rows of the given runs, renumbered."""
    return table[table["run_index"].astype(int).isin(list(runs))].reset_index(drop=True)


@dataclass(frozen=True)
class TableReader:
    """The analysis tables of one results folder, restricted to the runs asked for (None when missing)."""

    root: Path
    cache: TableCache

    def csv(self, path: Path) -> pd.DataFrame | None:
        """Any CSV of the folder (None if missing)."""
        return self.cache.read(path)

    def rel_changes(self, conf: str | None, runs: Iterable[int]) -> pd.DataFrame | None:
        """A relative-change table (pretraining if conf is None) restricted to runs."""
        path = self.root / REL_PRETRAIN if conf is None else self.root / conf / REL_TRAIN
        table = self.cache.read(path)
        if table is None:
            logger.warning("%s missing (run the changes part)", path)
            return None
        return _runs_only(table, runs)

    def scores(self, conf: str, kind: str, runs: Iterable[int]) -> pd.DataFrame | None:
        """MVPA ('MVPA_scores') or Mahalanobis ('Mahal_scores') scores of runs (None if missing or empty)."""
        table = self.cache.read(self.root / conf / table_name(kind))
        if table is None or table.empty:
            logger.warning("%s/%s.csv missing or empty (run the mvpa part)", conf, kind)
            return None
        return _runs_only(table, runs)

    def both_scores(self, conf: str, runs: Iterable[int]) -> tuple[pd.DataFrame, pd.DataFrame] | None:
        """MVPA and Mahalanobis scores of runs (None if either is missing)."""
        runs = list(runs)
        mvpa, mahal = self.scores(conf, "MVPA_scores", runs), self.scores(conf, "Mahal_scores", runs)
        return None if mvpa is None or mahal is None else (mvpa, mahal)

    def pretraining_features(self) -> pd.DataFrame | None:
        """The pretraining features table (None if missing)."""
        return self.cache.read(self.root / PRETRAINING_FEATURES)

    def features(self, conf: str | None, runs: Iterable[int]) -> pd.DataFrame | None:
        """Tuning-curve features of runs: the pretraining ones (stages 0, 1) if conf is None, else those and the
        configuration's (stage 2); None if missing."""
        pre = self.pretraining_features()
        if conf is None:
            if pre is None:
                logger.warning("pretraining features missing: no pretraining feature figures")
                return None
            return pre[pre["run_index"].astype(int).isin(list(runs))]
        conf_features = self.cache.read(self.root / conf / CONF_FEATURES)
        if pre is None or conf_features is None:
            logger.warning("%s: tuning-curve features missing (run the features part)", conf)
            return None
        return _runs_only(pd.concat([pre, conf_features], ignore_index=True), runs)
