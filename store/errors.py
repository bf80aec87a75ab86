"""The errors of the results store, and how a command ends on bad input.

Imports only the standard library and parameters.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from parameters import ParameterError

logger = logging.getLogger(__name__)


class ResultsFileError(ValueError):
    """A results file is missing, empty, unparsable or lacks required columns; the message names it."""


class ResultsFolderError(ValueError):
    """A results folder is missing, incomplete, locked or from an incompatible version; the message says which."""


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
