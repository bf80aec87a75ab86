"""Kill one --quick study (cut down by test_main_jobs.TINY: 1 run, the baseline configuration) at several points and
resume it after each kill; the finished folder must hold the same outputs as an uninterrupted study (slow).

The kills, in pipeline order: SIGKILL to the study's process group during pretraining and during stage 2 (a job
is running), main.py killing itself inside an atomic write of an analysis CSV and of summary.pdf (the test-only
hook of tests/fault_hooks/sitecustomize.py), and SIGKILL to the group as the first figure appears. Afterwards:
the same files as the uninterrupted study (nothing missing, no temporary file left), CSVs and parameter files
byte-identical, every PNG a complete image of the same size, every PDF complete with the same page count.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from test_main_jobs import REPO, TINY, only_folder, restore_sigint, run_study, stop_group, wait_for

import main

pytestmark = pytest.mark.slow

FAULT_HOOKS = REPO / "tests" / "fault_hooks"
VOLATILE = {"log.txt", "environment.json", "note.txt", ".main.lock"}
"""Files that record this process's command line, times or paths, so differ between any two studies."""
VOLATILE_FOLDERS = ("logs/", "scripts/")


def study_argv(root: Path) -> list[str]:
    return [sys.executable, "main.py", "--quick", "--runs", "1", "--configs", "conf_baseline", "--seed", "3",
            "--overrides-json", json.dumps(TINY), "--results-root", str(root)]  # fmt: skip


def resume_argv(folder: Path) -> list[str]:
    return [sys.executable, "main.py", "--resume", str(folder)]


def hooked_env(**variables: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(FAULT_HOOKS), **variables}


def start(argv: list[str], err_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """The study in its own process group, stderr to a file."""
    with open(err_path, "a") as err:
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True, preexec_fn=restore_sigint)  # fmt: skip


def lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def pngs(folder: Path) -> list[Path]:
    return list(folder.rglob("*.png"))


def output_files(folder: Path) -> dict[str, Path]:
    """The study's outputs by relative path (without logs, the code snapshot and per-process records)."""
    files = {}
    for path in folder.rglob("*"):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and path.name not in VOLATILE and not name.startswith(VOLATILE_FOLDERS):
            files[name] = path
    return files


def pdf_pages(path: Path) -> int:
    """Page count of a complete PDF (AssertionError if it is cut short)."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF"), f"{path} is not a complete PDF"
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", data))


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a complete PNG (an error if it is not one or is cut short)."""
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        image.load()
        return image.size


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    done = run_study(study_argv(root))
    assert done.returncode == 0, done.stderr[-3000:]
    return only_folder(root)


def kill_group_when(process: subprocess.Popen, predicate, delay: float = 0.0) -> None:
    """SIGKILL the study's process group once ``predicate()`` holds (after ``delay`` seconds more)."""
    try:
        wait_for(Path("(condition)"), process, predicate=predicate)
        time.sleep(delay)
    finally:
        stop_group(process, signal.SIGKILL)


def test_kills_at_every_stage_then_resume_give_the_uninterrupted_outputs(reference, tmp_path):
    root, err_path, env = tmp_path / "results", tmp_path / "stderr.txt", hooked_env()
    root.mkdir()

    # 1. during pretraining: stage 0 of the only run is done, stage 1 is running
    start_time = time.time()
    process = start(study_argv(root), err_path, env)
    wait_for(root, process, predicate=lambda: any(root.iterdir()))
    folder = only_folder(root)
    pretraining_log = folder / "logs" / "pretraining_run_0.log"
    kill_group_when(process, lambda: any("stage 0:" in line for line in lines(pretraining_log)))
    assert not (folder / "pretraining_runs" / "run_0" / "DONE.json").exists()
    print(f"pretraining kill: {time.time() - start_time:.0f} s")

    # 2. during stage 2: its job has started (it takes several seconds to import, compile and train)
    start_time = time.time()
    process = start(resume_argv(folder), err_path, env)
    kill_group_when(process, lambda: (folder / "logs" / "conf_baseline_run_0.log").exists(), delay=1.0)
    assert (folder / "PRETRAINING_DONE.json").exists()
    assert not (folder / "conf_baseline" / "training_runs" / "run_0" / "DONE.json").exists()
    print(f"stage-2 kill: {time.time() - start_time:.0f} s")

    # 3. inside the atomic write of an analysis CSV: main.py dies between the complete temporary file and the rename
    start_time = time.time()
    done = run_study_env(resume_argv(folder), hooked_env(SSN_FAULT_KILL_BEFORE_REPLACE="MVPA_scores.csv"))
    assert done.returncode == -signal.SIGKILL, f"the kill did not land (exit {done.returncode}): {done.stderr[-2000:]}"
    conf = folder / "conf_baseline"
    assert (conf / "DONE.json").exists() and not (conf / "MVPA_scores.csv").exists()
    print(f"atomic CSV kill: {time.time() - start_time:.0f} s")

    # 4. during figure writing: SIGKILL as soon as the first PNG appears
    start_time = time.time()
    process = start(resume_argv(folder), err_path, env)
    kill_group_when(process, lambda: bool(pngs(folder)))
    assert not (folder / main.ANALYSIS_DONE).exists()
    print(f"figure kill: {time.time() - start_time:.0f} s")

    # 5. inside the atomic write of summary.pdf (all figures exist by then)
    start_time = time.time()
    done = run_study_env(resume_argv(folder), hooked_env(SSN_FAULT_KILL_BEFORE_REPLACE="summary.pdf"))
    assert done.returncode == -signal.SIGKILL, (
        f"the kill did not land: summary.pdf is not written through an atomic rename (exit {done.returncode}): "
        f"{done.stderr[-2000:]}"
    )
    print(f"atomic PDF kill: {time.time() - start_time:.0f} s")

    # 6. the last resume finishes the study
    start_time = time.time()
    done = run_study_env(resume_argv(folder), env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "study complete" in done.stderr
    print(f"final resume: {time.time() - start_time:.0f} s")

    assert_same_outputs(folder, reference)


def run_study_env(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)


def assert_same_outputs(folder: Path, reference: Path) -> None:
    """The same output files; CSVs and parameter files byte-identical; PNGs and PDFs complete and alike."""
    ours, theirs = output_files(folder), output_files(reference)
    assert sorted(ours) == sorted(theirs), (
        f"missing: {sorted(set(theirs) - set(ours))}, extra: {sorted(set(ours) - set(theirs))}"
    )
    for name, path in ours.items():
        if path.suffix in (".csv", ".py"):
            assert path.read_bytes() == theirs[name].read_bytes(), name
        elif path.suffix == ".png":
            assert png_size(path) == png_size(theirs[name]), name
        elif path.suffix == ".pdf":
            assert pdf_pages(path) == pdf_pages(theirs[name]) > 1, name
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".html":
            assert path.read_text().rstrip().endswith("</html>"), name
        else:
            raise AssertionError(f"unexpected output {name}: extend this comparison")
