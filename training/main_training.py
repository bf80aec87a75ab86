"""Stage 2 (training on the fine task, SSN only) of one configuration, one isolated job per run.

``python -m training.main_training CONF_DIR --num-runs N --seed S`` reads
``CONF_DIR/parameters_<CONF_DIR name>.py`` and the pretraining files in CONF_DIR's parent (or
``--pretraining-folder``), trains every retained run not yet completed, and writes
``training_results.csv`` and ``training_results_val.csv`` into CONF_DIR.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

from training.cli import parse_training_args

if __name__ == "__main__":  # parse before the slow imports below, so that --help and bad arguments answer at once
    parse_training_args()

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from parameters import Parameters, load_parameters_file
from store.assembly import assemble_training, retained_runs, training_job_status
from store.errors import run_entry_point
from store.files import atomic_write_csv, write_marker
from store.layout import TRAINING_RESULTS, TRAINING_RESULTS_VAL, ConfigurationLayout
from store.schema import training_columns, val_columns
from training.compilation_cache import prepare_process
from training.loss import stage2_loss_constants
from training.model import ModelStatic, build_static, zero_kappas
from training.readout import Readout
from training.readout_regression import fit_mix_readout, regression_data
from training.run_common import run_streams, trained_keys
from training.run_state import Stage2Start, read_regression_readout, read_stage2_start
from training.stages import training_readout_stage, training_stage
from training.training_functions import RunSetup, StageFailedError, StageState, train_ori_discr

logger = logging.getLogger(__name__)

READOUT_STAGE_STREAM = 4
"""Folded into a stage-2 job's training and evaluation keys to give the stage 1 that runs inside it
(PretrainingPars.stage1_placement 'training') streams of its own. Steps fold (stage, step) into their keys,
so stage 2's batches never depend on how long stage 1 ran; the extra index keeps stage 1 off the keys the
pretraining job of attempt 0 used (stages fold 0-2, its regression probes 3)."""
START_REGRESSION_STREAM = 5
"""Folded into the run's initialisation key for the logistic regression fitted at the stage-2 start."""


def stage2_state(start: Stage2Start, params: Parameters, readout: Readout, threshold: float) -> StageState:
    """The configuration's trained dictionary (kappas from zero), the rest untrained, staircase start."""
    all_params = {**start.log_params, **zero_kappas()}
    keys = trained_keys(params.stage2_trained)
    trained = {k: v for k, v in all_params.items() if k in keys}
    untrained = {k: v for k, v in all_params.items() if k not in keys}
    offset = min(threshold, params.stimuli.max_train_offset) if np.isfinite(threshold) else params.stimuli.offset
    return StageState(trained=trained, untrained=untrained, readout=readout, offset=offset,
                      constants=stage2_loss_constants(params.loss, start.mean_rates))  # fmt: skip


def loads_regression_readout(params: Parameters) -> bool:
    """Whether stage 2 starts from a readout fitted by logistic regression (after the pretraining's stage 1, or
    at the stage-2 start where stage 1 runs in the training job) instead of the SGD readout.

    Only with opt_readout_before_training. The reference never read that flag (TrainedSSNPars.honour_opt_readout
    False); then only the mixed readout loads its regression readout, since the 25 stage-1 weights cannot
    read its 50 features (the reference crashed there).
    """
    ssn = params.trained_ssn
    mixed = all(params.readout.readout_contributions)
    return ssn.opt_readout_before_training and (ssn.honour_opt_readout or mixed)


def start_regression_readout(start: Stage2Start, params: Parameters, static: ModelStatic, key: jax.Array) -> Readout:
    """The logistic-regression readout of the configuration's mix fitted at the stage-2 start (figure era,
    LINEAGE.md G): PretrainingPars.regression_trials general-task trials with true labels simulated with the
    start's parameters (κ = 0), noisy readout differences at the central cells, the first
    regression_train_fraction for fitting, sklearn defaults; w and b unscaled."""
    pars = params.pretraining
    log_params = {**start.log_params, **zero_kappas()}
    num_cells = params.readout.readout_grid_size[1] ** 2
    data = regression_data(log_params, static, key, params, pars.regression_trials, num_cells)
    return fit_mix_readout(data, params.readout.readout_contributions, pars.regression_train_fraction)


def start_readout(start: Stage2Start, params: Parameters, pretraining_dir: Path, run_index: int,
                  static: ModelStatic, key: jax.Array) -> tuple[Readout, float]:
    """The readout stage 2 (or the stage 1 before it) starts from, and the threshold its offset starts from.

    The end of the pretraining's SGD readout; or, where :func:`loads_regression_readout`, a regression
    readout: the post-stage-1 one of init_readout_params.csv with its own threshold when the pretraining ran
    stage 1, else one fitted now, at the stage-2 start, which keeps the start threshold (LINEAGE.md G: the
    start offset is not recomputed).
    """
    contributions = params.readout.readout_contributions
    if not loads_regression_readout(params):
        if all(contributions):
            raise ValueError("a mixed readout needs TrainedSSNPars.opt_readout_before_training (its 50 weights "
                             "come from the post-stage-1 regression)")  # fmt: skip
        return start.readout, start.threshold
    if params.pretraining.stage1_in_training_job:
        return start_regression_readout(start, params, static, key), start.threshold
    return read_regression_readout(pretraining_dir, run_index, contributions)


def readout_stage_setup(setup: RunSetup) -> RunSetup:
    """The run's setup with the streams of the stage 1 inside a stage-2 job (READOUT_STAGE_STREAM)."""
    return dataclasses.replace(setup, train_key=jax.random.fold_in(setup.train_key, READOUT_STAGE_STREAM),
                               eval_key=jax.random.fold_in(setup.eval_key, READOUT_STAGE_STREAM))  # fmt: skip


def train_run(params: Parameters, pretraining_dir: Path, run_index: int, base_seed: int,
              progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stage 2 of one run (after stage 1, where stage 1 runs in the training job): its rows and probe rows.

    Stage-1 rows (stage = 1) come first, as the figure era concatenated them; a stage 1 that ends at step 0
    writes none.
    """
    start = read_stage2_start(pretraining_dir, run_index, params)
    streams = run_streams(base_seed, run_index)
    static = build_static(start.orimap, start.gE, start.gI, params)
    regression_key = jax.random.fold_in(streams.init_key, START_REGRESSION_STREAM)
    readout, threshold = start_readout(start, params, pretraining_dir, run_index, static, regression_key)
    setup = RunSetup(params, static, run_index, start.eta, streams.train_key, streams.eval_key, progress)
    state = stage2_state(start, params, readout, threshold)
    rows, val_rows = [], []
    if params.pretraining.stage1_in_training_job:
        stage1 = train_ori_discr(training_readout_stage(params), state, readout_stage_setup(setup))
        rows, val_rows = stage1.rows, stage1.val_rows
        state = dataclasses.replace(state, readout=stage1.final.readout)  # stage 2 starts from stage 1's readout
    result = train_ori_discr(training_stage(params), state, setup)
    columns = training_columns()
    probe_columns = val_columns(columns, params.training.test_offsets)
    return (pd.DataFrame(rows + result.rows).reindex(columns=columns),
            pd.DataFrame(val_rows + result.val_rows).reindex(columns=probe_columns))


def run_training_job(conf_dir: Path, run_index: int, base_seed: int, pretraining_dir: Path | None = None,
                     progress: bool = True, preset: str | None = None) -> bool:
    """Stage 2 of one run into its own folder, then its job marker; False if the stage failed (NaN).

    ``preset`` replaces the preset recorded in the configuration's parameters file.
    """
    conf = ConfigurationLayout(conf_dir)
    params = load_parameters_file(conf.parameters, preset=preset)
    job = conf.run(run_index)
    job.folder.mkdir(parents=True, exist_ok=True)
    try:
        rows, val_rows = train_run(params, pretraining_dir or conf.folder.parent, run_index, base_seed, progress)
    except StageFailedError as error:
        logger.warning("%s run %d: %s", conf.name, run_index, error)
        write_marker(job.marker, {"run_index": run_index, "success": False, "error": str(error)})
        return False
    atomic_write_csv(rows, job.file(TRAINING_RESULTS))
    atomic_write_csv(val_rows, job.file(TRAINING_RESULTS_VAL))
    rows_written = {TRAINING_RESULTS: len(rows), TRAINING_RESULTS_VAL: len(val_rows)}  # checked by assembly
    write_marker(job.marker, {"run_index": run_index, "success": True, "rows": rows_written})
    return True


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m training.main_training``."""
    prepare_process()
    args = parse_training_args(argv)
    pretraining_dir = args.pretraining_folder or args.conf_dir.parent
    num_runs = args.num_runs if args.num_runs is not None else retained_runs(pretraining_dir)
    runs = args.runs if args.runs is not None else range(num_runs)
    for run_index in tqdm(runs, desc=f"{args.conf_dir.name} runs", disable=args.no_progress):
        if training_job_status(args.conf_dir, run_index) is None:
            run_training_job(args.conf_dir, run_index, args.base_seed, pretraining_dir, not args.no_progress,
                             args.preset)  # fmt: skip
    if not args.no_assemble:
        assemble_training(args.conf_dir, num_runs)


if __name__ == "__main__":
    sys.exit(run_entry_point(main))
