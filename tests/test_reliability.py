"""Fault tolerance: atomic outputs of every kind, permissions, recovery of interrupted appends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import main
from analysis import report
from analysis.cells import CellLayout
from analysis.changes import write_exclusion_files
from analysis.tuning_curve_files import read_complete_tuning_curves, tuning_curve_frame, write_tuning_curves_csv
from parameters import ParameterError, Parameters, build_parameters
from store import layout, logs
from store.errors import ResultsFileError
from store.files import (
    TMP_SUFFIX,
    atomic_savefig,
    atomic_write_csv,
    is_complete_output,
    read_marker,
    remove_stale_temporaries,
)
from store.schema import pretraining_columns, training_columns
from store.tables import read_results_csv
from study import records

LAYOUT = CellLayout.from_parameters(Parameters())
"""The cell layout of the default parameters (9x9 grid, 4 phases: 810 cells)."""


def _figure() -> Figure:
    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob(f"*{TMP_SUFFIX}"))


# ------------------------------------------------------------------------------------------- item 1
def test_savefig_interrupted_leaves_no_png(tmp_path: Path) -> None:
    fig = _figure()

    def cut(fh, **_kwargs) -> None:  # a kill half way through the encoder
        fh.write(b"\x89PNG\r\n")
        raise KeyboardInterrupt

    fig.savefig = cut
    with pytest.raises(KeyboardInterrupt):
        atomic_savefig(fig, tmp_path / "tc_fig.png")
    assert not (tmp_path / "tc_fig.png").exists()
    assert _temporaries(tmp_path) == []


def test_savefig_writes_complete_png(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    atomic_savefig(_figure(), path, dpi=50)
    assert path.read_bytes().startswith(b"\x89PNG") and is_complete_output(path)


def test_cut_or_empty_outputs_count_as_missing(tmp_path: Path) -> None:
    png = tmp_path / "f.png"
    atomic_savefig(_figure(), png, dpi=50)
    data = png.read_bytes()
    cut, empty = tmp_path / "cut.png", tmp_path / "empty.png"
    cut.write_bytes(data[: len(data) // 2])
    empty.write_bytes(b"")
    assert is_complete_output(png)
    assert not is_complete_output(cut)
    assert not is_complete_output(empty)
    assert not is_complete_output(tmp_path / "absent.png")


def test_summary_pdf_is_all_or_nothing(tmp_path: Path) -> None:
    good, broken = tmp_path / "a.png", tmp_path / "b.png"
    atomic_savefig(_figure(), good, dpi=40)
    pdf = tmp_path / "summary.pdf"
    report.write_summary_pdf([(good, "a")], pdf)
    before = pdf.read_bytes()
    assert is_complete_output(pdf)
    broken.write_bytes(b"not a png")  # a page that cannot be built
    with pytest.raises(Exception):  # noqa: B017 - whatever the image reader raises
        report.write_summary_pdf([(good, "a"), (broken, "b")], pdf)
    assert pdf.read_bytes() == before
    assert _temporaries(tmp_path) == []


def test_report_html_and_exclusion_details_are_atomic(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    write_exclusion_files(tmp_path, {"conf": [1]})
    report.write_report_html(tmp_path, report.read_study_settings(tmp_path, ["conf"], 2), [])
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert pd.read_csv(tmp_path / "excluded_runs_details.csv")["n_excluded"].tolist() == [1]
    assert _temporaries(tmp_path) == []


# ------------------------------------------------------------------------------------------- item 6
def test_recovered_tuning_curve_file_is_byte_identical(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n_oris = 3
    blocks = [tuning_curve_frame(run, 0, rng.random((n_oris, LAYOUT.n_cells)) * 7, LAYOUT) for run in range(3)]
    clean, broken = tmp_path / "clean.csv", tmp_path / "broken.csv"
    for block in blocks[:2]:
        write_tuning_curves_csv(block, clean, append=True)
        write_tuning_curves_csv(block, broken, append=True)
    # an append killed after one full row and part of the next
    write_tuning_curves_csv(blocks[2].iloc[:1], broken, append=True)
    partial = blocks[2].iloc[1:2].to_csv(header=False, index=False, float_format="%.4f")
    with broken.open("a") as fh:
        fh.write(partial[: len(partial) // 2])
    recovered = read_complete_tuning_curves(broken, n_oris)
    assert len(recovered) == 2 * n_oris
    assert broken.read_bytes() == clean.read_bytes()


# ------------------------------------------------------------------------------------------- item 7
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_files_respect_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_csv(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")
        atomic_savefig(_figure(), tmp_path / "x.png", dpi=30)
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert (plain.stat().st_mode & 0o777) == expected
    for name in ("x.csv", "x.png"):
        assert ((tmp_path / name).stat().st_mode & 0o777) == expected, name


# ------------------------------------------------------------------------------------------- item 8
def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    stale = tmp_path / "conf" / f".training_results.csv.abc123{TMP_SUFFIX}"
    stale.write_text("half")
    kept = tmp_path / "conf" / "training_results.csv"
    kept.write_text("a\n1\n")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and kept.exists()


# ------------------------------------------------------------------------------------------- item 3
BAD_TYPES = [
    ({"TrainingPars": {"SGD_steps": 2.5}}, "TrainingPars.SGD_steps: must be an integer, got 2.5"),
    ({"TrainingPars": {"SGD_steps": "ten"}}, "TrainingPars.SGD_steps: must be an integer, got 'ten'"),
    ({"GridPars": {"gridsize_Nx": 9.0}}, "GridPars.gridsize_Nx: must be an integer, got 9.0"),
    ({"SSNPars": {"tauE": [20.0, 30.0]}}, "SSNPars.tauE: must be a number, got (20.0, 30.0)"),
    ({"PretrainingPars": {"is_on": "no"}}, "PretrainingPars.is_on: must be a bool (True or False), got 'no'"),
    ({"PretrainingPars": {"is_on": 1}}, "PretrainingPars.is_on: must be a bool"),
    ({"SSNPars": {"tauE": True}}, "SSNPars.tauE: must be a number, got True"),
    ({"SSNPars": {"p_local_s": [0.4]}}, "SSNPars.p_local_s: must have 2 entries"),
    ({"SSNPars": {"s_2x2_s": [[0.2, 0.1], [0.3, "x"]]}}, "SSNPars.s_2x2_s: must be of type"),
    ({"ReadoutPars": {"readout_grid_size": [5.0, 1]}}, "ReadoutPars.readout_grid_size: must be of type"),
    ({"TrainedSSNPars": {"trained": "cE_m"}}, "TrainedSSNPars.trained: must be a sequence"),
    ({"ConvPars": {"gradient_mode": 3}}, "ConvPars.gradient_mode: must be a string"),
    ({"ConvPars": {"gradient_mode": "exact"}},
     "ConvPars.gradient_mode: must be one of ('auto', 'implicit', 'unrolled')"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_TYPES, ids=[str(o) for o, _ in BAD_TYPES])
def test_values_of_the_wrong_type_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ParameterError) as info:
        build_parameters(overrides)
    assert message in str(info.value)


def test_ints_are_accepted_for_floats_and_the_defaults_pass() -> None:
    params = build_parameters({"SSNPars": {"tauE": 20, "p_local_s": [0, 1]}, "ConvPars": {"Tmax": 300}})
    assert params.ssn.tauE == 20 and params.ssn.p_local_s == (0, 1)
    assert Parameters() == build_parameters({})


@pytest.mark.parametrize(
    "argv",
    [
        ["--seed", "-5"],
        ["--seed", "1" * 20],
        ["--seed", str(2**32)],
        ["--overrides-json", '{"TrainingPars": {"SGD_steps": 2.5}}'],
        ["--overrides-json", '{"PretrainingPars": {"is_on": "no"}}'],
    ],
)
def test_bad_seed_or_type_stops_before_a_folder_exists(tmp_path: Path, capsys, argv: list[str]) -> None:
    root = tmp_path / "results"
    assert main.main([*argv, "--results-root", str(root)]) == main.EXIT_USAGE
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "ERROR" in errors[0]
    assert ("0..4294967295" in errors[0]) if argv[0] == "--seed" else ("TrainingPars" in errors[0] or
                                                                      "PretrainingPars" in errors[0])
    assert not root.exists()


# ------------------------------------------------------------------------------------------- item 4
REPO = Path(__file__).resolve().parents[1]


def _command(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "SSN_JAX_CACHE": "off"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env,
                          check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "analysis.main_analysis", "{tmp}/nope"], "results folder not found"),
        (["-m", "training.main_training", "{tmp}/nope/conf_baseline"], "not found"),
        (["-m", "training.main_pretraining", "{tmp}/nope", "--num-runs", "1"], "parameters file not found"),
    ],
    ids=["analysis", "training", "pretraining"],
)
def test_stage_commands_report_a_missing_folder_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = _command([a.format(tmp=tmp_path) for a in args])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "ERROR" in lines[0] and message in lines[0]


def test_results_root_under_a_file_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(records, "jax_environment", lambda timeout=0: {"backend": "cpu"})  # the query is slow
    assert main.main(["--results-root", str(blocker / "sub"), "--runs", "1"]) == main.EXIT_USAGE
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "cannot create a results folder" in errors[0]


def test_syntax_error_in_parameters_py_is_one_line(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for folder in records.SCRIPT_FOLDERS:
        (copy / folder).mkdir(parents=True, exist_ok=True)
        for source in (REPO / folder).glob("*.py"):
            shutil.copy2(source, copy / folder / source.name)
    with (copy / "parameters.py").open("a") as fh:
        fh.write("\nbroken = (\n")
    done = _command(["main.py", "--runs", "1", "--results-root", str(tmp_path / "results")], cwd=copy)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2
    assert len(lines) == 1 and "SyntaxError" in lines[0] and "parameters.py" in lines[0]
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------------------------------- item 5
PARENT = """
import subprocess, sys, time
sys.path.insert(0, {repo!r})
import os
from study import jobs
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         preexec_fn=jobs.die_with_parent(os.getpid()))
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_job_dies_with_its_killed_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(repo=str(REPO))], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        parent.kill()


# ------------------------------------------------------------------------------------------- item 8
def _new_folder(tmp_path: Path) -> tuple[Path, list[str]]:
    argv = ["--quick", "--results-root", str(tmp_path)]
    plan = main.plan_from_args(main.build_parser().parse_args(argv))
    original = records.jax_environment
    records.jax_environment = lambda timeout=0: {"backend": "cpu", "devices": ["cpu:0"]}
    try:
        folder = main.create_study_folder(plan, argv)
    finally:
        records.jax_environment = original
        logs.close_logging()
    return folder, argv


def test_a_folder_cut_short_after_environment_json_is_completed_on_resume(tmp_path: Path) -> None:
    folder, argv = _new_folder(tmp_path)
    reference = {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()} - {Path("log.txt")}
    for name in ("parameters.py", "note.txt"):
        (folder / name).unlink()
    shutil.rmtree(folder / layout.SCRIPTS)
    plan = main.plan_from_args(main.build_parser().parse_args(["--resume", str(folder)]))  # not refused
    main.complete_study_folder(folder, plan, argv)
    assert {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()} - {Path("log.txt")} == reference


def test_a_refused_concurrent_resume_leaves_the_log_alone(tmp_path: Path, capsys) -> None:
    folder, _ = _new_folder(tmp_path)
    log = (folder / layout.LOG).read_bytes()
    with records.folder_lock(folder):
        assert main.main(["--resume", str(folder)]) == main.EXIT_USAGE
    assert "another main.py is working on" in capsys.readouterr().err
    assert (folder / layout.LOG).read_bytes() == log


# ------------------------------------------------------------------------------------------- item 2
def _results_file(tmp_path: Path) -> Path:
    path = tmp_path / "training_results.csv"
    atomic_write_csv(pd.DataFrame({"run_index": [0, 0, 1, 1], "J_EE_s": [1.5, 1.25, 1.0, 0.75]}), path)
    return path


def test_a_truncated_last_row_is_refused(tmp_path: Path) -> None:
    path = _results_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3])
    with pytest.raises(ResultsFileError, match="training_results.csv is truncated"):
        read_results_csv(path, ["run_index", "J_EE_s"])


def test_a_missing_column_or_a_non_number_is_refused(tmp_path: Path) -> None:
    path = _results_file(tmp_path)
    with pytest.raises(ResultsFileError, match=r"lacks columns \['J_EE_m'\]"):
        read_results_csv(path, ["run_index", "J_EE_m"])
    path.write_text(path.read_text().replace("1.25", "1.2x5"))
    with pytest.raises(ResultsFileError, match="column J_EE_s holds a non-number '1.2x5' in data row 2"):
        read_results_csv(path, ["run_index", "J_EE_s"])


def test_a_piece_with_fewer_rows_than_its_marker_promised_is_refused(tmp_path: Path) -> None:
    path = _results_file(tmp_path)
    assert len(read_results_csv(path, expected_rows=4)) == 4
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]))  # cut at a line end: only the row count shows it
    with pytest.raises(ResultsFileError, match="has 2 rows, its writer recorded 4"):
        read_results_csv(path, expected_rows=4)


def test_the_analysis_refuses_a_cut_results_file_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "study"
    (root / "conf_baseline").mkdir(parents=True)
    pre = pd.DataFrame([dict.fromkeys(pretraining_columns(), 0.0)] * 2)
    atomic_write_csv(pre, root / layout.PRETRAINING_RESULTS)
    train = pd.DataFrame([dict.fromkeys(training_columns(), 0.0)] * 2)
    atomic_write_csv(train, root / "conf_baseline" / "training_results.csv")
    data = (root / "conf_baseline" / "training_results.csv").read_bytes()
    (root / "conf_baseline" / "training_results.csv").write_bytes(data[: len(data) // 2 + 7])
    done = _command(["-m", "analysis.main_analysis", str(root), "--configs", "conf_baseline", "--parts", "exclusion"])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "training_results.csv is truncated" in lines[0]


# ----------------------------------------------------------------------------------- item 5, a real study
def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_killing_only_main_ends_its_job_and_resume_runs_one_copy(tmp_path: Path) -> None:
    from test_main import TINY  # the tiny preset of the end-to-end tests

    root = tmp_path / "results"
    argv = [sys.executable, "main.py", "--runs", "1", "--configs", "conf_baseline", "--results-root", str(root),
            "--overrides-json", json.dumps(TINY)]  # fmt: skip
    env = {**os.environ, "SSN_JAX_CACHE": "off"}
    study = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, jobs = time.monotonic() + 240, []
        while not jobs and time.monotonic() < deadline and study.poll() is None:
            jobs = [c for c in _children(study.pid) if "main_pretraining" in Path(f"/proc/{c}/cmdline").read_text()]
            time.sleep(0.1)
        assert jobs, "the study started no pretraining job"
        study.send_signal(signal.SIGKILL)
        study.wait()
        deadline = time.monotonic() + 10
        while any(_alive(j) for j in jobs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(j) for j in jobs), "the job outlived its main process"
    finally:
        study.kill()
    (folder,) = root.iterdir()
    done = subprocess.run([sys.executable, "main.py", "--resume", str(folder), "--no-analysis"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_marker(folder / "pretraining_runs" / "run_0" / "DONE.json")["success"]
    assert all(read_marker(m)["success"] for m in folder.rglob("run_*/DONE.json"))  # every job
    assert not list(folder.rglob(f"*{TMP_SUFFIX}"))
