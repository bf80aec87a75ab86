"""main.py, util.py and study/: results folders, records, parameter copies, planning and bad input.

Job running and end-to-end studies are in test_main_jobs.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import main
from parameters import ParameterError, Parameters, build_parameters, load_parameters_file
from store import logs, parameter_files
from store.errors import ResultsFileError, ResultsFolderError
from store.files import read_marker, write_marker
from store.records import RESULTS_FORMAT_VERSION, is_compatible_format, read_environment_record
from store.tables import read_results_csv
from study import records
from study.quick import END_TO_END_OVERRIDES

REPO = Path(__file__).resolve().parents[1]
TINY = END_TO_END_OVERRIDES
FAKE_JAX = {"backend": "cpu", "devices": ["cpu:0"]}


def repo_parameters_digest() -> str:
    return hashlib.sha256((REPO / "parameters.py").read_bytes()).hexdigest()


def parse(argv: list[str]) -> main.Plan:
    return main.plan_from_args(main.build_parser().parse_args(argv))


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ folders
def test_results_folder_name_and_smallest_unused_version(tmp_path):
    date = dt.date(2024, 1, 8)
    assert records.results_folder_name(date, 0) == "Jan08_v0"
    assert records.results_folder_name(dt.date(2025, 12, 31), 12) == "Dec31_v12"
    root = tmp_path / "results"
    assert records.make_results_folder(root, date) == root / "Jan08_v0"
    assert records.make_results_folder(root, date) == root / "Jan08_v1"
    (root / "Jan08_v3").mkdir()
    assert records.make_results_folder(root, date) == root / "Jan08_v2"
    assert records.make_results_folder(root, date) == root / "Jan08_v4"
    assert records.make_results_folder(root, dt.date(2024, 2, 1)) == root / "Feb01_v0"
    assert all(p.is_dir() for p in root.iterdir())


def test_environment_record(tmp_path):
    path = records.write_environment_record(tmp_path, ["main.py", "--runs", "3"], 7, extra={"study": {"x": 1}})
    record = json.loads(path.read_text())
    assert path == tmp_path / "environment.json"
    assert record["results_format_version"] == RESULTS_FORMAT_VERSION
    assert record["python"] == sys.version
    assert record["command_line"] == [sys.executable, "main.py", "--runs", "3"]
    assert record["base_seed"] == 7 and record["study"] == {"x": 1}
    assert set(record["packages"]) == {"jax", "jaxlib", "optax", "numpy", "pandas", "scipy", "sklearn",
                                       "statsmodels", "matplotlib"}  # fmt: skip
    assert record["packages"]["sklearn"] == importlib.metadata.version("scikit-learn")
    assert record["packages"]["jax"] == importlib.metadata.version("jax")
    assert record["jax"]["backend"] in {"cpu", "gpu", "cuda", "rocm", "tpu"}
    assert record["jax"]["devices"]
    assert read_environment_record(tmp_path)["base_seed"] == 7


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "missing"), ("{not json", "corrupt"), ('{"results_format_version": "0.3"}', "format version '0.3'"),
     ('{"base_seed": 1}', "format version None"), ("[1, 2]", "format version")],
)  # fmt: skip
def test_environment_record_problems_are_named(tmp_path, content, message):
    if content is not None:
        (tmp_path / "environment.json").write_text(content)
    with pytest.raises(ResultsFolderError, match=message):
        read_environment_record(tmp_path)
    with pytest.raises(ResultsFolderError, match="not found"):
        read_environment_record(tmp_path / "absent")


def test_format_compatibility_is_by_major_version():
    major = RESULTS_FORMAT_VERSION.split(".")[0]
    assert is_compatible_format(RESULTS_FORMAT_VERSION)
    assert is_compatible_format(f"{major}.99")
    assert not is_compatible_format(f"{int(major) + 1}.0")
    assert not is_compatible_format(None) and not is_compatible_format(1.0)


# ------------------------------------------------------------------------------------------- parameter files
def test_parameters_copy_is_the_source_text_plus_a_readable_overrides_block(tmp_path):
    overrides = {"TrainingPars": {"SGD_steps": 7, "test_offsets": [1.0, 3.0, 7.0, 9.0], "staircase_rule": "legacy"},
                 "SSNPars": {"p_local_s": (1.0, 1.0)}, "PretrainingPars": {"is_on": False}}  # fmt: skip
    path = tmp_path / "parameters_x.py"
    parameter_files.write_parameters_copy(path, overrides, title="a title")
    text, source = path.read_text(), (REPO / "parameters.py").read_text()
    assert text.startswith(source.rstrip("\n"))
    block = text[len(source.rstrip("\n")) :]
    assert "# a title" in block and '"staircase_rule": "legacy",' in block and "OVERRIDES = {" in block
    assert all(len(line) <= 120 for line in text.splitlines())
    assert parameter_files.read_overrides(path) == overrides
    loaded = load_parameters_file(path)
    assert loaded.training.SGD_steps == 7 and loaded.training.test_offsets == (1.0, 3.0, 7.0, 9.0)
    assert loaded.training.staircase_rule == "legacy" and loaded.ssn.p_local_s == (1.0, 1.0)
    assert loaded.pretraining.is_on is False
    assert loaded.training.batch_size == Parameters().training.batch_size


def test_parameters_copy_formats_long_tuples_and_odd_strings(tmp_path):
    trained = Parameters().trained_ssn.trained
    overrides = {"TrainedSSNPars": {"trained": trained}, "ConvPars": {"gradient_mode": "unrolled"}}
    path = tmp_path / "p.py"
    parameter_files.write_parameters_copy(path, overrides)
    assert parameter_files.read_overrides(path) == overrides
    assert all(len(line) <= 120 for line in path.read_text().splitlines())
    assert parameter_files.format_value('a "quoted"\\ text') == '"a \\"quoted\\"\\\\ text"'
    assert parameter_files.format_value((1.5,)) == "(1.5,)" and parameter_files.format_value([True, 2]) == "[True, 2]"


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [({"SSNPars": {"tauE": -1.0}}, ParameterError, "tauE"),
     ({"SSNPars": {"no_such_field": 1}}, ParameterError, "no_such_field"),
     ({"NoSuchPars": {"x": 1}}, ParameterError, "NoSuchPars"),
     ({"SSNPars": {"tauE": float("nan")}}, ValueError, "finite"),
     ({"SSNPars": {"tauE": None}}, TypeError, "SSNPars.tauE"),
     ({"SSNPars": {"tauE": {"a": 1}}}, TypeError, "dict")],
)  # fmt: skip
def test_invalid_parameters_copy_raises_and_leaves_no_file(tmp_path, overrides, error, message):
    path = tmp_path / "parameters_bad.py"
    with pytest.raises(error, match=message):
        parameter_files.write_parameters_copy(path, overrides)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_read_overrides(tmp_path):
    assert parameter_files.read_overrides(REPO / "parameters.py") == {}
    path = tmp_path / "p.py"
    path.write_text("OVERRIDES: dict = {}\nx = 1\nOVERRIDES = {'A': {'b': (1, 2)}}\n")
    assert parameter_files.read_overrides(path) == {"A": {"b": (1, 2)}}
    path.write_text("OVERRIDES = {'A': {'b': compute()}}\n")
    with pytest.raises(ParameterError, match="literal"):
        parameter_files.read_overrides(path)
    path.write_text("OVERRIDES = {'A': 3}\n")
    with pytest.raises(ParameterError, match="ClassName"):
        parameter_files.read_overrides(path)
    path.write_text("def broken(:\n")
    with pytest.raises(ParameterError, match="cannot be read"):
        parameter_files.read_overrides(path)


def test_merge_overrides_does_not_change_its_inputs():
    base = {"A": {"x": 1, "y": 2}, "B": {"z": 3}}
    extra = {"A": {"y": 20}, "C": {"w": 4}}
    merged = parameter_files.merge_overrides(base, extra)
    assert merged == {"A": {"x": 1, "y": 20}, "B": {"z": 3}, "C": {"w": 4}}
    assert base == {"A": {"x": 1, "y": 2}, "B": {"z": 3}} and extra == {"A": {"y": 20}, "C": {"w": 4}}
    merged["B"]["z"] = 0
    assert base["B"]["z"] == 3
    assert parameter_files.conflicting_overrides(base, extra) == ["A.y"]
    assert parameter_files.conflicting_overrides({"A": {"t": [1, 2]}}, {"A": {"t": (1, 2)}}) == []


# --------------------------------------------------------------------------------- scripts, logging, markers
def test_snapshot_scripts_copies_root_store_training_and_analysis_files(tmp_path):
    target = records.snapshot_scripts(tmp_path)
    for relative in ("main.py", "parameters.py", "configurations.py", "util.py", "training/model.py",
                     "training/run_state.py", "store/files.py", "analysis/__init__.py"):  # fmt: skip
        assert (target / relative).read_bytes() == (REPO / relative).read_bytes()
    assert not list(target.rglob("test_*.py"))
    assert records.changed_scripts(tmp_path) == []
    (target / "util.py").write_text("# changed\n")
    assert records.changed_scripts(tmp_path) == ["util.py"]


def test_setup_logging_writes_the_log_file_and_keeps_file_only_records_off_the_terminal(tmp_path, capsys):
    log_path = tmp_path / "log.txt"
    try:
        logs.setup_logging(log_path)
        logging.getLogger("x").info("to both")
        logging.getLogger("x").info("file only", extra=logs.FILE_ONLY)
        logs.setup_logging(log_path)  # replaces its handlers rather than adding more
        logging.getLogger("x").warning("once")
    finally:
        logs.close_logging()
    logging.getLogger("x").warning("after close")
    text, err = log_path.read_text(), capsys.readouterr().err
    assert "to both" in text and "file only" in text and text.count("once") == 1 and "after close" not in text
    assert "to both" in err and "file only" not in err and err.count("once") == 1


def test_markers(tmp_path):
    path = tmp_path / "a" / "b" / "DONE.json"
    assert read_marker(path) is None
    write_marker(path, {"run_index": 3, "success": True})
    assert read_marker(path) == {"run_index": 3, "success": True}
    path.write_text("{trunc")
    with pytest.raises(ResultsFileError, match="corrupt"):
        read_marker(path)
    assert main.marker_payload(path) is None  # main redoes a job whose marker is corrupt
    assert not path.exists()  # and removes it, so the job itself does not stop on it


def test_folder_lock_is_exclusive(tmp_path):
    with records.folder_lock(tmp_path):
        code = f"from study import records; cm = records.folder_lock({str(tmp_path)!r}); cm.__enter__()"
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
        assert done.returncode != 0 and "another main.py" in done.stderr
    with records.folder_lock(tmp_path):
        pass


# ---------------------------------------------------------------------------------------------- planning
def test_default_plan_and_quick_preset():
    plan = parse([])
    assert plan.study.configs == ("conf_baseline",)
    assert plan.study.runs == Parameters().training.num_runs and plan.study.base_seed == 0
    assert plan.study.run_overrides == {} and plan.execution == main.Execution()
    quick = parse(["--quick", "--seed", "5"])
    assert quick.study.configs == ("conf_baseline", "conf_midonly_readout")
    assert quick.study.runs == 2 and quick.study.base_seed == 5 and quick.study.quick
    assert quick.study.run_overrides["PretrainingPars"]["run_threshold_range"] == [0.0, 181.0]
    params = Parameters().with_overrides(quick.study.run_overrides)
    assert params.pretraining.SGD_steps <= 6 and params.pretraining.stage1_SGD_steps <= 4
    assert params.training.SGD_steps <= 6 and params.training.probe_trials == 20
    assert params.pretraining.post_stage1_regression_trials == 400


def test_preset_default_choice_and_overrides_on_top(tmp_path):
    assert parse([]).study.preset == "reference"
    plan = parse(["--preset", "corrected", "--overrides-json", '{"TrainingPars": {"staircase_rule": "legacy"}}'])
    assert plan.study.preset == "corrected"
    path = tmp_path / "parameters.py"
    parameter_files.write_parameters_copy(path, plan.study.run_overrides, preset=plan.study.preset)
    params = load_parameters_file(path)
    assert params.training.staircase_rule == "legacy"  # --overrides-json wins over the preset
    assert params.training.plateau_rule == "equal" and params.pretraining.shuffle_labels is False


def test_runs_configs_and_overrides_combine():
    plan = parse(["--quick", "--runs", "3", "--configs", "readout", "conf_baseline", "--overrides-json",
                  '{"TrainingPars": {"SGD_steps": 2}}', "--jobs", "4", "--no-analysis"])  # fmt: skip
    assert plan.study.runs == 3 and plan.study.run_overrides["TrainingPars"]["num_runs"] == 3
    assert plan.study.run_overrides["TrainingPars"]["SGD_steps"] == 2
    assert plan.study.run_overrides["TrainingPars"]["probe_trials"] == 20  # the quick preset stays
    assert plan.study.configs[-1] == "conf_baseline" and len(plan.study.configs) == 5
    assert plan.execution.jobs == 4 and not plan.execution.analysis


def test_overrides_json_from_a_file(tmp_path):
    path = tmp_path / "o.json"
    path.write_text(json.dumps(TINY))
    assert parse(["--overrides-json", str(path)]).study.run_overrides["PretrainingPars"]["SGD_steps"] == 2


def test_study_round_trips_through_json():
    study = parse(["--quick", "--configs", "special"]).study
    assert main.StudyDesign.from_json(json.loads(json.dumps(study.to_json())), Path("x")).to_json() == json.loads(
        json.dumps(study.to_json()))  # fmt: skip
    with pytest.raises(ResultsFolderError, match="study"):
        main.StudyDesign.from_json({"runs": 1}, Path("x"))


def test_child_environment():
    assert main.child_environment(main.Execution())["PYTHONUNBUFFERED"] == "1"
    shared = main.child_environment(main.Execution(jobs=2))
    if not {"XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION"} & set(os.environ):
        assert shared["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in main.child_environment(main.Execution(jobs=2, executor="slurm"))


def test_prepared_folder_and_configuration_files_leave_the_repository_parameters_untouched(tmp_path):
    before = repo_parameters_digest()
    argv = ["--quick", "--configs", "special", "readout", "excluded", "only", "--results-root", str(tmp_path),
            "--note", "a note"]  # fmt: skip
    plan = main.plan_from_args(main.build_parser().parse_args(argv))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(records, "jax_environment", lambda timeout=0: FAKE_JAX)
            folder = main.create_study_folder(plan, argv)
        main.write_configuration_files(folder, plan.study)
    finally:
        logs.close_logging()
    assert repo_parameters_digest() == before
    assert folder.parent == tmp_path.resolve() and folder.name.endswith("_v0")
    note = (folder / "note.txt").read_text()
    assert note.startswith("a note") and "(0, 181)" in note and "--quick" in note
    assert "parameter preset: reference" in note
    record = read_environment_record(folder)
    assert record["study"] == json.loads(json.dumps(plan.study.to_json()))
    assert record["study"]["preset"] == "reference"
    for path in [folder / "parameters.py", *folder.glob("*/parameters_*.py")]:
        assert parameter_files.read_preset(path) == "reference" and 'PRESET = "reference"' in path.read_text()
    assert record["command_line"][1:] == ["main.py", *argv]
    assert (folder / "scripts" / "parameters.py").read_bytes() == (REPO / "parameters.py").read_bytes()
    assert (folder / "log.txt").read_text().count("results folder") == 1
    run_params = load_parameters_file(folder / "parameters.py")
    assert run_params.pretraining.is_on and run_params.pretraining.run_threshold_range == (0.0, 181.0)
    for name in plan.study.configs:
        path = folder / name / f"parameters_{name}.py"
        conf = main.configurations.configuration(name)
        assert parameter_files.read_overrides(path) == parameter_files.merge_overrides(plan.study.run_overrides,
                                                                                       conf.overrides())
        loaded = load_parameters_file(path)
        assert loaded.trained_ssn.trained == conf.trained and loaded.pretraining.is_on is False
        assert loaded.training.SGD_steps == run_params.training.SGD_steps
    # the folder can be resumed: its recorded settings come back
    resumed = parse(["--resume", str(folder), "--jobs", "2"])
    assert resumed.study == plan.study and resumed.resume == folder and resumed.execution.jobs == 2


# --------------------------------------------------------------------------------------------------- bad input
def bad_resume_folder(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / "old"
    if kind == "missing":
        return folder
    folder.mkdir()
    if kind == "no environment":
        return folder
    if kind == "corrupt":
        (folder / "environment.json").write_text('{"results_format_version": ')
    elif kind == "incompatible":
        (folder / "environment.json").write_text('{"results_format_version": "999.0", "study": {}}')
    elif kind == "no study":
        (folder / "environment.json").write_text(json.dumps({"results_format_version": RESULTS_FORMAT_VERSION}))
    return folder


BAD_INPUT = [
    (["--configs", "conf_nope"], "unknown configuration 'conf_nope'"),
    (["--configs", "conf_baseline", "bogus_group"], "bogus_group"),
    (["--overrides-json", '{"SSNPars": {"tauE": -1}}'], "tauE"),
    (["--overrides-json", '{"SSNPars": {"no_field": 1}}'], "no_field"),
    (["--overrides-json", '{"SSNPars": 3}'], "ClassName"),
    (["--overrides-json", "{oops"], "overrides-json"),
    (["--overrides-json", "missing_file.json"], "missing_file.json"),
    (["--runs", "0"], "--runs"),
    (["--runs", "many"], "--runs"),
    (["--jobs", "0"], "--jobs"),
    (["--executor", "pbs"], "--executor"),
    (["--submitit-cluster", "local"], "--executor slurm"),
    (["--unknown-option"], "unrecognized"),
    (["--preset", "faithful"], "--preset: unknown preset 'faithful'; valid: reference, corrected"),
    *([(["--executor", "slurm"], "sbatch not found")] if shutil.which("sbatch") is None else []),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_stops_with_one_line_and_no_folder(tmp_path, capsys, argv, message):
    root = tmp_path / "results"
    assert main.main([*argv, "--results-root", str(root)]) == main.EXIT_USAGE
    lines = error_lines(capsys)
    assert len(lines) == 1 and message in lines[0] and "ERROR" in lines[0]
    assert not root.exists()


@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "not found"), ("no environment", "environment.json is missing"), ("corrupt", "corrupt"),
     ("incompatible", "format version '999.0'"), ("no study", "study")],
)  # fmt: skip
def test_bad_resume_folder_stops_with_one_line(tmp_path, capsys, kind, message):
    folder = bad_resume_folder(tmp_path, kind)
    contents = sorted(p.name for p in folder.iterdir()) if folder.exists() else None
    assert main.main(["--resume", str(folder)]) == main.EXIT_USAGE
    lines = error_lines(capsys)
    assert len(lines) == 1 and message in lines[0] and "resume" in lines[0]
    assert (sorted(p.name for p in folder.iterdir()) if folder.exists() else None) == contents


def test_bad_skip_pretraining_folder(tmp_path, capsys):
    folder = bad_resume_folder(tmp_path, "no study")
    assert main.main(["--skip-pretraining", str(folder), "--results-root", str(tmp_path / "r")]) == main.EXIT_USAGE
    lines = error_lines(capsys)
    assert len(lines) == 1 and "no finished pretraining" in lines[0]
    assert not (tmp_path / "r").exists()


def test_skip_pretraining_inherits_the_reused_folders_settings(tmp_path):
    folder = tmp_path / "done"
    folder.mkdir()
    (folder / "environment.json").write_text(json.dumps({"results_format_version": RESULTS_FORMAT_VERSION,
                                                         "base_seed": 5}))  # fmt: skip
    for name in main.pretraining_files():
        (folder / name).write_text("run_index,0\n0,10.0\n1,20.0\n")
    parameter_files.write_parameters_copy(folder / "parameters.py", {"TrainingPars": {"SGD_steps": 7, "batch_size": 4}})
    plan = parse(["--skip-pretraining", str(folder), "--overrides-json", '{"TrainingPars": {"batch_size": 6}}'])
    assert plan.study.run_overrides["TrainingPars"]["SGD_steps"] == 7  # inherited from the reused pretraining
    assert plan.study.run_overrides["TrainingPars"]["batch_size"] == 6  # this command's options come last
    assert plan.study.runs == 2 and plan.study.base_seed == 5
    assert plan.study.preset == "reference"
    parameter_files.write_parameters_copy(folder / "parameters.py", {}, preset="corrected")
    assert parse(["--skip-pretraining", str(folder)]).study.preset == "corrected"  # inherited
    assert parse(["--skip-pretraining", str(folder), "--preset", "reference"]).study.preset == "reference"


def test_every_study_option_is_forbidden_with_resume():
    """The hand list in main.py must name exactly the options of the parser's 'study' group but --runs (with
    --resume it grows the study, tests/test_studies.py)."""
    (group,) = [g for g in main.build_parser()._action_groups if g.title.startswith("study")]
    assert set(main.RESUME_FORBIDDEN) | {"runs"} == {action.dest for action in group._group_actions}
    assert "runs" not in main.RESUME_FORBIDDEN


def test_resume_rejects_study_options_and_invalid_parameter_files(tmp_path, capsys):
    argv = ["--quick", "--results-root", str(tmp_path)]
    plan = parse(argv)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "jax_environment", lambda timeout=0: FAKE_JAX)
        folder = main.create_study_folder(plan, argv)
    logs.close_logging()
    capsys.readouterr()
    assert main.main(["--resume", str(folder), "--configs", "conf_baseline", "--seed", "3"]) == main.EXIT_USAGE
    lines = error_lines(capsys)
    assert len(lines) == 1 and "--configs, --seed cannot be combined with --resume" in lines[0]
    with open(folder / "parameters.py", "a") as fh:
        fh.write("OVERRIDES = {'SSNPars': {'tauI': -5.0}}\n")
    assert main.main(["--resume", str(folder)]) == main.EXIT_USAGE
    lines = error_lines(capsys)
    assert len(lines) == 1 and "tauI" in lines[0] and "parameters.py" in lines[0]


def test_invalid_repository_parameters_stop_before_any_work(tmp_path, capsys, monkeypatch):
    source = tmp_path / "parameters.py"
    source.write_text((REPO / "parameters.py").read_text().replace("tauE: float = 20.0", "tauE: float = -20.0"))
    monkeypatch.setattr(parameter_files, "REPO_PARAMETERS", source)
    root = tmp_path / "results"
    assert main.main(["--results-root", str(root)]) == main.EXIT_USAGE
    lines = error_lines(capsys)
    assert len(lines) == 1 and "SSNPars.tauE" in lines[0] and "parameters.py" in lines[0]
    assert not root.exists()
    source.write_text((REPO / "parameters.py").read_text() + "\nOVERRIDES = {'SSNPars': {'phases': 3}}\n")
    assert main.main(["--results-root", str(root)]) == main.EXIT_USAGE
    assert "phases" in error_lines(capsys)[0] and not root.exists()


def test_pretraining_switched_off_needs_skip_pretraining(tmp_path, capsys):
    argv = ["--overrides-json", '{"PretrainingPars": {"is_on": false}}', "--results-root", str(tmp_path / "r")]
    assert main.main(argv) == main.EXIT_USAGE
    assert "--skip-pretraining" in error_lines(capsys)[0]


def test_command_line_help_and_bad_input_in_a_real_process(tmp_path):
    shown = subprocess.run([sys.executable, "main.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert shown.returncode == 0 and "--resume" in shown.stdout and "conf_midonly_readout" in shown.stdout
    bad = subprocess.run([sys.executable, "main.py", "--configs", "conf_x", "--results-root", str(tmp_path / "r")],
                         cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "conf_x" in bad.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("module", ["training.main_pretraining", "training.main_training"])
def test_stage_command_rejects_an_unknown_preset_in_one_line(tmp_path, module):
    bad = subprocess.run([sys.executable, "-m", module, str(tmp_path), "--num-runs", "1", "--preset", "faithful"],
                         cwd=REPO, capture_output=True, text=True)  # fmt: skip
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1
    assert "unknown preset 'faithful'; valid: reference, corrected" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("preset", ["reference", "corrected"])
def test_tiny_study_under_each_preset_runs_and_records_it(tmp_path, preset, capsys):
    """One run, conf_baseline, TINY sizes: main.py end to end (job processes included) under the preset."""
    root = tmp_path / "results"
    argv = ["--runs", "1", "--configs", "conf_baseline", "--overrides-json", json.dumps(TINY), "--results-root",
            str(root), "--no-analysis", "--preset", preset]  # fmt: skip
    assert main.main(argv) == main.EXIT_OK, error_lines(capsys)[-5:]
    (folder,) = list(root.iterdir())
    conf_copy = folder / "conf_baseline" / "parameters_conf_baseline.py"
    expected = build_parameters(preset=preset)
    for path in (folder / "parameters.py", conf_copy):
        assert parameter_files.read_preset(path) == preset
        loaded = load_parameters_file(path)
        assert loaded.training.plateau_rule == expected.training.plateau_rule
        assert loaded.ssn.kappa_f_I_form == expected.ssn.kappa_f_I_form
    assert load_parameters_file(folder / "parameters.py").pretraining.shuffle_labels is (preset == "reference")
    assert read_environment_record(folder)["study"]["preset"] == preset
    assert f"parameter preset: {preset}" in (folder / "note.txt").read_text()
    rows = read_results_csv(folder / "conf_baseline" / "training_results.csv")
    assert len(rows) == TINY["TrainingPars"]["SGD_steps"] and rows["accs_125"].notna().any()
    assert parse(["--resume", str(folder)]).study.preset == preset  # --resume uses the recorded preset
    assert main.main(["--resume", str(folder), "--no-analysis"]) == main.EXIT_OK


def test_analysis_stage_calls_run_analysis_once_and_reports_failures(tmp_path, monkeypatch):
    plan = parse(["--configs", "conf_baseline", "readout"])
    calls = []

    def analyse(*args, **kwargs):
        calls.append((args, kwargs))
        (args[0] / "report.html").write_text("report")  # the analysis writes its report last

    monkeypatch.setattr(main.main_analysis, "run_analysis", analyse)
    assert main.analysis_stage(tmp_path, plan) == main.EXIT_OK
    assert calls == [((tmp_path, list(plan.study.configs)), {"overwrite": False, "settings": None})]
    assert main.analysis_stage(tmp_path, plan) == main.EXIT_OK and len(calls) == 1  # done: not repeated
    no_analysis = main.Plan(plan.study, main.Execution(analysis=False), tmp_path)
    assert main.analysis_stage(tmp_path / "other", no_analysis) == main.EXIT_OK and len(calls) == 1

    def failing(*args, **kwargs):
        raise RuntimeError("broken figure")

    monkeypatch.setattr(main.main_analysis, "run_analysis", failing)
    assert main.analysis_stage(tmp_path / "other", plan) == main.EXIT_FAILED
    assert not (tmp_path / "other" / main.ANALYSIS_DONE).exists()


def test_quick_study_analyses_at_quick_size(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(main.main_analysis, "run_analysis", lambda *args, **kwargs: calls.append(kwargs))
    assert main.analysis_stage(tmp_path, parse(["--quick"])) == main.EXIT_OK
    assert calls == [{"overwrite": False, "settings": main.main_analysis.QUICK_SETTINGS}]
