"""Comparison of finished studies side by side (e.g. one per preset): the tables and figure that answer the
reproduction question (does stage 2 raise inhibition specifically in the superficial layer, and does that
depend on reading out from it?) for each study.

Usage::

    python -m analysis.study_comparison results/Dec02_v0 results/Dec03_v0 --out docs/results
    python -m analysis.study_comparison studies/figure studies/figure_kernel_own studies/figure_no_horiconn \
        studies/figure_kernel_own_no_horiconn --base studies/figure studies/figure_no_horiconn \
        --out docs/results --headlines

The second form compares kept studies (docs/studies.md; docs/results.md gives the command for all of them):
``--headlines`` adds each study's headline figure (``headline_<folder>.png``), drawn from its CSV files;
``--base`` names the studies whose variants (studies of their preset with other switches) are paired with them
run by run, in each configuration both ran (default: per preset, the one study without overridden switches that
ran ``conf_baseline``); naming a ``--skip-pretraining`` ablation study too pairs the variants' runs of that
configuration with it. A study is labelled by its preset and the switches it overrides
(``figure + SSNPars.sup_I_kernel=own``), as its study record says.
A study folder written by main.py must be complete (every job of its runs and configurations done and
assembled, its analysis of all its runs) and whole (study.inventory); otherwise the comparison names it and
what it lacks, one line per study, and writes nothing.

Every number comes from files that each study's own analysis wrote (``study_summary.csv``, ``study_stats.csv``,
``<conf>/rel_changes_train.csv``, ``<conf>/excluded_runs.csv``) or from its training CSVs; nothing is refitted.
What this adds to the per-study summary:

* **runs**: started, excluded after pretraining (with the final pretraining threshold that excluded them),
  trained in stage 2, excluded by the analysis, retained;
* **training**: per stage, the stage lengths and how training went numerically: the share of SGD steps whose
  gradient went through the Euler loop (``gradient_unrolled``), the share with a positive convergence penalty
  (``loss_dx_max > 0``: some stimulus had not settled in the last half of the Euler loop) and its largest
  value, and runs whose loss became non-finite;
* **contrasts**: the ablation test of the claim. Per run retained in both configurations, the layer difference
  d = ΔJ_II^sup − ΔJ_II^mid (percent changes over stage 2) under a configuration minus the same difference
  under ``conf_baseline`` (the two share their pretraining, so runs pair up), Wilcoxon signed-rank test; the
  same for the E/I balance. A negative median means the configuration shrinks the superficial-specific rise.
  A study that reused another's pretraining (``--skip-pretraining``) without running ``conf_baseline`` itself
  takes the baseline of that study when it is compared too and has the same preset, switches and seed: its
  stage 2 of ``conf_baseline`` would be the same jobs on the same pretraining. Runs pair up by their original
  index, and the row's ``x`` names the study the baseline came from.

Outputs in ``--out``: ``comparison_runs.csv``, ``comparison_summary.csv``, ``comparison_training.csv``,
``comparison_stats.csv``, ``comparison.md`` (the tables in Markdown) and ``comparison.png`` (per study and
configuration, the per-run changes of the inhibitory and excitatory weights of both layers, with the earlier
implementation's published medians for the baseline); and the lineage outputs of analysis.lineage:
``lineage.csv``, ``lineage_runs.csv``, ``sensitivity.csv``, ``lineage.md`` and, per study with a baseline,
``baseline_rel_changes_<folder>.png`` (its baseline drawn as the published figure) and
``baseline_rel_changes_<folder>_published.png`` (the same above the published figure); and the exclusion rules
of analysis.exclusion_rules: ``exclusion_rules.csv``, ``exclusion_rules_claim.csv`` and ``exclusion_rules.md``
(every preset's run-exclusion rule applied to each study's own pretraining, and the claim over the runs each rule
keeps); and ``power.csv`` and ``power.md`` (analysis.power: the power of the claim's per-run test at several
sizes, resampled from each study's kept runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.comparison_inputs import (
    BASELINE,
    EXCLUSION_RULE_OUTPUTS,
    LINEAGE_OUTPUTS,
    POWER_OUTPUTS,
    PUBLISHED_BASELINE,
    StudyData,
    by_original_run,
    layer_difference,
    shared_pretraining,
)
from analysis.comparison_markdown import fmt, markdown_report
from store import layout
from store.errors import ResultsFileError, ResultsFolderError, run_entry_point
from store.files import atomic_write_csv, atomic_write_text, has_stored, read_marker
from store.records import pretraining_folder, read_environment_record

if TYPE_CHECKING:  # the command line parses before pandas and matplotlib load (fast --help)
    import pandas as pd

logger = logging.getLogger(__name__)

OUTPUTS: tuple[str, ...] = (
    "comparison_runs.csv", "comparison_summary.csv", "comparison_training.csv", "comparison_stats.csv",
    "comparison.md", "comparison.png", *LINEAGE_OUTPUTS, *EXCLUSION_RULE_OUTPUTS,
    *POWER_OUTPUTS,
)  # fmt: skip
BOOKKEEPING_OVERRIDES: frozenset[tuple[str, str]] = frozenset({("TrainingPars", "num_runs")})
"""Overrides that say how many runs a study has, not how it trains: left out of its label."""
CONTRASTS: tuple[tuple[str, str, str], ...] = (
    ("dJ_II sup-mid", "J_II_m", "J_II_s"),
    ("dE/I ratio sup-mid", "EI_ratio_J_m", "EI_ratio_J_s"),
)
"""(name, middle column, superficial column) of the layer differences compared between configurations."""


# ------------------------------------------------------------------------------------------------ loading


def _read(path: Path, columns: Sequence[str] = ()) -> pd.DataFrame:
    """A results CSV, refused with one line naming it when missing, truncated or short of columns."""
    from store.tables import read_results_csv  # loads pandas: after the command line is parsed

    return read_results_csv(path, columns)


def read_index_list(path: Path) -> list[int]:
    """A one-run-index-per-line file (the analysis' exclusion lists; empty means none)."""
    from store.exclusion import read_excluded_runs

    if not has_stored(path):
        raise ResultsFileError(f"results file not found: {path} (run the analysis first)")
    return read_excluded_runs(path)


def study_settings(folder: Path) -> dict:
    """The ``study`` settings of environment.json (preset, runs, configurations, base seed)."""
    try:
        record = read_environment_record(folder)
    except ResultsFolderError as error:  # reported like any other unusable results file
        raise ResultsFileError(str(error)) from error
    settings = record.get("study")
    if not isinstance(settings, dict) or "preset" not in settings:
        raise ResultsFileError(f"{folder}/environment.json has no study settings with a preset")
    return settings


def load_study(folder: Path, label: str | None = None) -> StudyData:
    """Read one analysed study folder (the analysis' stats part must have run)."""
    from store.exclusion import excluded_runs_with_thresholds, read_all_pretraining_results

    settings = study_settings(folder)
    summary = _read(folder / layout.STUDY_SUMMARY, ["median", "q25", "q75"])
    confs = tuple(dict.fromkeys(summary["configuration"].astype(str)))
    pretraining_root = pretraining_folder(folder)  # another folder's where the study reused its pretraining
    pretraining = read_all_pretraining_results(pretraining_root, ["run_index", "stage", "loss_dx_max",
                                                                  "gradient_unrolled", "loss_all",
                                                                  "psychometric_offset"])  # fmt: skip
    pretraining_excluded = excluded_runs_with_thresholds(pretraining_root, pretraining)
    pretraining_settings = settings if pretraining_root == folder else study_settings(pretraining_root)
    retained = original_run_indices(pretraining_root)
    originals = retained[: stage2_run_count(folder, len(retained))]
    started = runs_started(int(pretraining_settings.get("runs", pretraining["run_index"].nunique())), originals,
                           len(retained))  # fmt: skip
    training, changes, analysis_excluded, stage2_failed = {}, {}, {}, {}
    for conf in confs:
        training[conf] = read_stage2_rows(folder / conf / layout.TRAINING_RESULTS)
        dropped = read_index_list(folder / conf / layout.EXCLUDED_CONF)
        rc = _read(folder / conf / layout.REL_TRAIN, ["run_index"])
        changes[conf] = rc[~rc["run_index"].astype(int).isin(dropped)].reset_index(drop=True)
        analysis_excluded[conf] = dropped
        conf_layout = layout.StudyLayout(folder).configuration(conf)
        stage2_failed[conf] = tuple(k for k in range(len(originals)) if job_failed(conf_layout.run(k).marker))
    pre_layout = layout.StudyLayout(pretraining_root)
    return StudyData(
        folder=folder, label=label or study_label(settings), preset=str(settings["preset"]),
        base_seed=int(settings.get("base_seed", 0)), runs_started=started,
        configurations=confs, summary=summary, stats=_read(folder / layout.STUDY_STATS, ["p"]),
        pretraining=pretraining, pretraining_excluded=pretraining_excluded,
        training=training, changes=changes, analysis_excluded=analysis_excluded,
        overrides=", ".join(override_items(settings)), original_runs=tuple(originals),
        pretraining_folder=pretraining_root,
        pretraining_failed=tuple(i for i in range(started) if job_failed(pre_layout.pretraining_run(i).marker)),
        stage2_failed=stage2_failed,
    )  # fmt: skip


TRAINING_COLUMNS: tuple[str, ...] = ("run_index", "stage", "loss_dx_max", "gradient_unrolled", "loss_all")
"""The training-file columns every comparison needs."""


def read_stage2_rows(path: Path) -> pd.DataFrame:
    """The stage-2 rows of a configuration's training_results.csv (not the stage-1 rows a figure-era training
    job starts with): the columns of TRAINING_COLUMNS, and the parameters the published-style figure draws
    where the file has them (analysis.lineage.FIGURE_COLUMNS)."""
    from analysis.changes import stage2_rows
    from analysis.lineage import FIGURE_COLUMNS
    from store.tables import read_results_csv

    wanted = {*TRAINING_COLUMNS, *FIGURE_COLUMNS}
    rows = read_results_csv(path, TRAINING_COLUMNS, columns=lambda c: c in wanted)
    return stage2_rows(rows)


def original_run_indices(pretraining_root: Path) -> list[int]:
    """Original (initialisation) index of each run a pretraining retained, in retained order: run exclusion
    renumbers the retained runs and keeps their original index in a column (store.schema.ORIGINAL_RUN_INDEX);
    a pretraining that was never renumbered keeps its indices."""
    from store.schema import ORIGINAL_RUN_INDEX
    from store.tables import read_results_csv

    table = read_results_csv(layout.StudyLayout(pretraining_root).initial_parameters, ["run_index"],
                             columns=lambda c: c in ("run_index", ORIGINAL_RUN_INDEX))  # fmt: skip
    source = ORIGINAL_RUN_INDEX if ORIGINAL_RUN_INDEX in table.columns else "run_index"
    original = table[source].groupby(table["run_index"].astype(int)).first().sort_index()
    return [int(v) for v in original]


def stage2_run_count(folder: Path, retained: int) -> int:
    """Runs the study trains in stage 2: the retained runs its pretraining marker records (a --skip-pretraining
    study may take only the first of the ``retained`` runs its pretraining folder retains), else all of them."""
    done = read_marker(layout.StudyLayout(folder).pretraining_done)
    if isinstance(done, dict) and "retained_runs" in done:
        return int(done["retained_runs"])
    return retained


def runs_started(pretraining_runs: int, originals: Sequence[int], retained: int) -> int:
    """Pretraining runs started for the runs a study trains: all of them, or, where a study takes only the first
    of the retained runs, those up to the last it takes (as a study started with that many runs would have)."""
    if not originals or len(originals) >= retained:
        return pretraining_runs
    return int(originals[-1]) + 1


def job_failed(marker: Path) -> bool:
    """Whether a job's marker records a failure (a run that failed is dropped, not retried, under failure_reseed
    False, and is counted by this record)."""
    payload = read_marker(marker)
    return isinstance(payload, dict) and payload.get("success") is False


def _flatten_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], Any]:
    """{(class, field): value} with values as JSON keeps them (tuples become lists)."""
    return {(str(cls), str(name)): json.loads(json.dumps(value))
            for cls, fields in overrides.items() for name, value in fields.items()}  # fmt: skip


def override_items(settings: Mapping[str, Any]) -> list[str]:
    """The switches a study overrides, as sorted 'Class.field=value' items, from its study record: without the
    run count (bookkeeping) and, in a --quick study, without the quick sizes (the label says 'quick')."""
    from study.quick import QUICK_OVERRIDES

    quick = _flatten_overrides(QUICK_OVERRIDES) if settings.get("quick") else {}
    items = []
    for key, value in sorted(_flatten_overrides(settings.get("run_overrides") or {}).items()):
        if key in BOOKKEEPING_OVERRIDES or (key in quick and quick[key] == value):
            continue
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        items.append(f"{key[0]}.{key[1]}={text}")
    return items


LABEL_ITEMS = 3
"""Overridden switches a label names; a study with more is labelled by their count (the tables list them all)."""


def study_label(settings: Mapping[str, Any]) -> str:
    """'figure', 'figure + SSNPars.sup_I_kernel=own', 'reference (quick)': the preset, then the switches the
    study changes with --overrides-json (a variant of the preset), as its records say."""
    items = override_items(settings)
    named = ", ".join(items) if len(items) <= LABEL_ITEMS else f"{len(items)} overridden settings"
    label = str(settings["preset"]) + (f" + {named}" if items else "")
    return label + (" (quick)" if settings.get("quick") else "")


def unique_labels(labels: Sequence[str], folders: Sequence[Path]) -> list[str]:
    """The labels; a label shared by several studies gets its folder name appended."""
    return [p if labels.count(p) == 1 else f"{p} ({f.name})" for p, f in zip(labels, folders, strict=True)]


def load_studies(folders: Sequence[Path]) -> list[StudyData]:
    """Load every study, labelled by its preset and overridden switches."""
    labels = [study_label(study_settings(f)) for f in folders]
    return [load_study(f, label) for f, label in zip(folders, unique_labels(labels, folders), strict=True)]


# ------------------------------------------------------------------------------------------------- tables
def runs_table(studies: Sequence[StudyData]) -> pd.DataFrame:
    """Per study and configuration: runs started, excluded after pretraining (why), in stage 2, retained."""
    import pandas as pd

    rows = []
    for s in studies:
        pre_reasons = "; ".join(f"run {r}: {pretraining_exclusion_reason(s, r, t)}"
                                for r, t in sorted(s.pretraining_excluded.items()))  # fmt: skip
        for conf in s.configurations:
            trained = sorted(s.training[conf]["run_index"].astype(int).unique())
            dropped = s.analysis_excluded[conf]
            why = "; ".join(f"run {r}: {'no stage-2 rows' if r not in trained else 'stuck at the offset ceiling'}"
                            for r in dropped)  # fmt: skip
            rows.append({
                "study": s.label, "preset": s.preset, "configuration": conf, "runs_started": s.runs_started,
                "excluded_after_pretraining": len(s.pretraining_excluded), "pretraining_exclusion": pre_reasons,
                "runs_in_stage2": len(trained), "excluded_by_analysis": len(dropped), "analysis_exclusion": why,
                "runs_retained": len(trained) - len([r for r in dropped if r in trained]),
            })  # fmt: skip
    return pd.DataFrame(rows)


def pretraining_exclusion_reason(study: StudyData, run: int, threshold: float) -> str:
    """Why a run left after pretraining: it failed (its job marker says so; such a run has no rows, and is listed
    with the excluded runs where there is no run exclusion), or its final threshold."""
    return "failed" if run in study.pretraining_failed else f"final threshold {threshold:.3g} deg"


def summary_table(studies: Sequence[StudyData]) -> pd.DataFrame:
    """The studies' study_summary.csv rows, stacked with the study label and preset in front."""
    import pandas as pd

    parts = [s.summary.assign(study=s.label, preset=s.preset) for s in studies]
    table = pd.concat(parts, ignore_index=True)
    return table[["study", "preset", *[c for c in table.columns if c not in ("study", "preset")]]]


def run_training_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run of one stage: steps, share of unrolled steps and of steps with dx > 0, largest dx, non-finite loss."""
    import numpy as np

    grouped = rows.groupby(rows["run_index"].astype(int))
    return grouped.agg(
        steps=("stage", "size"),
        unrolled=("gradient_unrolled", "sum"),
        dx_positive=("loss_dx_max", lambda x: int(np.sum(np.asarray(x, float) > 0))),
        max_dx=("loss_dx_max", "max"),
        nonfinite=("loss_all", lambda x: bool(np.any(~np.isfinite(np.asarray(x, float))))),
    )


def _stage_row(study: StudyData, conf: str, stage: int, rows: pd.DataFrame) -> dict:
    import numpy as np

    per_run = run_training_metrics(rows)
    total = int(per_run["steps"].sum())
    q25, median, q75 = np.percentile(per_run["steps"], [25, 50, 75]) if total else (math.nan,) * 3
    return {
        "study": study.label, "preset": study.preset, "configuration": conf, "stage": stage,
        "n_runs": len(per_run), "steps_median": median, "steps_q25": q25, "steps_q75": q75, "steps_total": total,
        "unrolled_percent": 100.0 * per_run["unrolled"].sum() / total if total else math.nan,
        "dx_positive_percent": 100.0 * per_run["dx_positive"].sum() / total if total else math.nan,
        "runs_with_dx_positive": int((per_run["dx_positive"] > 0).sum()),
        "max_dx": float(per_run["max_dx"].max()) if total else math.nan,
        "median_run_max_dx": float(per_run["max_dx"].median()) if total else math.nan,
        "runs_with_nonfinite_loss": int(per_run["nonfinite"].sum()),
    }  # fmt: skip


def training_table(studies: Sequence[StudyData]) -> pd.DataFrame:
    """Per study, stage (0 and 1 over every started run, 2 per configuration): lengths and numerics."""
    import pandas as pd

    rows = []
    for s in studies:
        for stage in (0, 1):
            rows.append(_stage_row(s, "pretraining", stage, s.pretraining[s.pretraining["stage"] == stage]))
        for conf in s.configurations:
            rows.append(_stage_row(s, conf, 2, s.training[conf]))
    return pd.DataFrame(rows)


def baseline_source(study: StudyData, studies: Sequence[StudyData]) -> StudyData | None:
    """The study whose ``conf_baseline`` a study's configurations are contrasted with: the study itself when it
    ran the baseline; else a compared study that ran it on the same pretraining with the same preset, switches
    and base seed (its baseline jobs are the ones this study would have run); else None."""
    if BASELINE in study.changes:
        return study
    return next((other for other in studies
                 if other is not study and BASELINE in other.changes and shared_pretraining(study, other)
                 and (other.preset, other.overrides, other.base_seed)
                 == (study.preset, study.overrides, study.base_seed)), None)  # fmt: skip


def contrast_rows(study: StudyData, baseline: StudyData) -> list[dict]:
    """Ablation contrasts of one study: each configuration's layer difference against the baseline's, taken from
    ``baseline`` (the study itself, or the study baseline_source names); runs pair up by their stage-2 index
    within a study and by their original index across two."""
    from analysis.study_summary import wilcoxon_paired

    def per_run(source: StudyData, conf: str, mid: str, sup: str) -> pd.Series:
        difference = layer_difference(source.changes[conf], mid, sup)
        return difference if baseline is study else by_original_run(difference, source)

    source = "" if baseline is study else f"{baseline.label}: "
    rows = []
    for conf in study.configurations:
        if conf == BASELINE:
            continue
        for name, mid, sup in CONTRASTS:
            paired = per_run(study, conf, mid, sup).to_frame("conf").join(
                per_run(baseline, BASELINE, mid, sup).to_frame("base"), how="inner")
            rows.append({
                "study": study.label, "preset": study.preset, "configuration": conf,
                "comparison": f"{name}: {conf} vs {BASELINE}", "x": f"{source}{BASELINE} {sup} - {mid}",
                "y": f"{conf} {sup} - {mid}", "unit": "percentage points",
                **wilcoxon_paired((paired["conf"] - paired["base"]).to_numpy(float)),
            })  # fmt: skip
    return rows


def stats_table(studies: Sequence[StudyData]) -> pd.DataFrame:
    """The studies' study_stats.csv rows plus the ablation contrasts."""
    import pandas as pd

    parts = []
    for s in studies:
        parts.append(s.stats.assign(study=s.label, preset=s.preset))
        baseline = baseline_source(s, studies)
        contrasts = contrast_rows(s, baseline) if baseline is not None else []
        if contrasts:
            parts.append(pd.DataFrame(contrasts))
    table = pd.concat(parts, ignore_index=True)
    return table[["study", "preset", *[c for c in table.columns if c not in ("study", "preset")]]]


# ------------------------------------------------------------------------------------------------- figure
def draw_comparison(studies: Sequence[StudyData], stats: pd.DataFrame, path: Path) -> Path:
    """comparison.png (analysis.figures.headline.plot_study_comparison): the studies' retained changes, the
    published baseline medians and the layer test of comparison_stats.csv in each panel's title."""
    from analysis.figures.headline import plot_study_comparison

    lookup = {(r["study"], r["configuration"], r["comparison"]): r for _, r in stats.iterrows()}

    def test(label: str, conf: str) -> str:
        row = lookup.get((label, conf, "dJ_II sup vs mid"))
        return "" if row is None else f"ΔJ_II sup−mid: median {fmt(row['median_difference'])} pp, p = {fmt(row['p'])}"

    return plot_study_comparison([(s.label, s.changes) for s in studies], test, path, {BASELINE: PUBLISHED_BASELINE})


# ------------------------------------------------------------------------------------------------ command
def check_studies(folders: Sequence[Path]) -> None:
    """ResultsFileError unless every study folder is complete and whole: the other incomplete ones are logged
    first, one line each, so that every study that would be missing or mixed in is named."""
    lines = [line for folder in folders if (line := study_problem(folder))]
    for line in lines[:-1]:
        logger.error("%s", line)
    if lines:
        raise ResultsFileError(lines[-1])


def study_problem(folder: Path) -> str | None:
    """One line on why a study folder cannot be compared (None if it can). A folder without main.py's study
    record (made by hand) is taken as it is."""
    from study import inventory

    try:
        state = inventory.study_state(folder)
    except ResultsFolderError:
        return None
    if not state.complete:
        return f"{folder} is incomplete: {'; '.join(state.missing())}"
    if state.analysis_runs is not None and state.analysis_runs != state.runs:
        return (f"{folder}: its analysis covers {state.analysis_runs} of its {state.runs} runs; finish it with "
                f"python main.py --resume {folder}")  # fmt: skip
    damage = inventory.damage_report(folder)
    return f"{folder}: {damage}" if damage else None


def compare_studies(folders: Sequence[Path], out: Path, headlines: bool = False,
                    bases: Sequence[Path] = ()) -> list[Path]:  # fmt: skip
    """Write every comparison output for these study folders into ``out``: the comparison tables and figure, the
    lineage tables and each study's published-style baseline figures (analysis.lineage), with ``headlines``
    each study's headline figure too; return the paths. ``bases`` names the studies the variants of their preset
    are paired with (default: per preset its one plain study with conf_baseline); they are compared too if they
    are not among ``folders``."""
    from analysis import lineage
    from analysis.exclusion_rules import write_exclusion_rules
    from analysis.power import write_power

    folders = with_bases(folders, bases)
    check_studies(folders)
    if not lineage.PUBLISHED_FIGURE.is_file():
        raise ResultsFileError(f"the published figure is missing: {lineage.PUBLISHED_FIGURE}")
    studies = load_studies(folders)
    out.mkdir(parents=True, exist_ok=True)
    runs, summary = runs_table(studies), summary_table(studies)
    training, stats = training_table(studies), stats_table(studies)
    for table, name in ((runs, OUTPUTS[0]), (summary, OUTPUTS[1]), (training, OUTPUTS[2]), (stats, OUTPUTS[3])):
        atomic_write_csv(table, out / name)
    atomic_write_text(out / OUTPUTS[4], markdown_report(runs, summary, training, stats))
    draw_comparison(studies, stats, out / OUTPUTS[5])
    written = [out / name for name in OUTPUTS[:6]]
    chosen = lineage.base_studies(studies, bases)
    if not chosen:
        logger.info("no base study to pair variants with (no preset has one plain study; --base names them)")
    written += lineage.write_lineage_outputs(studies, summary, stats, chosen, out)
    written += write_exclusion_rules(studies, out)
    written += write_power(studies, out)
    if headlines:
        from analysis.main_analysis import draw_headline_figure

        written += [draw_headline_figure(s.folder, list(s.configurations), out / headline_name(s.folder))
                    for s in studies]  # fmt: skip
    logger.info("comparison of %d studies written to %s (see %s and %s)", len(studies), out, out / OUTPUTS[4],
                out / "lineage.md")  # fmt: skip
    return written


def with_bases(folders: Sequence[Path], bases: Sequence[Path]) -> list[Path]:
    """The folders, with the base studies that are not among them first."""
    given = {Path(f).resolve() for f in folders}
    return [*(Path(b) for b in bases if Path(b).resolve() not in given), *folders]


def headline_name(folder: Path) -> str:
    """The file name of a study's headline figure among the comparison outputs."""
    return f"{Path(layout.HEADLINE).stem}_{folder.name}{Path(layout.HEADLINE).suffix}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.study_comparison",
        description="Compare analysed studies (e.g. one per preset): runs, changes over stage 2, training "
        "numerics, the paired tests and the ablation contrasts, as CSV, Markdown and one figure.",
    )
    parser.add_argument("folders", nargs="+", type=Path, help="analysed results folders (hold study_summary.csv)")
    parser.add_argument("--out", type=Path, default=Path("results/comparison"), help="output folder")
    parser.add_argument("--headlines", action="store_true",
                        help="also draw each study's headline figure into --out (headline_<folder>.png)")  # fmt: skip
    parser.add_argument("--base", type=Path, nargs="+", default=[], metavar="FOLDER",
                        help="the studies the variants (studies of their preset with other switches) are paired with "
                             "run by run in sensitivity.csv; compared too if not among the folders (default: per "
                             "preset, the one study without overridden switches that ran conf_baseline)")  # fmt: skip
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Compare the studies named on the command line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    compare_studies(args.folders, args.out, args.headlines, args.base)


if __name__ == "__main__":
    arguments = parse_args()  # before the heavy imports, so that --help answers at once
    sys.exit(run_entry_point(lambda: run(arguments)))
