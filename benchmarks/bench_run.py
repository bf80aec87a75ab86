"""Benchmark of one full default-size run: initialisation, stages 0 and 1, the post-stage-1 regressions and
stage 2 of the baseline configuration, with the time split between SGD steps, probes and validation.

Usage: ``python benchmarks/bench_run.py [--folder DIR] [--seed 0]``. Takes tens of minutes on a CPU; the
stage logs (``run 0 stage k: ... seconds in SGD ..., probes ..., validation ...``) give the split.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parameters import Parameters  # noqa: E402
from store.assembly import assemble_pretraining  # noqa: E402
from store.layout import StudyLayout  # noqa: E402
from store.logs import setup_logging  # noqa: E402
from store.parameter_files import REPO_PARAMETERS  # noqa: E402
from training import main_pretraining, main_training  # noqa: E402


def main() -> None:
    """Pretrain one run and train it in the baseline configuration at default sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="results folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_logging(None)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench_run_"))
    params = Parameters()
    start = time.perf_counter()
    main_pretraining.run_pretraining_job(folder, params, args.seed, 0, progress=False)
    pretraining_s = time.perf_counter() - start
    assemble_pretraining(folder, params, 1)
    conf = StudyLayout(folder).configuration("conf_baseline")
    conf.folder.mkdir(exist_ok=True)
    conf.parameters.write_text(REPO_PARAMETERS.read_text())
    start = time.perf_counter()
    main_training.run_training_job(conf.folder, 0, args.seed, progress=False)
    training_s = time.perf_counter() - start
    logging.info("pretraining job (init, stages 0-1, regressions): %.0f s; stage 2: %.0f s; total %.0f s",
                 pretraining_s, training_s, pretraining_s + training_s)  # fmt: skip


if __name__ == "__main__":
    main()
