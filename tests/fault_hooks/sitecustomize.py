"""Test-only fault injection, loaded by every Python process started with this folder on PYTHONPATH.

The slow tests (tests/test_slurm.py, tests/test_fault_injection.py) put this folder on PYTHONPATH of a study,
so that main.py and every job it starts (local or on a SLURM node) import it at startup. Nothing in the project
imports it, and without the variables below it does nothing.

SSN_FAULT_FAIL_JOB=REGEX
    A process whose command line matches REGEX (re.search on the arguments joined by spaces) writes one line to
    stderr and exits with status 3 before running anything: a job that fails on its node.
SSN_FAULT_KILL_BEFORE_REPLACE=GLOB
    The first os.replace onto a file whose name matches GLOB (fnmatch) sends SIGKILL to the process instead,
    after the temporary file is complete and before the rename: a kill inside an atomic write.
"""

import fnmatch
import os
import re
import signal
import sys
from pathlib import Path

_FAIL = os.environ.get("SSN_FAULT_FAIL_JOB")
_KILL = os.environ.get("SSN_FAULT_KILL_BEFORE_REPLACE")


def _command_line() -> str:
    """This process's arguments (sys.argv is not complete yet while site runs)."""
    with open("/proc/self/cmdline", "rb") as fh:
        return " ".join(part.decode(errors="replace") for part in fh.read().split(b"\0") if part)


if _FAIL and re.search(_FAIL, _command_line()):
    sys.stderr.write(f"injected failure: SSN_FAULT_FAIL_JOB={_FAIL!r} matches this job\n")
    sys.stderr.flush()
    os._exit(3)

if _KILL:
    _replace = os.replace

    def _replace_or_die(src, dst, *args, **kwargs):
        if fnmatch.fnmatch(Path(dst).name, _KILL):
            os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _replace_or_die
