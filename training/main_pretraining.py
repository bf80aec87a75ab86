"""Pretraining (stages 0 and 1) of every run, one isolated job per run, then assembly and run exclusion.

With PretrainingPars.stage1_placement = 'training' (the figure era) pretraining is stage 0 alone: stage 1 runs
at the start of every stage-2 job instead, and there are no post-stage-1 regressions.

A job writes its pieces into ``<results>/pretraining_runs/run_<i>/`` and, last, its job marker (store.layout);
a folder without marker is an interrupted job and is simply redone. The documented root CSVs are
assembled from the completed jobs in run order (store.assembly), so they never depend on which job finished
first.

Usage by hand: ``python -m training.main_pretraining RESULTS_DIR --num-runs N --seed S [--preset NAME]``
reads ``RESULTS_DIR/parameters.py`` (its recorded preset unless ``--preset`` names another).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from training.cli import parse_pretraining_args

if __name__ == "__main__":  # parse before the slow imports below, so that --help and bad arguments answer at once
    parse_pretraining_args()

import jax
import pandas as pd
from tqdm.auto import tqdm

from parameters import Parameters, load_parameters_file
from store.assembly import assemble_pretraining, pretraining_job_status
from store.errors import run_entry_point
from store.files import atomic_write_csv, write_marker
from store.layout import (
    INIT_READOUT_PARAMS,
    INITIAL_PARAMETERS,
    ORIMAP,
    PRETRAINING_PIECES,
    PRETRAINING_RESULTS,
    PRETRAINING_RESULTS_VAL,
    StudyLayout,
)
from store.schema import (
    INIT_READOUT_COLUMNS,
    INITIAL_PARAMETERS_COLUMNS,
    MIDDLE_REGRESSION,
    MIXED_MIDDLE_HALF,
    MIXED_SUPERFICIAL_HALF,
    SGD_READOUT,
    SUPERFICIAL_REGRESSION,
    orimap_columns,
    pretraining_columns,
    regression_row,
    ssn_columns,
    val_columns,
)
from store.tables import last_threshold
from training.compilation_cache import prepare_process
from training.initialisation import Initialisation, InitialisationError, randomize_initialisation
from training.loss import default_loss_constants, stage0_loss_constants, stage1_loss_constants
from training.model import LogParams, zero_kappas
from training.psychometrics import fit_threshold
from training.readout import Readout
from training.readout_regression import RegressionData, fit_mix_readout, regression_data
from training.run_common import run_streams, stage_trained
from training.stages import pretraining_stage, readout_stage
from training.training_functions import (
    RunSetup,
    StageFailedError,
    StageResult,
    StageState,
    run_probe,
    train_ori_discr,
)
from training.util_gabor import readout_indices

logger = logging.getLogger(__name__)

PIECES = PRETRAINING_PIECES
"""The files of a pretraining job (store.layout)."""
REGRESSION_PROBES = 3
"""Index folded into the evaluation stream for the regression readouts' probes (stages use 0, 1, 2)."""


def run_folder(results_dir: Path, run_index: int) -> Path:
    """Folder of one pretraining job."""
    return StudyLayout(results_dir).pretraining_run(run_index).folder


# --------------------------------------------------------------------------------------------- one run
def stage0_state(init: Initialisation, params: Parameters) -> StageState:
    """Stage 0 trains the pretrained keys (with coupling, cE_s/cI_s are the middle values); its loss weights
    the cross-entropy by LossPars.lambda_task_stage0."""
    trained = stage_trained(init.log_params, params.pretrained_ssn.trained)
    untrained = {**{k: v for k, v in init.log_params.items() if k not in trained}, **zero_kappas()}
    return StageState(trained=trained, untrained=untrained, readout=init.readout, offset=params.stimuli.offset,
                      constants=stage0_loss_constants(params.loss))  # fmt: skip


def stage1_state(stage0: StageResult, params: Parameters) -> StageState:
    """Stage 1 trains the readout only, restricted to the central block, from stage 0's final state; its loss
    constants are LossPars' stage-1 ones (mean-rate targets possibly from the last stage-0 row)."""
    final = stage0.final
    central = readout_indices(params.grid.gridsize_Nx, params.readout.readout_grid_size[1])
    readout = Readout(final.readout.w[central], final.readout.b)
    return StageState(trained={}, untrained={**final.untrained, **final.trained}, readout=readout,
                      offset=params.stimuli.offset,
                      constants=stage1_loss_constants(params.loss, stage0.rows[-1]))  # fmt: skip


def initial_parameter_row(run_index: int, stage: int, log_params: LogParams, init: Initialisation,
                          params: Parameters) -> dict:
    """A row of initial_parameters.csv (linear, signed values)."""
    row = {"run_index": run_index, "stage": stage, **ssn_columns(log_params, coupled=params.ssn.couple_c_ms),
           "eta": init.eta, "gE": init.gE, "gI": init.gI}  # fmt: skip
    return {c: row[c] for c in INITIAL_PARAMETERS_COLUMNS}


def regression_rows(run_index: int, setup: RunSetup, log_params: LogParams, stage1: StageState, threshold: float,
                    data: RegressionData) -> list[dict]:
    """Rows of init_readout_params.csv: the SGD stage-1 readout and the logistic regressions fitted after
    stage 1 on each readout mix, each with the threshold of its own probe (row codes: store.schema)."""
    params = setup.params
    fraction = params.pretraining.regression_train_fraction
    fits = {mix: fit_mix_readout(data, mix, fraction) for mix in ((1.0, 0.0), (0.5, 0.5), (0.0, 1.0))}
    thresholds = {mix: probe_threshold(setup, log_params, readout, mix, key_id)
                  for key_id, (mix, readout) in enumerate(fits.items())}  # fmt: skip
    n = data.sup.shape[1]
    mixed = fits[(0.5, 0.5)]
    pieces = [(SGD_READOUT, stage1.readout.w, stage1.readout.b, threshold),
              (SUPERFICIAL_REGRESSION, fits[(1.0, 0.0)].w, fits[(1.0, 0.0)].b, thresholds[(1.0, 0.0)]),
              (MIXED_MIDDLE_HALF, mixed.w[:n], mixed.b, thresholds[(0.5, 0.5)]),
              (MIXED_SUPERFICIAL_HALF, mixed.w[n:], mixed.b, thresholds[(0.5, 0.5)]),
              (MIDDLE_REGRESSION, fits[(0.0, 1.0)].w, fits[(0.0, 1.0)].b, thresholds[(0.0, 1.0)])]  # fmt: skip
    return [regression_row(run_index, code, w, b, offset) for code, w, b, offset in pieces]


def stage0_readout_rows(run_index: int, stage0: StageState, threshold: float, params: Parameters) -> list[dict]:
    """init_readout_params.csv without stage 1 (stage1_placement 'training'): one SGD-readout row, the end of
    stage 0's readout restricted to the central block (what stage 2 starts from), with the last stage-0
    threshold; no regression rows, since the post-stage-1 regressions do not exist then."""
    central = readout_indices(params.grid.gridsize_Nx, params.readout.readout_grid_size[1])
    return [regression_row(run_index, SGD_READOUT, stage0.readout.w[central], stage0.readout.b, threshold)]


def probe_threshold(setup: RunSetup, log_params: LogParams, readout: Readout, contributions: tuple[float, float],
                    key_id: int) -> float:
    """Psychometric threshold of a readout (a fresh probe, spec §13.2)."""
    key = jax.random.fold_in(jax.random.fold_in(setup.eval_key, REGRESSION_PROBES), key_id)
    accuracies = run_probe(log_params, readout, setup, key, default_loss_constants(setup.params.loss), contributions)
    training = setup.params.training
    return fit_threshold(training.test_offsets, accuracies.mean(axis=0), training.acc_th)


def pretrain_run(params: Parameters, base_seed: int, run_index: int, attempt: int,
                 progress: bool = True) -> dict[str, pd.DataFrame]:
    """Initialisation, stage 0, stage 1 and the post-stage-1 regressions of one run attempt; stage 0 alone
    (with its end as the run's pretrained state) when PretrainingPars.stage1_placement is 'training'."""
    streams = run_streams(base_seed, run_index, attempt)
    k_init, k_regression = jax.random.split(streams.init_key)
    init = randomize_initialisation(params, streams.rng, k_init)
    setup = RunSetup(params, init.static, run_index, init.eta, streams.train_key, streams.eval_key, progress)
    stage0 = train_ori_discr(pretraining_stage(params), stage0_state(init, params), setup)
    if not params.pretraining.stage1_in_training_job:
        stage1 = train_ori_discr(readout_stage(params), stage1_state(stage0, params), setup)
        stages = (stage0, stage1)
        final_params = {**stage1.final.untrained, **stage1.final.trained}
        threshold = last_threshold(stage1.thresholds or stage0.thresholds)
        num_cells = params.readout.readout_grid_size[1] ** 2
        data = regression_data(final_params, init.static, k_regression, params,
                               params.pretraining.post_stage1_regression_trials, num_cells)  # fmt: skip
        readouts = regression_rows(run_index, setup, final_params, stage1.final, threshold, data)
    else:
        stages = (stage0,)
        final_params = {**stage0.final.untrained, **stage0.final.trained}
        readouts = stage0_readout_rows(run_index, stage0.final, last_threshold(stage0.thresholds), params)
    init_row = initial_parameter_row(run_index, 0, init.log_params, init, params)
    final_row = initial_parameter_row(run_index, 1, final_params, init, params)  # stage 1: the end of pretraining
    columns = pretraining_columns(params.grid.gridsize_Nx**2)
    return {
        PRETRAINING_RESULTS: pd.DataFrame([row for s in stages for row in s.rows]).reindex(columns=columns),
        PRETRAINING_RESULTS_VAL: pd.DataFrame([row for s in stages for row in s.val_rows]).reindex(
            columns=val_columns(columns, params.training.test_offsets)),
        ORIMAP: pd.DataFrame([[float(run_index), *init.orimap]], columns=orimap_columns(init.orimap.size)),
        INITIAL_PARAMETERS: pd.DataFrame([init_row, final_row]),
        INIT_READOUT_PARAMS: pd.DataFrame(readouts).reindex(columns=INIT_READOUT_COLUMNS),
    }


# ------------------------------------------------------------------------------------------------- jobs
def attempts_per_run(params: Parameters) -> int:
    """Attempts a pretraining job makes: up to max_failed_runs retries with fresh streams, or (failure_reseed
    False) one. The figure era retried with the same seed, which fails the same way, so a retry there could
    only repeat the failure; its run is dropped instead and the study goes on."""
    return params.training.max_failed_runs + 1 if params.training.failure_reseed else 1


def run_pretraining_job(results_dir: Path, params: Parameters, base_seed: int, run_index: int,
                        progress: bool = True) -> bool:
    """One run with its retries (fresh streams per attempt); pieces then its job marker. False if all failed.

    With TrainingPars.failure_reseed False a failed attempt is not retried: the run is recorded as failed.
    """
    job = StudyLayout(results_dir).pretraining_run(run_index)
    job.folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for attempt in range(attempts_per_run(params)):
        try:
            tables = pretrain_run(params, base_seed, run_index, attempt, progress)
        except (StageFailedError, InitialisationError) as error:
            logger.warning("run %d attempt %d failed: %s", run_index, attempt, error)
            failures.append(str(error))
            continue
        for name, table in tables.items():
            atomic_write_csv(table, job.file(name))
        rows = {name: len(table) for name, table in tables.items()}  # assembly refuses a piece with fewer
        write_marker(job.marker, {"run_index": run_index, "success": True, "attempt": attempt,
                                       "failures": failures, "rows": rows})  # fmt: skip
        return True
    write_marker(job.marker, {"run_index": run_index, "success": False, "failures": failures})
    return False


def run_pending_jobs(results_dir: Path, params: Parameters, base_seed: int, runs: Iterable[int],
                     progress: bool = True) -> None:
    """The pretraining jobs of ``runs`` that have not completed, in order."""
    for run_index in tqdm(list(runs), desc="pretraining runs", disable=not progress):
        if pretraining_job_status(results_dir, run_index) is None:
            ok = run_pretraining_job(results_dir, params, base_seed, run_index, progress)
            logger.info("pretraining run %d %s", run_index, "succeeded" if ok else "failed all its attempts")


def main_pretraining(results_dir: Path, params: Parameters, base_seed: int, num_runs: int,
                     progress: bool = True) -> int:
    """Every pretraining job not yet completed, in order, then assembly; the number of retained runs."""
    run_pending_jobs(results_dir, params, base_seed, range(num_runs), progress)
    return assemble_pretraining(results_dir, params, num_runs)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m training.main_pretraining``."""
    prepare_process()
    args = parse_pretraining_args(argv)
    params = load_parameters_file(StudyLayout(args.results_dir).parameters, preset=args.preset)
    runs = args.runs if args.runs is not None else range(args.num_runs)
    run_pending_jobs(args.results_dir, params, args.base_seed, runs, not args.no_progress)
    if not args.no_assemble:
        retained = assemble_pretraining(args.results_dir, params, args.num_runs)
        logger.info("%d runs retained after pretraining", retained)


if __name__ == "__main__":
    sys.exit(run_entry_point(main))
