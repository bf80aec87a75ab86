"""A job's pieces and the assembled files that hold the same rows: which pieces a kept study leaves out, and
putting them back before an assembly.

Assembly concatenates the pieces of the completed jobs in run order, so every row of a piece is also a row
of an assembled file: a pretraining piece ``X.csv`` in the root's unfiltered copy ``X_complete.csv`` (run_index
is the original run index there), a stage-2 piece in its configuration's ``X.csv`` (run_index is the job's run
index). A kept study (study.keep) stores each row once: it leaves out a piece whose rows the assembled file
holds, with the row count the job's marker recorded. Only an assembly reads pieces, and it runs again only
when a study grows; ``restore_pieces`` writes the missing pieces back from the assembled files first (before
the assembly rewrites them). A restored piece holds the same values; its text may differ from the original
(a column that is floating-point in the assembled file is written as such), which does not change the
assembled files: a column's type there is already the common type of the pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.errors import ResultsFileError
from store.files import atomic_write_csv, has_stored, read_marker
from store.layout import (
    PRETRAINING_PIECES,
    PRETRAINING_RUNS,
    RUN_FOLDER_PREFIX,
    TRAINING_PIECES,
    TRAINING_RUNS,
    JobLayout,
    StudyLayout,
    complete_copy,
    run_folder_name,
)
from study import lazy_module

tables = lazy_module("store.tables")  # loads pandas: not needed to answer --help


@dataclass(frozen=True)
class Piece:
    """One file of a completed job and the assembled file that holds its rows."""

    path: Path
    run_index: int
    rows: int
    """The row count the job's marker recorded."""
    holder: Path
    """The assembled file whose rows of ``run_index`` are this piece's rows."""


def job_folders(parent: Path) -> Iterator[tuple[int, JobLayout]]:
    """(run index, job) of every ``run_<i>`` folder under ``parent``, in run order."""
    if not parent.is_dir():
        return
    suffixes = [p.name[len(RUN_FOLDER_PREFIX):] for p in parent.iterdir()
                if p.is_dir() and p.name.startswith(RUN_FOLDER_PREFIX)]  # fmt: skip
    indices = sorted(int(s) for s in suffixes if s.isdigit())
    for index in indices:
        yield index, JobLayout(parent / run_folder_name(index))


def completed_pieces(folder: Path) -> list[Piece]:
    """The pieces of every successful job of a study folder (pretraining and each configuration's stage 2)."""
    layout = StudyLayout(folder)
    pieces = list(_pieces(layout.root / PRETRAINING_RUNS, PRETRAINING_PIECES, lambda n: layout.file(complete_copy(n))))
    for conf in sorted(p.parent for p in layout.root.glob(f"*/{TRAINING_RUNS}")):
        pieces += _pieces(conf / TRAINING_RUNS, TRAINING_PIECES, lambda n, c=conf: c / n)
    return pieces


def _pieces(parent: Path, names: tuple[str, ...], holder_of: Callable[[str], Path]) -> Iterator[Piece]:
    for run_index, job in job_folders(parent):
        payload = read_marker(job.marker)
        if not payload or not payload.get("success"):
            continue
        rows = payload.get("rows", {})
        for name in names:
            if name in rows:
                yield Piece(job.file(name), run_index, int(rows[name]), holder_of(name))


def held_pieces(pieces: list[Piece]) -> list[Piece]:
    """The pieces whose rows their assembled file holds with the recorded row count (each holder read once)."""
    counts: dict[Path, dict[int, int]] = {}
    held = []
    for piece in pieces:
        if not has_stored(piece.holder):
            continue
        if piece.holder not in counts:
            counts[piece.holder] = _rows_per_run(piece.holder)
        if counts[piece.holder].get(piece.run_index) == piece.rows:
            held.append(piece)
    return held


def _rows_per_run(path: Path) -> dict[int, int]:
    """Run index -> number of rows of an assembled file (empty where it has no rows)."""
    try:
        table = tables.read_results_csv(path, ["run_index"])
    except ResultsFileError as error:
        if "is empty" in str(error):
            return {}
        raise
    return {int(run): int(n) for run, n in table["run_index"].value_counts().items()}


def restore_pieces(folder: Path) -> list[Path]:
    """Write back every missing piece of a completed job from its assembled file; the pieces written.

    ResultsFileError naming the piece if its assembled file is missing or does not hold its recorded rows.
    """
    missing = [piece for piece in completed_pieces(folder) if not has_stored(piece.path)]
    holders: dict[Path, Any] = {}  # holder -> its table (pandas, loaded with store.tables)
    written = []
    for piece in missing:
        if not has_stored(piece.holder):
            raise ResultsFileError(f"{piece.path} is missing and {piece.holder} that holds its rows too")
        if piece.holder not in holders:
            holders[piece.holder] = tables.read_results_csv(piece.holder, ["run_index"])
        table = holders[piece.holder]
        rows = table[table["run_index"].astype(int) == piece.run_index].reset_index(drop=True)
        if len(rows) != piece.rows:
            raise ResultsFileError(f"{piece.path} is missing and {piece.holder} holds {len(rows)} of its "
                                   f"{piece.rows} rows")  # fmt: skip
        atomic_write_csv(rows, piece.path)
        written.append(piece.path)
    return written
