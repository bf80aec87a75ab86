"""The study around the model: command line, study design and records, jobs and the study stages.

The study reaches the training only through the command lines of its jobs (``python -m
training.main_pretraining ...``, ``python -m training.main_training ...``): it imports no module of
``training`` (nor of ``analysis``, which main.py runs after the study's stages). The results folder's layout,
files and parameter files are the store's (package ``store``).

Every module here imports only the standard library, parameters.py and the light modules of ``store`` at
import time (the store's pandas-backed modules are loaded on first use), so that ``python main.py --help``
answers at once.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository: the working directory of job processes and the source of the scripts/ snapshot."""


def lazy_module(name: str) -> types.ModuleType:
    """A module that is imported on its first attribute access (importlib's LazyLoader): ``--help`` and bad
    arguments are answered without loading JAX, pandas and matplotlib."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"module {name} not found")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
