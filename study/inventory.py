"""What a study folder holds, read from its own records: how far the study got, and whether the files its
records promise are there and whole.

* :func:`study_state`: the runs, how many pretraining and stage-2 jobs are done, whether each stage is
  assembled for the study's current runs, and the runs its last finished analysis covered. A study is
  *complete* when its pretraining and every configuration are assembled for its runs (the analysis can be
  redone from the CSVs at any time).
* :func:`damaged_files`: one line per file that the records say must exist and is missing (a piece of a
  completed job that no assembled file holds either, an assembled file of a finished stage) or that is cut (a
  plain file without its last newline, a packed file whose gzip stream is cut or corrupt). ``main.py --resume``,
  the analysis and the study comparison refuse such a folder before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from store.errors import ResultsFileError
from store.files import has_stored, is_derived, is_packed, read_marker, read_stored_bytes, stored
from store.layout import CONFIGURATION_DONE, PACKED_SUFFIX, TRAINING_PIECES, StudyLayout, complete_copy
from store.records import pretraining_folder
from study import pieces
from study.design import read_study_design


@dataclass(frozen=True)
class ConfigurationState:
    """Stage 2 of one configuration."""

    name: str
    jobs_done: int
    assembled: bool


@dataclass(frozen=True)
class StudyState:
    """How far a study got (study_state)."""

    folder: Path
    runs: int
    reused: Path | None
    """The folder whose pretraining the study reuses (--skip-pretraining), None for its own."""
    pretraining_jobs_done: int
    retained: int | None
    """Runs retained after pretraining; None while the pretraining is not assembled for the study's runs."""
    configurations: tuple[ConfigurationState, ...]
    analysis_runs: int | None
    """The runs the last finished analysis covered; None if none finished."""

    @property
    def complete(self) -> bool:
        """Every job of the study's runs and configurations is done and assembled."""
        return self.retained is not None and all(c.assembled for c in self.configurations)

    def missing(self) -> list[str]:
        """What the study lacks, one phrase per stage (empty when complete)."""
        if self.retained is None:
            if self.reused is not None:
                return [f"the reused pretraining ({self.reused}) is not assembled"]
            return [f"pretraining: {self.pretraining_jobs_done} of {self.runs} runs done, not assembled"]
        return [f"stage 2 of {c.name}: {c.jobs_done} of {self.retained} runs done, not assembled"
                for c in self.configurations if not c.assembled]  # fmt: skip

    def describe(self) -> str:
        """One line: complete (with the retained runs and the analysis), or what is missing."""
        if not self.complete:
            return "incomplete: " + "; ".join(self.missing())
        analysis = ("analysed" if self.analysis_runs == self.runs else
                    "not analysed" if self.analysis_runs is None else
                    f"analysis of {self.analysis_runs} runs, to redo")  # fmt: skip
        return f"complete: {self.runs} runs, {self.retained} retained after pretraining; {analysis}"


def study_state(folder: Path) -> StudyState:
    """The state of a study folder written by main.py (ResultsFolderError if it has no study record)."""
    layout = StudyLayout(folder)
    study = read_study_design(folder)
    reused = layout.recorded_folder(study.skip_pretraining) if study.skip_pretraining else None
    done = read_marker(layout.pretraining_done)
    # a marker of an earlier code version has no "runs": growth removes markers before it records more runs
    retained = int(done["retained_runs"]) if done and done.get("runs", study.runs) == study.runs else None
    jobs = 0 if reused else sum(read_marker(layout.pretraining_run(i).marker) is not None
                                for i in range(study.runs))  # fmt: skip
    confs = tuple(_configuration_state(layout, name, retained) for name in study.configs)
    analysis = read_marker(layout.analysis_done)
    analysis_runs = int(analysis.get("runs", study.runs)) if analysis else None
    return StudyState(layout.root, study.runs, reused, jobs, retained, confs, analysis_runs)


def _configuration_state(layout: StudyLayout, name: str, retained: int | None) -> ConfigurationState:
    conf = layout.configuration(name)
    if retained is None:
        return ConfigurationState(name, 0, False)
    jobs = sum(read_marker(conf.run(i).marker) is not None for i in range(retained))
    done = read_marker(conf.done)
    return ConfigurationState(name, jobs, bool(done) and int(done.get("runs", -1)) == retained)


# ------------------------------------------------------------------------------------------------ integrity
def damaged_files(folder: Path) -> list[str]:
    """One line per missing or cut file of a study folder (empty if none); see the module docstring."""
    layout = StudyLayout(folder)
    problems = [_cut(path) for path in sorted(layout.root.rglob(f"*.csv{PACKED_SUFFIX}"))]
    for piece in pieces.completed_pieces(layout.root):
        if has_stored(piece.path):
            problems.append(_cut(piece.path))
        elif not has_stored(piece.holder):
            problems.append(f"{piece.path} is missing (a completed job's file; {piece.holder.name} does not hold it)")
    for path in assembled_files(layout):
        problems.append(_cut(path) if has_stored(path) else f"{path} is missing (an assembled file)")
    return list(dict.fromkeys(p for p in problems if p))


def damage_report(folder: Path) -> str | None:
    """The first missing or cut file of a study folder and how many more there are, in one line (None if
    none); an unreadable marker counts as a problem too."""
    try:
        problems = damaged_files(folder)
    except ResultsFileError as error:
        problems = [str(error)]
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more: python -m study.keep --verify {folder})" if problems[1:] else ""
    return problems[0] + more


def assembled_files(layout: StudyLayout) -> list[Path]:
    """The assembled files that the study-stage markers of a folder promise."""
    files: list[Path] = []
    done = read_marker(layout.pretraining_done)
    if done and pretraining_folder(layout.root) == layout.root:
        files += [*layout.pretraining_files(), *(layout.file(complete_copy(p.name)) for p in layout.pretraining_files()
                                                 if p != layout.excluded_runs)]  # fmt: skip
    for marker in sorted(layout.root.glob(f"*/{CONFIGURATION_DONE}")):
        conf = layout.configuration(marker.parent.name)
        files += [conf.file(name) for name in TRAINING_PIECES]
    return files


def _cut(path: Path) -> str | None:
    """A line if a stored results file is cut or corrupt, None if it is whole (a packed file is unpacked whole,
    which checks its length and CRC; of a plain file only the last byte is read; a derived file is as whole as
    its sources, which are checked themselves)."""
    if is_derived(path):
        return None
    where = stored(path)
    try:
        data = read_stored_bytes(where) if is_packed(where) else _last_byte(where)
    except ResultsFileError as error:
        return str(error)
    if data and not data.endswith(b"\n"):
        return f"results file {where} is truncated (its last row is incomplete)"
    return None


def _last_byte(path: Path) -> bytes:
    """The last byte of a plain file (empty for an empty file)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - 1))
            return fh.read()
    except OSError as error:
        raise ResultsFileError(f"results file cannot be read: {path}: {error}") from error
