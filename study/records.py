"""The records a study writes into its results folder: its name, the environment record, the code snapshot and
the folder lock.

environment.json holds the format version of the folder, Python, package versions, JAX backend and devices,
the command line, the base seed and the code version (plus, written by main.py, the study settings and
every resumption); it is read back by store.records.read_environment_record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from store.errors import ResultsFolderError
from store.files import write_json
from store.layout import StudyLayout
from store.records import RESULTS_FORMAT_VERSION
from study import REPO_ROOT

SCRIPT_FOLDERS: tuple[str, ...] = (".", "store", "training", "analysis", "study")
"""The folders whose Python files scripts/ keeps."""
PACKAGES: tuple[tuple[str, str], ...] = (
    ("jax", "jax"), ("jaxlib", "jaxlib"), ("optax", "optax"), ("numpy", "numpy"), ("pandas", "pandas"),
    ("scipy", "scipy"), ("sklearn", "scikit-learn"), ("statsmodels", "statsmodels"), ("matplotlib", "matplotlib"),
)  # fmt: skip
"""(name in the record, distribution name) of the packages whose versions environment.json records."""


# -------------------------------------------------------------------------------------------- results folder
def results_folder_name(date: dt.date, k: int) -> str:
    """``<Mon><DD>_v<k>`` (spec §17), with English month abbreviations whatever the locale."""
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    return f"{months[date.month - 1]}{date.day:02d}_v{k}"


def make_results_folder(root: str | os.PathLike = "results", date: dt.date | None = None) -> Path:
    """Create and return ``root/<Mon><DD>_v<k>`` with the smallest unused k (safe against concurrent callers)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    date = date or dt.date.today()
    k = 0
    while True:
        folder = root / results_folder_name(date, k)
        try:
            folder.mkdir()
        except FileExistsError:
            k += 1
            continue
        return folder


# ------------------------------------------------------------------------------------------- scripts, records
def script_files(repo_root: Path | None = None) -> list[Path]:
    """The Python files of the repository's SCRIPT_FOLDERS, relative to it."""
    repo_root = repo_root or REPO_ROOT
    return [
        path.relative_to(repo_root) for folder in SCRIPT_FOLDERS for path in sorted((repo_root / folder).glob("*.py"))
    ]


def snapshot_scripts(results_dir: str | os.PathLike, repo_root: Path | None = None) -> Path:
    """Copy the repository's Python files into ``results_dir/scripts/`` (sub-folders kept); return that folder."""
    repo_root = repo_root or REPO_ROOT
    target = StudyLayout(Path(results_dir)).scripts
    for relative in script_files(repo_root):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / relative, target / relative)
    return target


def changed_scripts(results_dir: str | os.PathLike, repo_root: Path | None = None) -> list[str]:
    """Repository Python files that differ from (or are missing in) the folder's ``scripts/`` snapshot."""
    repo_root = repo_root or REPO_ROOT
    snapshot = StudyLayout(Path(results_dir)).scripts
    changed = []
    for relative in script_files(repo_root):
        copy = snapshot / relative
        if not copy.is_file() or copy.read_bytes() != (repo_root / relative).read_bytes():
            changed.append(relative.as_posix())
    return changed


def package_versions() -> dict[str, str | None]:
    """Installed versions of the recorded packages (None when one is not installed)."""
    versions: dict[str, str | None] = {}
    for name, distribution in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


_JAX_QUERY = (
    "import json, jax; print(json.dumps({'backend': jax.default_backend(), "
    "'devices': [str(d) for d in jax.devices()], 'device_kinds': [d.device_kind for d in jax.devices()]}))"
)


def jax_environment(timeout: float = 300.0) -> dict[str, Any]:
    """JAX backend and devices, queried in a child process so this process never claims an accelerator."""
    try:
        done = subprocess.run([sys.executable, "-c", _JAX_QUERY], capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=REPO_ROOT)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"error": str(error)}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def environment_record(argv: Sequence[str], base_seed: int, jax_info: Mapping[str, Any] | None = None) -> dict:
    """The environment.json content: format version, Python, packages, JAX devices, command line, seed."""
    return {
        "results_format_version": RESULTS_FORMAT_VERSION,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": sys.version,
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": package_versions(),
        "jax": dict(jax_info) if jax_info is not None else jax_environment(),
        "command_line": [sys.executable, *argv],
        "working_directory": os.getcwd(),
        "base_seed": int(base_seed),
        "code_version": code_version(),
    }


def code_version(repo_root: Path | None = None) -> str | None:
    """The git commit of the code (with ``-dirty`` when it has uncommitted changes), None outside git."""
    repo_root = repo_root or REPO_ROOT
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True, check=True,
                                  timeout=10).stdout.strip()  # fmt: skip

        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_environment_record(
    results_dir: str | os.PathLike,
    argv: Sequence[str],
    base_seed: int,
    extra: Mapping[str, Any] | None = None,
    jax_info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``results_dir/environment.json`` (``extra`` keys are added, e.g. the study settings); return it."""
    record = environment_record(argv, base_seed, jax_info) | dict(extra or {})
    path = StudyLayout(Path(results_dir)).environment
    write_json(path, record)
    return path


# ---------------------------------------------------------------------------------------------- folder lock
def folder_in_use(folder: str | os.PathLike) -> bool:
    """Whether a main.py holds the lock of a results folder now (the lock file is only read: nothing is written
    into the folder)."""
    try:
        fh = open(StudyLayout(Path(folder)).lock, encoding="utf-8")  # noqa: SIM115  (closed below)
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on a results folder (ResultsFolderError if another process holds it)."""
    path = StudyLayout(Path(folder)).lock
    with open(path, "a", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise ResultsFolderError(f"another main.py is working on {folder}; wait for it or stop it first") from error
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
