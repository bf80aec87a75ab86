"""The lineage outputs of the study comparison: every study (a preset, or a variant of one with some switches
changed by ``--overrides-json``) beside the earlier implementation's published baseline figure, which that
implementation's ``figure`` version made (docs/model.md, "Lineage"; ``../shared/spec/LINEAGE.md`` H).

Written by ``python -m analysis.study_comparison`` next to its comparison tables:

* ``lineage_runs.csv``: per study, configuration and run with stage-2 rows, the values the published figure
  plots (LINEAGE.md H): for J, c and f the relative change from the first to the last stage-2 value,
  100·(end − start)/start (of |J|: J is signed); for the four superficial κ of the figure era the change from the
  first stage-2 value, which is 0 (stage 2 starts κ at 0), i.e. the final raw κ. With the run's original
  (initialisation) index and whether the study's analysis keeps it. Computed here once; the figures draw from it.
* ``lineage.csv`` and ``lineage.md``: per study and configuration, the runs started, failed (by their job
  markers), excluded (after pretraining; by the analysis) and kept; median [IQR] of the change of the eight |J|
  over stage 2, the per-run sup − mid difference of Δ|J_II| with its Wilcoxon test, the contrast with
  ``conf_baseline`` (for the middle-only readout: the ablation contrast), the median thresholds before and after
  stage 2; and, first, the published figure's medians. Nothing is recomputed: the medians and tests are rows of
  the comparison's summary and statistics tables (the studies' own ``study_summary.csv`` and ``study_stats.csv``,
  and the comparison's contrasts), over the runs each study's analysis keeps.
* ``sensitivity.csv`` (and a section of ``lineage.md``): each variant of a base study (the same preset, other
  switches; by default each preset's one plain study with ``conf_baseline``, or ``--base``) paired with it run
  by run by original run index: the variant's median sup − mid, the per-run difference variant − base of
  sup − mid, its Wilcoxon signed-rank test (analysis.study_summary.wilcoxon_paired), n, and the unpaired
  Mann-Whitney test of all the runs each keeps (analysis.study_summary.mann_whitney_unpaired). Run i of every
  study of one base seed is initialisation i, so the runs pair whether the variant reused the base's
  pretraining or ran its own.
* ``baseline_rel_changes_<folder>.png``: the published figure redrawn from a study's ``conf_baseline`` runs
  (J^mid, J^sup, c, f, κ; matplotlib's default boxes, whiskers at 1.5 IQR, outliers drawn, a dashed line at 0),
  over every run with stage-2 rows as the published figure has no exclusion; and
  ``baseline_rel_changes_<folder>_published.png``: the same above the published figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.comparison_inputs import (
    BASELINE,
    LINEAGE_OUTPUTS,
    PUBLISHED_BASELINE,
    PUBLISHED_RUNS,
    StudyData,
    original_index,
    shared_pretraining,
    sup_minus_mid,
    sup_minus_mid_by_original_run,
)
from analysis.comparison_markdown import fmt, markdown_table
from store.files import atomic_savefig, atomic_write_csv, atomic_write_text

MIDONLY = "conf_midonly_readout"
PUBLISHED_PRESET = "figure"
"""The preset of the earlier implementation's version that made the published figure (LINEAGE.md)."""
PUBLISHED_FIGURE = Path(__file__).resolve().parents[1] / "docs" / "published_baseline_rel_changes.png"
"""The earlier implementation's published figure, as the repository keeps it (docs/results.md shows it)."""
WEIGHTS: tuple[str, ...] = tuple(f"J_{k}_{x}" for x in ("m", "s") for k in ("EE", "IE", "EI", "II"))
"""The eight recurrent weights, in the published figure's order (E→E, E→I, I→E, I→I; middle then superficial)."""
SUP_VS_MID = "dJ_II sup vs mid"
"""The study_stats.csv comparison of the per-run Δ|J_II^sup| − Δ|J_II^mid|."""


# ------------------------------------------------------------------------------------------------ panels
@dataclass(frozen=True)
class Panel:
    """One panel of the published figure: the columns it draws, their tick labels and box colours."""

    ylabel: str
    columns: tuple[str, ...]
    labels: tuple[str, ...]
    colours: tuple[str, ...]


ARROWS: dict[str, str] = {"EE": r"E\rightarrow E", "IE": r"E\rightarrow I", "EI": r"I\rightarrow E",
                          "II": r"I\rightarrow I"}  # fmt: skip
"""J_XY is the weight from Y to X (J_IE: E→I)."""
EXCITATORY, INHIBITORY, GAIN, KAPPA = "tab:red", "tab:blue", "orange", "tab:green"
RELATIVE = "Relative change (%)"
KAPPA_FIGURE_COLUMNS: tuple[str, ...] = (
    "kappa_Jsup_EE_pre", "kappa_Jsup_IE_pre", "kappa_Jsup_EE_post", "kappa_Jsup_IE_post",
)  # fmt: skip
"""The figure era's raw κ[0][0], κ[0][1], κ[1][0], κ[1][1] (pre E→E, pre E→I, post E→E, post E→I)."""


def _weight_panel(layer: str, name: str) -> Panel:
    pairs = ("EE", "IE", "EI", "II")
    return Panel(RELATIVE, tuple(f"J_{p}_{layer}" for p in pairs),
                 tuple(rf"$\Delta J^{{\mathrm{{{name}}}}}_{{{ARROWS[p]}}}$" for p in pairs),
                 (EXCITATORY, EXCITATORY, INHIBITORY, INHIBITORY))  # fmt: skip


PANELS: tuple[Panel, ...] = (
    _weight_panel("m", "mid"),
    _weight_panel("s", "sup"),
    Panel(RELATIVE, ("cE_m", "cI_m", "cE_s", "cI_s"),
          tuple(rf"$\Delta c^{{\mathrm{{{layer}}}}}_{{\rightarrow {t}}}$" for layer in ("mid", "sup") for t in "EI"),
          (GAIN,) * 4),
    Panel(RELATIVE, ("f_E", "f_I"),
          tuple(rf"$\Delta f^{{\mathrm{{mid}}\rightarrow\mathrm{{sup}}}}_{{E\rightarrow {t}}}$" for t in "EI"),
          (GAIN,) * 2),
    Panel("Change from 0 init", KAPPA_FIGURE_COLUMNS,
          tuple(rf"$\Delta\kappa^{{\mathrm{{{half}}}}}_{{E\rightarrow {t}}}$"
                for half in ("pre", "post") for t in "EI"),
          (KAPPA,) * 4),
)  # fmt: skip
"""The published figure's stage-2 row, left to right (LINEAGE.md H)."""
FIGURE_COLUMNS: tuple[str, ...] = tuple(c for panel in PANELS for c in panel.columns)


# ---------------------------------------------------------------------------------------- per-run values
def published_change(start: float, end: float) -> float:
    """The published figure's change (LINEAGE.md H): 100·(end − start)/start, or end − start where start = 0."""
    if not (math.isfinite(start) and math.isfinite(end)):
        return math.nan
    return end - start if start == 0 else 100.0 * (end - start) / start


def run_figure_values(rows: pd.DataFrame) -> dict[str, float]:
    """The published figure's values of one run from its stage-2 rows (in step order): per column the first
    and the last non-missing value (analysis.changes.window_endpoints), |J| for the weights. Stage 1 trains
    the readout only, so the first stage-2 value of J, c and f is also the value at the end of pretraining,
    the figure's start row; κ starts stage 2 at 0, so its value is the final raw κ."""
    from analysis.changes import window_endpoints

    present = [c for c in FIGURE_COLUMNS if c in rows.columns]
    start, end = window_endpoints(rows[present].reset_index(drop=True), 0, len(rows) - 1)
    values = {}
    for column in FIGURE_COLUMNS:
        s, e = float(start.get(column, math.nan)), float(end.get(column, math.nan))
        values[column] = published_change(abs(s), abs(e)) if column.startswith("J_") else published_change(s, e)
    return values


RUN_KEYS: tuple[str, ...] = (
    "study", "preset", "overrides", "configuration", "run_index", "original_run_index", "kept",
)  # fmt: skip


def lineage_runs_table(studies: Sequence[StudyData]) -> pd.DataFrame:
    """lineage_runs.csv: per study, configuration and run with stage-2 rows, the published figure's values."""
    rows = []
    for s in studies:
        for conf in s.configurations:
            stage2 = s.training[conf]
            excluded = set(s.analysis_excluded[conf])
            for run, run_rows in stage2.groupby(stage2["run_index"].astype(int), sort=True):
                rows.append({"study": s.label, "preset": s.preset, "overrides": s.overrides, "configuration": conf,
                             "run_index": int(run), "original_run_index": original_index(s, int(run)),
                             "kept": int(run) not in excluded, **run_figure_values(run_rows)})  # fmt: skip
    table = pd.DataFrame(rows, columns=[*RUN_KEYS, *FIGURE_COLUMNS])
    table["original_run_index"] = table["original_run_index"].astype("Int64")
    return table


# ----------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class RunCounts:
    """What became of a study's started runs in one configuration; started = failed + excluded + kept."""

    started: int
    failed_pretraining: int
    excluded_after_pretraining: int
    """By threshold, or dropped once a study-wide failure budget was spent."""
    failed_stage2: int
    excluded_by_analysis: int
    """Stuck at the offset ceiling (ANALYSIS.md §2); runs without stage-2 rows count as failed."""
    kept: int

    def as_row(self) -> dict[str, int]:
        """The lineage table's run columns."""
        return {
            "runs_started": self.started, "runs_failed": self.failed_pretraining + self.failed_stage2,
            "runs_excluded": self.excluded_after_pretraining + self.excluded_by_analysis, "runs_kept": self.kept,
            "failed_pretraining": self.failed_pretraining, "failed_stage2": self.failed_stage2,
            "excluded_after_pretraining": self.excluded_after_pretraining,
            "excluded_by_analysis": self.excluded_by_analysis,
        }  # fmt: skip


def run_counts(study: StudyData, conf: str) -> RunCounts:
    """Started, failed (job markers), excluded and kept runs of one configuration of a study."""
    trained = len(study.original_runs)
    with_rows = set(study.training[conf]["run_index"].astype(int))
    failed_stage2 = set(study.stage2_failed.get(conf, ())) | (set(range(trained)) - with_rows)
    excluded = set(study.analysis_excluded[conf]) - failed_stage2
    failed_pretraining = len(study.pretraining_failed)
    return RunCounts(
        started=study.runs_started, failed_pretraining=failed_pretraining,
        excluded_after_pretraining=max(0, study.runs_started - failed_pretraining - trained),
        failed_stage2=len(failed_stage2), excluded_by_analysis=len(excluded),
        kept=trained - len(failed_stage2) - len(excluded),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ lineage table
def _lookup(table: pd.DataFrame, key: str) -> dict[tuple[str, str, str], pd.Series]:
    """(study, configuration, <key column>) -> row of a comparison table."""
    return {(str(r["study"]), str(r["configuration"]), str(r[key])): r for _, r in table.iterrows()}


TEST_FIELDS: tuple[tuple[str, str], ...] = (("n", "n"), ("median", "median_difference"), ("p", "p"),
                                           ("r", "effect_size"))  # fmt: skip
"""(lineage column suffix, statistics-table column) of a test."""


def _test_columns(prefix: str, row: pd.Series | None) -> dict[str, object]:
    """n, median difference, p, r and note of a statistics row, under a prefix (empty where there is none)."""
    values: dict[str, object] = {f"{prefix}_{mine}": math.nan if row is None else row[theirs]
                                 for mine, theirs in TEST_FIELDS}  # fmt: skip
    note = None if row is None else row["note"]
    values[f"{prefix}_note"] = note if isinstance(note, str) else ""  # a CSV's empty note reads back as NaN
    return values


def positive_runs(study: StudyData, conf: str) -> int:
    """Kept runs in which Δ|J_II^sup| exceeds Δ|J_II^mid| (a count for the reader beside the test)."""
    return int((sup_minus_mid(study, conf) > 0).sum())


def study_rows(study: StudyData, summary: Mapping, stats: Mapping) -> list[dict]:
    """The lineage rows of one study, one per configuration."""
    rows = []
    for conf in study.configurations:
        row: dict[str, object] = {"study": study.label, "preset": study.preset, "overrides": study.overrides,
                                  "base_seed": study.base_seed, "configuration": conf,
                                  **run_counts(study, conf).as_row()}  # fmt: skip
        for weight in WEIGHTS:
            found = summary.get((study.label, conf, f"d_{weight}"))
            for stat in ("median", "q25", "q75"):
                row[f"d_{weight}_{stat}"] = math.nan if found is None else float(found[stat])
        row.update(_test_columns("sup_minus_mid", stats.get((study.label, conf, SUP_VS_MID))))
        row["sup_minus_mid_positive"] = positive_runs(study, conf)
        contrast = f"dJ_II sup-mid: {conf} vs {BASELINE}"
        row.update(_test_columns("contrast", stats.get((study.label, conf, contrast))))
        for time in ("pre", "post"):
            found = summary.get((study.label, conf, f"psychometric_offset_{time}"))
            row[f"threshold_{time}_median"] = math.nan if found is None else float(found["median"])
            row[f"threshold_{time}_not_measured"] = 0 if found is None else int(found["n_not_measured"])
        row["note"] = ""
        rows.append(row)
    return rows


def published_row() -> dict[str, object]:
    """The published figure's medians (read off it), its 49 runs and no exclusion, as a lineage row."""
    row: dict[str, object] = {
        "study": "published", "preset": PUBLISHED_PRESET, "overrides": "", "configuration": BASELINE,
        "runs_started": PUBLISHED_RUNS, "runs_excluded": 0, "runs_kept": PUBLISHED_RUNS,
        "note": "read off the earlier implementation's published figure (its figure version, runs 0-48, "
        "no exclusion); failed runs are not recorded",
    }  # fmt: skip
    row.update({f"d_{weight}_median": value for weight, value in PUBLISHED_BASELINE.items()})
    return row


LINEAGE_COLUMNS: tuple[str, ...] = (
    "study", "preset", "overrides", "base_seed", "configuration",
    "runs_started", "runs_failed", "runs_excluded", "runs_kept",
    "failed_pretraining", "failed_stage2", "excluded_after_pretraining", "excluded_by_analysis",
    *(f"d_{w}_{s}" for w in WEIGHTS for s in ("median", "q25", "q75")),
    "sup_minus_mid_n", "sup_minus_mid_positive", "sup_minus_mid_median", "sup_minus_mid_p", "sup_minus_mid_r",
    "sup_minus_mid_note", "contrast_n", "contrast_median", "contrast_p", "contrast_r", "contrast_note",
    "threshold_pre_median", "threshold_post_median", "threshold_pre_not_measured", "threshold_post_not_measured",
    "note",
)  # fmt: skip


COUNT_COLUMNS: tuple[str, ...] = (
    "base_seed", "runs_started", "runs_failed", "runs_excluded", "runs_kept", "failed_pretraining", "failed_stage2",
    "excluded_after_pretraining", "excluded_by_analysis", "sup_minus_mid_n", "sup_minus_mid_positive", "contrast_n",
    "threshold_pre_not_measured", "threshold_post_not_measured",
)  # fmt: skip
"""Integer columns, written as integers where the published row (or a missing test) leaves them empty."""


def lineage_table(studies: Sequence[StudyData], summary: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """lineage.csv: the published row, then one row per study and configuration (from the comparison's summary
    and statistics tables)."""
    summary_rows, stats_rows = _lookup(summary, "quantity"), _lookup(stats, "comparison")
    rows = [published_row()] + [row for s in studies for row in study_rows(s, summary_rows, stats_rows)]
    return as_counts(pd.DataFrame(rows).reindex(columns=list(LINEAGE_COLUMNS)), COUNT_COLUMNS)


def as_counts(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The table with these columns as nullable integers (an empty cell stays empty, 7 is not written 7.0)."""
    return table.astype({c: "Int64" for c in columns})


# ------------------------------------------------------------------------------------------- sensitivity
def base_studies(studies: Sequence[StudyData], bases: Sequence[Path] = ()) -> list[StudyData]:
    """The studies the variants are paired with: the ones at ``bases``; without them, per preset the only plain
    study (no overridden switch) that ran ``conf_baseline`` (none for a preset with several such studies)."""
    if bases:
        wanted = {Path(b).resolve() for b in bases}
        return [s for s in studies if s.folder.resolve() in wanted]
    plain = [s for s in studies if not s.overrides and BASELINE in s.configurations]
    presets = [s.preset for s in plain]
    return [s for s in plain if presets.count(s.preset) == 1]


def variants(studies: Sequence[StudyData], base: StudyData, bases: Sequence[StudyData] = ()) -> list[StudyData]:
    """A base's variants: the other studies of its preset (each with its own overridden switches), bases
    excluded."""
    return [s for s in studies if s is not base and s.preset == base.preset and not any(s is b for b in bases)]


def pairing(variant: StudyData, base: StudyData) -> str:
    """How the runs of a variant and its base correspond: one pretraining; or each its own, from the same initial
    parameters; or each its own, from the same seeds drawn into other initialisation ranges (the run index then
    pairs two different networks, and the unpaired test is the one to read)."""
    if shared_pretraining(variant, base):
        return "shared pretraining"
    if initialisation_overrides(variant) != initialisation_overrides(base):
        return "own pretraining, same seeds, other initial draws"
    return "own pretraining, same initialisations"


def initialisation_overrides(study: StudyData) -> frozenset[str]:
    """The study's overridden RandomizePars items: besides the seed, what decides its initial parameters (the
    items' values are compact JSON, so ', ' only separates items)."""
    return frozenset(item for item in study.overrides.split(", ") if item.startswith("RandomizePars."))


def sensitivity_row(variant: StudyData, base: StudyData, conf: str, stats: Mapping) -> dict[str, object]:
    """One variant and configuration against the base: medians of sup − mid, the paired test of their per-run
    difference (variant − base) over the runs both keep, and the unpaired test of all the runs each keeps (a
    variant with its own pretraining may keep other runs than the base: its own exclusion decides)."""
    from analysis.study_summary import mann_whitney_unpaired, wilcoxon_paired

    mine, theirs = stats.get((variant.label, conf, SUP_VS_MID)), stats.get((base.label, conf, SUP_VS_MID))
    row: dict[str, object] = {
        "study": variant.label, "preset": variant.preset, "overrides": variant.overrides, "base": base.label,
        "configuration": conf, "pairing": pairing(variant, base),
        "variant_n": math.nan if mine is None else mine["n"],
        "variant_sup_minus_mid_median": math.nan if mine is None else mine["median_difference"],
        "base_n": math.nan if theirs is None else theirs["n"],
        "base_sup_minus_mid_median": math.nan if theirs is None else theirs["median_difference"],
    }  # fmt: skip
    mine_per_run = sup_minus_mid_by_original_run(variant, conf).rename("variant")
    theirs_per_run = sup_minus_mid_by_original_run(base, conf).rename("base")
    unpaired = mann_whitney_unpaired(mine_per_run.to_numpy(float), theirs_per_run.to_numpy(float))
    row |= {"unpaired_p": unpaired["p"], "unpaired_effect_size": unpaired["effect_size"]}
    if variant.base_seed != base.base_seed:  # run i is initialisation i only under one base seed
        return {**row, "paired_runs": "", **wilcoxon_paired([]),
                "note": f"base seeds differ ({variant.base_seed}, {base.base_seed}): runs do not pair"}
    paired = pd.concat([mine_per_run, theirs_per_run], axis=1, join="inner")
    paired = paired.dropna().sort_index()
    test = wilcoxon_paired((paired["variant"] - paired["base"]).to_numpy(float))
    return {**row, "paired_runs": " ".join(str(int(r)) for r in paired.index), **test}


SENSITIVITY_COLUMNS: tuple[str, ...] = (
    "study", "preset", "overrides", "base", "configuration", "pairing", "variant_n", "variant_sup_minus_mid_median",
    "base_n", "base_sup_minus_mid_median", "paired_runs", "n", "median_difference", "p", "effect_size", "statistic",
    "test", "note", "unpaired_p", "unpaired_effect_size",
)  # fmt: skip


def sensitivity_table(studies: Sequence[StudyData], bases: Sequence[StudyData], stats: pd.DataFrame) -> pd.DataFrame:
    """sensitivity.csv: every variant of every base, per configuration both have (empty without a base)."""
    rows = []
    lookup = _lookup(stats, "comparison")
    for base in bases:
        for variant in variants(studies, base, bases):
            rows += [sensitivity_row(variant, base, conf, lookup)
                     for conf in variant.configurations if conf in base.configurations]  # fmt: skip
    return as_counts(pd.DataFrame(rows).reindex(columns=list(SENSITIVITY_COLUMNS)), ("variant_n", "base_n", "n"))


# ---------------------------------------------------------------------------------------------- markdown
def _signed(value: object, digits: int = 1) -> str:
    """'+1.5', '-0.3', '+0.0' (never '-0.0'), or a dash for a missing value."""
    return "–" if not _finite(value) else f"{round(float(value), digits) + 0.0:+.{digits}f}"


def _count(value: object) -> str:
    return str(int(float(value))) if _finite(value) else "–"  # type: ignore[arg-type]


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _change_cell(row: pd.Series, weight: str) -> str:
    if row["study"] == "published":
        return f"≈ {_signed(row[f'd_{weight}_median'], 0)}" if _finite(row[f"d_{weight}_median"]) else "–"
    return (f"{_signed(row[f'd_{weight}_median'])} [{_signed(row[f'd_{weight}_q25'])}, "
            f"{_signed(row[f'd_{weight}_q75'])}]")  # fmt: skip


def _test_cell(row: pd.Series, prefix: str, positive: bool = False) -> str:
    if not _finite(row[f"{prefix}_n"]) or int(row[f"{prefix}_n"]) == 0:
        return "–"
    n = int(row[f"{prefix}_n"])
    count = f"; {int(row[f'{prefix}_positive'])} of {n} > 0" if positive else ""
    return (f"{_signed(row[f'{prefix}_median'])}{count}; p = {fmt(row[f'{prefix}_p'])}, "
            f"r = {fmt(row[f'{prefix}_r'], 2)} (n = {n})")  # fmt: skip


def _runs_cell(row: pd.Series, kind: str) -> str:
    if row["study"] == "published":
        return {"started": str(PUBLISHED_RUNS), "failed": "not recorded", "excluded": "0",
                "kept": str(PUBLISHED_RUNS)}[kind]  # fmt: skip
    if kind == "failed":
        return f"{int(row['runs_failed'])} ({int(row['failed_pretraining'])} + {int(row['failed_stage2'])})"
    if kind == "excluded":
        return (f"{int(row['runs_excluded'])} ({int(row['excluded_after_pretraining'])} + "
                f"{int(row['excluded_by_analysis'])})")  # fmt: skip
    return str(int(row[f"runs_{kind}"]))


def _threshold_cell(row: pd.Series) -> str:
    if not (_finite(row["threshold_pre_median"]) or _finite(row["threshold_post_median"])):
        return "–"
    return f"{fmt(row['threshold_pre_median'], 2)} → {fmt(row['threshold_post_median'], 2)}"


def lineage_columns_header(row: pd.Series) -> str:
    """A column of the Markdown lineage table: the study and the configuration."""
    if row["study"] == "published":
        return "published (earlier implementation, figure version)"
    return f"{row['study']}: {str(row['configuration']).removeprefix('conf_')}"


def lineage_markdown(lineage: pd.DataFrame) -> str:
    """The lineage tables in Markdown: one per preset (in the order the studies come), each with the published
    figure's column first and then a column per study of that preset and configuration."""
    published = lineage[lineage["study"] == "published"]
    studies = lineage[lineage["study"] != "published"]
    if studies.empty:
        return preset_lineage_markdown(published)
    return "\n\n".join(f"### {preset}\n\n" + preset_lineage_markdown(pd.concat([published, rows]))
                        for preset, rows in studies.groupby("preset", sort=False))  # fmt: skip


def preset_lineage_markdown(lineage: pd.DataFrame) -> str:
    """One lineage table in Markdown, one column per row of ``lineage`` (study and configuration)."""
    rows = [r for _, r in lineage.iterrows()]
    lines = [
        ["runs started", *(_runs_cell(r, "started") for r in rows)],
        ["failed (pretraining + stage 2)", *(_runs_cell(r, "failed") for r in rows)],
        ["excluded (after pretraining + by the analysis)", *(_runs_cell(r, "excluded") for r in rows)],
        ["kept", *(_runs_cell(r, "kept") for r in rows)],
        *([f"Δ\\|J_{w[2:4]}\\| {'mid' if w.endswith('m') else 'sup'} (%)", *(_change_cell(r, w) for r in rows)]
          for w in WEIGHTS),
        ["Δ\\|J_II\\| sup − mid per run (pp), Wilcoxon", *(_test_cell(r, "sup_minus_mid", True) for r in rows)],
        ["contrast with conf_baseline per run (pp), Wilcoxon", *(_test_cell(r, "contrast") for r in rows)],
        ["threshold before → after stage 2 (°)", *(_threshold_cell(r) for r in rows)],
    ]  # fmt: skip
    return markdown_table(["", *(lineage_columns_header(r) for r in rows)], lines)


def sensitivity_markdown(sensitivity: pd.DataFrame, bases: Sequence[str] = ()) -> str:
    """The sensitivity tables in Markdown, one per base (one line saying why where there is none); ``bases``
    labels the base studies."""
    if sensitivity.empty and bases:
        return f"No variant of the base studies ({', '.join(bases)}) among the studies compared."
    if sensitivity.empty:
        return ("No base study: no preset has exactly one plain study with conf_baseline among the studies "
                "compared; name the bases with --base.")  # fmt: skip
    return "\n\n".join(base_markdown(str(base), rows) for base, rows in sensitivity.groupby("base", sort=False))


def base_markdown(base: str, sensitivity: pd.DataFrame) -> str:
    """One base's sensitivity table."""
    return f"Base: {base}.\n\n" + markdown_table(
        ["variant (switches)", "configuration", "pairing", "variant sup − mid (median, n)",
         "base sup − mid (median, n)", "per-run difference variant − base (median)", "n", "p", "r",
         "unpaired, all kept runs: p, r", "note"],
        [[r.overrides or r.study, r.configuration, r.pairing,
          f"{_signed(r.variant_sup_minus_mid_median)} ({_count(r.variant_n)})",
          f"{_signed(r.base_sup_minus_mid_median)} ({_count(r.base_n)})", _signed(r.median_difference),
          _count(r.n), fmt(r.p), fmt(r.effect_size, 2), f"{fmt(r.unpaired_p)}, {fmt(r.unpaired_effect_size, 2)}",
          r.note if isinstance(r.note, str) else ""]
         for r in sensitivity.itertuples()],
    )  # fmt: skip


def markdown_report(lineage: pd.DataFrame, sensitivity: pd.DataFrame, bases: Sequence[str] = ()) -> str:
    """lineage.md: the lineage table and the sensitivity table."""
    return "\n".join([
        "## Lineage: each study beside the published figure", "",
        "Changes over stage 2 (first to last stage-2 value) in % of the start value, median [IQR] over the runs "
        "each study's analysis keeps; the published column is read off the earlier implementation's figure. "
        "sup − mid: the per-run difference Δ|J_II^sup| − Δ|J_II^mid| (percentage points) and its two-sided "
        "Wilcoxon signed-rank test (r: matched-pairs rank-biserial); the contrast of a configuration: per run, "
        "its sup − mid minus the baseline's.", "",
        lineage_markdown(lineage), "",
        "## Sensitivity: each variant against the base study of its preset, paired by run", "",
        "Per run (original run index, kept by both), sup − mid under the variant minus sup − mid under the base, "
        "two-sided Wilcoxon signed-rank test; and, unpaired, the two-sided Mann-Whitney U test of the variant's "
        "kept runs against the base's (r: rank-biserial, positive where the variant's sup − mid tends to be "
        "larger), which uses every kept run where the two keep different runs.", "",
        sensitivity_markdown(sensitivity, bases), "",
    ])  # fmt: skip


# ----------------------------------------------------------------------------------------------- figures
def figure_name(stem: str, beside_published: bool = False) -> str:
    """``baseline_rel_changes_<stem>.png`` (the published figure's name with the study's folder name), or its
    ``_published`` companion."""
    return f"baseline_rel_changes_{stem}{'_published' if beside_published else ''}.png"


def figure_stems(folders: Sequence[Path]) -> list[str]:
    """Each study's folder name, with its parent's name in front where two studies share a folder name (two
    results roots each with a Dec04_v0), so that no study's figure overwrites another's."""
    names = [f.name for f in folders]
    return [n if names.count(n) == 1 else f"{f.parent.name}_{n}" for f, n in zip(folders, names, strict=True)]


def _median(values: pd.Series) -> float:
    finite = pd.to_numeric(values, errors="coerce").dropna()
    return float(finite.median()) if len(finite) else math.nan


def figure_title(label: str, runs: pd.DataFrame) -> str:
    """The finding first: which study, how many runs, the medians the published figure is known for."""
    dropped = int((~runs["kept"].astype(bool)).sum())
    note = f"; the study's analysis excludes {dropped} of them" if dropped else ""
    ours = {k: f"{_signed(_median(runs[k]))} %" for k in PUBLISHED_BASELINE}
    published = {k: f"≈ {v:+.0f} %" for k, v in PUBLISHED_BASELINE.items()}
    return (f"{label}, conf_baseline, {len(runs)} runs (every run with stage-2 rows, as in the published figure"
            f"{note}): median Δ|J_II| superficial {ours['J_II_s']}, middle {ours['J_II_m']}; Δ|J_EE| superficial "
            f"{ours['J_EE_s']}\n(published, {PUBLISHED_RUNS} runs: {published['J_II_s']}, {published['J_II_m']}; "
            f"{published['J_EE_s']})")  # fmt: skip


def panel_values(runs: pd.DataFrame, panel: Panel) -> list[np.ndarray]:
    """A panel's boxes: per column the runs' values (missing ones left out)."""
    return [pd.to_numeric(runs[c], errors="coerce").dropna().to_numpy(float) for c in panel.columns]


def plot_published_style(runs: pd.DataFrame, title: str, path: Path) -> Path:
    """The published figure's stage-2 row drawn from lineage_runs.csv rows of one study's baseline: matplotlib's
    default boxes (whiskers at 1.5 IQR, outliers drawn), filled in the published colours, a dashed line at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(25, 5.6))
    for ax, panel in zip(axes, PANELS, strict=True):
        boxes = ax.boxplot(panel_values(runs, panel), patch_artist=True, widths=0.5,
                           medianprops={"color": "black", "linewidth": 2})  # fmt: skip
        for patch, colour in zip(boxes["boxes"], panel.colours, strict=True):
            patch.set_facecolor(colour)
        ax.axhline(0, color="black", linestyle="--", linewidth=1)
        ax.set_xticks(np.arange(1, len(panel.columns) + 1), panel.labels, fontsize=15)
        ax.set_ylabel(panel.ylabel, fontsize=15)
        ax.tick_params(axis="y", labelsize=13)
    fig.suptitle(title, fontsize=14)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path


def plot_beside_published(ours: Path, label: str, runs: int, path: Path, published: Path = PUBLISHED_FIGURE) -> Path:
    """A study's published-style figure above the published figure, at the same width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    images = [mpimg.imread(ours), mpimg.imread(published)]
    ratios = [image.shape[0] / image.shape[1] for image in images]
    fig, axes = plt.subplots(2, 1, figsize=(25, 25 * sum(ratios) + 1.2), gridspec_kw={"height_ratios": ratios})
    titles = (f"This implementation: {label}, {runs} runs",
              f"Published: the earlier implementation's figure version, {PUBLISHED_RUNS} runs, "
              "no exclusion")  # fmt: skip
    for ax, image, title in zip(axes, images, titles, strict=True):
        ax.imshow(image)
        ax.set_axis_off()
        ax.set_title(title, fontsize=16, loc="left")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
    return path


def draw_figures(studies: Sequence[StudyData], runs: pd.DataFrame, out: Path) -> list[Path]:
    """Each study's published-style baseline figure and its companion beside the published figure."""
    written = []
    for study, stem in zip(studies, figure_stems([s.folder for s in studies]), strict=True):
        rows = runs[(runs["study"] == study.label) & (runs["configuration"] == BASELINE)]
        if rows.empty:
            continue
        ours = plot_published_style(rows, figure_title(study.label, rows), out / figure_name(stem))
        written += [ours, plot_beside_published(ours, study.label, len(rows), out / figure_name(stem, True))]
    return written


# ---------------------------------------------------------------------------------------------- outputs
def write_lineage_outputs(studies: Sequence[StudyData], summary: pd.DataFrame, stats: pd.DataFrame,
                          bases: Sequence[StudyData], out: Path) -> list[Path]:  # fmt: skip
    """Write lineage.csv, lineage_runs.csv, sensitivity.csv, lineage.md and the figures into ``out``."""
    runs = lineage_runs_table(studies)
    lineage = lineage_table(studies, summary, stats)
    sensitivity = sensitivity_table(studies, bases, stats)
    tables = dict(zip(LINEAGE_OUTPUTS[:3], (lineage, runs, sensitivity), strict=True))
    for name, table in tables.items():
        atomic_write_csv(table, out / name)
    atomic_write_text(out / LINEAGE_OUTPUTS[3], markdown_report(lineage, sensitivity, [b.label for b in bases]))
    return [out / name for name in LINEAGE_OUTPUTS] + draw_figures(studies, runs, out)
