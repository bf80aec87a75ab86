"""The inputs of the analysis of one results folder: tables, parameters, runs and run exclusion."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.changes import excluded_runs, exclusion_table
from analysis.snapshots import SnapshotLoader, configuration_parameters_path, read_parameters, training_results_path
from parameters import Parameters
from store.errors import ResultsFileError
from store.exclusion import read_excluded_runs
from store.files import has_stored, stored
from store.layout import (
    EXCLUDED_ALL,
    EXCLUDED_CONF,
    EXCLUDED_DETAILS,
    PACKED_SUFFIX,
    PRETRAINING_RESULTS,
    TRAINING_RESULTS,
)
from store.records import pretraining_folder
from store.schema import SSN_COLUMNS, STEP_COLUMNS, training_columns
from store.tables import read_results_csv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisInputs:
    """What the analysis of one results folder reads: the pretraining and training tables, each configuration's
    parameters, the run indices and the loader of model snapshots."""

    root: Path
    confs: list[str]
    pre_df: pd.DataFrame
    train: dict[str, pd.DataFrame]
    params: dict[str, Parameters]
    runs: list[int]
    loader: SnapshotLoader

    @property
    def first_conf(self) -> str:
        """The configuration whose analysis also writes the pretraining figures."""
        return self.confs[0]

    def training_runs(self, conf: str) -> list[int]:
        """Runs with stage-2 rows in the configuration."""
        present = set(pd.to_numeric(self.train[conf]["run_index"], errors="coerce").dropna().astype(int))
        return [r for r in self.runs if r in present]


@dataclass(frozen=True)
class RunExclusion:
    """The runs each configuration's analysis excludes (compute_exclusion) and the runs it keeps."""

    runs: list[int]
    excluded: dict[str, list[int]]

    def valid(self, conf: str) -> list[int]:
        """Runs not excluded from the configuration's analysis."""
        excluded = set(self.excluded.get(conf, []))
        return [r for r in self.runs if r not in excluded]

    def union(self) -> list[int]:
        """Runs excluded by at least one configuration."""
        return sorted(set().union(*map(set, self.excluded.values()))) if self.excluded else []

    def root_valid(self) -> list[int]:
        """Runs not excluded by any configuration (pretraining figures)."""
        union = set(self.union())
        return [r for r in self.runs if r not in union]


def discover_configurations(results_root: Path) -> list[str]:
    """Sub-folders holding a training_results.csv, the ``*baseline`` ones first."""
    names = sorted({p.parent.name for name in (TRAINING_RESULTS, TRAINING_RESULTS + PACKED_SUFFIX)
                    for p in Path(results_root).glob(f"*/{name}")})  # plain, or packed in a kept study
    return sorted(names, key=lambda n: (not n.endswith("baseline"), n))


def order_configurations(conf_names: Sequence[str]) -> list[str]:
    """Configurations with the first ``*baseline`` one moved to the front (it gets the pretraining figures)."""
    names = list(dict.fromkeys(conf_names))
    base = [n for n in names if n.endswith("baseline")]
    return ([base[0]] + [n for n in names if n != base[0]]) if base else names


def load_study(results_root: Path, conf_names: Sequence[str]) -> AnalysisInputs:
    """Read the pretraining and training tables and each configuration's parameters."""
    root = Path(results_root)
    if not root.is_dir():
        raise ResultsFileError(f"results folder not found: {root}")
    confs = order_configurations(conf_names)
    if not confs:
        raise ResultsFileError(f"no configuration to analyse in {root} (no */training_results.csv)")
    # every parameter and metric column the analysis reads: a missing one must stop it, not give NaNs
    pre_df = read_results_csv(pretraining_folder(root) / PRETRAINING_RESULTS,
                              [*STEP_COLUMNS, *SSN_COLUMNS, "psychometric_offset"])  # fmt: skip
    train = {c: read_results_csv(training_results_path(root, c), training_columns()) for c in confs}
    params = {c: read_parameters(configuration_parameters_path(root, c)) for c in confs}
    run_ids = pd.to_numeric(pre_df["run_index"], errors="coerce").dropna().astype(int)
    runs = list(range(int(run_ids.max()) + 1)) if len(run_ids) else []
    missing = sorted(set(runs) - set(run_ids))
    if missing:
        logger.warning("runs %s have no pretraining rows", missing)
    return AnalysisInputs(root, confs, pre_df, train, params, runs, SnapshotLoader(root))


def compute_exclusion(inputs: AnalysisInputs) -> RunExclusion:
    """Excluded runs of every configuration (no training rows, or stuck at the offset ceiling)."""
    return RunExclusion(list(inputs.runs), {
        conf: excluded_runs(inputs.train[conf], inputs.runs, inputs.params[conf].stimuli.max_train_offset)
        for conf in inputs.confs
    })  # fmt: skip


def exclusion_reasons(inputs: AnalysisInputs, conf: str) -> dict[int, str]:
    """Excluded run -> reason (the verdicts of compute_exclusion)."""
    table = exclusion_table(inputs.train[conf], inputs.runs, inputs.params[conf].stimuli.max_train_offset)
    return {int(r): str(why) for r, why in zip(table["run_index"], table["reason"], strict=True) if why}


def exclusion_files_match(root: Path, excluded: dict[str, list[int]]) -> bool:
    """True if the exclusion files exist and list exactly these runs for exactly these configurations."""
    details = root / EXCLUDED_DETAILS
    paths = [root / EXCLUDED_ALL, details, *(root / c / EXCLUDED_CONF for c in excluded)]
    if not all(has_stored(p) for p in paths):
        return False
    confs = pd.read_csv(stored(details), index_col=0).index.astype(str).tolist()
    same_lists = all(read_excluded_runs(root / c / EXCLUDED_CONF) == runs for c, runs in excluded.items())
    union = sorted(set().union(*map(set, excluded.values())))
    return same_lists and confs == list(excluded) and read_excluded_runs(root / EXCLUDED_ALL) == union
