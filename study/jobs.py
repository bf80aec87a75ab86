"""Jobs of a study and their launchers: one isolated process per pretraining run and per (configuration, run).

A job writes only into its own folder and its marker last (store.layout). ``run_jobs`` keeps at most
``Execution.jobs`` of them running, as local child processes or as submitit jobs (SLURM, or submitit's local
executor), shows their progress lines, copies their output into log.txt and reports the ones that did not
complete.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import util
from store.errors import ResultsFileError
from store.files import read_marker
from store.layout import StudyLayout
from store.logs import FILE_ONLY, clean_log_text
from study import REPO_ROOT
from study.cli import Execution

logger = logging.getLogger("main")

PROGRESS_MARK = "progress:"
"""Marks the progress lines of a job's log (training.training_functions.PROGRESS_PREFIX), shown while it runs."""


@dataclass(frozen=True)
class Job:
    """One isolated unit of work: a command line, its log file and the marker it writes last."""

    name: str
    argv: tuple[str, ...]
    log_path: Path
    marker: Path


def pretraining_job(folder: Path, run_index: int, num_runs: int, base_seed: int) -> Job:
    """Pretraining (stages 0, 1) of one run."""
    argv = (sys.executable, "-m", "training.main_pretraining", str(folder), "--num-runs", str(num_runs),
            "--seed", str(base_seed), "--runs", str(run_index), "--no-assemble", "--no-progress")  # fmt: skip
    layout = StudyLayout(folder)
    return Job(f"pretraining run {run_index}", argv, layout.job_log(f"pretraining_run_{run_index}"),
               layout.pretraining_run(run_index).marker)  # fmt: skip


def training_job(folder: Path, name: str, run_index: int, num_runs: int, base_seed: int, pretraining: Path) -> Job:
    """Stage 2 of one run of one configuration."""
    layout = StudyLayout(folder)
    conf_dir = layout.configuration(name).folder
    argv = (sys.executable, "-m", "training.main_training", str(conf_dir), "--num-runs", str(num_runs),
            "--seed", str(base_seed), "--runs", str(run_index), "--pretraining-folder", str(pretraining),
            "--no-assemble", "--no-progress")  # fmt: skip
    return Job(f"{name} run {run_index}", argv, layout.job_log(f"{name}_run_{run_index}"),
               layout.configuration(name).run(run_index).marker)  # fmt: skip


def marker_payload(path: Path) -> dict | None:
    """A job or stage marker; None if missing or corrupt.

    A corrupt marker is removed, so that the redone job (which checks its own marker first) sees it missing.
    """
    try:
        return read_marker(path)
    except ResultsFileError as error:
        logger.warning("%s; the job will be redone", error)
        path.unlink(missing_ok=True)
        return None


def child_environment(execution: Execution) -> dict[str, str]:
    """Environment additions of job processes (no GPU memory preallocation when local jobs share a device)."""
    env = {"PYTHONUNBUFFERED": "1"}
    shared = execution.executor == "local" and execution.jobs > 1
    if shared and not {"XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION"} & set(os.environ):
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


class LocalLauncher:
    """Jobs as child processes of this one."""

    poll_interval = 0.2

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = {**os.environ, **env}

    def launch(self, job: Job) -> subprocess.Popen:
        """Start a job with its output appended to its log."""
        with open(job.log_path, "a", encoding="utf-8") as log:
            log.write(f"# {dt.datetime.now().isoformat(timespec='seconds')}: {' '.join(job.argv)}\n")
            log.flush()
            return subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=REPO_ROOT, env=self.env,
                                    preexec_fn=die_with_parent(os.getpid()))  # fmt: skip

    def poll(self, process: subprocess.Popen) -> int | None:
        """Exit status, None while running."""
        return process.poll()

    def stop(self, process: subprocess.Popen) -> None:
        """Terminate a job (killed if it does not stop within 10 s)."""
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SubmititLauncher:
    """Jobs submitted with submitit (SLURM, or submitit's local executor)."""

    def __init__(self, execution: Execution, folder: Path, env: Mapping[str, str]) -> None:
        import cloudpickle
        import submitit

        cloudpickle.register_pickle_by_value(util)  # the job needs no import path to this repository
        self.env = dict(env)
        self.poll_interval = 1.0 if execution.submitit_cluster == "local" else 15.0  # SLURM: spare the scheduler
        cluster = execution.submitit_cluster or "slurm"
        self.executor = submitit.AutoExecutor(folder=StudyLayout(folder).submitit, cluster=cluster)
        self.executor.update_parameters(timeout_min=execution.slurm_time, gpus_per_node=execution.slurm_gpus,
                                        mem_gb=execution.slurm_mem, name="ssn_study")  # fmt: skip
        if execution.slurm_partition:
            self.executor.update_parameters(slurm_partition=execution.slurm_partition)

    def launch(self, job: Job) -> Any:
        """Submit a job."""
        return self.executor.submit(util.run_job_command, list(job.argv), str(job.log_path), str(REPO_ROOT),
                                    self.env)  # fmt: skip

    def poll(self, submitted: Any) -> int | None:
        """Exit status, None while queued or running (-1 if submitit reports a failure)."""
        if not submitted.done():
            return None
        try:
            return int(submitted.result())
        except Exception as error:  # a job killed by the scheduler, out of memory, a timeout
            last_line = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            logger.error("submitit job %s failed: %s", submitted.job_id, last_line)
            return -1

    def stop(self, submitted: Any) -> None:
        """Cancel a job."""
        submitted.cancel(check=False)


def make_launcher(execution: Execution, folder: Path) -> LocalLauncher | SubmititLauncher:
    """The launcher for the chosen executor."""
    env = child_environment(execution)
    if execution.executor == "slurm":
        return SubmititLauncher(execution, folder, env)
    return LocalLauncher(env)


def run_jobs(jobs: Sequence[Job], execution: Execution, folder: Path, desc: str) -> list[Job]:
    """Run the jobs without a marker, at most ``execution.jobs`` at once; the jobs that did not complete."""
    from tqdm.auto import tqdm  # here, not at the top: --help does not need it

    pending = deque(job for job in jobs if marker_payload(job.marker) is None)
    if len(pending) < len(jobs):
        logger.info("%s: %d of %d jobs already complete", desc, len(jobs) - len(pending), len(jobs))
    if not pending:
        return []
    StudyLayout(folder).job_logs.mkdir(exist_ok=True)
    launcher = make_launcher(execution, folder)
    running: dict[Job, tuple[Any, int]] = {}
    failed: list[Job] = []
    progress: dict[Job, int] = {}
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=desc, unit="job",
                                       disable=None) as bar:  # fmt: skip
        try:
            while pending or running:
                while pending and len(running) < execution.jobs:
                    job = pending.popleft()
                    offset = job.log_path.stat().st_size if job.log_path.exists() else 0
                    running[job] = (launcher.launch(job), offset)
                    logger.info("started %s", job.name)
                for job, (handle, offset) in list(running.items()):
                    progress[job] = forward_progress(job, progress.get(job, offset))
                    status = launcher.poll(handle)
                    if status is not None:
                        del running[job]
                        if not finish_job(job, status, offset):
                            failed.append(job)
                        bar.update()
                time.sleep(launcher.poll_interval)
        except BaseException:
            for job, (handle, _) in running.items():
                launcher.stop(handle)
                logger.warning("stopped %s (incomplete; --resume redoes it)", job.name)
            raise
    return failed


def forward_progress(job: Job, position: int) -> int:
    """Show the progress lines (steps, threshold, time left) that a running job logged since byte ``position``
    in the console; the position after the last complete line."""
    try:
        with open(job.log_path, "rb") as fh:
            fh.seek(position)
            data = fh.read()
    except OSError:
        return position
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.decode("utf-8", errors="replace").splitlines():
        if PROGRESS_MARK in line:
            logger.info("[%s] %s", job.name, line[line.index(PROGRESS_MARK) + len(PROGRESS_MARK) :].strip())
    return position + len(complete)


def finish_job(job: Job, status: int, offset: int) -> bool:
    """Copy the job's output into log.txt and report it; whether it completed."""
    lines = job_log_lines(job.log_path, offset)
    for line in lines:
        logger.info("[%s] %s", job.name, line, extra=FILE_ONLY)
    payload = marker_payload(job.marker)
    if status == 0 and payload is not None:
        if payload.get("success", True):
            logger.info("finished %s", job.name)
        else:
            logger.warning("%s failed (recorded; the run has no rows): %s", job.name, payload)
        return True
    logger.error("%s did not complete (exit status %s); its log: %s", job.name, status, job.log_path)
    for line in lines[-5:]:
        logger.error("[%s] %s", job.name, line)
    return False


def job_log_lines(path: Path, offset: int) -> list[str]:
    """The lines a job wrote to its log from ``offset`` on."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            fh.seek(offset)
            return clean_log_text(fh.read())
    except OSError:
        return []


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A Popen preexec_fn that makes the child get SIGKILL when its parent dies (Linux; None elsewhere).

    Without it a job outlives a killed main.py and a --resume would start a second copy in the same folder.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
