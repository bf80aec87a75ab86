"""CSV schemas of the results files (spec §17): the column names, and the codecs between rows and values.

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
* ``init_readout_params.csv`` rows are keyed by three codes (log_regr, layer, sup_only), encoded and decoded
  only here (:data:`REGRESSION_CODES`).

The codecs work on plain mappings and numpy arrays (no pandas, no JAX).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

PAIRS: tuple[str, ...] = ("EE", "EI", "IE", "II")
"""2×2 entries in row-major order [a][b] (a post-synaptic, b pre-synaptic; E = 0, I = 1)."""
INHIBITORY_PAIRS: frozenset[str] = frozenset({"EI", "II"})
TEST_OFFSETS: tuple[float, ...] = (1.0, 3.0, 7.0, 12.0, 20.0)
ORIGINAL_RUN_INDEX = "original_run_index"
"""The last column of a per-run file after run exclusion: the run's index before renumbering."""
MEAN_RATE_COLUMNS: tuple[str, ...] = ("meanr_E_mid", "meanr_E_sup", "meanr_I_mid", "meanr_I_sup")
RUN_CONSTANT_COLUMNS: tuple[str, ...] = ("eta", "gE", "gI")
"""The per-run constants of initial_parameters.csv."""


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


def map_columns(columns: Sequence[str]) -> list[str]:
    """The cell columns of orimap.csv ("0", "1", ...) in cell order; their number is the grid's cell count."""
    return sorted((c for c in columns if c.isdigit()), key=int)


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


# ------------------------------------------------------------------------------- regression readout rows
class RegressionCode(NamedTuple):
    """The key of an init_readout_params.csv row (the reference's three flags)."""

    log_regr: int
    """1 for a logistic-regression readout, 0 for the SGD readout of stage 1."""
    layer: int
    """1 for superficial weights, 0 for middle weights."""
    sup_only: int
    """1 for a readout of one layer only, 0 for one half of the mixed readout."""


SGD_READOUT = RegressionCode(0, 1, 1)
SUPERFICIAL_REGRESSION = RegressionCode(1, 1, 1)
MIXED_MIDDLE_HALF = RegressionCode(1, 0, 0)
MIXED_SUPERFICIAL_HALF = RegressionCode(1, 1, 0)
MIDDLE_REGRESSION = RegressionCode(1, 0, 1)
REGRESSION_CODES: Mapping[tuple[float, float], tuple[RegressionCode, ...]] = {
    (1.0, 0.0): (SUPERFICIAL_REGRESSION,),
    (0.5, 0.5): (MIXED_MIDDLE_HALF, MIXED_SUPERFICIAL_HALF),
    (0.0, 1.0): (MIDDLE_REGRESSION,),
}
"""The rows of the regression readout of each readout mix (superficial, middle contributions); the mixed
readout's weights are its middle half followed by its superficial half."""


def regression_row(run_index: int, code: RegressionCode, w: np.ndarray, b: float, offset: float) -> dict:
    """One init_readout_params.csv row: the code, the weights w_sig_<i>, the bias and the readout's threshold."""
    row = {"run_index": run_index, **code._asdict(),
           **{f"w_sig_{i}": float(v) for i, v in enumerate(np.asarray(w))}, "b_sig": float(b),
           "psychometric_offset": offset}  # fmt: skip
    return row
