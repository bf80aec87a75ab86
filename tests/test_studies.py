"""Studies that outlive a working period (docs/studies.md): growing a study (study/growth.py), keeping it in the
repository (study/keep.py, packed CSVs, pieces stored once), resuming and analysing a kept study restored from
git, and the refusals (shrinking, other settings, a damaged kept folder, an incomplete study in a comparison).

The default-suite tests run main.py in this process with stub jobs: small processes that write a job's pieces
and marker from (base seed, run index) alone, as the real jobs do, with chosen final thresholds (run exclusion)
and failed attempts (the study-wide failure budget). They check the orchestration of a growth byte for byte in
seconds. The slow tests run the same checks with real training (the TINY preset of tests/test_main_jobs.py).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import main
from store import layout, logs, parameter_files
from store.errors import EXIT_USER_ERROR, ResultsFileError, run_entry_point
from store.files import (
    atomic_write_csv,
    derived_bytes,
    derived_names,
    has_stored,
    pack_file,
    read_stored_bytes,
    stored,
    write_marker,
)
from store.layout import StudyLayout
from store.records import RESULTS_FORMAT_VERSION, read_environment_record
from store.tables import read_results_csv
from study import keep, records
from study.inventory import damaged_files, study_state

REPO = Path(__file__).resolve().parents[1]
FAKE_JAX = {"backend": "cpu", "devices": ["cpu:0"]}
CONFIGS = ("conf_baseline", "conf_midonly_readout")
THRESHOLDS = (10.0, 3.0, 12.0, 200.0, 8.0, 9.0)
"""Final pretraining threshold of each stub run: runs 1 (too good) and 3 (never measured) are excluded."""
FAILURES = (0, 0, 1, 0, 0, 3)
"""Failed attempts of each stub run: with a budget of 3 for the study, run 5 spends it and is dropped."""
BUDGET = {"TrainingPars": {"max_failed_runs": 3, "failure_budget": "study"}}

STUB_JOB = r"""
import csv, json, pathlib, sys
kind, folder, run, seed, spec = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
spec = json.loads(spec)
folder.mkdir(parents=True, exist_ok=True)
def write(name, header, rows):
    with open(folder / name, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return len(rows)
value = lambda k: repr(seed * 0.37 + run * 1.1 + k / 7.0)  # full-precision floats, as the real jobs write them
rows = {}
if kind == "pre":
    threshold = spec["thresholds"][run]
    steps = [(0, s) for s in range(3)] + [(1, s) for s in range(2)]
    rows["pretraining_results.csv"] = write("pretraining_results.csv", ["run_index", "stage", "SGD_steps", "loss_all",
        "psychometric_offset", "gradient_unrolled"], [[run, st, s, value(i), repr(threshold) if i == 4 else "",
        "" if i == 0 else 1] for i, (st, s) in enumerate(steps)])
    rows["pretraining_results_val.csv"] = write("pretraining_results_val.csv", ["run_index", "stage", "acc"],
        [[run, 0, value(1)], [run, 1, value(2)]])
    rows["orimap.csv"] = write("orimap.csv", ["run_index", "0", "1"], [[float(run), value(3), value(4)]])
    rows["initial_parameters.csv"] = write("initial_parameters.csv", ["run_index", "stage", "f_E"],
        [[run, 0, value(5)], [run, 1, value(6)]])
    rows["init_readout_params.csv"] = write("init_readout_params.csv", ["run_index", "layer", "sup_only", "b_sig"],
        [[run, "sup", True, value(7)], [run, "mid", False, value(8)]])
    marker = {"run_index": run, "success": True, "attempt": 0, "rows": rows,
              "failures": ["stub failure"] * spec["failures"][run]}
else:
    rows["training_results.csv"] = write("training_results.csv", ["run_index", "stage", "SGD_steps", "J_II_s",
        "staircase_offset"], [[run, 2, s, value(s + len(kind)), 10 - s] for s in range(4)])
    rows["training_results_val.csv"] = write("training_results_val.csv", ["run_index", "stage", "acc"],
        [[run, 2, value(9)]])
    marker = {"run_index": run, "success": True, "rows": rows}
(folder / "DONE.json").write_text(json.dumps(marker))
"""


def stub_jobs(monkeypatch: pytest.MonkeyPatch, thresholds=THRESHOLDS, failures=FAILURES) -> None:
    """Replace the pretraining and stage-2 jobs of main.py by stub processes (and the JAX device query)."""
    from study import stages

    spec = json.dumps({"thresholds": list(thresholds), "failures": list(failures)})

    def pretraining_job(folder: Path, run_index: int, num_runs: int, base_seed: int) -> main.Job:
        job = StudyLayout(folder).pretraining_run(run_index)
        return stub(f"pretraining run {run_index}", "pre", job.folder, run_index, base_seed, folder, spec)

    def training_job(folder: Path, name: str, run_index: int, num_runs: int, base_seed: int, pretraining: Path):
        job = StudyLayout(folder).configuration(name).run(run_index)
        return stub(f"{name} run {run_index}", name, job.folder, run_index, base_seed, folder, spec)

    monkeypatch.setattr(stages, "pretraining_job", pretraining_job)
    monkeypatch.setattr(stages, "training_job", training_job)
    monkeypatch.setattr(records, "jax_environment", lambda timeout=0: FAKE_JAX)


def stub(name: str, kind: str, job_folder: Path, run: int, seed: int, folder: Path, spec: str) -> main.Job:
    argv = (sys.executable, "-S", "-c", STUB_JOB, kind, str(job_folder), str(run), str(seed), spec)
    log = StudyLayout(folder).job_log(name.replace(" ", "_"))
    return main.Job(name, argv, log, job_folder / layout.JOB_DONE)


def run_main(argv: list[str]) -> int:
    try:
        return main.main(argv)
    finally:
        logs.close_logging()


def new_study(root: Path, runs: int, *extra: str, overrides: dict = BUDGET) -> Path:
    """A stub study of ``runs`` runs in its own results root; its folder."""
    argv = ["--runs", str(runs), "--seed", "5", "--configs", *CONFIGS, "--overrides-json", json.dumps(overrides),
            "--results-root", str(root), "--no-analysis", "--jobs", "4", *extra]  # fmt: skip
    assert run_main(argv) == main.EXIT_OK
    (folder,) = list(root.iterdir())
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    """Every CSV (by its plain name, unpacked), parameters copy and marker of a folder, without the pretraining
    folder a marker records (a path) and the study record's history."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel.endswith(".csv.gz"):
            out[rel[: -len(".gz")]] = read_stored_bytes(path)
        elif rel.endswith(".csv") or Path(rel).name.startswith("parameters") and rel.endswith(".py"):
            out[rel] = path.read_bytes()
        elif rel.endswith("DONE.json"):
            payload = json.loads(path.read_text())
            payload.pop("pretraining_folder", None)
            out[rel] = json.dumps(payload, sort_keys=True).encode()
    for name in derived_names(folder):  # stored as derivations: their bytes as a reader gets them
        out.setdefault(name, derived_bytes(folder / name))
    return dict(sorted(out.items()))


def assembled(folder: Path) -> dict[str, bytes]:
    """The assembled CSVs of a folder (root and configurations; not the job pieces), unpacked."""
    return {k: v for k, v in contents(folder).items() if k.endswith(".csv") and "_runs/" not in k}


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def fresh_six(tmp_path_factory) -> Path:
    """A stub study started with 6 runs (runs 1, 3 excluded, run 5 dropped by the failure budget)."""
    with pytest.MonkeyPatch.context() as mp:
        stub_jobs(mp)
        return new_study(tmp_path_factory.mktemp("fresh"), 6)


# ------------------------------------------------------------------------------------------------ growing
def test_grown_study_equals_one_started_with_its_runs(fresh_six, tmp_path, monkeypatch):
    stub_jobs(monkeypatch)
    folder = new_study(tmp_path / "r", 3)
    assert study_state(folder).retained == 2  # runs 0 and 2
    marker = folder / "PRETRAINING_DONE.json"  # as the code before growth wrote it: without "runs"
    marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items() if k != "runs"}))
    assert run_main(["--resume", str(folder), "--runs", "6", "--no-analysis", "--jobs", "4"]) == main.EXIT_OK
    assert contents(folder) == contents(fresh_six)  # pieces, assembled files, parameter copies, markers
    orimap = read_results_csv(folder / "orimap.csv")
    assert orimap["original_run_index"].tolist() == [0, 2, 4] and orimap["run_index"].tolist() == [0, 1, 2]
    assert not (folder / "conf_baseline" / "training_runs" / "run_3").exists()  # run 5: over the failure budget
    record, fresh = (read_environment_record(f) for f in (folder, fresh_six))
    assert record["study"] == fresh["study"] and record["study"]["runs"] == 6
    assert record["growths"][0]["from_runs"] == 3 and record["growths"][0]["to_runs"] == 6
    assert "--runs" in record["resumes"][0]["command_line"]
    assert study_state(folder).complete and study_state(folder).retained == 3


def test_growth_after_an_interrupted_growth(fresh_six, tmp_path, monkeypatch, capsys):
    stub_jobs(monkeypatch)
    folder = new_study(tmp_path / "r", 3)
    # the new runs' pretraining stops: one of its jobs fails, the study ends unfinished with its record grown
    stub_jobs(monkeypatch, failures=FAILURES[:5])  # the stub of run 5 has no entry: it crashes without a marker
    assert run_main(["--resume", str(folder), "--runs", "6", "--no-analysis", "--jobs", "4"]) == main.EXIT_FAILED
    state = study_state(folder)
    assert state.runs == 6 and not state.complete and state.pretraining_jobs_done == 5
    assert "pretraining: 5 of 6 runs done" in state.describe()
    stub_jobs(monkeypatch)
    assert run_main(["--resume", str(folder), "--runs", "6", "--no-analysis", "--jobs", "4"]) == main.EXIT_OK
    assert contents(folder) == contents(fresh_six)
    assert len(read_environment_record(folder)["growths"]) == 1


def test_grown_parameter_copies_change_only_num_runs(tmp_path):
    path = tmp_path / "parameters_conf_x.py"
    parameter_files.write_parameters_copy(path, {"TrainingPars": {"num_runs": 3, "SGD_steps": 2}, "SSNPars": {}},
                                          title="a title", preset="corrected")  # fmt: skip
    before = path.read_text()
    parameter_files.set_num_runs(path, 7)
    after = path.read_text()
    assert after == before.replace('"num_runs": 3,', '"num_runs": 7,')
    other = tmp_path / "parameters.py"
    parameter_files.write_parameters_copy(other, {"TrainingPars": {"num_runs": 7, "SGD_steps": 2}, "SSNPars": {}},
                                          title="a title", preset="corrected")  # fmt: skip
    assert after == other.read_text()


# ------------------------------------------------------------------------------------------------ refusals
@pytest.fixture
def two_run_study(tmp_path, monkeypatch) -> Path:
    """A study folder with its records (no job run; stub jobs, should a refusal fail)."""
    stub_jobs(monkeypatch)
    argv = ["--runs", "2", "--configs", *CONFIGS, "--results-root", str(tmp_path / "r")]
    plan = main.plan_from_args(main.build_parser().parse_args(argv))
    try:
        folder = main.create_study_folder(plan, argv)
        main.write_configuration_files(folder, plan.study)
    finally:
        logs.close_logging()
    return folder


REFUSED = [
    (["--runs", "1"], "--runs 1 would shrink the study"),
    (["--runs", "0"], "would shrink"),
    (["--seed", "4"], "--seed cannot be combined with --resume"),
    (["--preset", "corrected"], "--preset cannot be combined with --resume"),
    (["--configs", "conf_baseline"], "--configs cannot be combined with --resume"),
    (["--runs", "3", "--seed", "0"], "--seed cannot be combined with --resume"),  # 0 == False: refused too
    (["--quick"], "--quick cannot be combined with --resume"),
]


@pytest.mark.parametrize(("extra", "message"), REFUSED, ids=[" ".join(e) for e, _ in REFUSED])
def test_resume_refuses_shrinking_and_other_settings(two_run_study, capsys, extra, message):
    before = {p: p.read_bytes() for p in two_run_study.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert run_main(["--resume", str(two_run_study), *extra]) == main.EXIT_USAGE
    line = one_error_line(capsys)
    assert message in line and "ERROR" in line
    assert {p: p.read_bytes() for p in two_run_study.rglob("*") if p.is_file()} == before  # no work started


# ------------------------------------------------------------------------------------- --skip-pretraining
def test_skip_pretraining_study_grows_into_the_runs_its_pretraining_retains(fresh_six, tmp_path, monkeypatch,
                                                                            capsys):  # fmt: skip
    stub_jobs(monkeypatch)
    reused = new_study(tmp_path / "pre", 3)  # retains 2 runs
    argv = ["--skip-pretraining", str(reused), "--configs", "conf_baseline", "--results-root", str(tmp_path / "s"),
            "--no-analysis"]  # fmt: skip
    assert run_main(argv) == main.EXIT_OK
    (skip,) = list((tmp_path / "s").iterdir())
    assert study_state(skip).runs == 2
    capsys.readouterr()
    assert run_main(["--resume", str(skip), "--runs", "3"]) == main.EXIT_USAGE  # the reused folder retains 2
    line = one_error_line(capsys)
    assert "retains 2" in line and f"python main.py --resume {reused} --runs" in line
    # grow the reused pretraining first, then the study
    assert run_main(["--resume", str(reused), "--runs", "6", "--no-analysis", "--jobs", "4"]) == main.EXIT_OK
    assert run_main(["--resume", str(skip), "--runs", "3", "--no-analysis", "--jobs", "4"]) == main.EXIT_OK
    assert assembled(skip)["conf_baseline/training_results.csv"] == (
        fresh_six / "conf_baseline" / "training_results.csv").read_bytes()  # fmt: skip
    assert json.loads((skip / "PRETRAINING_DONE.json").read_text())["retained_runs"] == 3


def test_skip_pretraining_study_on_another_checkouts_copy_is_kept_next_to_the_kept_original(tmp_path, monkeypatch):
    """A --skip-pretraining study run on a copy of a kept study (a second checkout, another machine) reuses that
    kept study; keeping it names the kept original, and a copy of another size or an unkept folder is refused."""
    stub_jobs(monkeypatch)
    studies = tmp_path / "studies"
    original = new_study(tmp_path / "pre", 3)
    kept = keep.keep_study(original, studies / "pre").dest
    checkout = shutil.copytree(kept, tmp_path / "checkout" / "studies" / "pre")

    def skip_study(reused: Path, root: Path) -> Path:
        argv = ["--skip-pretraining", str(reused), "--configs", "conf_baseline", "--results-root", str(root),
                "--no-analysis"]  # fmt: skip
        assert run_main(argv) == main.EXIT_OK
        (folder,) = list(root.iterdir())
        return folder

    kept_skip = keep.keep_study(skip_study(checkout, tmp_path / "s"), studies / "pre_variant").dest
    assert json.loads((kept_skip / "PRETRAINING_DONE.json").read_text())["pretraining_folder"] == "../pre"
    assert study_state(kept_skip).runs == 2
    # run on the folder the kept study was kept from: the same kept original
    from_original = keep.keep_study(skip_study(original, tmp_path / "s0"), studies / "pre_variant_0").dest
    assert json.loads((from_original / "PRETRAINING_DONE.json").read_text())["pretraining_folder"] == "../pre"
    # the copy grown past the kept original is not the same pretraining: refused
    assert run_main(["--resume", str(checkout), "--runs", "6", "--no-analysis", "--jobs", "4"]) == main.EXIT_OK
    with pytest.raises(keep.KeepError, match="which is not kept in"):
        keep.keep_study(skip_study(checkout, tmp_path / "s2"), studies / "grown_variant")
    # another study's pretraining, not kept, is refused too
    plain = new_study(tmp_path / "plain", 3, "--seed", "6")
    with pytest.raises(keep.KeepError, match="which is not kept in"):
        keep.keep_study(skip_study(plain, tmp_path / "s3"), studies / "plain_variant")


# ------------------------------------------------------------------------------------------------- keeping
def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout


def commit_and_clone(studies: Path, tmp_path: Path) -> Path:
    """Commit ``studies`` (with the repository's studies/.gitignore) into a new repository; its clone's studies/."""
    repo = tmp_path / "repo"
    shutil.copytree(studies, repo / "studies")
    shutil.copy(REPO / "studies" / ".gitignore", repo / "studies" / ".gitignore")
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "studies", cwd=repo)
    git("clone", "-q", str(repo), str(tmp_path / "clone"), cwd=tmp_path)
    return tmp_path / "clone" / "studies"


def test_kept_study_holds_only_what_it_needs(fresh_six, tmp_path):
    source = shutil.copytree(fresh_six, tmp_path / "source")  # it has logs and scripts/; add a figure, a job
    (source / "conf_baseline" / "figures").mkdir()
    (source / "conf_baseline" / "figures" / "f.png").write_bytes(b"png")
    (source / "pretraining_runs" / "run_9").mkdir()  # a job in flight: no marker
    (source / "pretraining_runs" / "run_9" / "orimap.csv").write_text("run_index\n9\n")
    kept = keep.keep_study(source, tmp_path / "studies" / "six").dest
    files = sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*") if p.is_file())
    assert "scripts/parameters.py" in files and "environment.json" in files and "kept.json" in files
    assert not [f for f in files if f.startswith(("logs/", "scripts/main")) or f.endswith((".png", "log.txt"))]
    assert not [f for f in files if f.endswith(".csv")] and "pretraining_runs/run_9/orimap.csv.gz" not in files
    # each row once: the pieces of assembled jobs are left out, their markers kept; run 5, beyond the failure
    # budget, was never assembled: its pieces stay
    pieces = [f for f in files if "_runs/" in f and not f.endswith("DONE.json")]
    assert pieces and all(f.startswith("pretraining_runs/run_5/") for f in pieces)
    assert "pretraining_runs/run_5/DONE.json" in files and "conf_baseline/training_runs/run_2/DONE.json" in files
    # the retained pretraining files are stored as derivations of their unfiltered copies
    assert sorted(derived_names(kept)) == sorted(layout.PRETRAINING_PIECES)
    assert not [f for f in files if f.removesuffix(".gz") in layout.PRETRAINING_PIECES]
    assert assembled(kept) == assembled(fresh_six)
    assert json.loads((kept / "PRETRAINING_DONE.json").read_text())["pretraining_folder"] == "."
    assert damaged_files(kept) == []
    again = keep.keep_study(source, kept)
    assert again.removed == 0 and again.written <= 1  # PRETRAINING_DONE.json names its folder again
    with pytest.raises(keep.KeepError, match="not a kept copy"):
        keep.keep_study(source, tmp_path / "studies" / "six" / "conf_baseline")
    with records.folder_lock(kept), pytest.raises(keep.KeepError, match="a main.py is working on"):
        keep.keep_study(kept, kept)  # packing in place under a running study is refused


def test_kept_study_leaves_out_the_tuning_curves_and_their_features(fresh_six, tmp_path):
    source = shutil.copytree(fresh_six, tmp_path / "source")
    tables = [source / layout.PRETRAINING_TC, source / layout.PRETRAINING_FEATURES,
              source / "conf_baseline" / layout.CONF_TC, source / "conf_baseline" / layout.CONF_FEATURES]  # fmt: skip
    for path in tables:
        path.write_text("run_index,stage\n0,2\n")
    kept = keep.keep_study(source, tmp_path / "studies" / "six").dest
    names = {p.name.removesuffix(".gz") for p in kept.rglob("*") if p.is_file()}
    assert names.isdisjoint(keep.LEFT_OUT_TABLES) and {p.name for p in tables} == keep.LEFT_OUT_TABLES
    earlier = kept / "conf_baseline" / (layout.CONF_FEATURES + ".gz")  # packed by a version that kept it
    earlier.write_bytes(gzip.compress(b"run_index,stage\n0,2\n"))
    assert keep.keep_study(source, kept).removed == 1 and not earlier.exists()


def test_kept_study_restored_from_git_resumes_grows_and_is_packed_again(fresh_six, tmp_path, monkeypatch):
    stub_jobs(monkeypatch)
    small = new_study(tmp_path / "r", 3)
    studies = tmp_path / "studies"
    keep.keep_study(small, studies / "small")
    clone = commit_and_clone(studies, tmp_path)
    kept = clone / "small"
    assert not (kept / "log.txt").exists() and not (kept / "logs").exists()
    assert run_main(["--resume", str(kept), "--runs", "6", "--no-analysis", "--jobs", "4"]) == main.EXIT_OK
    assert assembled(kept) == assembled(fresh_six)
    status = git("status", "--porcelain", cwd=clone.parent)
    assert " D studies/small/orimap_complete.csv.gz" in status  # rewritten plain (ignored) until packed again
    report = keep.keep_study(kept, kept)
    assert report.written > 0 and not list(kept.rglob("*.csv"))  # packed, new pieces left out again
    assert assembled(kept) == assembled(fresh_six) and damaged_files(kept) == []
    status = git("status", "--porcelain", "--untracked-files=all", cwd=clone.parent)
    assert "log.txt" not in status and "/logs/" not in status and "scripts/main.py" not in status
    assert "studies/small/pretraining_runs/run_4/DONE.json" in status and ".csv.gz" in status


def test_listing_comes_from_the_folders_records(fresh_six, tmp_path):
    studies = tmp_path / "studies"
    keep.keep_study(fresh_six, studies / "six")
    (studies / "README.md").write_text(f"# Studies\n\n{keep.LISTING_BEGIN}\nold\n{keep.LISTING_END}\nend\n")
    assert keep.main(["--listing", str(studies), "--check"]) == 1
    assert keep.main(["--listing", str(studies)]) == 0
    assert keep.main(["--listing", str(studies), "--check"]) == 0
    text = (studies / "README.md").read_text()
    assert "### `six`" in text and "| reference | 5 | 6 | conf_baseline, conf_midonly_readout |" in text
    assert "State: complete: 6 runs, 3 retained after pretraining; not analysed. Grow it with `python main.py " \
        "--resume studies/six --runs N`." in text
    assert "python main.py --runs 6 --seed 5 --configs conf_baseline conf_midonly_readout" in text
    assert text.endswith(f"{keep.LISTING_END}\nend\n")


def test_the_repository_lists_its_kept_studies_and_they_are_whole():
    studies = REPO / "studies"
    assert keep.update_listing(studies, check=True), "run: python -m study.keep --listing studies"
    for folder in sorted(p for p in studies.iterdir() if (p / layout.ENVIRONMENT).is_file()):
        assert damaged_files(folder) == [], folder


@pytest.mark.parametrize("damage", ["truncated", "missing assembled", "missing piece"])
def test_damaged_kept_study_is_refused_in_one_line(fresh_six, tmp_path, capsys, damage):
    kept = keep.keep_study(fresh_six, tmp_path / "studies" / "six").dest
    if damage == "truncated":
        target = kept / "pretraining_results_complete.csv.gz"
        target.write_bytes(target.read_bytes()[:-20])
    elif damage == "missing assembled":
        target = kept / "conf_baseline" / "training_results.csv.gz"
        target.unlink()
    else:  # a piece the kept folder left out, and the assembled file that held it
        target = kept / "orimap_complete.csv.gz"
        target.unlink()
    before = sorted(p.name for p in kept.rglob("*"))
    capsys.readouterr()
    assert run_main(["--resume", str(kept), "--runs", "7"]) == main.EXIT_USAGE
    line = one_error_line(capsys)
    assert "cannot resume" in line and target.name.removesuffix(".gz").removesuffix(".csv") in line
    assert sorted(p.name for p in kept.rglob("*")) == before
    from analysis import main_analysis

    assert run_entry_point(lambda: main_analysis.main([str(kept)])) == EXIT_USER_ERROR
    assert "cannot analyse" in one_error_line(capsys)
    assert keep.main(["--verify", str(kept)]) == 1


# ---------------------------------------------------------------------------------------------- packed files
def test_packed_files_are_read_transparently_and_checked(tmp_path):
    plain = tmp_path / "a.csv"
    plain.write_text("run_index,x\n0,1.5\n1,2.5\n")
    pack_file(plain, tmp_path / "a.csv.gz")
    first = (tmp_path / "a.csv.gz").read_bytes()
    pack_file(plain, tmp_path / "a.csv.gz")
    assert (tmp_path / "a.csv.gz").read_bytes() == first  # packing is deterministic: no change for git
    plain.unlink()
    df = read_results_csv(plain, ["x"], expected_rows=2)
    assert df["x"].tolist() == [1.5, 2.5]
    assert has_stored(plain) and stored(plain).name == "a.csv.gz"
    atomic_write_csv(df, plain)  # a rewrite is plain and replaces the packed twin
    assert plain.is_file() and not (tmp_path / "a.csv.gz").exists()
    with gzip.open(tmp_path / "b.csv.gz", "wb") as fh:
        fh.write(b"run_index,x\n0,1.5\n1,2")
    with pytest.raises(ResultsFileError, match=r"b.csv.gz is truncated"):
        read_results_csv(tmp_path / "b.csv")
    (tmp_path / "c.csv.gz").write_bytes(first[:-9])
    with pytest.raises(ResultsFileError, match=r"c.csv.gz is truncated or corrupt"):
        read_results_csv(tmp_path / "c.csv")


def test_derived_files_are_written_back_from_their_unfiltered_copies(fresh_six, tmp_path):
    kept = keep.keep_study(fresh_six, tmp_path / "studies" / "six").dest
    retained = kept / layout.PRETRAINING_RESULTS
    assert not retained.with_name(retained.name + ".gz").exists()
    assert has_stored(retained) and not retained.exists()  # derivable, and asking whether writes nothing
    table = read_results_csv(retained, ["run_index", "original_run_index"])  # written back on first read
    assert retained.is_file() and retained.read_bytes() == (fresh_six / layout.PRETRAINING_RESULTS).read_bytes()
    assert sorted(set(table["original_run_index"])) == [0, 2, 4]  # runs 1 and 3 excluded
    again = keep.keep_study(kept, kept)  # the plain file written back is left out again
    assert again.derived == len(layout.PRETRAINING_PIECES) and not retained.exists()
    carried = keep.keep_study(kept, tmp_path / "elsewhere" / "six").dest  # a kept study carried: still derived
    assert sorted(derived_names(carried)) == sorted(layout.PRETRAINING_PIECES)
    assert assembled(carried) == assembled(fresh_six) and damaged_files(carried) == []
    # a derivation that would differ is stored as the file itself: the check is byte for byte
    source = shutil.copytree(fresh_six, tmp_path / "edited")
    orimap = source / layout.ORIMAP
    orimap.write_text(orimap.read_text().replace("\n", "\r\n"))
    edited = keep.keep_study(source, tmp_path / "studies" / "edited").dest
    assert layout.ORIMAP not in derived_names(edited) and (edited / (layout.ORIMAP + ".gz")).is_file()
    # a derived file whose unfiltered copy is gone is missing, named by the checks
    (kept / "orimap_complete.csv.gz").unlink()
    assert not has_stored(kept / layout.ORIMAP)
    assert any("orimap" in line for line in damaged_files(kept))


def test_packed_tuning_curves_are_read_and_unpacked_to_append(tmp_path):
    from analysis.tuning_curve_files import read_complete_tuning_curves, write_tuning_curves_csv

    path = tmp_path / "tuning_curves.csv"
    block = pd.DataFrame({"run_index": [0, 0], "training_stage": [2, 2], "E_0": [1.0, 2.0]})
    write_tuning_curves_csv(block, path)
    pack_file(path, layout.packed(path))
    path.unlink()
    assert read_complete_tuning_curves(path, 2)["E_0"].tolist() == [1.0, 2.0]
    assert not path.exists()  # reading leaves the kept file as it is
    write_tuning_curves_csv(block.assign(run_index=1), path, append=True)
    assert not layout.packed(path).exists()
    assert read_complete_tuning_curves(path, 2)["run_index"].tolist() == [0, 0, 1, 1]



# ---------------------------------------------------------------------------------------- regenerating results
def committed_style_study(root: Path, preset: str, seed: int) -> Path:
    """An analysed hand-made study (tests/test_study_comparison.py) with the records main.py writes: the study
    record, the stage markers and every assembled file they promise."""
    from tests.test_study_comparison import OTHER, make_study

    make_study(root, preset, seed)
    study = main.StudyDesign(4, ("conf_baseline", OTHER), seed, {}, None, False, preset)
    record = {"results_format_version": RESULTS_FORMAT_VERSION, "created": f"2026-12-0{seed + 1}",
              "base_seed": seed, "command_line": ["python", "main.py", "--runs", "4"], "study": study.to_json()}
    (root / "environment.json").write_text(json.dumps(record))
    layout_ = StudyLayout(root)
    for name in ("pretraining_results_val.csv", "init_readout_params.csv"):
        (root / name).write_text("run_index\n0\n1\n2\n")
    for path in layout_.pretraining_files():
        complete = root / layout.complete_copy(path.name)
        if path != layout_.excluded_runs and not complete.exists():
            shutil.copy(path, complete)
    write_marker(layout_.pretraining_done, {"pretraining_folder": str(root), "retained_runs": 3})
    for conf in study.configs:
        val = layout_.configuration(conf).training_results_val
        val.write_text("run_index\n0\n1\n2\n")
        write_marker(layout_.configuration(conf).done, {"runs": 3})
    return root


def test_regeneration_from_kept_studies_gives_the_same_tables(tmp_path):
    from analysis import study_comparison as sc

    originals = [committed_style_study(tmp_path / "results" / n, p, s)
                 for n, p, s in (("ref", "reference", 0), ("cor", "corrected", 1))]  # fmt: skip
    kept = [keep.keep_study(folder, tmp_path / "studies" / folder.name).dest for folder in originals]
    assert not list((tmp_path / "studies").rglob("*.csv")) and not list((tmp_path / "studies").rglob("*.png"))
    sc.compare_studies(originals, tmp_path / "out_results", headlines=True)
    sc.compare_studies(kept, tmp_path / "out_studies", headlines=True)
    for name in [n for n in sc.OUTPUTS if not n.endswith(".png")]:  # the comparison and lineage tables
        assert (tmp_path / "out_studies" / name).read_bytes() == (tmp_path / "out_results" / name).read_bytes(), name
    for folder in kept:
        assert (tmp_path / "out_studies" / f"headline_{folder.name}.png").stat().st_size > 10_000
    assert not list((tmp_path / "studies").rglob("*.png"))  # the kept studies were only read


def test_regeneration_refuses_an_incomplete_study(tmp_path, caplog):
    from analysis import study_comparison as sc

    folder = committed_style_study(tmp_path / "ref", "reference", 0)
    (folder / "conf_midonly_readout" / "DONE.json").unlink()
    (folder / "conf_midonly_readout" / "training_runs" / "run_0").mkdir(parents=True)
    write_marker(folder / "conf_midonly_readout" / "training_runs" / "run_0" / "DONE.json",
                            {"run_index": 0, "success": False})  # fmt: skip
    out = tmp_path / "out"
    args = sc.parse_args([str(folder), "--out", str(out)])
    caplog.clear()
    assert run_entry_point(lambda: sc.run(args)) == EXIT_USER_ERROR
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"{folder} is incomplete: stage 2 of conf_midonly_readout: 1 of 3 runs done, not assembled" in line
    assert not out.exists()


# ----------------------------------------------------------------------------------- real training (slow)
def real_argv(root: Path, runs: int, *extra: str) -> list[str]:
    from study.quick import END_TO_END_OVERRIDES

    return [sys.executable, "main.py", "--runs", str(runs), "--seed", "3", "--configs", *CONFIGS,
            "--overrides-json", json.dumps(END_TO_END_OVERRIDES), "--results-root", str(root), "--no-analysis",
            "--jobs", "2", *extra]  # fmt: skip


def run_real(argv: list[str], timeout: float = 1500) -> None:
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def real_study(root: Path, runs: int) -> Path:
    run_real(real_argv(root, runs))
    (folder,) = list(root.iterdir())
    return folder


@pytest.fixture(scope="module")
def real_three(tmp_path_factory) -> Path:
    """A tiny study of 3 runs with real training (TINY preset, both configurations)."""
    return real_study(tmp_path_factory.mktemp("three"), 3)


@pytest.fixture(scope="module")
def real_two(tmp_path_factory) -> Path:
    """The same study with 2 runs."""
    return real_study(tmp_path_factory.mktemp("two"), 2)


@pytest.mark.slow
def test_real_kept_study_from_git_grows_into_the_study_started_with_its_runs(real_two, real_three, tmp_path):
    studies = tmp_path / "studies"
    keep.keep_study(real_two, studies / "tiny")
    kept = commit_and_clone(studies, tmp_path) / "tiny"
    run_real([sys.executable, "main.py", "--resume", str(kept), "--runs", "3", "--no-analysis", "--jobs", "2"])
    assert assembled(kept) == assembled(real_three)  # pieces written back from the kept files, assembled again
    for name in ("parameters.py", "conf_baseline/parameters_conf_baseline.py"):
        assert (kept / name).read_bytes() == (real_three / name).read_bytes()
    keep.keep_study(kept, kept)
    assert damaged_files(kept) == [] and not list(kept.rglob("*.csv"))
    # the analysis from the kept files alone (packed CSVs), then the comparison with the headline figure
    analysed = subprocess.run([sys.executable, "-m", "analysis.main_analysis", str(kept), "--quick"], cwd=REPO,
                              capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert analysed.returncode == 0, analysed.stderr[-3000:]
    assert (kept / "headline.png").is_file() and (kept / "report.html").is_file()
    out = tmp_path / "out"
    compared = subprocess.run([sys.executable, "-m", "analysis.study_comparison", str(kept), "--out", str(out),
                               "--headlines"], cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert (out / "comparison.md").is_file() and (out / "headline_tiny.png").is_file()


@pytest.mark.slow
def test_real_growth_after_a_kill_during_the_new_runs_pretraining(real_two, real_three, tmp_path):
    folder = shutil.copytree(real_two, tmp_path / "grown")
    argv = [sys.executable, "main.py", "--resume", str(folder), "--runs", "3", "--no-analysis"]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    log = folder / "logs" / "pretraining_run_2.log"
    try:
        deadline = time.time() + 600
        while not (log.is_file() and log.stat().st_size > 0):
            assert process.poll() is None and time.time() < deadline, "the growth did not start run 2"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (folder / "pretraining_runs" / "run_2" / "DONE.json").exists()
    assert read_environment_record(folder)["study"]["runs"] == 3
    run_real([*argv, "--jobs", "2"])
    assert assembled(folder) == assembled(real_three)


@pytest.mark.slow
def test_real_skip_pretraining_study_grows_after_its_pretraining(real_two, real_three, tmp_path):
    reused = shutil.copytree(real_two, tmp_path / "reused")
    run_real([sys.executable, "main.py", "--skip-pretraining", str(reused), "--configs", "conf_baseline",
              "--results-root", str(tmp_path / "skip"), "--no-analysis", "--jobs", "2"])  # fmt: skip
    (skip,) = list((tmp_path / "skip").iterdir())
    refused = subprocess.run([sys.executable, "main.py", "--resume", str(skip), "--runs", "3"], cwd=REPO,
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "retains 2" in refused.stderr
    run_real([sys.executable, "main.py", "--resume", str(reused), "--runs", "3", "--no-analysis", "--jobs", "2"])
    run_real([sys.executable, "main.py", "--resume", str(skip), "--runs", "3", "--no-analysis"])
    name = "conf_baseline/training_results.csv"
    assert (skip / name).read_bytes() == (real_three / name).read_bytes()


def test_analysis_of_fewer_runs_is_redone_and_missing_figures_are_drawn(tmp_path, monkeypatch):
    calls = []

    def analyse(folder, configs, overwrite, settings):
        calls.append(overwrite)
        (folder / "report.html").write_text("report")

    monkeypatch.setattr(main.main_analysis, "run_analysis", analyse)
    plan = main.plan_from_args(main.build_parser().parse_args(["--runs", "6"]))
    write_marker(tmp_path / "ANALYSIS_DONE.json", {"configs": ["conf_baseline"], "runs": 3})
    assert main.analysis_stage(tmp_path, plan) == main.EXIT_OK and calls == [True]  # redone from scratch
    assert json.loads((tmp_path / "ANALYSIS_DONE.json").read_text())["runs"] == 6
    (tmp_path / "report.html").unlink()  # a kept study: tables, no figures
    assert main.analysis_stage(tmp_path, plan) == main.EXIT_OK and calls == [True, False]
    assert main.analysis_stage(tmp_path, plan) == main.EXIT_OK and calls == [True, False]
