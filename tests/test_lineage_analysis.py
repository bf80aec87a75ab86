"""The lineage outputs of the study comparison (analysis/lineage.py) on tiny hand-made studies of the figure
preset, written with the project's own writers (parameter copies, results columns, markers, run exclusion) and
analysed by the analysis' exclusion, changes and stats parts; no training.

The base `figure` study: 7 runs, pretraining run 3 failed (no exclusion: runs 0-2, 4-6 are stage-2 runs 0-5).
In conf_baseline stage-2 run 2 failed and run 5 is stuck at the offset ceiling (the analysis excludes it); run 1
starts with stage-1 rows. Two variants: one reuses its pretraining (--skip-pretraining) and changes the
superficial I kernel, one pretrains itself (run 1 failed there instead of run 3) with another orientation width.
Every change is prescribed per run, so the tables' numbers are checked against hand-computed values.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import lineage
from analysis import main_analysis as ma
from analysis import study_comparison as sc
from store.errors import EXIT_USER_ERROR, run_entry_point
from store.exclusion import exclude_and_renumber
from store.files import atomic_write_csv, write_marker
from store.layout import PRETRAINING_RESULTS_VAL, StudyLayout
from store.parameter_files import write_parameters_copy
from store.records import RESULTS_FORMAT_VERSION
from store.schema import (
    INIT_READOUT_COLUMNS,
    INITIAL_PARAMETERS_COLUMNS,
    PAIRS,
    kappa_columns,
    orimap_columns,
    pretraining_columns,
    ssn_columns,
    training_columns,
)
from study.design import StudyDesign
from tests.test_analysis_pipeline import SMALL

BASE, MID, NO_HORICONN = "conf_baseline", "conf_midonly_readout", "conf_no_horiconn"
STEPS = 12
"""Stage-2 rows per run (the analysis' ceiling rule looks at the last 10)."""
START_J = {"m": {"EE": 4.3, "EI": 1.5, "IE": 4.2, "II": 1.1}, "s": {"EE": 4.5, "EI": 1.3, "IE": 5.5, "II": 1.0}}
START_C = {"cE_m": 5.4, "cI_m": 4.6, "cE_s": 5.0, "cI_s": 4.8}
KAPPA_SHARES = {"kappa_Jsup_EE_pre": 1.0, "kappa_Jsup_IE_pre": -0.5, "kappa_Jsup_EE_post": 0.25,
                "kappa_Jsup_IE_post": 2.0}  # fmt: skip
"""Final raw value of each figure κ as a multiple of a run's ``kappa``."""


@dataclass(frozen=True)
class RunSpec:
    """One stage-2 run: percent changes over stage 2 (J: of |J|), the size of its final κ, its thresholds."""

    changes: Mapping[str, float] = field(default_factory=dict)
    kappa: float = 0.0
    thresholds: tuple[float, float] = (8.0, 3.0)
    stuck: bool = False
    stage1_rows: int = 0


def spec(ii_m: float, ii_s: float, **kw) -> RunSpec:
    """A run with the given changes of |J_II| (middle, superficial) and a fall of |J_EE^sup| and c_E^sup."""
    return RunSpec({"J_II_m": ii_m, "J_II_s": ii_s, "J_EE_s": -0.5 * ii_s, "cE_s": 2.0, "f_I": -4.0}, **kw)


# Base conf_baseline, stage-2 runs 0..5 (original runs 0, 1, 2, 4, 5, 6): run 2 failed, run 5 stuck.
BASE_RUNS = [spec(4, 20, kappa=0.4, thresholds=(8, 3)), spec(6, 30, kappa=0.8, thresholds=(6, 2), stage1_rows=3),
             None, spec(10, 12, kappa=0.2, thresholds=(9, 4)), spec(5, 25, kappa=0.6, thresholds=(7, 2.5)),
             spec(50, 100, stuck=True)]  # fmt: skip
MID_RUNS = [spec(30, 0), spec(40, 2), spec(35, -1), spec(20, 1), spec(25, 3), spec(50, 0)]
VARIANT_A = [spec(5, 10 + 2 * k) for k in range(6)]  # sup - mid: 5, 7, 9, 11, 13, 15
VARIANT_B = [spec(0, 1 + k) for k in range(6)]  # sup - mid: 1..6 at original runs 0, 2, 3, 4, 5, 6


# ------------------------------------------------------------------------------------------------ writers
def log_params(changes: Mapping[str, float], t: float) -> dict[str, float]:
    """Log-parameters a fraction t of the way through stage 2."""
    def at(column: str, start: float) -> float:
        return start * (1.0 + t * changes.get(column, 0.0) / 100.0)

    lp = {f"log_J_{p}_{x}": math.log(at(f"J_{p}_{x}", START_J[x][p])) for x in ("m", "s") for p in PAIRS}
    lp.update({c: at(c, v) for c, v in START_C.items()})
    lp.update({f"log_f_{t_}": math.log(at(f"f_{t_}", 0.75)) for t_ in "EI"})
    return lp


def training_rows(run: int, rs: RunSpec) -> list[dict]:
    """A run's stage-1 rows (readout only: the parameters stay at their start, κ = 0), then its stage-2 rows."""
    rows = []
    for step in range(rs.stage1_rows):
        rows.append({"run_index": run, "stage": 1, "SGD_steps": step, **ssn_columns(log_params({}, 0.0), False),
                     **kappa_columns(np.zeros((2, 2, 2)), np.zeros((2, 2)), np.zeros(2))})  # fmt: skip
    for step in range(STEPS):
        t = step / (STEPS - 1)
        row = {"run_index": run, "stage": 2, "SGD_steps": step, "loss_all": 0.5, "loss_dx_max": 0.0,
               "gradient_unrolled": 0, **ssn_columns(log_params(rs.changes, t), False),
               **kappa_columns(np.zeros((2, 2, 2)), np.zeros((2, 2)), np.zeros(2))}  # fmt: skip
        row.update({column: t * share * rs.kappa for column, share in KAPPA_SHARES.items()})
        if step % 2 == 0:
            pre, post = rs.thresholds
            row["psychometric_offset"] = 15.0 if rs.stuck else pre + (post - pre) * step / (STEPS - 2)
        row["staircase_offset"] = 10.0 if rs.stuck else 8.0 - 0.5 * step
        rows.append(row)
    return rows


def write_pretraining(root: Path, runs: int, failed: Sequence[int]) -> int:
    """Stage-0 rows (the figure era has no stage 1 in pretraining) of every run that did not fail, the job
    markers, then the run exclusion of the figure preset (only failed runs); the retained runs."""
    layout = StudyLayout(root)
    present = [r for r in range(runs) if r not in failed]
    pre = [{"run_index": r, "stage": 0, "SGD_steps": s, "loss_all": 0.7, "loss_dx_max": 0.0, "gradient_unrolled": 1,
            "psychometric_offset": 6.0 if s == 2 else math.nan, **ssn_columns(log_params({}, 0.0), False)}
           for r in present for s in range(3)]  # fmt: skip
    tables = {
        layout.pretraining_results: pd.DataFrame(pre).reindex(columns=pretraining_columns()),
        layout.file(PRETRAINING_RESULTS_VAL): pd.DataFrame([{"run_index": r, "stage": 0} for r in present]),
        layout.orimap: pd.DataFrame([[float(r), *np.linspace(0, 170, 81)] for r in present],
                                    columns=orimap_columns()),
        layout.initial_parameters: pd.DataFrame([{"run_index": r, "stage": s, "gE": 1.0, "gI": 1.0, "eta": 1e-3}
                                                 for r in present for s in (0, 1)]).reindex(
                                                     columns=list(INITIAL_PARAMETERS_COLUMNS)),
        layout.init_readout_params: pd.DataFrame([{"run_index": r, "log_regr": 0} for r in present]).reindex(
            columns=list(INIT_READOUT_COLUMNS)),
    }  # fmt: skip
    for path, table in tables.items():
        atomic_write_csv(table, path)
    for r in range(runs):
        write_marker(layout.pretraining_run(r).marker, {"run_index": r, "success": r not in failed})
    retained = exclude_and_renumber(root, by_threshold=False)
    write_marker(layout.pretraining_done, {"pretraining_folder": str(root), "retained_runs": retained, "runs": runs})
    return retained


def write_configuration(root: Path, conf: str, runs: Sequence[RunSpec | None], overrides: dict) -> None:
    """A configuration's parameters copy, its assembled training files, its job markers and its marker."""
    layout = StudyLayout(root).configuration(conf)
    layout.folder.mkdir()
    write_parameters_copy(layout.parameters, overrides, preset="figure")
    rows = [row for k, rs in enumerate(runs) if rs is not None for row in training_rows(k, rs)]
    atomic_write_csv(pd.DataFrame(rows).reindex(columns=training_columns()), layout.training_results)
    atomic_write_csv(pd.DataFrame({"run_index": [k for k, rs in enumerate(runs) if rs], "stage": 2}),
                     layout.training_results_val)  # fmt: skip
    for k, rs in enumerate(runs):
        write_marker(layout.run(k).marker, {"run_index": k, "success": rs is not None})
    write_marker(layout.done, {"runs": len(runs)})


def figure_study(root: Path, confs: Mapping[str, Sequence[RunSpec | None]], overrides: dict | None = None,
                 runs: int = 7, failed: Sequence[int] = (3,), reuse: Path | None = None, seed: int = 0) -> Path:
    """An analysed study of the figure preset (or a variant: ``overrides``), with its own pretraining or, with
    ``reuse``, the pretraining of another folder (--skip-pretraining)."""
    overrides = overrides or {}
    stage2_runs = len(next(iter(confs.values())))
    study = StudyDesign(stage2_runs if reuse else runs, tuple(confs), seed, {"TrainingPars": {"num_runs": runs},
                  **overrides}, str(reuse) if reuse else None, False, "figure")  # fmt: skip
    root.mkdir(parents=True)
    record = {"results_format_version": RESULTS_FORMAT_VERSION, "created": "2026-12-04", "base_seed": seed,
              "study": study.to_json()}  # fmt: skip
    (root / "environment.json").write_text(json.dumps(record))
    write_parameters_copy(StudyLayout(root).parameters, study.run_overrides, preset="figure")
    if reuse is None:
        assert write_pretraining(root, runs, failed) == stage2_runs
    else:
        write_marker(StudyLayout(root).pretraining_done, {"pretraining_folder": str(reuse),
                                                          "retained_runs": stage2_runs, "runs": stage2_runs})
    for conf, conf_runs in confs.items():
        write_configuration(root, conf, conf_runs, study.run_overrides)
    ma.run_analysis(root, list(confs), parts=("exclusion", "changes", "stats"), settings=SMALL)
    write_marker(StudyLayout(root).analysis_done, {"configs": list(confs), "runs": study.runs})
    return root


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lineage")
    base = figure_study(root / "figure", {BASE: BASE_RUNS, MID: MID_RUNS})
    return {
        "base": base,
        "a": figure_study(root / "kernel", {BASE: VARIANT_A}, {"SSNPars": {"sup_I_kernel": "own"}}, reuse=base),
        "b": figure_study(root / "sigma", {BASE: VARIANT_B}, {"SSNPars": {"sigma_oris": 90.0}}, failed=(1,)),
    }


@pytest.fixture(scope="module")
def outputs(studies, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lineage_out")
    sc.compare_studies([studies["a"], studies["b"]], out, bases=[studies["base"]])
    return out


def lineage_row(out: Path, study: str, conf: str) -> pd.Series:
    table = pd.read_csv(out / "lineage.csv")
    (row,) = [r for _, r in table.iterrows() if r["study"] == study and r["configuration"] == conf]
    return row


# ------------------------------------------------------------------------------------------------- tests
def test_studies_are_labelled_by_preset_and_overridden_switches(outputs) -> None:
    labels = list(dict.fromkeys(pd.read_csv(outputs / "lineage.csv")["study"]))
    assert labels == ["published", "figure", "figure + SSNPars.sup_I_kernel=own", "figure + SSNPars.sigma_oris=90.0"]
    quick = {"preset": "reference", "quick": True, "run_overrides": {"TrainingPars": {"num_runs": 2, "SGD_steps": 6}}}
    assert sc.study_label(quick) == "reference (quick)"  # the quick sizes are the label's "quick"
    assert sc.study_label({**quick, "quick": False}) == "reference + TrainingPars.SGD_steps=6"
    from store.parameter_files import merge_overrides
    from study.quick import END_TO_END_OVERRIDES, QUICK_OVERRIDES

    end_to_end = json.loads(json.dumps(merge_overrides(QUICK_OVERRIDES, END_TO_END_OVERRIDES)))  # as recorded
    items = sc.override_items({**quick, "run_overrides": end_to_end})
    assert len(items) > sc.LABEL_ITEMS and "TrainingPars.SGD_steps=2" in items
    label = sc.study_label({**quick, "run_overrides": end_to_end})
    assert label == f"reference + {len(items)} overridden settings (quick)"


def test_lineage_table_against_hand_computed_medians_and_tests(outputs) -> None:
    row = lineage_row(outputs, "figure", BASE)
    # 7 started; pretraining run 3 and stage-2 run 2 failed; run 5 stuck (excluded by the analysis); 4 kept
    assert (row["runs_started"], row["runs_failed"], row["runs_excluded"], row["runs_kept"]) == (7, 2, 1, 4)
    assert (row["failed_pretraining"], row["failed_stage2"]) == (1, 1)
    assert (row["excluded_after_pretraining"], row["excluded_by_analysis"]) == (0, 1)
    # kept runs: |J_II^sup| +20, +30, +12, +25 %; |J_II^mid| +4, +6, +10, +5 % (numpy's linear quartiles)
    np.testing.assert_allclose([row["d_J_II_s_median"], row["d_J_II_s_q25"], row["d_J_II_s_q75"]], [22.5, 18, 26.25])
    np.testing.assert_allclose([row["d_J_II_m_median"], row["d_J_II_m_q25"], row["d_J_II_m_q75"]], [5.5, 4.75, 7])
    np.testing.assert_allclose(row["d_J_EE_s_median"], -11.25, atol=1e-9)
    np.testing.assert_allclose(row["d_J_IE_m_median"], 0.0, atol=1e-9)
    # sup - mid per run: 16, 24, 2, 20, all positive: exact two-sided p = 2 / 2^4, rank-biserial r = 1
    assert (row["sup_minus_mid_n"], row["sup_minus_mid_positive"]) == (4, 4)
    np.testing.assert_allclose([row["sup_minus_mid_median"], row["sup_minus_mid_p"], row["sup_minus_mid_r"]],
                               [18.0, 0.125, 1.0])  # fmt: skip
    assert "smallest possible p is 0.125" in row["sup_minus_mid_note"]
    np.testing.assert_allclose([row["threshold_pre_median"], row["threshold_post_median"]], [7.5, 2.75])
    assert math.isnan(row["contrast_n"])  # the baseline has no contrast with itself


def test_ablation_contrast_and_middle_only_row(outputs) -> None:
    row = lineage_row(outputs, "figure", MID)
    assert (row["runs_started"], row["runs_failed"], row["runs_excluded"], row["runs_kept"]) == (7, 1, 0, 6)
    # sup - mid: -30, -38, -36, -19, -22, -50; all negative: p = 2 / 2^6
    np.testing.assert_allclose([row["sup_minus_mid_median"], row["sup_minus_mid_p"], row["sup_minus_mid_r"]],
                               [-33.0, 2 / 64, -1.0])  # fmt: skip
    assert row["sup_minus_mid_positive"] == 0
    # runs kept in both configurations (0, 1, 3, 4): (mid-only sup - mid) - (baseline sup - mid)
    # = -30 - 16, -38 - 24, -19 - 2, -22 - 20 = -46, -62, -21, -42
    np.testing.assert_allclose([row["contrast_n"], row["contrast_median"], row["contrast_p"], row["contrast_r"]],
                               [4, -44.0, 0.125, -1.0])  # fmt: skip


def test_published_medians_stand_beside_the_studies(outputs) -> None:
    row = lineage_row(outputs, "published", BASE)
    assert (row["runs_started"], row["runs_excluded"], row["runs_kept"]) == (49, 0, 49)
    assert (row["d_J_II_s_median"], row["d_J_II_m_median"], row["d_J_EE_s_median"]) == (25.0, 5.0, -12.0)
    text = (outputs / "lineage.md").read_text()
    assert "published (earlier implementation, figure version)" in text and "≈ +25" in text
    assert "+18.0; 4 of 4 > 0; p = 0.125, r = 1 (n = 4)" in text  # the baseline's sup - mid


def test_lineage_tables_are_one_per_preset_each_beside_the_published_figure(outputs) -> None:
    lineage_rows = pd.read_csv(outputs / "lineage.csv", keep_default_na=False)
    plain = lineage_rows["study"] == "figure"
    lineage_rows.loc[plain, "preset"] = "reference"  # as if the plain study were of another preset
    text = lineage.lineage_markdown(lineage_rows)
    sections = text.split("### ")[1:]
    assert [section.splitlines()[0] for section in sections] == ["reference", "figure"]
    for section in sections:  # the published column leads each table
        assert section.splitlines()[2].startswith("|  | published (earlier implementation, figure version) |")
    assert "figure: baseline" in sections[0] and "figure: baseline" not in sections[1]
    assert "figure + SSNPars.sup_I_kernel=own: baseline" in sections[1]


def test_published_style_values_follow_lineage_h(outputs, studies) -> None:
    runs = pd.read_csv(outputs / "lineage_runs.csv")
    base = runs[(runs["study"] == "figure") & (runs["configuration"] == BASE)]
    assert base["run_index"].tolist() == [0, 1, 3, 4, 5]  # run 2 failed: no rows, not drawn
    assert base["original_run_index"].tolist() == [0, 1, 4, 5, 6]
    assert base["kept"].tolist() == [True, True, True, True, False]  # the figure draws the stuck run too
    # first to last stage-2 value, with (run 1) and without stage-1 rows before them
    np.testing.assert_allclose(base["J_II_s"], [20, 30, 12, 25, 100])
    np.testing.assert_allclose(base["J_EE_s"], [-10, -15, -6, -12.5, -50])
    np.testing.assert_allclose(base["cE_s"], 2.0)
    np.testing.assert_allclose(base["f_I"], -4.0)
    np.testing.assert_allclose(base["J_EI_m"], 0.0, atol=1e-9)
    # the analysis' own changes over stage 2 agree for J, c and f
    own = pd.read_csv(studies["base"] / BASE / "rel_changes_train.csv").set_index("run_index")
    for column in ("J_II_s", "J_EE_s", "J_II_m", "cE_s", "f_I"):
        np.testing.assert_allclose(base[column].to_numpy(), own.loc[base["run_index"], column].to_numpy(), atol=1e-9)
    # κ: the change from 0, i.e. the final raw value (not a percentage, not tanh)
    for column, share in KAPPA_SHARES.items():
        np.testing.assert_allclose(base[column], [share * k for k in (0.4, 0.8, 0.2, 0.6, 0.0)], atol=1e-12)


def test_stage1_rows_are_not_the_start(studies) -> None:
    """Stage-1 rows before the stage-2 rows do not move the start: the values are those of the stage-2 rows."""
    path = studies["base"] / BASE / "training_results.csv"
    table = pd.read_csv(path)
    assert (table[table["run_index"] == 1]["stage"] == 1).sum() == 3
    altered = table.copy()
    stage1 = altered["stage"] == 1
    altered.loc[stage1, "J_II_s"] *= 3.0  # a start these rows would give, were they used
    altered.loc[stage1, "kappa_Jsup_EE_pre"] = 5.0
    other = path.parent.parent / "altered.csv"
    atomic_write_csv(altered, other)
    rows = sc.read_stage2_rows(other)
    assert set(rows["stage"]) == {2}
    values = lineage.run_figure_values(rows[rows["run_index"] == 1])
    assert values["J_II_s"] == pytest.approx(30.0) and values["kappa_Jsup_EE_pre"] == pytest.approx(0.8)
    other.unlink()


def test_published_change_rule() -> None:
    assert lineage.published_change(2.0, 3.0) == pytest.approx(50.0)
    assert lineage.published_change(0.0, 0.7) == pytest.approx(0.7)  # start 0: the change itself
    assert math.isnan(lineage.published_change(math.nan, 1.0))


def test_figures_are_drawn_from_the_runs_table(outputs) -> None:
    for name in ("baseline_rel_changes_figure.png", "baseline_rel_changes_figure_published.png",
                 "baseline_rel_changes_kernel.png", "baseline_rel_changes_sigma.png"):  # fmt: skip
        image = mpimg.imread(outputs / name)
        assert image.shape[1] > 2000, name  # the published figure's 25 inches
    assert mpimg.imread(outputs / "baseline_rel_changes_figure_published.png").shape[0] > 1000  # two rows
    runs = pd.read_csv(outputs / "lineage_runs.csv")
    rows = runs[(runs["study"] == "figure") & (runs["configuration"] == BASE)]
    values = lineage.panel_values(rows, lineage.PANELS[1])
    np.testing.assert_allclose(values[3], [20, 30, 12, 25, 100])  # J^sup I→I, every run with stage-2 rows
    assert lineage.figure_stems([Path("a/Dec04_v0"), Path("b/Dec04_v0"), Path("c/x")]) == ["a_Dec04_v0",
                                                                                          "b_Dec04_v0", "x"]
    title = lineage.figure_title("figure", rows)
    assert title.startswith("figure, conf_baseline, 5 runs") and "excludes 1 of them" in title


def test_sensitivity_pairs_variants_with_the_base_by_original_run(outputs) -> None:
    table = pd.read_csv(outputs / "sensitivity.csv").set_index("overrides")
    assert list(table["configuration"]) == [BASE, BASE]
    shared = table.loc["SSNPars.sup_I_kernel=own"]
    assert shared["pairing"] == "shared pretraining" and shared["base"] == "figure"
    assert shared["paired_runs"] == "0 1 4 5" and shared["n"] == 4  # the base keeps runs 0, 1, 4, 5
    # variant - base per run: 5 - 16, 7 - 24, 11 - 2, 13 - 20 (variant stage-2 runs 0, 1, 3, 4)
    assert shared["median_difference"] == pytest.approx(np.median([-11, -17, 9, -7]))
    np.testing.assert_allclose([shared["variant_sup_minus_mid_median"], shared["base_sup_minus_mid_median"]],
                               [10.0, 18.0])  # fmt: skip
    # unpaired: every run each keeps (the variant's six against the base's four), Mann-Whitney U
    expected = stats.mannwhitneyu([5, 7, 9, 11, 13, 15], [16, 24, 2, 20], alternative="two-sided")
    assert shared["unpaired_p"] == pytest.approx(expected.pvalue)
    assert shared["unpaired_effect_size"] == pytest.approx(2 * expected.statistic / 24 - 1)
    own = table.loc["SSNPars.sigma_oris=90.0"]
    assert own["pairing"] == "own pretraining, same initialisations"
    # its stage-2 runs are original runs 0, 2, 3, 4, 5, 6 (run 1 failed there): original runs 0, 4, 5 pair up
    assert own["paired_runs"] == "0 4 5" and own["n"] == 3
    assert own["median_difference"] == pytest.approx(np.median([1 - 16, 4 - 2, 5 - 20]))
    assert "Base: figure." in (outputs / "lineage.md").read_text()


def test_a_variant_with_other_initialisation_ranges_pairs_only_by_seed(studies) -> None:
    plain, variant = sc.load_studies([studies["base"], studies["b"]])
    assert lineage.pairing(variant, plain) == "own pretraining, same initialisations"
    ranges = 'RandomizePars.J_EE=[4.0,4.8], RandomizePars.J_II=[0.8,1.6]'
    drawn = dataclasses.replace(variant, overrides=f"{ranges}, SSNPars.sigma_oris=90.0")
    assert lineage.pairing(drawn, plain) == "own pretraining, same seeds, other initial draws"
    # the same ranges on both sides draw the same initial parameters from each seed
    same_ranges = dataclasses.replace(plain, overrides=ranges)
    assert lineage.pairing(drawn, same_ranges) == "own pretraining, same initialisations"


def test_base_defaults_to_the_plain_figure_study_and_seeds_must_match(studies, tmp_path) -> None:
    loaded = sc.load_studies([studies["base"], studies["a"]])
    assert lineage.base_studies(loaded) == [loaded[0]]
    assert lineage.base_studies(loaded, [studies["a"]]) == [loaded[1]]
    other_seed = dataclasses.replace(loaded[1], base_seed=1)
    row = lineage.sensitivity_row(other_seed, loaded[0], BASE, {})
    assert row["n"] == 0 and "base seeds differ" in row["note"]
    assert lineage.sensitivity_table(loaded[1:], [], pd.DataFrame()).empty
    empty = lineage.sensitivity_table(loaded[:1], loaded[:1], pd.DataFrame())  # a base, and no variant of it
    assert empty.empty and lineage.sensitivity_markdown(empty, ["figure"]).startswith("No variant of the base")
    assert lineage.sensitivity_markdown(empty).startswith("No base study")


def test_each_preset_pairs_its_variants_with_its_own_plain_study(studies) -> None:
    loaded = sc.load_studies([studies["base"], studies["a"]])
    plain, variant = loaded
    reference = dataclasses.replace(plain, preset="reference", label="reference", folder=Path("reference"))
    ref_variant = dataclasses.replace(variant, preset="reference", label="reference + x", folder=Path("rx"))
    no_baseline = dataclasses.replace(plain, label="figure, ablation only", configurations=("conf_no_horiconn",))
    everything = [plain, variant, reference, ref_variant, no_baseline]
    # a plain study without conf_baseline (a --skip-pretraining ablation) is no base, and no second plain study
    assert lineage.base_studies(everything) == [plain, reference]
    table = lineage.sensitivity_table(everything, [plain, reference], pd.DataFrame())
    assert set(zip(table["base"], table["study"], strict=True)) >= {("figure", variant.label),
                                                                   ("reference", "reference + x")}  # fmt: skip
    assert not (table["study"] == "reference").any() and not (table["study"] == "figure").any()
    assert (table.groupby("study")["base"].nunique() == 1).all()  # a variant pairs with its own preset's base
    text = lineage.sensitivity_markdown(table, ["figure", "reference"])
    assert "Base: figure." in text and "Base: reference." in text
    # two plain studies of one preset: that preset has no default base
    twin = dataclasses.replace(plain, label="figure (2)", folder=Path("twin"))
    assert lineage.base_studies([plain, twin, reference]) == [reference]


def test_an_ablation_study_named_as_a_base_pairs_each_configuration_with_its_own_base(studies, tmp_path) -> None:
    # as the published comparison names studies/figure_no_horiconn beside studies/figure: a variant that ran both
    # conf_baseline and conf_no_horiconn pairs the first with the plain study, the second with the ablation study
    ablation = figure_study(tmp_path / "ablation", {NO_HORICONN: [spec(2, 10 + k) for k in range(6)]},
                            reuse=studies["base"])  # sup - mid 8..13 at original runs 0, 1, 2, 4, 5, 6
    variant = figure_study(tmp_path / "variant", {BASE: VARIANT_B, NO_HORICONN: [spec(1, 4 + 3 * k) for k in range(6)]},
                           {"SSNPars": {"sigma_oris": 90.0}}, failed=(1,))  # sup - mid 3, 6, .., 18 at 0, 2, .., 6
    out = tmp_path / "out"
    sc.compare_studies([studies["base"], ablation, variant], out, bases=[studies["base"], ablation])
    table = pd.read_csv(out / "sensitivity.csv").set_index("configuration")
    assert sorted(table.index) == [BASE, NO_HORICONN]  # the ablation study is a base, not a variant of the other
    assert table.loc[BASE, "base"] != table.loc[NO_HORICONN, "base"]
    assert "ablation" in table.loc[NO_HORICONN, "base"]
    row = table.loc[NO_HORICONN]
    assert row["paired_runs"] == "0 2 4 5 6" and row["n"] == 5
    assert row["median_difference"] == pytest.approx(np.median([3 - 8, 6 - 10, 12 - 11, 15 - 12, 18 - 13]))
    assert (out / "lineage.md").read_text().count("Base: figure") == 2


def test_an_incomplete_figure_study_is_reported_and_nothing_written(studies, tmp_path, caplog) -> None:
    folder = tmp_path / "figure"
    shutil.copytree(studies["base"], folder)
    (folder / BASE / "DONE.json").unlink()
    (folder / BASE / "training_runs" / "run_0" / "DONE.json").unlink()
    out = tmp_path / "out"
    args = sc.parse_args([str(studies["a"]), "--base", str(folder), "--out", str(out)])
    caplog.clear()
    assert run_entry_point(lambda: sc.run(args)) == EXIT_USER_ERROR
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"{folder} is incomplete: stage 2 of conf_baseline: 5 of 6 runs done, not assembled" in line
    assert not out.exists()
