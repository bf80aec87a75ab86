"""CSV schemas of the results files, atomic writing, checked reading and run exclusion (spec §15, §17).

Column notes (binding decisions):

* ``accs_125``: fine-task accuracy on the validation trials of every 10th step (empty on the other rows), per
  TrainingPars.accs_125_probe: with **reference orientation 125°** (the untrained orientation) at the current
  offset ('reference_125', preset corrected), or, as the reference, with reference 55° at an **offset of 125°**
  ('offset_125', the default).
* ``kappa_*`` columns hold the raw κ values from row 0 on; the model (and the analysis) applies tanh.
  ``kappa_Jsup_XY_pre`` is ``kappa_Jsup[0][a][b]`` and ``kappa_Jsup_XY_post`` is ``kappa_Jsup[1][a][b]``,
  with XY = EE, EI, IE, II for [a][b] (E = 0, I = 1; a post-synaptic, b pre-synaptic).
* ``J_*`` columns are signed (J_EI, J_II negative); ``log_J_*`` hold log|J|.
* ``gradient_unrolled`` (not in the specification): 1 where the step's SSN gradient went through the Euler
  loop, 0 where it was the implicit gradient at settled fixed points or the step trained the readout only.
* Floats are written with full precision (shortest round-trip representation), so float32 parameters
  come back exactly.
* After run exclusion every per-run file carries a last column ``original_run_index``; ``run_index`` is
  the renumbered index. The unfiltered files are kept as ``*_complete.csv``.

Packed files: a kept study (study.keep) stores each CSV gzip-packed as ``<name>.csv.gz``. Every reader here
takes the plain path and reads whichever of the two exists (:func:`stored`, the plain one first: a command
that rewrites a file writes it plain and removes its packed twin, so the plain file is always the newer one).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from parameters import ParameterError
from study.layout import EXCLUDED_RUNS, PACKED_SUFFIX, PRETRAINING_PIECES, StudyLayout, complete_copy, packed
from study.layout import PRETRAINING_RESULTS as PRETRAINING_RESULTS  # for analysis.main_analysis, which imports it here

logger = logging.getLogger(__name__)

PAIRS: tuple[str, ...] = ("EE", "EI", "IE", "II")
"""2×2 entries in row-major order [a][b] (a post-synaptic, b pre-synaptic; E = 0, I = 1)."""
INHIBITORY_PAIRS: frozenset[str] = frozenset({"EI", "II"})
TEST_OFFSETS: tuple[float, ...] = (1.0, 3.0, 7.0, 12.0, 20.0)

PER_RUN_FILES: tuple[str, ...] = PRETRAINING_PIECES
"""The per-run files that run exclusion filters (file names: study.layout)."""
ORIGINAL_RUN_INDEX = "original_run_index"


class ResultsFileError(ValueError):
    """A results file is missing, empty, unparsable or lacks required columns; the message names it."""


EXIT_USER_ERROR = 2
"""Exit status of a command that stops on bad input (a missing or corrupt file, an invalid parameter)."""
USER_ERRORS: tuple[type[BaseException], ...] = (
    ResultsFileError, ParameterError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
)  # fmt: skip


def run_entry_point(main: Callable[[], object]) -> int:
    """Run a command's main(); bad input ends with one logged line and EXIT_USER_ERROR, not a traceback."""
    try:
        main()
    except USER_ERRORS as error:
        logger.error("%s", error)
        return EXIT_USER_ERROR
    return 0


# ------------------------------------------------------------------------------------------ columns (§17)
def _pair_columns(template: str) -> list[str]:
    return [template.format(pair) for pair in PAIRS]


STEP_COLUMNS: tuple[str, ...] = (
    "run_index", "stage", "SGD_steps", "acc", "val_acc", "val_loss", "accs_125",
    "loss_binary_cross_entr", "loss_dx_max", "loss_r_max", "loss_r_mean", "loss_w_sig", "loss_b_sig",
    "loss_all", "maxr_E_mid", "maxr_I_mid", "maxr_E_sup", "maxr_I_sup",
    "meanr_E_mid", "meanr_I_mid", "meanr_E_sup", "meanr_I_sup", "gradient_unrolled",
)  # fmt: skip
SSN_COLUMNS: tuple[str, ...] = (
    *_pair_columns("log_J_{}_m"), *_pair_columns("log_J_{}_s"),
    *_pair_columns("J_{}_m"), *_pair_columns("J_{}_s"),
    "cE_m", "cI_m", "cE_s", "cI_s", "log_f_E", "log_f_I", "f_E", "f_I",
)  # fmt: skip
KAPPA_COLUMNS: tuple[str, ...] = (
    *_pair_columns("kappa_Jsup_{}_pre"), *_pair_columns("kappa_Jsup_{}_post"),
    *_pair_columns("kappa_Jmid_{}"), "kappa_f_E", "kappa_f_I",
)  # fmt: skip
INITIAL_PARAMETERS_COLUMNS: tuple[str, ...] = (
    "run_index", "stage", "f_E", "f_I", "cE_m", "cI_m", "cE_s", "cI_s",
    *_pair_columns("J_{}_m"), *_pair_columns("J_{}_s"), "eta", "gE", "gI",
)  # fmt: skip
INIT_READOUT_COLUMNS: tuple[str, ...] = (
    "run_index", "log_regr", "layer", "sup_only", *(f"w_sig_{i}" for i in range(25)), "b_sig",
    "psychometric_offset",
)  # fmt: skip


def pretraining_columns(num_weights: int = 81) -> list[str]:
    """Columns of pretraining_results.csv: step metrics, SSN parameters, threshold, readout."""
    return [*STEP_COLUMNS, *SSN_COLUMNS, "psychometric_offset", *readout_columns(num_weights)]


def training_columns() -> list[str]:
    """Columns of training_results.csv (stage 2, and stage 1 where it runs in the training job): no readout, plus
    staircase offset and raw κ."""
    return [*STEP_COLUMNS, *SSN_COLUMNS, "psychometric_offset", "staircase_offset", *KAPPA_COLUMNS]


def readout_columns(num_weights: int) -> list[str]:
    """w_sig_0 … w_sig_<num_weights-1>, b_sig."""
    return [*(f"w_sig_{i}" for i in range(num_weights)), "b_sig"]


def format_offset(offset: float) -> str:
    """Offset as it appears in column names: 1.0 → '1', 2.5 → '2.5'."""
    value = float(offset)
    return str(int(value)) if value.is_integer() else repr(value)


def val_columns(base_columns: Sequence[str], test_offsets: Sequence[float] = TEST_OFFSETS) -> list[str]:
    """Validation-file columns: base, then acc_mean_offset_o, acc_std_offset_o for each offset."""
    extra = [f"acc_{stat}_offset_{format_offset(o)}" for o in test_offsets for stat in ("mean", "std")]
    return [*base_columns, *extra]


def orimap_columns(num_cells: int = 81) -> list[str]:
    """Columns of orimap.csv: run_index, 0 … num_cells-1."""
    return ["run_index", *(str(i) for i in range(num_cells))]


ORIMAP_COLUMNS: tuple[str, ...] = tuple(orimap_columns())


# ------------------------------------------------------------------------------------------- kappa columns
def kappa_columns(kappa_Jsup: Any, kappa_Jmid: Any, kappa_f: Any) -> dict[str, float]:
    """Raw κ values keyed by their CSV column names (kappa_Jsup_XY_pre/post, kappa_Jmid_XY, kappa_f_E/I)."""
    sup, mid, f = _as_shape(kappa_Jsup, (2, 2, 2)), _as_shape(kappa_Jmid, (2, 2)), _as_shape(kappa_f, (2,))
    row: dict[str, float] = {}
    for half, name in ((0, "pre"), (1, "post")):
        row.update(
            {f"kappa_Jsup_{p}_{name}": float(v) for p, v in zip(PAIRS, sup[half].ravel(), strict=True)}
        )
    row.update({f"kappa_Jmid_{p}": float(v) for p, v in zip(PAIRS, mid.ravel(), strict=True)})
    row.update({"kappa_f_E": float(f[0]), "kappa_f_I": float(f[1])})
    return row


def kappas_from_row(
    row: Mapping[str, Any], dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kappa_Jsup (2,2,2), kappa_Jmid (2,2), kappa_f (2,)) from a row written with kappa_columns."""
    _require_keys(row, KAPPA_COLUMNS)
    values = np.array([row[c] for c in KAPPA_COLUMNS], dtype=np.float64).astype(dtype)
    return values[:8].reshape(2, 2, 2), values[8:12].reshape(2, 2), values[12:14].copy()


def _as_shape(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != shape:
        raise ValueError(f"expected an array of shape {shape}, got {array.shape}")
    return array


# --------------------------------------------------------------------------------------- SSN parameter rows
def ssn_columns(log_params: Mapping[str, Any], coupled: bool = True) -> dict[str, float]:
    """log_J_*, signed J_*, c*, log_f_*, f_* columns from a log-parameter dictionary (§11, §17)."""
    row: dict[str, float] = {}
    for layer in ("m", "s"):
        row.update({f"log_J_{p}_{layer}": float(_scalar(log_params, f"log_J_{p}_{layer}")) for p in PAIRS})
    for layer in ("m", "s"):
        for p in PAIRS:
            sign = -1.0 if p in INHIBITORY_PAIRS else 1.0
            row[f"J_{p}_{layer}"] = sign * float(np.exp(_scalar(log_params, f"log_J_{p}_{layer}")))
    c_sup = ("cE_m", "cI_m") if coupled else ("cE_s", "cI_s")
    row.update({"cE_m": float(_scalar(log_params, "cE_m")), "cI_m": float(_scalar(log_params, "cI_m"))})
    row.update({"cE_s": float(_scalar(log_params, c_sup[0])), "cI_s": float(_scalar(log_params, c_sup[1]))})
    row.update({f"log_f_{t}": float(_scalar(log_params, f"log_f_{t}")) for t in ("E", "I")})
    row.update({f"f_{t}": float(np.exp(_scalar(log_params, f"log_f_{t}"))) for t in ("E", "I")})
    return row


def ssn_state_from_row(row: Mapping[str, Any], coupled: bool = True, dtype: Any = np.float32) -> dict:
    """Log-parameter dictionary (0-d arrays of dtype) from a row written with ssn_columns."""
    keys = [f"log_J_{p}_{layer}" for layer in ("m", "s") for p in PAIRS]
    keys += ["cE_m", "cI_m"] + ([] if coupled else ["cE_s", "cI_s"]) + ["log_f_E", "log_f_I"]
    _require_keys(row, keys)
    return {k: np.asarray(np.float64(row[k]), dtype=dtype) for k in keys}


def _scalar(params: Mapping[str, Any], key: str) -> np.generic:
    """One entry of a parameter dictionary as a numpy scalar of its own dtype."""
    if key not in params:
        raise KeyError(f"parameter dictionary lacks {key!r}; it has {sorted(params)}")
    array = np.asarray(params[key])
    if array.size != 1:
        raise ValueError(f"parameter {key!r} must be a scalar, got shape {array.shape}")
    return array.reshape(())[()]


def _require_keys(row: Mapping[str, Any], keys: Iterable[str]) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise KeyError(f"row lacks columns {missing}")


# -------------------------------------------------------------------------------------------- file access
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


def atomic_write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` (no index, full float precision) so that ``path`` is either old or complete."""
    with atomic_open(path, "w") as fh:
        df.to_csv(fh, index=False, float_format=None)


def atomic_savefig(fig: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """Save a matplotlib figure so that ``path`` is either absent/old or a complete image."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip(".") or "png", **kwargs)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) so that ``path`` is either its old content or the complete new one."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


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
    (``.csv.gz``, a kept study) if that exists, else the plain path (missing)."""
    path = Path(path)
    if path.is_file():
        return path
    twin = packed(path)
    return twin if twin.is_file() else path


def has_stored(path: str | os.PathLike) -> bool:
    """Whether a results file exists, plain or packed."""
    return stored(path).is_file()


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


def pretraining_folder(root: str | os.PathLike) -> Path:
    """The folder that holds a study's pretraining files.

    A study normally holds its own pretraining; one started with ``--skip-pretraining`` reuses another
    folder's, which its PRETRAINING_DONE.json names. The study's own files win where it has them (e.g. a
    reused pretraining copied into it by hand).
    """
    layout = StudyLayout(Path(root))
    if has_stored(layout.pretraining_results):
        return layout.root
    payload = read_marker(layout.pretraining_done)
    source = payload.get("pretraining_folder") if isinstance(payload, dict) else None
    return layout.recorded_folder(source) if source else layout.root


def read_results_csv(
    path: str | os.PathLike,
    required_columns: Iterable[str] = (),
    expected_rows: int | None = None,
    numeric: bool = True,
    columns: Callable[[str], bool] | None = None,
) -> pd.DataFrame:
    """Read a results CSV; ResultsFileError naming the file if missing, empty, corrupt or incomplete.

    Refused: a last line without its newline (a truncated write), missing required columns, required
    columns with non-numeric cells (unless numeric=False; empty cells are NaN by design) and, where the
    writer recorded it, a row count other than ``expected_rows``. ``columns`` keeps only the columns it accepts.
    """
    path = stored(path)  # the name every message gives: the file that was read
    source: Any = path
    if is_packed(path):  # a kept study's packed file: unpacked whole (which checks it), then parsed
        data = read_stored_bytes(path)
        if data and not data.endswith(b"\n"):
            raise ResultsFileError(f"results file {path} is truncated (its last row is incomplete)")
        source = io.BytesIO(data)
    else:
        _check_complete_last_line(path)
    try:
        df = pd.read_csv(source, usecols=columns)
    except FileNotFoundError as error:
        raise ResultsFileError(f"results file not found: {path}") from error
    except pd.errors.EmptyDataError as error:
        raise ResultsFileError(f"results file is empty: {path}") from error
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise ResultsFileError(f"results file cannot be parsed: {path}: {error}") from error
    except OSError as error:
        raise ResultsFileError(f"results file cannot be read: {path}: {error}") from error
    required = list(required_columns)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ResultsFileError(f"results file {path} lacks columns {missing}")
    if numeric:
        for column in required:
            values = pd.to_numeric(df[column], errors="coerce")
            bad = values.isna() & df[column].notna()
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0])
                raise ResultsFileError(f"results file {path}: column {column} holds a non-number "
                                       f"{df[column].iloc[row]!r} in data row {row + 1}")  # fmt: skip
    if expected_rows is not None and len(df) != expected_rows:
        raise ResultsFileError(f"results file {path} has {len(df)} rows, its writer recorded {expected_rows}")
    return df


def _check_complete_last_line(path: Path) -> None:
    """ResultsFileError if a non-empty file does not end with a newline (a write cut short)."""
    try:
        with path.open("rb") as fh:
            if fh.seek(0, 2) == 0:
                return
            fh.seek(-1, 2)
            last = fh.read(1)
    except FileNotFoundError as error:
        raise ResultsFileError(f"results file not found: {path}") from error
    except OSError as error:
        raise ResultsFileError(f"results file cannot be read: {path}: {error}") from error
    if last != b"\n":
        raise ResultsFileError(f"results file {path} is truncated (its last row is incomplete)")


def read_excluded_runs(folder: str | os.PathLike) -> list[int]:
    """Original indices listed in excluded_runs_from_pretraining.csv (an empty file means none)."""
    path = Path(folder) / EXCLUDED_RUNS
    try:
        return [int(line) for line in read_stored_text(path).split()]
    except ValueError as error:
        raise ResultsFileError(f"results file cannot be parsed: {path}: {error}") from error


# ----------------------------------------------------------------------------------- run exclusion (§15)
def final_pretraining_thresholds(pretraining_df: pd.DataFrame) -> pd.Series:
    """Per run: last non-NaN psychometric_offset of its stage-1 rows (stage-0 rows if it has none)."""
    from training.run_state import final_pretraining_threshold  # run_state reads files through this module

    df = pretraining_df[["run_index", "stage", "psychometric_offset"]]
    runs = _run_indices(df["run_index"], "pretraining results")
    thresholds = {run: final_pretraining_threshold(df[runs == run]) for run in sorted(set(runs))}
    return pd.Series(thresholds, dtype=np.float64, name="psychometric_offset").rename_axis("run_index")


def read_all_pretraining_results(folder: str | os.PathLike, required_columns: Iterable[str] = ()) -> pd.DataFrame:
    """Every run's pretraining rows: the unfiltered copy that exclusion keeps, or the plain file where none ran."""
    complete = Path(folder) / complete_copy(PRETRAINING_RESULTS)
    return read_results_csv(complete if has_stored(complete) else Path(folder) / PRETRAINING_RESULTS, required_columns)


def excluded_runs_with_thresholds(folder: str | os.PathLike, pretraining_df: pd.DataFrame) -> dict[int, float]:
    """Original index -> final pretraining threshold (deg) of each run that exclusion dropped."""
    thresholds = final_pretraining_thresholds(pretraining_df)
    return {int(r): float(thresholds.get(r, np.nan)) for r in read_excluded_runs(folder)}


def runs_to_exclude(thresholds: pd.Series, low: float = 5.0, high: float = 25.0) -> list[int]:
    """Run indices whose threshold is NaN, < low or > high (low and high themselves are kept)."""
    keep = (thresholds >= low) & (thresholds <= high)
    return sorted(int(run) for run in thresholds.index[~keep.to_numpy()])


def exclude_and_renumber(
    folder: str | os.PathLike, low: float = 5.0, high: float = 25.0, files: Sequence[str] = PER_RUN_FILES,
    by_threshold: bool = True,
) -> int:
    """Drop runs with a final threshold outside [low, high] from every per-run file and renumber.

    Keeps the unfiltered files as ``*_complete.csv``, lists excluded original indices in
    excluded_runs_from_pretraining.csv, renumbers survivors 0..n-1 in index order (k → k − #excluded < k,
    counting indices missing from every file as excluded) and returns n. With ``by_threshold`` False
    (PretrainingPars.exclude_runs) only the runs without pretraining rows (failed runs) are excluded.
    """
    folder = Path(folder)
    if PRETRAINING_RESULTS not in files:
        raise ValueError(f"files must include {PRETRAINING_RESULTS}, got {list(files)}")
    tables = {name: read_results_csv(folder / name, _required_for(name)) for name in files}
    _check_not_applied(folder, tables)
    all_runs = set().union(*(set(_run_indices(df["run_index"], name)) for name, df in tables.items()))
    universe = range(max(all_runs) + 1) if all_runs else range(0)
    thresholds = final_pretraining_thresholds(tables[PRETRAINING_RESULTS]).reindex(universe)
    if by_threshold:
        excluded = runs_to_exclude(thresholds, low, high)
    else:  # every run that has pretraining rows is kept, whatever (or whether) its threshold
        present = set(_run_indices(tables[PRETRAINING_RESULTS]["run_index"], PRETRAINING_RESULTS))
        excluded = sorted(set(universe) - present)
    survivors = sorted(set(universe) - set(excluded))
    _log_exclusion(universe, all_runs, excluded, survivors)
    for name in files:
        atomic_copy(folder / name, folder / complete_copy(name))
    _write_index_list(excluded, folder / EXCLUDED_RUNS)
    mapping = {old: new for new, old in enumerate(survivors)}
    for name, df in tables.items():
        atomic_write_csv(_renumber(df, mapping, name), folder / name)
    return len(survivors)


def _renumber(df: pd.DataFrame, mapping: Mapping[int, int], name: str) -> pd.DataFrame:
    """Rows of surviving runs with run_index renumbered and the original index in a last column."""
    runs = _run_indices(df["run_index"], name)
    absent = sorted(set(mapping) - set(runs))
    if absent:
        logger.warning("%s has no rows for retained runs %s", name, absent)
    kept = df[runs.isin(list(mapping))].copy()
    original = runs[kept.index]
    kept["run_index"] = original.map(mapping).astype(np.int64)
    kept[ORIGINAL_RUN_INDEX] = original.astype(np.int64)
    return kept.reset_index(drop=True)


def _run_indices(column: pd.Series, name: str) -> pd.Series:
    """run_index values as integers (they may have been written as floats)."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() | (values != np.round(values)) | (values < 0)
    if bad.any():
        raise ResultsFileError(
            f"{name}: run_index must hold non-negative integers, got {column[bad].tolist()}"
        )
    return values.astype(np.int64)


def _check_not_applied(folder: Path, tables: Mapping[str, pd.DataFrame]) -> None:
    applied = [name for name, df in tables.items() if ORIGINAL_RUN_INDEX in df.columns]
    if applied:
        raise ResultsFileError(f"run exclusion was already applied to {applied} in {folder}; "
                               "the unfiltered files are the *_complete.csv copies")  # fmt: skip


def _required_for(name: str) -> list[str]:
    """Columns exclusion needs from a per-run file."""
    return ["run_index", "stage", "psychometric_offset"] if name == PRETRAINING_RESULTS else ["run_index"]


def _write_index_list(indices: Sequence[int], path: Path) -> None:
    """One index per line, no header; an empty file when there are none."""
    with atomic_open(path, "w") as fh:
        fh.write("".join(f"{i}\n" for i in indices))


def _log_exclusion(universe: range, present: set[int], excluded: list[int], survivors: list[int]) -> None:
    absent = [run for run in universe if run not in present]
    if absent:
        logger.warning("run indices missing from every per-run file (counted as excluded): %s", absent)
    logger.info("excluding runs %s; %d runs retained", excluded, len(survivors))
