"""Helpers of ``main.py``: results folders, parameter-file copies, environment records, logging, markers.

Everything here is a small function of its arguments; nothing runs training. The parameter copies follow
binding decision 4: the text of ``parameters.py`` unchanged, plus an appended, readable block that reassigns
``OVERRIDES`` (applied by ``build_parameters`` on top of the defaults). The copy is validated by loading it.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import datetime as dt
import fcntl
import importlib.metadata
import json
import logging
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from parameters import DEFAULT_PRESET, ParameterError, check_preset, load_parameters_file
from training import results_io

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent
REPO_PARAMETERS = REPO_ROOT / "parameters.py"
RESULTS_FORMAT_VERSION = "1.0"
"""Layout of a results folder (files, markers, environment.json). A different major number is incompatible."""
ENVIRONMENT_FILE = "environment.json"
LOG_FILE = "log.txt"
NOTE_FILE = "note.txt"
SCRIPTS_DIR = "scripts"
SCRIPT_FOLDERS: tuple[str, ...] = (".", "training", "analysis")
PACKAGES: tuple[tuple[str, str], ...] = (
    ("jax", "jax"), ("jaxlib", "jaxlib"), ("optax", "optax"), ("numpy", "numpy"), ("pandas", "pandas"),
    ("scipy", "scipy"), ("sklearn", "scikit-learn"), ("statsmodels", "statsmodels"), ("matplotlib", "matplotlib"),
)  # fmt: skip
"""(name in the record, distribution name) of the packages whose versions environment.json records."""
OVERRIDES_HEADER = (
    "\n\n# " + "-" * 116 + "\n"
    "# Written by main.py: the changes of this copy, applied on top of the defaults above and the values of the\n"
    "# preset named by PRESET (binding decision 4).\n"
)  # fmt: skip
_HANDLER_TAG = "_ssn_main_handler"


class ResultsFolderError(ValueError):
    """A results folder is missing, incomplete, locked or from an incompatible version; the message says which."""


# ---------------------------------------------------------------------------------------------- atomic files
def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` so that ``path`` is either its old content or the complete new one."""
    with results_io.atomic_open(Path(path)) as fh:
        fh.write(text)


def write_marker(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Atomically write a JSON completion marker (the format of training.results_io; parent folders created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    results_io.write_marker(path, payload)


def read_marker(path: str | os.PathLike) -> dict[str, Any] | None:
    """The payload of a JSON completion marker, None if it is missing; ResultsFileError if it is corrupt."""
    return results_io.read_marker(path)


def read_overrides(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The value of the last top-level ``OVERRIDES`` assignment of a parameters file ({} if none).

    The file is parsed, not executed; ParameterError if it does not parse or the value is not a literal.
    """
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as error:
        raise ParameterError(f"{path}: cannot be read: {error}") from error
    values = [node.value for node in tree.body if _assigns_overrides(node)]
    if not values:
        return {}
    try:
        overrides = ast.literal_eval(values[-1])
    except ValueError as error:
        raise ParameterError(f"{path}: OVERRIDES must be a literal dictionary: {error}") from error
    check_overrides_shape(overrides, str(path))
    return overrides


def read_preset(path: str | os.PathLike) -> str:
    """The preset a parameters file records (its last top-level ``PRESET = "..."``; the default if none).

    The file is parsed, not executed; ParameterError if it does not parse or names no known preset.
    """
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as error:
        raise ParameterError(f"{path}: cannot be read: {error}") from error
    values = [node.value for node in tree.body if _assigns_overrides(node, "PRESET")]
    if not values:
        return DEFAULT_PRESET
    value = values[-1].value if isinstance(values[-1], ast.Constant) else None
    if not isinstance(value, str):
        raise ParameterError(f"{path}: PRESET must be a string literal")
    return check_preset(value)


def _assigns_overrides(node: ast.stmt, name: str = "OVERRIDES") -> bool:
    """Whether a top-level statement assigns a value to ``name`` (OVERRIDES by default)."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets = [node.target]
    else:
        return False
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


def check_overrides_shape(overrides: Any, origin: str) -> None:
    """Check that overrides are ``{"ClassName": {"field": value}}`` (ParameterError otherwise)."""
    if not isinstance(overrides, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) and all(isinstance(f, str) for f in v) for k, v in overrides.items()
    ):
        raise ParameterError(f'{origin}: overrides must look like {{"ClassName": {{"field": value}}}}')


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


# ------------------------------------------------------------------------------------------------ overrides
def merge_overrides(base: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Mapping[str, Any]]) -> dict:
    """A new ``{"ClassName": {field: value}}`` dictionary: ``base`` with ``extra``'s fields winning."""
    merged = {name: dict(fields) for name, fields in base.items()}
    for name, fields in extra.items():
        merged.setdefault(name, {}).update(fields)
    return merged


def conflicting_overrides(base: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``Class.field`` names that both set, with different values (``extra`` wins in merge_overrides)."""
    return [f"{name}.{key}" for name, fields in extra.items() for key, value in fields.items()
            if key in base.get(name, {}) and _plain(base[name][key]) != _plain(value)]  # fmt: skip


def _plain(value: Any) -> Any:
    """Lists as tuples, recursively (for comparisons)."""
    return tuple(_plain(v) for v in value) if isinstance(value, (list, tuple)) else value


def format_value(value: Any, indent: int = 0) -> str:
    """A Python literal for a bool, int, float, string, list or tuple (long sequences wrapped)."""
    if isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"override values must be finite, got {value}")
        return repr(float(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid Python string literal, in double quotes
    if isinstance(value, list | tuple):
        return _format_sequence(value, indent)
    raise TypeError(f"override values must be bool, int, float, str, list or tuple, got {type(value).__name__}")


def _format_sequence(value: list | tuple, indent: int, width: int = 100) -> str:
    """A list or tuple on one line if it fits, else its items wrapped on indented lines."""
    items = [format_value(v, indent + 4) for v in value]
    open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
    one_line = ", ".join(items) + ("," if isinstance(value, tuple) and len(items) == 1 else "")
    if indent + len(one_line) + 2 <= width and "\n" not in one_line:
        return f"{open_}{one_line}{close}"
    pad = " " * (indent + 4)
    lines, current = [], ""
    for item in items:
        if current and ("\n" in item or len(pad) + len(current) + len(item) + 2 > width):
            lines.append(current)
            current = ""
        current += f"{item}, " if "\n" not in item else f"{item},"
    lines.append(current)
    body = "".join(f"{pad}{line.rstrip()}\n" for line in lines if line)
    return f"{open_}\n{body}{' ' * indent}{close}"


def format_overrides(overrides: Mapping[str, Mapping[str, Any]]) -> str:
    """``OVERRIDES = {...}`` as readable Python source, one class and one field per line."""
    lines = ["OVERRIDES = {"]
    for class_name, fields in overrides.items():
        if not isinstance(class_name, str) or not isinstance(fields, Mapping):
            raise TypeError(f"overrides must map class names to {{field: value}} dictionaries, got {class_name!r}")
        lines.append(f"    {json.dumps(class_name)}: {{")
        for key, value in fields.items():
            if not isinstance(key, str):
                raise TypeError(f"{class_name}: field names must be strings, got {key!r}")
            try:
                lines.append(f"        {json.dumps(key)}: {format_value(value, 8)},")
            except (TypeError, ValueError) as error:
                raise type(error)(f"{class_name}.{key}: {error}") from error
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_parameters_copy(
    path: str | os.PathLike,
    overrides: Mapping[str, Mapping[str, Any]],
    source: str | os.PathLike = REPO_PARAMETERS,
    title: str = "",
    preset: str = DEFAULT_PRESET,
) -> None:
    """Write ``source``'s text plus an appended ``OVERRIDES`` block and ``PRESET`` line to ``path``; check it loads.

    Raises ParameterError (and leaves no file) if the copy does not load or does not carry ``overrides``.
    """
    path, source = Path(path), Path(source)
    block = format_overrides(overrides)
    if ast.literal_eval(block.split("=", 1)[1].strip()) != {k: dict(v) for k, v in overrides.items()}:
        raise ValueError(f"internal error: the OVERRIDES block for {path} does not reproduce the overrides")
    comment = f"# {title}\n" if title else ""
    block += f"PRESET = {json.dumps(check_preset(preset))}\n"
    atomic_write_text(path, source.read_text(encoding="utf-8").rstrip("\n") + OVERRIDES_HEADER + comment + block)
    try:
        load_parameters_file(path)
    except ParameterError as error:
        path.unlink(missing_ok=True)
        raise ParameterError(f"invalid parameters in {path.name}: {error.__cause__ or error}") from error


# ------------------------------------------------------------------------------------------- scripts, records
def script_files(repo_root: Path = REPO_ROOT) -> list[Path]:
    """The root, training/ and analysis/ Python files of the repository, relative to it."""
    return [
        path.relative_to(repo_root) for folder in SCRIPT_FOLDERS for path in sorted((repo_root / folder).glob("*.py"))
    ]


def snapshot_scripts(results_dir: str | os.PathLike, repo_root: Path = REPO_ROOT) -> Path:
    """Copy the repository's Python files into ``results_dir/scripts/`` (sub-folders kept); return that folder."""
    target = Path(results_dir) / SCRIPTS_DIR
    for relative in script_files(repo_root):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / relative, target / relative)
    return target


def changed_scripts(results_dir: str | os.PathLike, repo_root: Path = REPO_ROOT) -> list[str]:
    """Repository Python files that differ from (or are missing in) the folder's ``scripts/`` snapshot."""
    snapshot = Path(results_dir) / SCRIPTS_DIR
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


def code_version(repo_root: Path = REPO_ROOT) -> str | None:
    """The git commit of the code (with ``-dirty`` when it has uncommitted changes), None outside git."""
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
    path = Path(results_dir) / ENVIRONMENT_FILE
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def read_environment_record(results_dir: str | os.PathLike) -> dict[str, Any]:
    """environment.json of a results folder, checked for a compatible format version (ResultsFolderError)."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise ResultsFolderError(f"results folder not found: {folder}")
    path = folder / ENVIRONMENT_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ResultsFolderError(f"{path} is missing: {folder} is not a results folder written by main.py") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsFolderError(f"{path} is corrupt ({error}); the folder cannot be used") from error
    version = record.get("results_format_version") if isinstance(record, dict) else None
    if not is_compatible_format(version):
        raise ResultsFolderError(
            f"{folder} has results format version {version!r}, this code writes {RESULTS_FORMAT_VERSION!r}; "
            "use a matching code version or start a new folder"
        )
    return record


def is_compatible_format(version: Any) -> bool:
    """Whether a results-format version string has the same major number as RESULTS_FORMAT_VERSION."""
    return isinstance(version, str) and version.split(".")[0] == RESULTS_FORMAT_VERSION.split(".")[0]


# ------------------------------------------------------------------------------------------------- logging
FILE_ONLY: dict[str, Any] = {"file_only": True}
"""``extra`` for a log record that goes to log.txt only (e.g. the output of jobs), not to the terminal."""


class _ConsoleHandler(logging.StreamHandler):
    """stderr output that keeps tqdm progress bars intact and leaves out file-only records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def setup_logging(log_path: str | os.PathLike | None = None, level: int = logging.INFO) -> list[logging.Handler]:
    """Root logger at ``level`` to stderr and, if given, appending to ``log_path`` (with file-only records).

    Handlers installed by an earlier call are closed and replaced; the new handlers are returned.
    """
    root = logging.getLogger()
    close_logging()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [_ConsoleHandler(sys.stderr)]
    if log_path is not None:
        handlers.append(logging.FileHandler(log_path, mode="a", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_TAG, True)
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # no notes about absent TPU libraries
    logging.captureWarnings(True)  # Python warnings are logged too (so they reach log.txt)
    return handlers


def close_logging() -> None:
    """Remove and close the handlers that setup_logging installed."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(handler)
        handler.close()
    logging.captureWarnings(False)


# ---------------------------------------------------------------------------------------------- folder lock
@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on a results folder (ResultsFolderError if another process holds it)."""
    path = Path(folder) / ".main.lock"
    with open(path, "a", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise ResultsFolderError(f"another main.py is working on {folder}; wait for it or stop it first") from error
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------------- job runs
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


def run_job_command(argv: Sequence[str], log_path: str, cwd: str, env: Mapping[str, str] | None = None) -> int:
    """Run one job's command line with its output appended to ``log_path``; return the exit status.

    This is what a submitit job executes on the compute node.
    """
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"# {dt.datetime.now().isoformat(timespec='seconds')} on {socket.gethostname()}: "
                  f"{' '.join(argv)}\n")  # fmt: skip
        log.flush()
        environment = {**os.environ, **dict(env or {})}
        return subprocess.run(list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=environment,
                              check=False).returncode  # fmt: skip


def clean_log_text(text: str) -> list[str]:
    """Lines of a job log with progress-bar redraws (carriage returns) reduced to their last state."""
    return [line.rsplit("\r", 1)[-1] for line in text.splitlines() if line.rsplit("\r", 1)[-1].strip()]
