"""main.py running jobs and whole studies: parallel and interrupted jobs, end-to-end studies, resume after a kill.

The end-to-end tests (marked slow) run real training with TINY, a preset much smaller than --quick, passed with
--overrides-json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import main
from store import logs
from store.files import write_marker
from store.records import read_environment_record
from study.quick import END_TO_END_OVERRIDES

REPO = Path(__file__).resolve().parents[1]
TINY = END_TO_END_OVERRIDES


# --------------------------------------------------------------------------------------------- running jobs
def fake_job(folder: Path, name: str, code: str) -> main.Job:
    """A job that runs ``code`` and then writes its marker."""
    marker = folder / name / "DONE.json"
    script = f"import pathlib, sys, time\n{code}\np = pathlib.Path(sys.argv[1]); p.parent.mkdir(parents=True, " \
             f"exist_ok=True); p.write_text('{{\"success\": true}}')"  # fmt: skip
    return main.Job(name, (sys.executable, "-c", script, str(marker)), folder / "logs" / f"{name}.log", marker)


@pytest.mark.parametrize(
    "execution", [main.Execution(jobs=1), main.Execution(jobs=3), main.Execution(jobs=2, executor="slurm",
                                                                                   submitit_cluster="local")],
    ids=["local-1", "local-3", "submitit-local"],
)  # fmt: skip
def test_run_jobs_completes_skips_and_reports(tmp_path, execution):
    jobs = [fake_job(tmp_path, f"job{i}", f"print('hello from {i}')") for i in range(3)]
    jobs.append(fake_job(tmp_path, "broken", "print('about to fail'); sys.exit(3)"))
    done_before = fake_job(tmp_path, "done", "sys.exit(1)")  # would fail, but is already complete
    write_marker(done_before.marker, {"success": True})
    try:
        logs.setup_logging(tmp_path / "log.txt")
        failed = main.run_jobs([*jobs, done_before], execution, tmp_path, "test")
    finally:
        logs.close_logging()
    assert [job.name for job in failed] == ["broken"]
    assert all(job.marker.exists() for job in jobs[:3]) and not jobs[3].marker.exists()
    log = (tmp_path / "log.txt").read_text()
    assert all(f"[job{i}] hello from {i}" in log for i in range(3))
    assert "broken did not complete (exit status 3)" in log and "[broken] about to fail" in log
    assert "1 of 5 jobs already complete" in log and "started done" not in log
    assert "hello from 0" in jobs[0].log_path.read_text()


def test_run_jobs_in_parallel_overlap(tmp_path):
    code = "open(sys.argv[1] + '.start', 'w').write(str(time.time())); time.sleep(1.5)"
    jobs = [fake_job(tmp_path, f"job{i}", code) for i in range(2)]
    for job in jobs:
        job.marker.parent.mkdir(parents=True)
    start = time.time()
    assert main.run_jobs(jobs, main.Execution(jobs=2), tmp_path, "test") == []
    assert time.time() - start < 2.9  # both ran at once
    starts = [float(Path(f"{job.marker}.start").read_text()) for job in jobs]
    assert abs(starts[0] - starts[1]) < 1.0


def test_interrupt_stops_the_jobs_in_flight(tmp_path):
    pid_file = tmp_path / "pid"
    job = fake_job(tmp_path, "slow", f"open({str(pid_file)!r}, 'w').write(str(__import__('os').getpid())); "
                                     "time.sleep(60)")  # fmt: skip
    # a shell that starts pytest in the background ignores SIGINT; restore Python's Ctrl-C handling here
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            main.run_jobs([job], main.Execution(), tmp_path, "test")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not job.marker.exists()


# -------------------------------------------------------------------------------------------- end to end
CSV_FILES = (
    "pretraining_results.csv", "pretraining_results_val.csv", "orimap.csv", "initial_parameters.csv",
    "init_readout_params.csv", "excluded_runs_from_pretraining.csv", "pretraining_results_complete.csv",
    "orimap_complete.csv", "initial_parameters_complete.csv",
)  # fmt: skip
CONFIGS = ("conf_baseline", "conf_midonly_readout")


def study_argv(root: Path, *extra: str, configs: tuple[str, ...] = CONFIGS) -> list[str]:
    return [sys.executable, "main.py", "--runs", "2", "--seed", "3", "--configs", *configs, "--overrides-json",
            json.dumps(TINY), "--results-root", str(root), "--no-analysis", *extra]  # fmt: skip


def only_folder(root: Path) -> Path:
    (folder,) = list(root.iterdir())
    return folder


def final_csvs(folder: Path, configs: tuple[str, ...] = CONFIGS) -> dict[str, bytes]:
    files = [*CSV_FILES, *(f"{c}/{n}" for c in configs for n in ("training_results.csv", "training_results_val.csv"))]
    return {name: (folder / name).read_bytes() for name in files}


def run_study(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 600, predicate=None) -> None:
    end = time.time() + timeout
    while not (predicate() if predicate else path.exists()):
        assert process.poll() is None, f"study ended early: {process.communicate()}"
        assert time.time() < end, f"timed out waiting for {path}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted study with --jobs 1 (2 runs, 2 configurations, the TINY preset)."""
    root = tmp_path_factory.mktemp("reference")
    done = run_study(study_argv(root))
    assert done.returncode == 0, done.stderr[-3000:]
    return only_folder(root)


@pytest.mark.slow
def test_uninterrupted_study_writes_the_documented_folder(reference):
    for name in ("note.txt", "environment.json", "log.txt", "parameters.py", "scripts/main.py",
                 "scripts/training/main_training.py", *CSV_FILES):  # fmt: skip
        assert (reference / name).is_file(), name
    for conf in CONFIGS:
        assert (reference / conf / f"parameters_{conf}.py").is_file()
        assert (reference / conf / "training_results.csv").stat().st_size > 0
    log = (reference / "log.txt").read_text()
    assert "[pretraining run 1]" in log and "[conf_midonly_readout run 1]" in log and "study complete" in log
    assert read_environment_record(reference)["base_seed"] == 3


@pytest.mark.slow
def test_parallel_jobs_give_the_same_csvs(reference, tmp_path):
    done = run_study(study_argv(tmp_path, "--jobs", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert final_csvs(only_folder(tmp_path)) == final_csvs(reference)


@pytest.mark.slow
def test_submitit_path_gives_the_same_csvs(reference, tmp_path):
    argv = study_argv(tmp_path, "--executor", "slurm", "--submitit-cluster", "local", "--jobs", "2",
                      configs=("conf_baseline",))  # fmt: skip
    done = run_study(argv)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = only_folder(tmp_path)
    assert final_csvs(folder, ("conf_baseline",)) == final_csvs(reference, ("conf_baseline",))
    assert (folder / "submitit").is_dir()


def start_study(argv: list[str], stderr_path: Path) -> subprocess.Popen:
    """A study in its own process group (so that a signal reaches it and its jobs, as from a terminal)."""
    with open(stderr_path, "w") as err:
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                preexec_fn=restore_sigint)  # fmt: skip


def restore_sigint() -> None:
    """Default SIGINT disposition in the child, as under a terminal (a background shell would ignore it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_group(process: subprocess.Popen, sig: int, timeout: float = 60) -> int:
    """Send ``sig`` to the study's process group and wait for the study to end (SIGKILL if it does not)."""
    try:
        os.killpg(process.pid, sig)
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_interrupt_kill_and_resume_give_the_same_csvs(reference, tmp_path):
    root, err_path = tmp_path / "results", tmp_path / "stderr.txt"
    root.mkdir()
    # Ctrl-C (SIGINT to the whole process group) once the first pretraining run is complete
    process = start_study(study_argv(root), err_path)
    try:
        wait_for(root, process, predicate=lambda: any(root.iterdir()))
        folder = only_folder(root)
        first = folder / "pretraining_runs" / "run_0" / "DONE.json"
        wait_for(first, process)
    finally:
        status = stop_group(process, signal.SIGINT)
    err = err_path.read_text()
    assert status == main.EXIT_INTERRUPTED, err[-3000:]
    assert f"--resume {folder}" in err
    first_mtime = first.stat().st_mtime_ns

    # resume, then kill everything (SIGKILL) during stage 2
    process = start_study([sys.executable, "main.py", "--resume", str(folder)], err_path)
    try:
        wait_for(folder / "logs" / "conf_baseline_run_0.log", process)
    finally:
        stop_group(process, signal.SIGKILL)
    assert (folder / "PRETRAINING_DONE.json").exists() and not (folder / "conf_baseline" / "DONE.json").exists()

    # resume again with two jobs at once: only incomplete jobs run, and the final CSVs equal the reference
    done = run_study([sys.executable, "main.py", "--resume", str(folder), "--jobs", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert first.stat().st_mtime_ns == first_mtime  # the completed pretraining job was not redone
    assert final_csvs(folder) == final_csvs(reference)
    log = (folder / "log.txt").read_text()
    assert log.count("resuming") == 2 and "already complete" in log
    assert len(read_environment_record(folder)["resumes"]) == 2


@pytest.mark.slow
def test_skip_pretraining_reuses_a_finished_pretraining(reference, tmp_path):
    argv = [sys.executable, "main.py", "--skip-pretraining", str(reference), "--configs", "conf_baseline",
            "--overrides-json", json.dumps(TINY), "--results-root", str(tmp_path), "--no-analysis"]  # fmt: skip
    done = run_study(argv)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = only_folder(tmp_path)
    assert not (folder / "pretraining_runs").exists() and not (folder / "pretraining_results.csv").exists()
    record = read_environment_record(folder)
    assert record["study"]["skip_pretraining"] == str(reference) and record["base_seed"] == 3  # the folder's seed
    for name in ("training_results.csv", "training_results_val.csv"):
        assert (folder / "conf_baseline" / name).read_bytes() == (reference / "conf_baseline" / name).read_bytes()


def test_progress_lines_of_running_jobs_reach_the_console(tmp_path, capsys):
    code = "print('12:00 INFO x: progress: run 0 stage 2: step 3 of at most 9', flush=True); time.sleep(1.0)"
    job = fake_job(tmp_path, "train", code)
    try:
        logs.setup_logging(tmp_path / "log.txt")
        assert main.run_jobs([job], main.Execution(jobs=1), tmp_path, "test") == []
    finally:
        logs.close_logging()
    assert "[train] run 0 stage 2: step 3 of at most 9" in capsys.readouterr().err


@pytest.mark.parametrize("entry", [["main.py"], ["-m", "training.main_pretraining"], ["-m", "training.main_training"],
                                   ["-m", "analysis.main_analysis"]], ids=lambda e: e[-1])  # fmt: skip
def test_help_needs_no_heavy_modules(entry):
    code = ("import runpy, sys; sys.argv = [sys.argv[0], '--help']\ntry:\n"
            f"    runpy.run_{'path' if entry[0] == 'main.py' else 'module'}({entry[-1]!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('jax', 'pandas', 'matplotlib', 'numpy') if m in sys.modules))")  # fmt: skip
    shown = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "--seed" in shown.stdout and shown.stdout.strip().endswith("[]")


def test_stage_commands_take_seed_and_the_former_base_seed():
    from training.cli import parse_pretraining_args, parse_training_args

    assert parse_training_args(["conf", "--seed", "4"]).base_seed == 4
    assert parse_training_args(["conf", "--base-seed", "5"]).base_seed == 5
    assert parse_pretraining_args(["r", "--num-runs", "2", "--seed", "6"]).base_seed == 6
    assert "--seed" in main.training_job(Path("f"), "conf_baseline", 0, 2, 7, Path("p")).argv
