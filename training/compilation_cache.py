"""Persistent JAX compilation cache shared by the processes of a study (each configuration runs in its own
process, so without it every process would compile the same functions again)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax

logger = logging.getLogger(__name__)

CACHE_ENV = "SSN_JAX_CACHE"
"""Environment variable naming the cache folder; set it to 'off' to disable the cache."""


def default_cache_dir() -> Path:
    """``$SSN_JAX_CACHE``, else ``$XDG_CACHE_HOME/ssn_v1_jax``, else ``~/.cache/ssn_v1_jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get(CACHE_ENV) or Path(base) / "ssn_v1_jax")


def enable_compilation_cache(folder: Path | None = None) -> Path | None:
    """Store compiled functions in ``folder`` (default :func:`default_cache_dir`); None when disabled."""
    if os.environ.get(CACHE_ENV, "").lower() == "off":
        return None
    folder = Path(folder or default_cache_dir())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        logger.warning("compilation cache disabled: cannot create %s (%s)", folder, error)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return folder


def prepare_process() -> None:
    """Logging (store.logs) and the compilation cache of a command-line entry point's process."""
    from store.logs import setup_logging

    setup_logging(None)
    enable_compilation_cache()
