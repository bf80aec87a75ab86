"""Run exclusion under each version's rule: which runs of a study's pretraining each preset's rule would keep.

The versions of the earlier implementation differ in what they do with a run after pretraining
(``PretrainingPars.exclude_runs`` and ``run_threshold_range``): the figure version keeps every run that
finished, the seed version (``reference``, and ``corrected``) keeps final thresholds in [5, 25] degrees, the final
version in [0, 25]. Applying every rule to the same pretraining needs no training: it says which runs a rule
would add or drop, and why (docs/results.md, the lineage study). The rules are read from the presets
(parameters.py), not restated.

Written by ``python -m analysis.study_comparison`` for every study that ran its own pretraining:

* ``exclusion_rules.csv``: per study and started run, its original index, whether its pretraining job failed,
  its final pretraining threshold (deg; NaN without one) and, per preset, ``kept_<preset>`` and
  ``reason_<preset>`` (empty where kept; ``failed``, ``no threshold``, ``below <low>°``, ``above <high>°``, with
  ``(no measurable threshold)`` where the threshold is the 180° a psychometric fit gives when it finds none);
* ``exclusion_rules.md``: per study, how many runs each rule keeps, the reasons of the others, and the runs
  that each rule keeps and the study's own rule does not (or the reverse).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.comparison_inputs import EXCLUSION_RULE_OUTPUTS, StudyData
from analysis.comparison_markdown import markdown_table
from parameters import PRESETS, build_parameters
from store.exclusion import final_pretraining_thresholds, runs_to_exclude
from store.files import atomic_write_csv, atomic_write_text
from training.psychometrics import NO_THRESHOLD


@dataclass(frozen=True)
class Rule:
    """What a preset does with a run after pretraining."""

    preset: str
    by_threshold: bool
    """False: every run that finished is kept (the figure version)."""
    low: float
    high: float

    def dropped(self, thresholds: pd.Series, failed: set[int]) -> set[int]:
        """The runs (index of ``thresholds``, NaN where a run has none) this rule drops: the failed ones, and by
        threshold the ones store.exclusion.runs_to_exclude drops (the rule the exclusion itself applies)."""
        by_threshold = runs_to_exclude(thresholds, self.low, self.high) if self.by_threshold else []
        return set(failed) | set(by_threshold)

    def reason(self, threshold: float, failed: bool) -> str:
        """Why this rule drops a run it drops (see ``dropped``)."""
        if failed:
            return "failed"
        if math.isnan(threshold):
            return "no threshold"
        if threshold < self.low:
            return f"below {self.low:g}°"
        suffix = " (no measurable threshold)" if threshold >= NO_THRESHOLD else ""
        return f"above {self.high:g}°{suffix}"

    def describe(self) -> str:
        return f"[{self.low:g}°, {self.high:g}°]" if self.by_threshold else "every finished run"


def preset_rules() -> list[Rule]:
    """Each preset's exclusion rule, as its parameters set it."""
    rules = []
    for preset in PRESETS:
        pretraining = build_parameters(preset=preset).pretraining
        low, high = pretraining.run_threshold_range
        rules.append(Rule(preset, bool(pretraining.exclude_runs), float(low), float(high)))
    return rules


def own_pretraining(study: StudyData) -> bool:
    """Whether a study ran its own pretraining (a --skip-pretraining study repeats another's)."""
    return study.pretraining_folder is None or Path(study.pretraining_folder).resolve() == study.folder.resolve()


def rules_table(studies: Sequence[StudyData], rules: Sequence[Rule]) -> pd.DataFrame:
    """exclusion_rules.csv: every started run of every study with its own pretraining, under every rule."""
    rows = []
    for study in filter(own_pretraining, studies):
        found = final_pretraining_thresholds(study.pretraining) if len(study.pretraining) else pd.Series(dtype=float)
        thresholds = found.reindex(range(study.runs_started))
        # a run without pretraining rows failed, whatever its marker says
        failed = set(study.pretraining_failed) | {run for run in thresholds.index if run not in found.index}
        dropped = {rule.preset: rule.dropped(thresholds, failed) for rule in rules}
        for run, threshold in thresholds.items():
            row: dict[str, object] = {"study": study.label, "preset": study.preset, "original_run_index": run,
                                      "failed": run in failed, "final_threshold_deg": threshold}  # fmt: skip
            for rule in rules:
                out = run in dropped[rule.preset]
                row[f"kept_{rule.preset}"] = not out
                row[f"reason_{rule.preset}"] = rule.reason(threshold, run in failed) if out else ""
            rows.append(row)
    return pd.DataFrame(rows)


def _runs(values: pd.Series) -> str:
    return ", ".join(str(int(v)) for v in values) or "none"


def study_markdown(runs: pd.DataFrame, study: str, preset: str, rules: Sequence[Rule]) -> list[str]:
    """One study's section: each rule's kept count and reasons, and how its kept runs differ from the study's own
    rule's."""
    own = f"kept_{preset}"
    rows = []
    for rule in rules:
        kept, reasons = runs[f"kept_{rule.preset}"], runs[f"reason_{rule.preset}"]
        counts = reasons[~kept].value_counts()
        rows.append({
            "rule (preset)": f"{rule.preset}: {rule.describe()}", "kept": f"{int(kept.sum())} of {len(runs)}",
            "dropped, why": "; ".join(f"{n} {why}" for why, n in counts.items()) or "–",
            "kept here, not by the study's rule": _runs(runs["original_run_index"][kept & ~runs[own]]),
            "dropped here, kept by the study's rule": _runs(runs["original_run_index"][~kept & runs[own]]),
        })  # fmt: skip
    table = markdown_table(list(rows[0]), [list(row.values()) for row in rows])
    return [f"### {study}", "", table, ""]


def rules_markdown(table: pd.DataFrame, rules: Sequence[Rule]) -> str:
    """exclusion_rules.md."""
    lines = ["## Run exclusion under each version's rule", "",
             "Each study's own pretraining, with every preset's rule applied to its final pretraining thresholds "
             "(original run indices; a rule keeps its bounds).", ""]  # fmt: skip
    if table.empty:
        return "\n".join([*lines, "No study here ran its own pretraining.", ""])
    for (study, preset), runs in table.groupby(["study", "preset"], sort=False):
        lines += study_markdown(runs.reset_index(drop=True), str(study), str(preset), rules)
    return "\n".join(lines)


def write_exclusion_rules(studies: Sequence[StudyData], out: Path) -> list[Path]:
    """Write exclusion_rules.csv and exclusion_rules.md into ``out``."""
    rules = preset_rules()
    table = rules_table(studies, rules)
    csv_name, markdown_name = EXCLUSION_RULE_OUTPUTS
    atomic_write_csv(table, out / csv_name)
    atomic_write_text(out / markdown_name, rules_markdown(table, rules))
    return [out / name for name in EXCLUSION_RULE_OUTPUTS]
