"""The command line of ``python -m analysis.main_analysis``, kept free of heavy imports (``--help`` answers at
once: the analysis parses its arguments before it imports pandas, JAX and matplotlib)."""

from __future__ import annotations

import argparse
from pathlib import Path

ALL_PARTS: tuple[str, ...] = ("exclusion", "tuning_curves", "features", "changes", "mvpa", "stats", "figures", "report")


def parse_analysis_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of ``python -m analysis.main_analysis``."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis.main_analysis",
        description="Analyse a finished results folder: run exclusion, tuning curves and their features, "
        "relative parameter changes, MVPA and Mahalanobis scores, statistics, figures F1-F9, "
        "summary.pdf per configuration and report.html. Outputs that exist are kept.",
    )
    parser.add_argument("results_folder", type=Path, help="results folder of a study")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        metavar="CONF",
        help="configuration sub-folders (default: every folder with a training_results.csv)",
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=list(ALL_PARTS),
        choices=ALL_PARTS,
        metavar="PART",
        help=f"parts to run, in pipeline order (default: all): {', '.join(ALL_PARTS)}",
    )
    parser.add_argument("--mvpa-trials", type=int, default=None, help="noisy trials per condition (default 200)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the analysis' random draws (default 0)")
    parser.add_argument("--quick", action="store_true", help="small sizes: 40 MVPA trials, coarse F7 windows")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)
