"""Cell layout and task orientations of the analysis, derived from a ``Parameters`` instance.

Every CSV and figure of the analysis indexes cells in one order (ANALYSIS.md §0.3): first the middle-layer
cells, ``phases`` blocks of (E grid, I grid), so mid cell (p, t, g) has index ``2·n_grid·p + n_grid·t + g``;
then the superficial cells, (E grid, I grid), so sup cell (t, g) has index ``n_mid + n_grid·t + g``. Grid
point g = side·row + col. With the default 9x9 grid and 4 phases this is 162p + 81t + g and 648 + 81t + g
(810 cells). Nothing else in the analysis restates these sizes: it asks a :class:`CellLayout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from parameters import Parameters, StimuliPars

CELL_TYPES: tuple[str, str] = ("E", "I")
LAYER_NAMES: tuple[str, str] = ("mid", "sup")
CONTROL_ORI = 0.0
"""Control orientation of the MVPA: 55° away (modulo 180) from both the trained 55° and untrained 125°."""


@dataclass(frozen=True)
class CellLayout:
    """Shape of the model as the analysis sees it: grid edge, middle-layer phases, central readout edge."""

    grid_side: int
    """Grid edge length in grid points (``GridPars.gridsize_Nx``)."""
    phases: int
    """Middle-layer phases per grid point (``SSNPars.phases``)."""
    readout_side: int
    """Edge of the central block read out in the fine task (``ReadoutPars.readout_grid_size[1]``); the MVPA
    "voxels" are this block of grid points."""

    @classmethod
    def from_parameters(cls, params: Parameters) -> CellLayout:
        """The layout of a model built from params."""
        return cls(params.grid.gridsize_Nx, params.ssn.phases, params.readout.readout_grid_size[1])

    @property
    def n_grid(self) -> int:
        """Grid points per map."""
        return self.grid_side * self.grid_side

    @property
    def n_mid(self) -> int:
        """Middle-layer cells: phases x (E, I) x grid points."""
        return self.phases * len(CELL_TYPES) * self.n_grid

    @property
    def n_sup(self) -> int:
        """Superficial-layer cells: (E, I) x grid points."""
        return len(CELL_TYPES) * self.n_grid

    @property
    def n_cells(self) -> int:
        """All cells, mid then sup."""
        return self.n_mid + self.n_sup

    @property
    def centre_grid_point(self) -> int:
        """Grid point at the centre of the grid (40 on a 9x9 grid)."""
        return self.n_grid // 2

    @property
    def crop(self) -> slice:
        """Rows (and columns) of the central readout block (2..6 for a 5x5 block in a 9x9 grid)."""
        start = (self.grid_side - self.readout_side) // 2
        return slice(start, start + self.readout_side)

    def mid_index(self, phase: int, cell_type: int, grid: int) -> int:
        """Index of middle-layer cell (phase, type 0 = E / 1 = I, grid point)."""
        return (phase * len(CELL_TYPES) + cell_type) * self.n_grid + grid

    def sup_index(self, cell_type: int, grid: int) -> int:
        """Index of superficial-layer cell (type 0 = E / 1 = I, grid point)."""
        return self.n_mid + cell_type * self.n_grid + grid

    def grid_of_cells(self) -> np.ndarray:
        """Grid point of every cell (cell c sits at grid point c mod n_grid)."""
        return np.arange(self.n_cells) % self.n_grid


def cell_names(layout: CellLayout) -> list[str]:
    """Column names of the cells in index order: ``G{g+1}_{E|I}_Ph{p}_M``, then ``G{g+1}_{E|I}_S``."""
    mid = [f"G{g + 1}_{t}_Ph{p}_M" for p in range(layout.phases) for t in CELL_TYPES for g in range(layout.n_grid)]
    sup = [f"G{g + 1}_{t}_S" for t in CELL_TYPES for g in range(layout.n_grid)]
    return mid + sup


def cell_info(layout: CellLayout) -> pd.DataFrame:
    """One row per cell: name, layer ('mid'/'sup'), type ('E'/'I'), phase (mid 0..phases-1, sup -1), grid point."""
    idx = np.arange(layout.n_cells)
    is_mid = idx < layout.n_mid
    per_phase = len(CELL_TYPES) * layout.n_grid
    local = np.where(is_mid, idx % per_phase, idx - layout.n_mid)
    return pd.DataFrame(
        {
            "cell": idx,
            "name": cell_names(layout),
            "layer": np.where(is_mid, LAYER_NAMES[0], LAYER_NAMES[1]),
            "type": np.where(local < layout.n_grid, CELL_TYPES[0], CELL_TYPES[1]),
            "phase": np.where(is_mid, idx // per_phase, -1),
            "grid": idx % layout.n_grid,
        }
    )


@dataclass(frozen=True)
class TaskOrientations:
    """The trained and untrained reference orientations (degrees) and the MVPA control orientation."""

    trained: float
    untrained: float
    control: float = CONTROL_ORI

    @classmethod
    def from_parameters(cls, params: Parameters) -> TaskOrientations:
        """``StimuliPars.ref_ori`` (trained) and ``StimuliPars.untrained_ori`` of params."""
        return cls.from_stimuli(params.stimuli)

    @classmethod
    def from_stimuli(cls, stimuli: StimuliPars) -> TaskOrientations:
        """The orientations of a StimuliPars."""
        return cls(float(stimuli.ref_ori), float(stimuli.untrained_ori))

    @property
    def slopes(self) -> tuple[float, float]:
        """Orientations at which tuning-curve slopes are measured: (trained, untrained)."""
        return (self.trained, self.untrained)

    @property
    def mvpa(self) -> tuple[float, float, float]:
        """MVPA stimulus orientations in response-array order: trained, untrained, control."""
        return (self.trained, self.untrained, self.control)


DEFAULT_ORIENTATIONS = TaskOrientations.from_stimuli(StimuliPars())
"""The orientations of the default parameters (55, 125, control 0): defaults of the table functions."""


def wrap_orientation_difference(d: np.ndarray | float) -> np.ndarray:
    """Wrap orientation differences (degrees) into [-90, 90)."""
    return (np.asarray(d, dtype=float) + 90.0) % 180.0 - 90.0
