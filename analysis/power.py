"""How many runs a study needs to see the claim: the power of the per-run test, resampled from a study's runs.

The claim's test is a two-sided Wilcoxon signed-rank test of the per-run sup − mid = Δ|J_II^sup| − Δ|J_II^mid|
(percentage points) over the runs a study keeps. Whether a study of n runs can detect a tendency of the size
one study shows depends on the spread of that statistic across initialisations, which the studies measure.
This module resamples a study's own kept runs (with replacement, a seeded ``numpy.random.Generator``) at
several sizes and counts how often the test reaches p < 0.05 (by the normal approximation with the tie
correction, since resampling makes ties): the power a study of that size would have
*if that study's per-run distribution were the truth*. It reads an observed effect back as power, so it is
optimistic where the observed effect is itself partly noise; it is a planning aid for sizes and a guide to
reading a null result at a given n, not evidence for the effect.

Written by ``python -m analysis.study_comparison``, for each study with ``conf_baseline`` and at least
MIN_RUNS kept runs:

* ``power.csv``: study, preset, configuration, the observed n and median, the size n resampled, the share
  of resampled studies with p < ALPHA (``power``), ``resamples`` and ``seed``;
* ``power.md``: the same as one table, a row per study and a column per size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.comparison_inputs import BASELINE, POWER_OUTPUTS, StudyData, sup_minus_mid
from analysis.comparison_markdown import markdown_table
from store.files import atomic_write_csv, atomic_write_text

SIZES: tuple[int, ...] = (12, 16, 20, 24, 32, 49)
"""Study sizes (kept runs) at which the power is estimated; 49 is the published figure's run count."""
RESAMPLES = 2000
"""Resampled studies per size: the power's standard error is at most 0.5/sqrt(2000) ≈ 0.011."""
SEED = 0
"""Seed of the resampling generator, so that the table regenerates exactly."""
ALPHA = 0.05
"""Significance level of the two-sided test."""
MIN_RUNS = 8
"""Fewer kept runs than this describe the spread too poorly to resample."""
COLUMNS: tuple[str, ...] = (
    "study", "preset", "configuration", "observed_n", "observed_median", "n", "power", "resamples", "seed",
)  # fmt: skip


def signed_rank_p(draws: np.ndarray) -> np.ndarray:
    """Two-sided p of the Wilcoxon signed-rank test of each row of ``draws``, by the normal approximation with
    the tie correction (scipy.stats.wilcoxon with method="approx", zero_method="wilcox", no continuity
    correction), vectorised over rows: resampling with replacement makes ties, which rule out the exact
    distribution, and scipy's per-row fallback for small tied samples is far too slow for thousands of rows.
    Zeros are dropped as in the studies' test; a row of zeros gets p = 1."""
    from scipy import stats

    draws = np.asarray(draws, dtype=float)
    nonzero = draws != 0
    n = nonzero.sum(axis=1)
    magnitude = np.where(nonzero, np.abs(draws), np.inf)  # zeros rank last and are then left out
    ranks = stats.rankdata(magnitude, axis=1)
    w_plus = np.where(draws > 0, ranks, 0.0).sum(axis=1)
    ties = tie_correction(magnitude)
    mean = n * (n + 1) / 4.0
    variance = n * (n + 1) * (2 * n + 1) / 24.0 - ties / 48.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(variance > 0, (w_plus - mean) / np.sqrt(variance), 0.0)
    return np.where(n > 0, 2.0 * stats.norm.sf(np.abs(z)), 1.0)


def tie_correction(magnitude: np.ndarray) -> np.ndarray:
    """Per row, the sum over groups of tied finite values of t³ − t (t: the group's size), without a loop over
    rows: sorted along each row, a tie group is a run of equal neighbours, and each of its t members contributes
    t² − 1."""
    ordered = np.sort(magnitude, axis=1)
    starts = np.ones(ordered.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = np.cumsum(starts.ravel()) - 1  # one id per (row, run of equal values), over the whole array
    size = np.bincount(group)[group].reshape(ordered.shape).astype(float)
    return np.where(np.isfinite(ordered), size**2 - 1.0, 0.0).sum(axis=1)


def wilcoxon_power(values: np.ndarray, n: int, rng: np.random.Generator, resamples: int = RESAMPLES) -> float:
    """Share of ``resamples`` studies of ``n`` runs drawn with replacement from ``values`` whose two-sided
    Wilcoxon signed-rank test (signed_rank_p) gives p < ALPHA."""
    draws = rng.choice(np.asarray(values, dtype=float), size=(resamples, n), replace=True)
    return float(np.mean(signed_rank_p(draws) < ALPHA))


def power_rows(study: StudyData, sizes: Sequence[int] = SIZES, resamples: int = RESAMPLES) -> list[dict]:
    """The power of the claim's test at each size, resampled from one study's kept baseline runs (no row for a
    study without conf_baseline or with fewer than MIN_RUNS kept runs)."""
    if BASELINE not in study.changes:
        return []
    values = sup_minus_mid(study, BASELINE).to_numpy(float)
    if values.size < MIN_RUNS:
        return []
    rng = np.random.default_rng(SEED)
    return [{"study": study.label, "preset": study.preset, "configuration": BASELINE, "observed_n": int(values.size),
             "observed_median": float(np.median(values)), "n": n, "power": wilcoxon_power(values, n, rng, resamples),
             "resamples": resamples, "seed": SEED} for n in sizes]  # fmt: skip


def power_table(studies: Sequence[StudyData], resamples: int = RESAMPLES) -> pd.DataFrame:
    """power.csv: every study with enough kept baseline runs, every size."""
    rows = [row for study in studies for row in power_rows(study, resamples=resamples)]
    return pd.DataFrame(rows).reindex(columns=list(COLUMNS))


def power_markdown(table: pd.DataFrame) -> str:
    """power.md."""
    lines = ["## Power of the claim's test, resampled from each study's runs", "",
             f"Share of {RESAMPLES} studies of n runs, drawn with replacement from a study's kept baseline runs, "
             f"whose two-sided Wilcoxon signed-rank test of the per-run sup − mid gives p < {ALPHA:g} (normal "
             f"approximation with the tie correction, since resampling makes ties; seed {SEED}): the power at n "
             "if that study's per-run distribution were the truth. Optimistic where the observed median is partly "
             "noise; a planning aid, not evidence.", ""]  # fmt: skip
    if table.empty:
        return "\n".join([*lines, f"No study has {MIN_RUNS} or more kept baseline runs.", ""])
    sizes = sorted(set(int(n) for n in table["n"]))
    rows = []
    for (study, observed_n, median), group in table.groupby(["study", "observed_n", "observed_median"], sort=False):
        power = group.set_index("n")["power"]
        rows.append([str(study), f"{median:+.1f} (n = {int(observed_n)})", *(f"{power[n]:.2f}" for n in sizes)])
    header = ["study", "observed sup − mid (median)", *(f"n = {n}" for n in sizes)]
    return "\n".join([*lines, markdown_table(header, rows), ""])


def write_power(studies: Sequence[StudyData], out: Path) -> list[Path]:
    """Write power.csv and power.md into ``out``."""
    table = power_table(studies)
    csv_name, markdown_name = POWER_OUTPUTS
    atomic_write_csv(table, out / csv_name)
    atomic_write_text(out / markdown_name, power_markdown(table))
    return [out / name for name in POWER_OUTPUTS]
