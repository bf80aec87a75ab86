"""What a job process runs on a compute node: ``run_job_command``.

``study.jobs.SubmititLauncher`` registers this module with ``cloudpickle.register_pickle_by_value``, so that a
submitit job unpickles ``run_job_command`` by value and needs no import path to this repository. Keep the
module free of imports from the repository for that reason: the rest of the study code lives in ``study/``
(environment record, scripts snapshot and lock: study.records; jobs and launchers: study.jobs) and ``store/``
(parameter files: store.parameter_files; logging: store.logs; folder layout: store.layout).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence


def run_job_command(argv: Sequence[str], log_path: str, cwd: str, env: Mapping[str, str] | None = None) -> int:
    """Run one job's command line with its output appended to ``log_path``; return the exit status.

    This is what a submitit job executes on the compute node.
    """
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"# {dt.datetime.now().isoformat(timespec='seconds')} on {socket.gethostname()}: "
                  f"{' '.join(argv)}\n")  # fmt: skip
        log.flush()
        environment = {**os.environ, **dict(env or {})}
        return subprocess.run(list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=environment,
                              check=False).returncode  # fmt: skip
