"""The tables of a comparison of studies in Markdown, ready to paste into docs/results.md (and the number format
the comparison and lineage tables share)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the comparison's command line parses before pandas loads (fast --help)
    import pandas as pd


def fmt(value: float, digits: int = 3) -> str:
    """Three significant digits, or a dash for a missing value."""
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}g}"


def _iqr(row: pd.Series) -> str:
    """'median [q25, q75]', signed for changes."""
    if not math.isfinite(float(row["median"])):
        return "–"
    f = "+.1f" if str(row["quantity"]).startswith("d_") else ".2f"
    return f"{float(row['median']):{f}} [{float(row['q25']):{f}}, {float(row['q75']):{f}}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


SUMMARY_QUANTITIES: tuple[tuple[str, str], ...] = (
    *((f"d_J_{k}_{x}", f"Δ\\|J_{k}\\| {'mid' if x == 'm' else 'sup'} (%)") for x in ("m", "s")
      for k in ("EE", "IE", "EI", "II")),
    ("d_f_E", "Δf_E (%)"), ("d_f_I", "Δf_I (%)"), ("d_cE_m", "Δc_E (%)"), ("d_cI_m", "Δc_I (%)"),
    ("staircase_offset_pre", "staircase offset pre (°)"), ("staircase_offset_post", "staircase offset post (°)"),
    ("psychometric_offset_pre", "threshold pre (°)"), ("psychometric_offset_post", "threshold post (°)"),
)  # fmt: skip


def markdown_report(runs: pd.DataFrame, summary: pd.DataFrame, training: pd.DataFrame, stats: pd.DataFrame) -> str:
    """The comparison tables in Markdown, ready to paste into docs/results.md."""
    out = ["## Runs", ""]
    out.append(markdown_table(
        ["study", "configuration", "started", "excluded after pretraining", "in stage 2", "excluded by analysis",
         "retained"],
        [[r.study, r.configuration, r.runs_started,
          f"{r.excluded_after_pretraining} ({r.pretraining_exclusion or '–'})", r.runs_in_stage2,
          f"{r.excluded_by_analysis} ({r.analysis_exclusion or '–'})", r.runs_retained]
         for r in runs.itertuples()],
    ))  # fmt: skip
    columns = [(s, c) for s, c in dict.fromkeys(zip(summary["study"], summary["configuration"], strict=True))]
    lookup = {(r["study"], r["configuration"], r["quantity"]): r for _, r in summary.iterrows()}
    out += ["", "## Changes over stage 2 and behaviour: median [IQR] over retained runs", ""]
    rows = []
    for quantity, label in SUMMARY_QUANTITIES:
        cells = []
        for key in columns:
            row = lookup.get((*key, quantity))
            cell = "–" if row is None else _iqr(row)
            if row is not None and int(row.get("n_not_measured", 0) or 0):
                cell += f" ({int(row['n_not_measured'])} not measured)"
            cells.append(cell)
        rows.append([label, *cells])
    n_row = ["n (retained runs)", *[str(int(lookup[(*k, "d_J_II_s")]["n"])) if (*k, "d_J_II_s") in lookup else "–"
                                    for k in columns]]  # fmt: skip
    out.append(markdown_table(["quantity", *[f"{s}: {c}" for s, c in columns]], [n_row, *rows]))
    out += ["", "## Training: stage lengths and numerics", ""]
    out.append(markdown_table(
        ["study", "stage", "configuration", "runs", "steps median [IQR]", "unrolled steps", "steps with dx > 0",
         "runs with dx > 0", "largest dx (median of runs)", "non-finite loss"],
        [[r.study, r.stage, r.configuration, r.n_runs,
          f"{fmt(r.steps_median)} [{fmt(r.steps_q25)}, {fmt(r.steps_q75)}]", f"{fmt(r.unrolled_percent)} %",
          f"{fmt(r.dx_positive_percent)} %", r.runs_with_dx_positive,
          f"{fmt(r.max_dx)} ({fmt(r.median_run_max_dx)})", r.runs_with_nonfinite_loss]
         for r in training.itertuples()],
    ))  # fmt: skip
    out += ["", "## Tests (Wilcoxon signed-rank, two-sided; effect size: matched-pairs rank-biserial r)", ""]
    out.append(markdown_table(
        ["study", "configuration", "comparison", "n", "median difference", "p", "r", "note"],
        [[r.study, r.configuration, r.comparison, int(r.n), fmt(r.median_difference), fmt(r.p), fmt(r.effect_size),
          "" if not isinstance(r.note, str) else r.note]
         for r in stats.itertuples() if not str(r.comparison).startswith(("staircase", "psychometric"))],
    ))  # fmt: skip
    return "\n".join(out) + "\n"
