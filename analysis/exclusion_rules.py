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
* ``exclusion_rules_claim.csv``: per study (a --skip-pretraining study too, under its reused pretraining's
  thresholds), configuration and rule, the claim's per-run statistic, sup − mid = Δ|J_II^sup| − Δ|J_II^mid|
  (percentage points), over the runs the rule keeps that the study trained and its analysis kept: n, the runs
  the rule keeps that the study never trained (its own rule dropped them), the median, the count above zero and
  the two-sided Wilcoxon signed-rank test. A rule that drops runs needs no new training to say what the claim
  would be without them; a rule that adds runs the study dropped can only say how many are missing.
* ``exclusion_rules.md``: per study, how many runs each rule keeps, the reasons of the others, the runs that each
  rule keeps and the study's own rule does not (or the reverse), and the claim under each rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.comparison_inputs import EXCLUSION_RULE_OUTPUTS, StudyData, sup_minus_mid_by_original_run
from analysis.comparison_markdown import fmt, markdown_table
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


@dataclass(frozen=True)
class RuleOutcome:
    """Every rule applied to one study's pretraining (original run indices)."""

    thresholds: pd.Series
    """Final pretraining threshold (deg) of every started run, NaN where a run has none."""
    failed: set[int]
    dropped: dict[str, set[int]]
    """Preset -> the runs its rule drops."""


def rule_outcome(study: StudyData, rules: Sequence[Rule]) -> RuleOutcome:
    """Every rule on the final pretraining thresholds of a study's started runs."""
    found = final_pretraining_thresholds(study.pretraining) if len(study.pretraining) else pd.Series(dtype=float)
    thresholds = found.reindex(range(study.runs_started))
    # a run without pretraining rows failed, whatever its marker says
    failed = set(study.pretraining_failed) | {run for run in thresholds.index if run not in found.index}
    return RuleOutcome(thresholds, failed, {rule.preset: rule.dropped(thresholds, failed) for rule in rules})


def rules_table(studies: Sequence[StudyData], rules: Sequence[Rule]) -> pd.DataFrame:
    """exclusion_rules.csv: every started run of every study with its own pretraining, under every rule."""
    rows = []
    for study in filter(own_pretraining, studies):
        outcome = rule_outcome(study, rules)
        for run, threshold in outcome.thresholds.items():
            row: dict[str, object] = {"study": study.label, "preset": study.preset, "original_run_index": run,
                                      "failed": run in outcome.failed, "final_threshold_deg": threshold}  # fmt: skip
            for rule in rules:
                out = run in outcome.dropped[rule.preset]
                row[f"kept_{rule.preset}"] = not out
                row[f"reason_{rule.preset}"] = rule.reason(threshold, run in outcome.failed) if out else ""
            rows.append(row)
    return pd.DataFrame(rows)


CLAIM_COLUMNS: tuple[str, ...] = (
    "study", "preset", "configuration", "rule", "own_rule", "kept_by_rule", "n", "not_trained", "median_difference",
    "positive", "p", "effect_size", "runs",
)  # fmt: skip


def claim_rows(study: StudyData, rules: Sequence[Rule]) -> list[dict[str, object]]:
    """The claim's per-run sup − mid of one study, per configuration, over the runs each rule keeps."""
    from analysis.study_summary import wilcoxon_paired

    outcome = rule_outcome(study, rules)
    trained = {original for original in study.original_runs if original is not None}
    kept_by = {rule.preset: set(outcome.thresholds.index) - outcome.dropped[rule.preset] for rule in rules}
    rows = []
    for conf in study.configurations:
        if conf not in study.changes:
            continue
        per_run = sup_minus_mid_by_original_run(study, conf)
        for rule in rules:
            kept = kept_by[rule.preset]
            values = per_run[per_run.index.isin(kept)].sort_index()
            test = wilcoxon_paired(values.to_numpy(float))
            rows.append({
                "study": study.label, "preset": study.preset, "configuration": conf, "rule": rule.preset,
                "own_rule": rule.preset == study.preset, "kept_by_rule": len(kept), "n": test["n"],
                "not_trained": len(kept - trained), "median_difference": test["median_difference"],
                "positive": int((values > 0).sum()), "p": test["p"], "effect_size": test["effect_size"],
                "runs": " ".join(str(int(r)) for r in values.index),
            })  # fmt: skip
    return rows


def claim_table(studies: Sequence[StudyData], rules: Sequence[Rule]) -> pd.DataFrame:
    """exclusion_rules_claim.csv: every study, configuration and rule (see the module's docstring)."""
    rows = [row for study in studies for row in claim_rows(study, rules)]
    return pd.DataFrame(rows).reindex(columns=list(CLAIM_COLUMNS))


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


def _claim_cell(row: pd.Series) -> str:
    """'+4.6; 16 of 24 > 0; p = 0.031, r = 0.50', with the runs the rule keeps that were never trained."""
    n = int(row["n"])
    if n == 0:
        text = "no run"
    else:
        text = f"{float(row['median_difference']):+.1f}; {int(row['positive'])} of {n} > 0"
        if math.isfinite(float(row["p"])):
            text += f"; p = {fmt(row['p'])}, r = {float(row['effect_size']):.2f}"
    missing = int(row["not_trained"])
    return text + (f" ({missing} kept runs not trained)" if missing else "")


def claim_markdown(claims: pd.DataFrame) -> list[str]:
    """The claim under each rule: one row per study and configuration, one column per rule."""
    if claims.empty:
        return []
    rules = list(dict.fromkeys(claims["rule"]))
    rows = []
    for (study, conf), group in claims.groupby(["study", "configuration"], sort=False):
        by_rule = group.set_index("rule")
        rows.append([str(study), str(conf), *(_claim_cell(by_rule.loc[rule]) + (" *" if by_rule.loc[rule, "own_rule"]
                                                                              else "") for rule in rules)])  # fmt: skip
    return ["### The claim under each rule", "",
            "Per run sup − mid = Δ|J_II^sup| − Δ|J_II^mid| over stage 2 (percentage points), over the runs a rule "
            "keeps that the study trained and its analysis kept: median; runs above zero; two-sided Wilcoxon "
            "signed-rank test (r: rank-biserial). * marks the study's own rule. Runs a rule keeps that the study's "
            "own rule dropped were never trained: their number is given, their outcome is unknown.", "",
            markdown_table(["study", "configuration", *(f"{rule} rule" for rule in rules)], rows), ""]  # fmt: skip


def rules_markdown(table: pd.DataFrame, rules: Sequence[Rule], claims: pd.DataFrame | None = None) -> str:
    """exclusion_rules.md."""
    lines = ["## Run exclusion under each version's rule", "",
             "Each study's own pretraining, with every preset's rule applied to its final pretraining thresholds "
             "(original run indices; a rule keeps its bounds).", ""]  # fmt: skip
    if table.empty:
        lines += ["No study here ran its own pretraining.", ""]
    for (study, preset), runs in table.groupby(["study", "preset"], sort=False):
        lines += study_markdown(runs.reset_index(drop=True), str(study), str(preset), rules)
    return "\n".join(lines + claim_markdown(pd.DataFrame() if claims is None else claims))


def write_exclusion_rules(studies: Sequence[StudyData], out: Path) -> list[Path]:
    """Write exclusion_rules.csv, exclusion_rules_claim.csv and exclusion_rules.md into ``out``."""
    rules = preset_rules()
    table, claims = rules_table(studies, rules), claim_table(studies, rules)
    csv_name, claim_name, markdown_name = EXCLUSION_RULE_OUTPUTS
    atomic_write_csv(table, out / csv_name)
    atomic_write_csv(claims, out / claim_name)
    atomic_write_text(out / markdown_name, rules_markdown(table, rules, claims))
    return [out / name for name in EXCLUSION_RULE_OUTPUTS]
