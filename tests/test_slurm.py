"""main.py --executor slurm against a real single-node SLURM cluster (slow; run as root on a Debian machine).

The session fixture starts the cluster with tests/slurm/start_cluster.sh (installing slurm-wlm and munge if
missing) and fails with the script's output if it cannot; it stops the cluster again only if it started it.
Every study is the --quick preset cut down further by test_main_jobs.TINY: 2 runs, the baseline configuration, no
analysis (the analysis runs in main.py's own process whatever the executor; tests/test_fault_injection.py
covers it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_main_jobs import REPO, TINY, only_folder, run_study, start_study, stop_group, wait_for

import main

pytestmark = pytest.mark.slow

SCRIPTS = REPO / "tests" / "slurm"
FAULT_HOOKS = REPO / "tests" / "fault_hooks"
SLURM_ARGS = ("--executor", "slurm", "--slurm-partition", "test", "--slurm-mem", "2", "--slurm-time", "30")
JOB_NAME = "ssn_study"  # the name SubmititLauncher gives every job


def slurm_up() -> bool:
    """Whether a SLURM controller answers already (then the cluster is left running at the end)."""
    return shutil.which("sinfo") is not None and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def cluster():
    """A running single-node cluster; the test fails (never skips) with the start script's output otherwise."""
    was_up = slurm_up()
    done = subprocess.run(["bash", str(SCRIPTS / "start_cluster.sh")], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"start_cluster.sh failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    yield
    if not was_up:
        subprocess.run(["bash", str(SCRIPTS / "stop_cluster.sh")], capture_output=True, timeout=120)


def study_argv(root: Path, *extra: str) -> list[str]:
    return [sys.executable, "main.py", "--quick", "--runs", "2", "--configs", "conf_baseline", "--seed", "3",
            "--overrides-json", json.dumps(TINY), "--results-root", str(root), "--no-analysis", *extra]  # fmt: skip


def all_csvs(folder: Path) -> dict[str, bytes]:
    """Every CSV of a results folder (combined tables and per-job pieces), by path relative to the folder."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*.csv"))}


def running_jobs() -> list[str]:
    """Ids of this test's SLURM jobs that are running now."""
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-n", JOB_NAME, "-o", "%i"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return out.split()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory) -> Path:
    """The study with the local executor, uninterrupted."""
    root = tmp_path_factory.mktemp("local")
    done = run_study(study_argv(root))
    assert done.returncode == 0, done.stderr[-3000:]
    return only_folder(root)


def test_slurm_study_gives_the_local_csvs(cluster, local_reference, tmp_path):
    start = time.time()
    done = run_study(study_argv(tmp_path, *SLURM_ARGS, "--jobs", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    folder = only_folder(tmp_path)
    csvs = all_csvs(folder)
    assert len(csvs) >= 13 and "conf_baseline/training_results.csv" in csvs  # pieces and combined tables
    assert csvs == all_csvs(local_reference)
    # the jobs ran under SLURM: submitit's files carry the SLURM job ids, and each job log names the node
    assert list((folder / "submitit").glob("*_submission.sh"))
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    assert f" on {node}:" in (folder / "logs" / "conf_baseline_run_1.log").read_text()
    print(f"slurm study: {time.time() - start:.0f} s")


def test_scancel_then_resume_gives_the_local_csvs(cluster, local_reference, tmp_path):
    root, err_path = tmp_path / "results", tmp_path / "stderr.txt"
    root.mkdir()
    process = start_study(study_argv(root, *SLURM_ARGS, "--jobs", "1"), err_path)
    try:
        wait_for(root, process, predicate=lambda: any(root.iterdir()))
        folder = only_folder(root)
        job_log = folder / "logs" / "conf_baseline_run_0.log"
        wait_for(job_log, process)  # the log is opened by the job on the node: it is running
        (job_id,) = running_jobs()
        subprocess.run(["scancel", job_id], check=True)
        status = process.wait(timeout=600)
    finally:
        if process.poll() is None:
            stop_group(process, signal.SIGKILL)
    err = err_path.read_text()
    assert status == main.EXIT_FAILED, err[-3000:]
    assert not (folder / "conf_baseline" / "training_runs" / "run_0" / "DONE.json").exists()  # cancelled in time
    assert f"conf_baseline run 0 did not complete (exit status -15); its log: {job_log}" in err
    assert f"continue with: python main.py --resume {folder}" in err
    assert (folder / "conf_baseline" / "training_runs" / "run_1" / "DONE.json").exists()  # the study went on

    resume = [sys.executable, "main.py", "--resume", str(folder), "--no-analysis", *SLURM_ARGS, "--jobs", "2"]
    done = run_study(resume)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stage 2: 1 of 2 jobs already complete" in done.stderr
    assert all_csvs(folder) == all_csvs(local_reference)


def test_a_job_failing_on_its_node_is_reported_with_its_log(cluster, local_reference, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(FAULT_HOOKS), "SSN_FAULT_FAIL_JOB": r"training\.main_training .* --runs 1 "}
    argv = [sys.executable, "main.py", "--skip-pretraining", str(local_reference), "--configs", "conf_baseline",
            "--overrides-json", json.dumps(TINY), "--results-root", str(tmp_path), "--no-analysis", *SLURM_ARGS,
            "--jobs", "2"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == main.EXIT_FAILED, done.stderr[-3000:]
    folder = only_folder(tmp_path)
    job_log = folder / "logs" / "conf_baseline_run_1.log"
    assert f"conf_baseline run 1 did not complete (exit status 3); its log: {job_log}" in done.stderr
    assert "[conf_baseline run 1] injected failure" in done.stderr  # the job's last lines are shown
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    assert f" on {node}:" in job_log.read_text() and "injected failure" in job_log.read_text()
    assert "finished conf_baseline run 0" in done.stderr
    assert not (folder / "conf_baseline" / "DONE.json").exists()
