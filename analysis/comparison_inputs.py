"""What a comparison of studies reads of one analysed study (:class:`StudyData`, loaded by
:mod:`analysis.study_comparison`), the configuration the others are contrasted with and the published numbers
they are compared with; shared by the comparison and its lineage tables (:mod:`analysis.lineage`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the comparison's command line parses before pandas loads (fast --help)
    import pandas as pd

BASELINE = "conf_baseline"
LINEAGE_OUTPUTS: tuple[str, ...] = ("lineage.csv", "lineage_runs.csv", "sensitivity.csv", "lineage.md")
"""The lineage tables (analysis.lineage), written with the comparison."""
EXCLUSION_RULE_OUTPUTS: tuple[str, ...] = ("exclusion_rules.csv", "exclusion_rules_claim.csv", "exclusion_rules.md")
"""Every preset's run-exclusion rule applied to each study's own pretraining (analysis.exclusion_rules)."""
POWER_OUTPUTS: tuple[str, ...] = ("power.csv", "power.md")
"""The power of the claim's per-run test at several sizes, resampled from each study's runs (analysis.power)."""
PUBLISHED_BASELINE: dict[str, float] = {"J_II_s": 25.0, "J_II_m": 5.0, "J_EE_s": -12.0}
"""Medians (percent change over stage 2, baseline configuration) read off the earlier implementation's
published figure (its `figure` version, 49 runs, no exclusion); shown for comparison only."""
PUBLISHED_RUNS = 49
"""Runs behind the published figure (runs 0-48 of the figure-era code, none excluded; LINEAGE.md H)."""


@dataclass(frozen=True)
class StudyData:
    """What the comparison reads of one study folder."""

    folder: Path
    label: str
    """Column label: the preset and the switches the study overrides (study_label), made unique with the folder
    name when two studies share one."""
    preset: str
    base_seed: int
    runs_started: int
    """Pretraining runs started for the runs the study trains (all of its pretraining folder's, unless a
    --skip-pretraining study takes only the first of the runs that folder retains)."""
    configurations: tuple[str, ...]
    summary: pd.DataFrame
    stats: pd.DataFrame
    pretraining: pd.DataFrame
    """Stage-0/1 rows of every started run (original run indices)."""
    pretraining_excluded: dict[int, float]
    """Original run index -> final pretraining threshold, for runs excluded after pretraining."""
    training: dict[str, pd.DataFrame]
    """Configuration -> its stage-2 rows."""
    changes: dict[str, pd.DataFrame]
    """Configuration -> rel_changes_train.csv rows of the runs its analysis retains."""
    analysis_excluded: dict[str, list[int]]
    overrides: str = ""
    """The study's overridden switches as 'Class.field=value, ...' (study_label), empty for the plain preset."""
    original_runs: tuple[int, ...] = ()
    """Original (initialisation) index of each stage-2 run: run k of the study is pretraining run
    original_runs[k]; studies of one base seed pair up by it."""
    pretraining_folder: Path | None = None
    """The folder whose pretraining the study trained from (its own, or the one it reused)."""
    pretraining_failed: tuple[int, ...] = ()
    """Original indices of the started runs whose pretraining job failed (its marker says so)."""
    stage2_failed: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    """Configuration -> stage-2 runs whose job failed (its marker says so)."""


def original_index(study: StudyData, run: int) -> int | None:
    """The original (initialisation) index of a study's stage-2 run (None where the records do not say)."""
    return study.original_runs[run] if 0 <= run < len(study.original_runs) else None


def by_original_run(per_run: pd.Series, study: StudyData) -> pd.Series:
    """A series indexed by a study's stage-2 runs, re-indexed by their original (initialisation) indices, so that
    studies of one base seed pair up; runs whose original index the records do not give are dropped."""
    originals = [original_index(study, int(run)) for run in per_run.index]
    return per_run.set_axis(originals)[[o is not None for o in originals]]


def shared_pretraining(a: StudyData, b: StudyData) -> bool:
    """Whether two studies trained stage 2 from the same pretraining folder (one may have reused the other's)."""
    return a.pretraining_folder is not None and b.pretraining_folder is not None and (
        Path(a.pretraining_folder).resolve() == Path(b.pretraining_folder).resolve())  # fmt: skip


def layer_difference(changes: pd.DataFrame, mid: str, sup: str) -> pd.Series:
    """Per run (indexed by run) ΔX^sup − ΔX^mid in percentage points."""
    import pandas as pd

    if mid not in changes.columns or sup not in changes.columns:
        return pd.Series(dtype=float)
    indexed = changes.set_index(changes["run_index"].astype(int))
    return (pd.to_numeric(indexed[sup], errors="coerce") - pd.to_numeric(indexed[mid], errors="coerce")).dropna()


def sup_minus_mid(study: StudyData, conf: str) -> pd.Series:
    """The claim's per-run statistic: per kept stage-2 run of a configuration, Δ|J_II^sup| − Δ|J_II^mid|
    (percentage points), indexed by stage-2 run."""
    return layer_difference(study.changes[conf], "J_II_m", "J_II_s")


def sup_minus_mid_by_original_run(study: StudyData, conf: str) -> pd.Series:
    """sup_minus_mid indexed by the original (initialisation) run index, so that studies of one seed pair up."""
    return by_original_run(sup_minus_mid(study, conf), study)
