"""Tuning-curve CSV files (ANALYSIS.md §3): one row per (run, stage, orientation), 2 id columns, then one
column per cell in the :mod:`analysis.cells` order.

The files always carry a header here (the header-less configuration file of the reference was a defect);
:func:`read_tuning_curves_csv` reads files with and without one. A file grows by appending one (run, stage)
block at a time, so an interrupted analysis keeps what it finished; :func:`read_complete_tuning_curves`
repairs the file an interrupted append left behind. In a kept study the file is packed (``.csv.gz``): it is
read as it is and unpacked to a plain file only when a block is appended or repaired.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.cells import CellLayout, cell_names
from store.files import atomic_open, has_stored, is_packed, read_stored_bytes, stored, unpack_file

logger = logging.getLogger(__name__)

TC_ID_COLUMNS: tuple[str, str] = ("run_index", "training_stage")


def tuning_curve_frame(run_index: int, stage: int, curves: np.ndarray, layout: CellLayout) -> pd.DataFrame:
    """Rows of the tuning-curve CSV for one (run, stage): curves has shape (n_orientations, n_cells)."""
    curves = np.asarray(curves, dtype=float)
    if curves.ndim != 2 or curves.shape[1] != layout.n_cells:
        raise ValueError(f"expected (n_orientations, {layout.n_cells}) curves, got {curves.shape}")
    frame = pd.DataFrame(curves, columns=cell_names(layout))
    frame.insert(0, "training_stage", int(stage))
    frame.insert(0, "run_index", int(run_index))
    return frame


def write_tuning_curves_csv(tc_df: pd.DataFrame, path: str | Path, append: bool = False) -> Path:
    """Write tuning curves WITH a header (fixes the header-less file); append adds rows to a file."""
    path = unpack_file(path) if append else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exists = append and path.exists() and path.stat().st_size > 0
    tc_df.to_csv(path, mode="a" if exists else "w", header=not exists, index=False, float_format="%.4f")
    return path


def _first_line_has_header(path: Path) -> bool:
    """True if any cell of the first line is not a number."""
    if is_packed(path):
        first = read_stored_bytes(path).split(b"\n", 1)[0].decode("utf-8").strip()
    else:
        with path.open() as handle:
            first = handle.readline().strip()
    for cell in first.split(","):
        try:
            float(cell)
        except ValueError:
            return True
    return False


def read_tuning_curves_csv(path: str | Path, layout: CellLayout | None = None) -> pd.DataFrame:
    """Read a tuning-curve CSV with or without a header line; run_index and training_stage become ints.

    A file without a header needs the layout that names its cell columns (a packed file is read as packed).
    """
    path = stored(path)
    if _first_line_has_header(path):
        df = pd.read_csv(path)
    elif layout is None:
        raise ValueError(f"{path} has no header line: pass the CellLayout that names its columns")
    else:
        df = pd.read_csv(path, header=None, names=list(TC_ID_COLUMNS) + cell_names(layout))
    for col in TC_ID_COLUMNS:
        df[col] = df[col].astype(float).astype(int)
    return df


def _truncate_partial_line(path: Path) -> None:
    """Cut an incomplete last line (an append interrupted mid-write) from a text file."""
    with path.open("rb+") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        pos = size
        while pos > 0:
            step = min(65536, pos)
            fh.seek(pos - step)
            chunk = fh.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                fh.truncate(pos - step + newline + 1)
                break
            pos -= step
        else:
            fh.truncate(0)
    logger.warning("%s ended with an incomplete line (interrupted write); it was removed", path)


def read_complete_tuning_curves(path: Path, n_oris: int, layout: CellLayout | None = None) -> pd.DataFrame:
    """The complete (run, stage) blocks of a tuning-curve CSV; incomplete blocks are removed from the file.

    A missing or empty file gives an empty table (with the layout's cell columns when a layout is given).
    """
    if not has_stored(path) or stored(path).stat().st_size == 0:
        return pd.DataFrame(columns=[*TC_ID_COLUMNS, *(cell_names(layout) if layout else [])])
    if is_packed(stored(path)):  # packed whole by study.keep, so complete unless it holds incomplete blocks
        df = read_tuning_curves_csv(path, layout)
        if (df.groupby(list(TC_ID_COLUMNS))["run_index"].transform("size") == n_oris).all():
            return df
        path = unpack_file(path)
    _truncate_partial_line(path)
    df = read_tuning_curves_csv(path, layout)
    sizes = df.groupby(list(TC_ID_COLUMNS))["run_index"].transform("size")
    keep = (sizes == n_oris).to_numpy()
    complete = df[keep].reset_index(drop=True)
    if len(complete) < len(df):
        logger.warning("%s: dropping %d rows of incomplete tuning-curve blocks", path, len(df) - len(complete))
        _keep_lines(path, keep)
    return complete


def _keep_lines(path: Path, keep: Sequence[bool]) -> None:
    """Rewrite a CSV with only the data lines flagged in keep, byte for byte (header kept).

    Re-serialising the parsed table would format floats differently from the appends, so a recovered
    file would differ from one that was never interrupted.
    """
    lines = path.read_bytes().splitlines(keepends=True)
    header = lines[: len(lines) - len(keep)]
    rows = lines[len(header) :]
    with atomic_open(path, "wb") as fh:
        fh.writelines([*header, *(line for line, k in zip(rows, keep, strict=True) if k)])


def stage_blocks(df: pd.DataFrame, columns: Sequence[str] = TC_ID_COLUMNS) -> set[tuple[int, int]]:
    """The (run, stage) pairs present in a table."""
    if df.empty:
        return set()
    return {(int(r), int(s)) for r, s in df[list(columns)].drop_duplicates().itertuples(index=False)}
