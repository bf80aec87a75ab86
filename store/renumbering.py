"""Renumbering the runs that survive exclusion, and deriving a retained per-run file from its unfiltered copy.

Run exclusion (store.exclusion) keeps every per-run pretraining file twice: the unfiltered ``X_complete.csv``
and the retained ``X.csv`` (the surviving runs renumbered 0..n-1, their original index in a last column).
The retained file is a function of the unfiltered one and the list of excluded runs, so a kept study may
store only those two (study.keep checks that the derivation gives the retained file's exact bytes and names
each such file in ``derived.json``); ``derived_csv_bytes`` is that derivation, and store.files calls it when
a reader asks for a derived file.

Imports pandas and numpy but nothing of the results store except its names and errors: store.files reaches it lazily.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from store.errors import ResultsFileError
from store.layout import CSV_WRITE_OPTIONS
from store.schema import ORIGINAL_RUN_INDEX


def run_indices(column: pd.Series, name: str) -> pd.Series:
    """run_index values as integers (they may have been written as floats); ResultsFileError naming the file
    if one is not a non-negative integer."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | (values != np.round(values)) | (values < 0)
    if bad.any():
        raise ResultsFileError(f"{name}: run_index must hold non-negative integers, got {column[bad].tolist()}")
    return values.astype(np.int64)


def survivor_mapping(universe: Iterable[int], excluded: Iterable[int]) -> dict[int, int]:
    """Original index -> new index of the runs not excluded, numbered 0..n-1 in index order."""
    survivors = sorted(set(universe) - set(excluded))
    return {old: new for new, old in enumerate(survivors)}


def renumber(df: pd.DataFrame, mapping: Mapping[int, int], name: str) -> pd.DataFrame:
    """Rows of surviving runs with run_index renumbered and the original index in a last column."""
    runs = run_indices(df["run_index"], name)
    kept = df[runs.isin(list(mapping))].copy()
    original = runs[kept.index]
    kept["run_index"] = original.map(mapping).astype(np.int64)
    kept[ORIGINAL_RUN_INDEX] = original.astype(np.int64)
    return kept.reset_index(drop=True)


def csv_text(df: pd.DataFrame) -> str:
    """The text of a results CSV as the store writes it (no index, full float precision)."""
    return df.to_csv(**CSV_WRITE_OPTIONS)


def parse_run_list(text: str, name: str) -> list[int]:
    """The sorted run indices of a one-index-per-line list (empty text means none); ResultsFileError naming
    the file if it holds something else."""
    try:
        return sorted(int(float(token)) for token in text.split())
    except ValueError as error:
        raise ResultsFileError(f"results file cannot be parsed: {name}: {error}") from error


def derived_csv_bytes(complete: bytes, excluded: Iterable[int], name: str) -> bytes:
    """The retained file ``name`` made from the bytes of its unfiltered copy and the excluded original indices.

    Only the mapping of the runs this file holds matters (a run's new index counts the survivors below it),
    so the universe is every index up to this file's largest.
    """
    try:
        df = pd.read_csv(io.BytesIO(complete))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise ResultsFileError(f"the unfiltered copy of {name} cannot be parsed: {error}") from error
    runs = run_indices(df["run_index"], name)
    universe = range(int(runs.max()) + 1) if len(runs) else range(0)
    return csv_text(renumber(df, survivor_mapping(universe, excluded), name)).encode("utf-8")
