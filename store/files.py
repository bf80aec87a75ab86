"""Files of a results folder: atomic writing, completion markers and packed (kept) files.

Every write here is atomic: a temporary file next to the target replaces it only once complete, so a kill
leaves either the old file or the new one, never a cut one (a check at reading time still refuses a cut
file written by other means: :func:`store.tables.read_results_csv`).

Packed files: a kept study (study.keep) stores each CSV gzip-packed as ``<name>.csv.gz``. Every reader takes
the plain path and reads whichever of the two exists (:func:`stored`, the plain one first: a command that
rewrites a file writes it plain and removes its packed twin, so the plain file is always the newer one).

Derived files: a kept study stores a retained per-run file (``pretraining_results.csv``, the runs that survived
exclusion) not at all when its unfiltered copy and the list of excluded runs give its exact bytes; its folder's
``derived.json`` names it. :func:`stored` writes such a file back (plain, git-ignored in studies/) the first
time a reader asks for it, so every reader sees one file as before (store.renumbering).

This module imports only the standard library (``python main.py --help`` must not load pandas) and, when a
derived file is read, store.renumbering.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from store.errors import ResultsFileError
from store.layout import CSV_WRITE_OPTIONS, DERIVED, EXCLUDED_RUNS, PACKED_SUFFIX, complete_copy, packed

logger = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"
"""Suffix of the temporaries of atomic_open (named .<target>.<random>.tmp next to the target)."""


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows, else by setting and restoring it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """A temporary file next to ``path`` that replaces it only if the block completes."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would, so others may read shared results
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # a kept study holds the packed twin of a file that a resume or the analysis now rewrites: the new plain
    # file replaces it (study.keep packs it again), so that no reader can see the older content
    packed(path).unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (ignored where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_csv(df: Any, path: str | os.PathLike) -> None:
    """Write a pandas DataFrame ``df`` (no index, full float precision) so that ``path`` is either old or
    complete."""
    with atomic_open(path, "w") as fh:
        df.to_csv(fh, **CSV_WRITE_OPTIONS)


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """Save a matplotlib figure so that ``path`` is either absent/old or a complete image."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".") or "png", **kwargs)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) so that ``path`` is either its old content or the complete new one."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write a JSON record atomically (indented, one trailing newline)."""
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


_COMPLETE_ENDINGS: dict[str, bytes] = {".png": b"IEND\xaeB`\x82", ".pdf": b"%%EOF"}
"""What the last bytes of a complete file of these kinds contain (the PNG end chunk, the PDF trailer)."""


def is_complete_output(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists, is non-empty and, for PNG and PDF, ends as a complete file does.

    Files written before atomic writing (or copied in by hand) may have been cut by a kill; such a file
    must count as missing so that it is written again.
    """
    path = stored(path)  # a kept study's packed twin counts (its integrity is checked when a study is opened)
    try:
        size = path.stat().st_size
    except OSError:
        return False
    ending = _COMPLETE_ENDINGS.get(path.suffix.lower())
    if size == 0 or ending is None:
        return size > 0
    with path.open("rb") as fh:
        fh.seek(max(0, size - 1024))
        return ending in fh.read()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete atomic-write temporaries under ``folder`` left by a killed writer; return them.

    Call only while holding the study lock: then no live process of this study owns a temporary, and
    the lock excludes every other writer of the folder.
    """
    stale = [p for p in Path(folder).rglob(f".*{TMP_SUFFIX}") if p.is_file()]
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if stale:
        logger.info("removed %d stale temporary file(s) of interrupted writes", len(stale))
    return stale


# ------------------------------------------------------------------------------------------ packed files
def stored(path: str | os.PathLike) -> Path:
    """Where the content of a results file is: the plain file if it exists, else its packed twin
    (``.csv.gz``, a kept study) if that exists, else the plain path (a derived file is written there first;
    otherwise it is missing)."""
    path = Path(path)
    if path.is_file():
        return path
    twin = packed(path)
    if twin.is_file():
        return twin
    if is_derived(path):
        write_derived(path)
    return path


def has_stored(path: str | os.PathLike) -> bool:
    """Whether a results file exists, plain, packed or derived (without writing a derived one)."""
    path = Path(path)
    return path.is_file() or packed(path).is_file() or is_derived(path)


def derived_names(folder: str | os.PathLike) -> list[str]:
    """The files a kept study folder stores only as derivations (its derived.json; none without one)."""
    try:
        record = json.loads((Path(folder) / DERIVED).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise ResultsFileError(f"corrupt record {Path(folder) / DERIVED}: {error}") from error
    return [str(name) for name in record.get("files", [])] if isinstance(record, dict) else []


def is_derived(path: str | os.PathLike) -> bool:
    """Whether a results file is stored only as a derivation: neither plain nor packed, named by its folder's
    derived.json, with its unfiltered copy and the list of excluded runs stored."""
    path = Path(path)
    if path.is_file() or packed(path).is_file() or path.name not in derived_names(path.parent):
        return False
    sources = (path.with_name(complete_copy(path.name)), path.with_name(EXCLUDED_RUNS))
    return all(p.is_file() or packed(p).is_file() for p in sources)


def derived_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a retained per-run file made from its unfiltered copy and the list of excluded runs
    (ResultsFileError naming the file if either is missing or unreadable)."""
    from store import renumbering  # pandas: loaded only when a derived file is read

    path = Path(path)
    excluded = renumbering.parse_run_list(read_stored_text(path.with_name(EXCLUDED_RUNS)), EXCLUDED_RUNS)
    return renumbering.derived_csv_bytes(read_stored_bytes(path.with_name(complete_copy(path.name))), excluded,
                                         path.name)  # fmt: skip


def write_derived(path: Path) -> None:
    """Write a derived file back as its plain file (atomically)."""
    data = derived_bytes(path)
    try:
        with atomic_open(path, "wb") as fh:
            fh.write(data)
    except OSError as error:
        raise ResultsFileError(f"{path} is stored as a derivation and cannot be written back: {error}") from error
    logger.info("wrote %s back from %s and %s", path, complete_copy(path.name), EXCLUDED_RUNS)


def is_packed(path: str | os.PathLike) -> bool:
    """Whether a path names a packed file."""
    return str(path).endswith(PACKED_SUFFIX)


def remove_stored(path: str | os.PathLike) -> None:
    """Delete a results file in both its forms."""
    Path(path).unlink(missing_ok=True)
    packed(Path(path)).unlink(missing_ok=True)


def read_stored_bytes(path: str | os.PathLike) -> bytes:
    """The (unpacked) bytes of a results file; ResultsFileError naming it if missing or a packed file is cut
    or corrupt (gzip checks its length and CRC at the end of the stream)."""
    where = stored(path)
    try:
        if not is_packed(where):
            return where.read_bytes()
        with gzip.open(where, "rb") as fh:
            return fh.read()
    except FileNotFoundError as error:
        raise ResultsFileError(f"results file not found: {path}") from error
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ResultsFileError(f"results file {where} is truncated or corrupt ({error})") from error
    except OSError as error:
        raise ResultsFileError(f"results file cannot be read: {where}: {error}") from error


def read_stored_text(path: str | os.PathLike) -> str:
    """The text of a results file, plain or packed (ResultsFileError as read_stored_bytes)."""
    try:
        return read_stored_bytes(path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ResultsFileError(f"results file cannot be read: {stored(path)}: {error}") from error


def pack_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Write ``source`` gzip-packed to ``target`` atomically. The packed bytes depend only on the content
    (no name, time 0 in the header), so packing an unchanged file again gives the same bytes."""
    with (open(source, "rb") as src, atomic_open(target, "wb") as fh,
          gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as packed_fh):  # fmt: skip
        shutil.copyfileobj(src, packed_fh)


def unpack_file(path: str | os.PathLike) -> Path:
    """Make a results file plain before it is appended to: a packed twin is unpacked to the plain path (and
    removed by the atomic write); returns the plain path."""
    path = Path(path)
    if not path.is_file() and packed(path).is_file():
        data = read_stored_bytes(path)
        with atomic_open(path, "wb") as fh:
            fh.write(data)
    return path


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy the bytes of ``src`` to ``dst`` atomically."""
    with open(src, "rb") as source, atomic_open(dst, "wb") as target:
        shutil.copyfileobj(source, target)


def write_marker(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write a JSON completion marker atomically (its presence marks a finished job; parent folders created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as fh:
        json.dump(dict(payload), fh, indent=2, sort_keys=True)


def read_marker(path: str | os.PathLike) -> dict | None:
    """The payload of a completion marker, or None when the job has not finished."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsFileError(f"corrupt completion marker {path}: {error}") from error
