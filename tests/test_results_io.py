"""Tests of the results-file schemas, atomic writing, checked reading and run exclusion (spec §15, §17)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from parameters import build_parameters
from store import layout
from store.errors import ResultsFileError
from store.exclusion import (
    PER_RUN_FILES,
    exclude_and_renumber,
    final_pretraining_thresholds,
    read_excluded_runs,
    runs_to_exclude,
)
from store.files import atomic_write_csv, write_marker
from store.records import pretraining_folder
from store.schema import (
    INIT_READOUT_COLUMNS,
    INITIAL_PARAMETERS_COLUMNS,
    ORIGINAL_RUN_INDEX,
    kappa_columns,
    kappas_from_row,
    orimap_columns,
    pretraining_columns,
    ssn_columns,
    ssn_state_from_row,
    training_columns,
    val_columns,
)
from store.tables import read_results_csv

PAIRS = ["EE", "EI", "IE", "II"]
STEP = [
    "run_index", "stage", "SGD_steps", "acc", "val_acc", "val_loss", "accs_125",
    "loss_binary_cross_entr", "loss_dx_max", "loss_r_max", "loss_r_mean", "loss_w_sig", "loss_b_sig",
    "loss_all", "maxr_E_mid", "maxr_I_mid", "maxr_E_sup", "maxr_I_sup",
    "meanr_E_mid", "meanr_I_mid", "meanr_E_sup", "meanr_I_sup",
    "gradient_unrolled",  # not in the specification: the gradient path of the step (results_io docstring)
]  # fmt: skip
SSN = (
    [f"log_J_{p}_m" for p in PAIRS] + [f"log_J_{p}_s" for p in PAIRS]
    + [f"J_{p}_m" for p in PAIRS] + [f"J_{p}_s" for p in PAIRS]
    + ["cE_m", "cI_m", "cE_s", "cI_s", "log_f_E", "log_f_I", "f_E", "f_I"]
)  # fmt: skip
KAPPA = (
    [f"kappa_Jsup_{p}_pre" for p in PAIRS] + [f"kappa_Jsup_{p}_post" for p in PAIRS]
    + [f"kappa_Jmid_{p}" for p in PAIRS] + ["kappa_f_E", "kappa_f_I"]
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- columns
def test_pretraining_columns_match_spec_order() -> None:
    expected = STEP + SSN + ["psychometric_offset"] + [f"w_sig_{i}" for i in range(81)] + ["b_sig"]
    assert pretraining_columns() == expected
    assert len(set(expected)) == len(expected) == 23 + 24 + 1 + 82


def test_training_columns_match_spec_order() -> None:
    assert training_columns() == STEP + SSN + ["psychometric_offset", "staircase_offset"] + KAPPA


def test_val_columns_append_mean_then_std_per_offset() -> None:
    base = ["run_index", "acc"]
    assert val_columns(base, (1.0, 3, 7.0, 12.0, 20.0)) == base + [
        "acc_mean_offset_1", "acc_std_offset_1", "acc_mean_offset_3", "acc_std_offset_3",
        "acc_mean_offset_7", "acc_std_offset_7", "acc_mean_offset_12", "acc_std_offset_12",
        "acc_mean_offset_20", "acc_std_offset_20",
    ]  # fmt: skip
    assert val_columns(base, (2.5,)) == base + ["acc_mean_offset_2.5", "acc_std_offset_2.5"]


def test_small_file_columns() -> None:
    assert list(INITIAL_PARAMETERS_COLUMNS) == [
        "run_index", "stage", "f_E", "f_I", "cE_m", "cI_m", "cE_s", "cI_s",
        "J_EE_m", "J_EI_m", "J_IE_m", "J_II_m", "J_EE_s", "J_EI_s", "J_IE_s", "J_II_s", "eta", "gE", "gI",
    ]  # fmt: skip
    assert list(INIT_READOUT_COLUMNS) == (
        ["run_index", "log_regr", "layer", "sup_only"] + [f"w_sig_{i}" for i in range(25)]
        + ["b_sig", "psychometric_offset"]
    )  # fmt: skip
    assert orimap_columns() == ["run_index"] + [str(i) for i in range(81)]


# ---------------------------------------------------------------------------------------- atomic writing
def test_atomic_write_round_trips_full_precision(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 50) * 10.0 ** rng.integers(-20, 20, 50),
                             rng.normal(0, 1, 50).astype(np.float32).astype(np.float64)])  # fmt: skip
    df = pd.DataFrame({"run_index": np.arange(100), "x": values})
    path = tmp_path / "out.csv"
    atomic_write_csv(df, path)
    back = read_results_csv(path, required_columns=["run_index", "x"])
    np.testing.assert_array_equal(back["x"].to_numpy(), values)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def _failing_to_csv(self: pd.DataFrame, fh, *args, **kwargs) -> None:
    fh.write("run_index,x\n0,")
    raise RuntimeError("disk full")


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.csv"
    atomic_write_csv(pd.DataFrame({"a": [1, 2]}), path)
    old = path.read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_csv", _failing_to_csv)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_csv(pd.DataFrame({"a": [3, 4, 5]}), path)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_csv(pd.DataFrame({"a": [3]}), tmp_path / "new.csv")
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


# ---------------------------------------------------------------------------------------- checked reading
def test_read_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    with pytest.raises(ResultsFileError, match="not found.*missing.csv"):
        read_results_csv(missing)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ResultsFileError, match="empty.*empty.csv"):
        read_results_csv(empty)
    corrupt = tmp_path / "corrupt.csv"
    corrupt.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(ResultsFileError, match="cannot be parsed.*corrupt.csv"):
        read_results_csv(corrupt)
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"a,b\n\xff\xfe\xfa,\x80\n")
    with pytest.raises(ResultsFileError, match="garbage.csv"):
        read_results_csv(garbage)


def test_read_lists_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text("run_index,acc\n0,0.5\n")
    with pytest.raises(ResultsFileError, match=r"few.csv lacks columns \['stage', 'b_sig'\]"):
        read_results_csv(path, required_columns=["run_index", "stage", "b_sig"])
    assert list(read_results_csv(path, required_columns=["acc"]).columns) == ["run_index", "acc"]


# --------------------------------------------------------------------------------------- parameter rows
def test_kappa_columns_naming_and_exact_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sup = rng.normal(size=(2, 2, 2)).astype(np.float32)
    mid = rng.normal(size=(2, 2)).astype(np.float32)
    f = rng.normal(size=2).astype(np.float32)
    row = kappa_columns(sup, mid, f)
    assert list(row) == KAPPA
    assert row["kappa_Jsup_EI_post"] == sup[1, 0, 1] and row["kappa_Jsup_IE_pre"] == sup[0, 1, 0]
    assert row["kappa_Jmid_EI"] == mid[0, 1] and row["kappa_f_I"] == f[1]
    atomic_write_csv(pd.DataFrame([row]), tmp_path / "k.csv")
    back = kappas_from_row(read_results_csv(tmp_path / "k.csv").iloc[0])
    for original, restored in zip((sup, mid, f), back, strict=True):
        assert restored.dtype == np.float32
        np.testing.assert_array_equal(restored, original)
    sup64 = rng.normal(size=(2, 2, 2))
    np.testing.assert_array_equal(kappas_from_row(kappa_columns(sup64, mid, f), np.float64)[0], sup64)
    with pytest.raises(ValueError, match="shape"):
        kappa_columns(sup[0], mid, f)


def _log_params(rng: np.random.Generator) -> dict:
    keys = [f"log_J_{p}_{layer}" for layer in ("m", "s") for p in PAIRS] + [
        "cE_m",
        "cI_m",
        "log_f_E",
        "log_f_I",
    ]
    return {k: np.asarray(rng.normal(), dtype=np.float32) for k in keys}


def test_ssn_columns_signs_coupling_and_exact_round_trip(tmp_path: Path) -> None:
    params = _log_params(np.random.default_rng(4))
    row = ssn_columns(params)
    assert list(row) == SSN
    assert row["J_EE_m"] == float(np.exp(params["log_J_EE_m"])) > 0
    assert row["J_EI_s"] == -float(np.exp(params["log_J_EI_s"])) < 0
    assert row["J_II_m"] < 0 and row["J_IE_s"] > 0
    assert (row["cE_s"], row["cI_s"]) == (row["cE_m"], row["cI_m"])
    assert row["f_I"] == float(np.exp(params["log_f_I"]))
    atomic_write_csv(pd.DataFrame([row]), tmp_path / "p.csv")
    back = ssn_state_from_row(read_results_csv(tmp_path / "p.csv").iloc[0])
    assert sorted(back) == sorted(params)
    for key, value in params.items():
        assert back[key].dtype == np.float32 and back[key] == value, key


def test_ssn_columns_uncoupled_superficial_baselines() -> None:
    params = _log_params(np.random.default_rng(5)) | {"cE_s": np.float32(7.5), "cI_s": np.float32(8.5)}
    row = ssn_columns(params, coupled=False)
    assert (row["cE_s"], row["cI_s"]) == (7.5, 8.5)
    back = ssn_state_from_row(row, coupled=False)
    assert back["cE_s"] == np.float32(7.5) and back["cI_s"] == np.float32(8.5)
    with pytest.raises(KeyError, match="cE_s"):
        ssn_columns(_log_params(np.random.default_rng(5)), coupled=False)


# ------------------------------------------------------------------------------------------ run exclusion
def test_final_thresholds_prefer_stage1_rows_and_last_non_nan() -> None:
    nan = math.nan
    df = pd.DataFrame({
        "run_index": [0, 0, 0, 0, 1, 1, 1, 2, 2],
        "stage": [0, 0, 1, 1, 0, 1, 1, 0, 0],
        "psychometric_offset": [10.0, nan, 12.0, nan, 10.0, nan, nan, 7.0, 9.0],
    })  # fmt: skip
    thresholds = final_pretraining_thresholds(df)
    assert thresholds.index.tolist() == [0, 1, 2]
    assert thresholds[0] == 12.0 and math.isnan(thresholds[1]) and thresholds[2] == 9.0


def test_runs_to_exclude_keeps_boundaries() -> None:
    thresholds = pd.Series([5.0, 25.0, 4.999, 25.001, math.nan, 12.0], index=[0, 1, 2, 3, 5, 7])
    assert runs_to_exclude(thresholds) == [2, 3, 5]
    assert runs_to_exclude(thresholds, low=10.0, high=30.0) == [0, 2, 5]


# Final thresholds per run: run 3 is missing altogether, run 8 has no pretraining rows.
STAGE1_THRESHOLDS = {0: [10.0], 1: [math.nan], 4: [25.0], 5: [25.0001], 6: [4.99], 7: [30.0, 12.0, math.nan]}
STAGE0_THRESHOLDS = {0: [40.0], 1: [10.0], 2: [30.0, 5.0, math.nan], 4: [8.0], 5: [8.0], 6: [8.0], 7: [8.0]}
EXCLUDED = [1, 3, 5, 6, 8]
SURVIVORS = [0, 2, 4, 7]


def _pretraining_rows() -> pd.DataFrame:
    rows = []
    for stage, table in ((0, STAGE0_THRESHOLDS), (1, STAGE1_THRESHOLDS)):
        for run, values in table.items():
            rows += [{"run_index": run, "stage": stage, "SGD_steps": s, "psychometric_offset": v}
                     for s, v in enumerate(values)]  # fmt: skip
    return pd.DataFrame(rows).sort_values(["run_index", "stage"], kind="stable")


def _write_results_folder(folder: Path) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(6)
    runs = [0, 1, 2, 4, 5, 6, 7, 8]
    pre = _pretraining_rows()
    val = pre[pre["psychometric_offset"].notna()].assign(acc_mean_offset_1=0.6)
    orimap = pd.DataFrame(rng.uniform(0, 180, (len(runs), 81)), columns=[str(i) for i in range(81)])
    orimap.insert(0, "run_index", np.array(runs, dtype=float))
    initial = pd.DataFrame([{"run_index": r, "stage": s, "eta": rng.uniform()} for s in (0, 1) for r in runs])
    readout = pd.DataFrame(
        [{"run_index": r, "log_regr": k, "b_sig": rng.normal()} for r in runs for k in range(4)]
    )
    tables = {layout.PRETRAINING_RESULTS: pre, layout.PRETRAINING_RESULTS_VAL: val, layout.ORIMAP: orimap,
              layout.INITIAL_PARAMETERS: initial, layout.INIT_READOUT_PARAMS: readout}  # fmt: skip
    for name, df in tables.items():
        atomic_write_csv(df, folder / name)
    return tables


def test_exclusion_filters_and_renumbers_every_file(tmp_path: Path) -> None:
    tables = _write_results_folder(tmp_path)
    originals = {name: (tmp_path / name).read_bytes() for name in tables}
    assert exclude_and_renumber(tmp_path) == len(SURVIVORS)
    assert (tmp_path / layout.EXCLUDED_RUNS).read_text() == "".join(f"{i}\n" for i in EXCLUDED)
    assert read_excluded_runs(tmp_path / layout.EXCLUDED_RUNS) == EXCLUDED
    new_index = {old: old - sum(e < old for e in EXCLUDED) for old in SURVIVORS}
    assert list(new_index.values()) == [0, 1, 2, 3]
    for name, original in tables.items():
        assert (tmp_path / name.replace(".csv", "_complete.csv")).read_bytes() == originals[name]
        filtered = read_results_csv(tmp_path / name)
        assert list(filtered.columns) == list(original.columns) + [ORIGINAL_RUN_INDEX], name
        assert set(filtered[ORIGINAL_RUN_INDEX]) <= set(SURVIVORS), name
        assert (filtered["run_index"] == filtered[ORIGINAL_RUN_INDEX].map(new_index)).all(), name
        kept = original[original["run_index"].isin(SURVIVORS)].reset_index(drop=True)
        data = [c for c in original.columns if c != "run_index"]
        pd.testing.assert_frame_equal(filtered[data], kept[data], check_dtype=False)
    orimap = read_results_csv(tmp_path / layout.ORIMAP)
    assert orimap["run_index"].tolist() == [0, 1, 2, 3]
    initial = read_results_csv(tmp_path / layout.INITIAL_PARAMETERS)
    assert initial.groupby("stage")["run_index"].apply(list).tolist() == [[0, 1, 2, 3]] * 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_exclusion_without_excluded_runs_writes_empty_list(tmp_path: Path) -> None:
    pre = pd.DataFrame({"run_index": [0, 1], "stage": [1, 1], "psychometric_offset": [5.0, 25.0]})
    for name in PER_RUN_FILES:
        atomic_write_csv(pre if name == layout.PRETRAINING_RESULTS else pre[["run_index"]], tmp_path / name)
    assert exclude_and_renumber(tmp_path) == 2
    assert (tmp_path / layout.EXCLUDED_RUNS).read_bytes() == b""
    assert read_excluded_runs(tmp_path / layout.EXCLUDED_RUNS) == []
    assert read_results_csv(tmp_path / layout.ORIMAP)["run_index"].tolist() == [0, 1]


def test_final_keeps_a_run_at_3_degrees_and_excludes_missing_or_180() -> None:
    thresholds = pd.Series([3.0, 12.0, 180.0, math.nan, 25.0, 25.5, 0.0])
    final = build_parameters(preset="final").pretraining.run_threshold_range
    reference = build_parameters(preset="reference").pretraining.run_threshold_range
    assert final == (0.0, 25.0)
    assert runs_to_exclude(thresholds, *final) == [2, 3, 5]  # 180 (never measurable), NaN, above 25
    assert runs_to_exclude(thresholds, *reference) == [0, 2, 3, 5, 6]  # and below 5


def test_final_range_in_the_exclusion_of_a_folder(tmp_path: Path) -> None:
    _write_results_folder(tmp_path)  # run 6 ends at 4.99 degrees
    assert exclude_and_renumber(tmp_path, *build_parameters(preset="final").pretraining.run_threshold_range) == 5
    assert read_excluded_runs(tmp_path / layout.EXCLUDED_RUNS) == [1, 3, 5, 8]
    assert read_results_csv(tmp_path / layout.ORIMAP)[ORIGINAL_RUN_INDEX].tolist() == [0, 2, 4, 6, 7]


def test_exclusion_off_keeps_every_run_with_pretraining_rows(tmp_path: Path) -> None:
    _write_results_folder(tmp_path)
    assert exclude_and_renumber(tmp_path, by_threshold=False) == 7  # NaN, 4.99 and 25.0001 degrees kept
    # 3: no rows at all; 8: no pretraining rows (failed runs)
    assert read_excluded_runs(tmp_path / layout.EXCLUDED_RUNS) == [3, 8]
    for name in PER_RUN_FILES:
        filtered = read_results_csv(tmp_path / name)
        assert sorted(set(filtered[ORIGINAL_RUN_INDEX])) <= [0, 1, 2, 4, 5, 6, 7], name
    orimap = read_results_csv(tmp_path / layout.ORIMAP)
    assert orimap[ORIGINAL_RUN_INDEX].tolist() == [0, 1, 2, 4, 5, 6, 7]  # in order
    assert orimap["run_index"].tolist() == list(range(7))


def test_exclusion_refuses_a_second_application(tmp_path: Path) -> None:
    _write_results_folder(tmp_path)
    exclude_and_renumber(tmp_path)
    complete = (tmp_path / "orimap_complete.csv").read_bytes()
    with pytest.raises(ResultsFileError, match="already applied"):
        exclude_and_renumber(tmp_path)
    assert (tmp_path / "orimap_complete.csv").read_bytes() == complete


def test_exclusion_with_a_missing_file_writes_nothing(tmp_path: Path) -> None:
    _write_results_folder(tmp_path)
    (tmp_path / layout.INIT_READOUT_PARAMS).unlink()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ResultsFileError, match="init_readout_params.csv"):
        exclude_and_renumber(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_exclusion_rejects_non_integer_run_index(tmp_path: Path) -> None:
    _write_results_folder(tmp_path)
    atomic_write_csv(pd.DataFrame({"run_index": [0.5], "0": [1.0]}), tmp_path / layout.ORIMAP)
    with pytest.raises(ResultsFileError, match="orimap.csv: run_index"):
        exclude_and_renumber(tmp_path)


def test_pretraining_folder_is_the_studys_own_or_the_one_its_marker_names(tmp_path: Path) -> None:
    """A --skip-pretraining study holds no pretraining files; its PRETRAINING_DONE.json names their folder."""
    source, study = tmp_path / "source", tmp_path / "study"
    study.mkdir()
    assert pretraining_folder(study) == study  # nothing recorded: the folder itself (errors name its files)
    write_marker(study / layout.PRETRAINING_DONE, {"pretraining_folder": str(source), "retained_runs": 2})
    assert pretraining_folder(study) == source
    (study / layout.PRETRAINING_RESULTS).write_text("run_index,stage\n0,0\n")
    assert pretraining_folder(study) == study  # a copy of its own wins
    (study / layout.PRETRAINING_RESULTS).unlink()
    (study / layout.PRETRAINING_DONE).write_text("{not json")
    with pytest.raises(ResultsFileError, match="corrupt completion marker"):
        pretraining_folder(study)
