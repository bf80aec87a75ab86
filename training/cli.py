"""The command lines of the stage commands, kept free of heavy imports.

``python -m training.main_pretraining`` and ``python -m training.main_training`` parse their arguments with
these functions before they import JAX and the model, so that ``--help`` and bad arguments answer at once.
``--seed`` names the study's base seed as in ``main.py``; ``--base-seed`` is accepted as its former name.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _add_seed(parser: argparse.ArgumentParser) -> None:
    """--seed (alias --base-seed): the base seed of the study, stored as ``base_seed``."""
    parser.add_argument("--seed", "--base-seed", dest="base_seed", type=int, default=0, metavar="S",
                        help="base seed of the study (default: 0; --base-seed is the same option)")  # fmt: skip


def _add_preset(parser: argparse.ArgumentParser) -> None:
    """--preset (default: the preset recorded in the parameters file)."""
    from parameters import PRESET_DESCRIPTIONS  # parameters.py holds dataclasses only: a light import

    presets = "; ".join(f"{name} = {text}" for name, text in PRESET_DESCRIPTIONS.items())
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help=f"parameter preset ({presets}) replacing the one the parameters file "
                             "records; its OVERRIDES still apply on top")  # fmt: skip


def _check_preset(parser: argparse.ArgumentParser, preset: str | None) -> None:
    """Exit with status 2 and one line naming the valid presets if ``preset`` is not one (parameters.check_preset)."""
    from parameters import ParameterError, check_preset

    if preset is not None:
        try:
            check_preset(preset)
        except ParameterError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")


def parse_pretraining_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the pretraining (main.py runs one job per run with --runs I --no-assemble)."""
    parser = argparse.ArgumentParser(prog="python -m training.main_pretraining",
                                     description="Pretraining (stages 0 and 1) of all runs into RESULTS_DIR, "
                                                 "using RESULTS_DIR/parameters.py.")  # fmt: skip
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--num-runs", type=int, required=True, help="runs of the study")
    _add_seed(parser)
    parser.add_argument("--runs", type=int, nargs="*", default=None, help="run indices to pretrain (default: all)")
    parser.add_argument("--no-assemble", action="store_true", help="only run the jobs")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_preset(parser)
    args = parser.parse_args(argv)
    _check_preset(parser, args.preset)
    if args.num_runs < 1:
        parser.error(f"--num-runs must be at least 1, got {args.num_runs}")
    outside = [r for r in args.runs or () if not 0 <= r < args.num_runs]
    if outside:
        parser.error(f"--runs {outside} outside 0..{args.num_runs - 1}")
    return args


def parse_training_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of stage 2."""
    parser = argparse.ArgumentParser(prog="python -m training.main_training",
                                     description="Stage 2 (training) of one configuration.")  # fmt: skip
    parser.add_argument("conf_dir", type=Path, help="configuration folder holding parameters_<name>.py")
    parser.add_argument("--num-runs", type=int, default=None, help="runs to assemble (default: all retained runs)")
    _add_seed(parser)
    parser.add_argument("--runs", type=int, nargs="*", default=None, help="run indices to train (default: all)")
    parser.add_argument("--pretraining-folder", type=Path, default=None,
                        help="folder of the pretraining files (default: the parent of CONF_DIR)")  # fmt: skip
    parser.add_argument("--no-assemble", action="store_true", help="only run the jobs")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_preset(parser)
    args = parser.parse_args(argv)
    _check_preset(parser, args.preset)
    return args
