"""The `figure` and `final` presets end to end through main.py (slow): the --quick study with every CSV, figure
and report, and --resume after a kill under `figure` giving the same CSVs as an uninterrupted study."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from parameters import load_parameters_file
from store import parameter_files
from store.tables import read_results_csv
from study.quick import END_TO_END_OVERRIDES
from tests.test_main_jobs import final_csvs, only_folder, run_study, start_study, stop_group, wait_for

pytestmark = pytest.mark.slow

STUDY_CSVS = ("pretraining_results.csv", "pretraining_results_val.csv", "orimap.csv", "initial_parameters.csv",
              "init_readout_params.csv", "study_summary.csv", "study_stats.csv")  # fmt: skip
CONF_CSVS = ("training_results.csv", "training_results_val.csv", "rel_changes_train.csv", "tuning_curves.csv",
             "MVPA_scores.csv", "Mahal_scores.csv", "stats_paired_tests.csv")  # fmt: skip
CONFIGS = ("conf_baseline", "conf_midonly_readout")


@pytest.mark.parametrize("preset", ["figure", "final"])
def test_quick_study_under_the_preset_writes_every_csv_figure_and_report(tmp_path, preset):
    done = run_study([sys.executable, "main.py", "--quick", "--preset", preset, "--results-root", str(tmp_path)],
                     timeout=3000)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    folder = only_folder(tmp_path)
    assert parameter_files.read_preset(folder / "parameters.py") == preset
    for name in STUDY_CSVS:
        assert len(read_results_csv(folder / name)) > 0, name
    for conf in CONFIGS:
        for name in CONF_CSVS:
            assert len(read_results_csv(folder / conf / name)) > 0, f"{conf}/{name}"
        assert list((folder / conf / "figures").glob("*.png")), conf
        assert (folder / conf / "summary.pdf").stat().st_size > 0, conf
    assert (folder / "report.html").stat().st_size > 0
    pretraining = read_results_csv(folder / "pretraining_results.csv")
    training = read_results_csv(folder / "conf_baseline" / "training_results.csv")
    if preset == "figure":
        assert set(pretraining["stage"]) == {0}  # stage 1 runs inside each stage-2 job
        assert sorted(set(training["run_index"])) == [0, 1]  # no exclusion
        assert not np.allclose(pretraining["cE_s"], pretraining["cE_m"])  # the superficial baselines are their own
        stage2 = training[training["stage"] == 2]
        for column in ("kappa_Jsup_EI_pre", "kappa_Jsup_II_pre", "kappa_Jsup_EI_post", "kappa_Jsup_II_post",
                       "kappa_Jmid_EE", "kappa_f_E"):  # fmt: skip
            assert (stage2[column] == 0).all(), column  # inputs the figure model does not have
        assert (stage2["kappa_Jsup_EE_pre"] != 0).any()
    else:
        assert load_parameters_file(folder / "parameters.py").loss.lambda_task_stage0 == 0.5


def test_resume_after_a_kill_under_figure_gives_the_same_csvs(tmp_path):
    def argv(root: Path) -> list[str]:
        return [sys.executable, "main.py", "--runs", "2", "--configs", *CONFIGS, "--preset", "figure",
                "--overrides-json", json.dumps(END_TO_END_OVERRIDES), "--results-root", str(root), "--seed", "3",
                "--no-analysis"]  # fmt: skip

    uninterrupted = run_study(argv(tmp_path / "whole"), timeout=1500)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    reference = only_folder(tmp_path / "whole")

    root = tmp_path / "killed"
    root.mkdir()
    process = start_study(argv(root), tmp_path / "stderr.txt")
    try:
        wait_for(root, process, predicate=lambda: any(root.iterdir()))
        wait_for(only_folder(root) / "logs" / "conf_baseline_run_0.log", process, timeout=1200)
    finally:
        stop_group(process, signal.SIGKILL)
    folder = only_folder(root)
    assert not (folder / "conf_baseline" / "DONE.json").exists()
    done = run_study([sys.executable, "main.py", "--resume", str(folder), "--no-analysis"], timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert final_csvs(folder, CONFIGS) == final_csvs(reference, CONFIGS)
