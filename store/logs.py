"""Logging of every entry point, set up one way: main.py, the job commands, the analysis and the benchmarks.

Records go to stderr (kept clear of tqdm progress bars) and, for main.py, appended to the study's log.txt (a
file of the results folder); records marked FILE_ONLY (the output of jobs) go to log.txt only.

This module imports only the standard library (tqdm on first use).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

_HANDLER_TAG = "_ssn_main_handler"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


# ------------------------------------------------------------------------------------------------- logging
FILE_ONLY: dict[str, Any] = {"file_only": True}
"""``extra`` for a log record that goes to log.txt only (e.g. the output of jobs), not to the terminal."""


class _ConsoleHandler(logging.StreamHandler):
    """stderr output that keeps tqdm progress bars intact and leaves out file-only records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm  # here: answering --help needs no tqdm

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
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
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


def clean_log_text(text: str) -> list[str]:
    """Lines of a job log with progress-bar redraws (carriage returns) reduced to their last state."""
    return [line.rsplit("\r", 1)[-1] for line in text.splitlines() if line.rsplit("\r", 1)[-1].strip()]
