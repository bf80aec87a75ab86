"""Keeping studies in the repository: ``studies/<name>/`` holds what is needed to resume and grow a study and to
regenerate its tables and figures, and nothing that is regenerated.

    python -m study.keep RESULTS_FOLDER studies/NAME   # keep a study, or update its kept copy (after a growth)
    python -m study.keep studies/NAME                  # pack a kept study in place after resuming it there
    python -m study.keep --verify FOLDER               # list every missing or cut file of a study folder
    python -m study.keep --listing studies [--check]   # rewrite (or check) the list of studies/README.md

What a kept study holds (docs/studies.md):

* the records: ``environment.json`` (the study settings, every command that made it, the code versions),
  ``note.txt``, ``parameters.py``, ``scripts/parameters.py`` (the source of the study's parameter copies;
  ``--resume`` needs it), every ``<conf>/parameters_<conf>.py``, and ``kept.json`` (where and when it was kept);
* every marker and JSON record (study stages, jobs, the MVPA settings);
* every CSV file but the tuning curves and their features (LEFT_OUT_TABLES), gzip-packed as ``<name>.csv.gz``
  (the readers unpack transparently, store.files),
  except a job's pieces whose rows an assembled file holds (study.pieces: every row is stored once; a growth
  writes them back before it assembles again), and except the retained pretraining files that their
  unfiltered ``*_complete.csv`` copy and the list of excluded runs reproduce byte for byte: ``derived.json``
  names them and the readers write them back when asked (store.files, store.renumbering). Job folders without
  a marker (jobs in flight) are left out;
* not the figures, PDFs, report, logs, the code snapshot or the lock: they are regenerated or not needed.

A kept study names a reused pretraining (``--skip-pretraining``) by a path relative to itself
(``../<kept name>``), so the reused folder must be kept first, next to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from store.errors import ResultsFileError, ResultsFolderError
from store.files import (
    atomic_copy,
    atomic_write_text,
    derived_bytes,
    has_stored,
    is_derived,
    is_packed,
    pack_file,
    read_marker,
    read_stored_bytes,
    stored,
    write_json,
    write_marker,
)
from store.layout import (
    COMPLETE_SUFFIX,
    CONF_FEATURES,
    CONF_TC,
    DERIVED,
    EXCLUDED_RUNS,
    FIGURES,
    JOB_DONE,
    JOB_LOGS,
    KEPT,
    NOTE,
    PACKED_SUFFIX,
    PARAMETERS,
    PRETRAINING_FEATURES,
    PRETRAINING_FIGURES,
    PRETRAINING_PIECES,
    PRETRAINING_RUNS,
    PRETRAINING_TC,
    SCRIPTS,
    SUBMITIT,
    TRAINING_RUNS,
    StudyLayout,
    complete_copy,
    configuration_parameters,
    packed,
)
from store.records import read_environment_record
from study import inventory, pieces, records
from study.design import StudyDesign, read_study_design

logger = logging.getLogger("main")

LEFT_OUT_FOLDERS = frozenset({JOB_LOGS, SUBMITIT, FIGURES, PRETRAINING_FIGURES})
"""Folders a kept study leaves out at any depth: logs, submitit's files, figures (regenerated)."""
LEFT_OUT_TABLES = frozenset({PRETRAINING_TC, CONF_TC, PRETRAINING_FEATURES, CONF_FEATURES})
"""Analysis tables a kept study leaves out: the tuning curves (every cell's responses to 72 orientations, a third
of a default-size study packed), which the analysis computes again from the parameters in minutes, and their
features (a function of the tuning curves alone, an eighth of a kept figure study); the statistics built on
them are kept, and the figures built on them are drawn after the analysis has computed both again."""
LISTING_BEGIN, LISTING_END = "<!-- studies: begin (python -m study.keep --listing studies) -->", "<!-- studies: end -->"
"""The lines around the generated list of studies in studies/README.md."""
STUDIES_README = "README.md"
"""The file of the studies folder that lists the kept studies."""


class KeepError(ValueError):
    """A folder cannot be kept (or listed); the message is one line that says why."""


# --------------------------------------------------------------------------------------------------- selection
def kept_files(folder: Path, derived: Iterable[Path] = ()) -> list[Path]:
    """What a kept copy of ``folder`` holds, as paths relative to it (CSVs by their plain names), leaving out
    the ``derived`` files (relative paths too)."""
    held = {piece.path.relative_to(folder) for piece in pieces.held_pieces(pieces.completed_pieces(folder))}
    return sorted(rel for rel in candidate_files(folder) if rel not in held and rel not in set(derived))


def derivable_files(folder: Path) -> list[Path]:
    """The retained pretraining files of ``folder`` (relative paths) that their unfiltered copy and the list of
    excluded runs reproduce exactly: already stored as derivations, or checked byte for byte now."""
    layout = StudyLayout(folder)
    derivable = []
    for name in PRETRAINING_PIECES:
        path = layout.file(name)
        sources = (layout.file(complete_copy(name)), layout.excluded_runs)
        if is_derived(path) or (has_stored(path) and all(has_stored(p) for p in sources)
                                and read_stored_bytes(path) == derived_bytes(path)):  # fmt: skip
            derivable.append(Path(name))
    return derivable


def write_derived_record(dest: Path, derived: Sequence[Path]) -> None:
    """derived.json of a kept study: the files it stores as derivations (removed when there are none)."""
    path = StudyLayout(dest).derived
    if not derived:
        path.unlink(missing_ok=True)
        return
    record = {"files": [str(rel) for rel in derived],
              "from": f"each file's unfiltered copy (<name>{COMPLETE_SUFFIX}.csv) and {EXCLUDED_RUNS}"}  # fmt: skip
    write_json(path, record)  # the same bytes for the same files: nothing changes for git


def candidate_files(folder: Path) -> Iterator[Path]:
    """Records, parameter copies, JSON and CSV files of a study folder (plain names), outside the left-out
    folders and outside job folders without a marker."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or rel.name.startswith(".") or LEFT_OUT_FOLDERS & set(rel.parts[:-1]):
            continue
        if rel.name.removesuffix(PACKED_SUFFIX) in LEFT_OUT_TABLES:
            continue
        if rel.parts[0] == SCRIPTS:
            if rel == Path(SCRIPTS, PARAMETERS):
                yield rel
            continue
        if in_unfinished_job(folder, rel):
            continue
        if rel.name.endswith(".csv" + PACKED_SUFFIX):
            plain = rel.with_name(rel.name[: -len(PACKED_SUFFIX)])
            if not (folder / plain).is_file():  # a plain twin is the newer content: listed by its own name
                yield plain
        elif (rel.suffix in (".csv", ".json") and rel.name not in (KEPT, DERIVED)) or is_record(rel):
            yield rel


def is_record(rel: Path) -> bool:
    """note.txt, the study's parameters.py and a configuration's ``<conf>/parameters_<conf>.py``."""
    own_copy = len(rel.parts) == 2 and rel.name == configuration_parameters(rel.parts[0])
    return rel in (Path(NOTE), Path(PARAMETERS)) or own_copy


def in_unfinished_job(folder: Path, rel: Path) -> bool:
    """Whether a file lies in a job folder (``pretraining_runs/run_i``, ``<conf>/training_runs/run_i``) whose
    job has no marker (in flight or interrupted: a resume redoes it)."""
    parts = rel.parts
    for depth, name in ((0, PRETRAINING_RUNS), (1, TRAINING_RUNS)):
        if len(parts) > depth + 2 and parts[depth] == name:
            return not (folder.joinpath(*parts[: depth + 2]) / JOB_DONE).is_file()
    return False


# ------------------------------------------------------------------------------------------------------ keeping
@dataclass(frozen=True)
class KeepReport:
    """What keeping a study did."""

    dest: Path
    written: int
    unchanged: int
    removed: int
    derived: int
    """Retained pretraining files stored as derivations (derived.json)."""
    size: int
    """Bytes of the kept files."""


def keep_study(source: Path, dest: Path) -> KeepReport:
    """Keep the study in ``source`` as ``dest`` (a new folder or an earlier kept copy of the same study;
    ``source == dest`` packs a kept study in place). KeepError if it cannot be kept."""
    source, dest = source.resolve(), dest.resolve()
    study = read_study(source)
    check_destination(source, dest)
    reused = reused_kept_name(source, dest, study)
    if records.folder_in_use(source):
        if source == dest:  # packing would replace files under the running study
            raise KeepError(f"a main.py is working on {dest}: stop it (kill -TERM its process) before packing")
        logger.warning("a main.py is working on %s: keeping its completed jobs as they are now", source)
    problems = inventory.damaged_files(source)
    if problems:
        raise KeepError(f"cannot keep {source}: {problems[0]}")
    derived = derivable_files(source)
    selection = kept_files(source, derived)
    dest.mkdir(parents=True, exist_ok=True)
    written = unchanged = 0
    for rel in selection:
        changed = keep_file(source / rel, dest / rel, in_place=source == dest)
        written, unchanged = written + changed, unchanged + (not changed)
    write_derived_record(dest, derived)  # before their stored copies go: a kill in between loses nothing
    removed = remove_stale(dest, set(selection))
    point_to_kept_copies(dest, study, reused)
    write_kept_record(dest, source)
    size = sum((dest / stored_name(rel)).stat().st_size for rel in selection)
    size += sum(p.stat().st_size for p in (StudyLayout(dest).derived,) if p.is_file())
    return KeepReport(dest, written, unchanged, removed, len(derived), size)


def read_study(folder: Path) -> StudyDesign:
    """The study record of a folder written by main.py (KeepError otherwise)."""
    try:
        return read_study_design(folder)
    except ResultsFolderError as error:
        raise KeepError(f"cannot keep {folder}: {error}") from error


def check_destination(source: Path, dest: Path) -> None:
    """``dest`` must be new, or a kept copy of the same study (the same creation record: a study carried to
    another machine and brought back updates its kept copy too); ``source == dest`` must be a kept study."""
    if source == dest:
        if not StudyLayout(dest).kept.is_file():
            raise KeepError(f"{dest} is not a kept study (no {KEPT}); keep it with: python -m study.keep {dest} "
                            "studies/NAME")  # fmt: skip
        return
    if not dest.exists():
        return
    if read_kept_record(dest) is None or not same_study(dest, source):
        raise KeepError(f"{dest} exists and is not a kept copy of the study in {source}; choose another name")


def same_study(a: Path, b: Path, same_size: bool = False) -> bool:
    """Whether two folders hold copies of one study (the same creation record), with ``same_size`` also at the
    same number of runs; False where either has no readable record."""
    try:
        ra, rb = read_environment_record(a), read_environment_record(b)
    except ResultsFolderError:
        return False
    runs = [(r.get("study") or {}).get("runs") for r in (ra, rb)]
    return creation(ra) == creation(rb) and (not same_size or runs[0] == runs[1])


def creation(record: dict) -> tuple:
    """What identifies a study across copies: when it was created, its seed and preset."""
    study = record.get("study") or {}
    return record.get("created"), study.get("base_seed"), study.get("preset")


def reused_kept_name(source: Path, dest: Path, study: StudyDesign) -> str | None:
    """For a --skip-pretraining study, the kept folder (next to ``dest``) of its reused pretraining."""
    if not study.skip_pretraining:
        return None
    reused = StudyLayout(source).recorded_folder(study.skip_pretraining).resolve()
    for candidate in sorted(p for p in dest.parent.iterdir() if p.is_dir()) if dest.parent.is_dir() else []:
        # the reused folder itself, or a kept copy of it (kept from it, or carried to another checkout)
        kept_copy = read_kept_record(candidate) is not None and same_study(candidate, reused, same_size=True)
        if candidate.resolve() == reused or kept_copy:
            return candidate.name
    raise KeepError(f"{source} reuses the pretraining of {reused}, which is not kept in {dest.parent}; keep it "
                    f"first: python -m study.keep {reused} {dest.parent}/NAME")  # fmt: skip


def stored_name(rel: Path) -> Path:
    """The name a kept file has: CSVs packed."""
    return packed(rel) if rel.suffix == ".csv" else rel


def keep_file(source: Path, target: Path, in_place: bool) -> bool:
    """Put one file into the kept folder (CSVs packed); whether anything was written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix != ".csv":
        if in_place or (target.is_file() and target.read_bytes() == source.read_bytes()):
            return False
        atomic_copy(source, target)
        return True
    content = stored(source)
    twin = packed(target)
    if is_packed(content):  # already packed (a kept source): the bytes as they are
        if in_place or (twin.is_file() and twin.read_bytes() == content.read_bytes()):
            return False
        atomic_copy(content, twin)
        return True
    same = twin.is_file() and read_stored_bytes(twin) == content.read_bytes()
    if not same:
        pack_file(content, twin)
    target.unlink(missing_ok=True)  # the plain file written by a resume in place, now packed
    return not same or in_place


def remove_stale(dest: Path, selection: set[Path]) -> int:
    """Remove kept files of ``dest`` that the new selection no longer has (pieces now held by an assembled
    file, packed twins of a changed file, packed tables a kept study leaves out); files a kept study never
    holds (README, figures, plain tables written by the analysis in place) are not touched."""
    removed = 0
    for name in LEFT_OUT_TABLES:
        for path in dest.rglob(name + PACKED_SUFFIX):
            path.unlink()
            removed += 1
    for rel in list(candidate_files(dest)):
        if rel not in selection:
            for path in (dest / rel, dest / packed(rel)):
                if path.is_file():
                    path.unlink()
                    removed += 1
    return removed


def point_to_kept_copies(dest: Path, study: StudyDesign, reused: str | None) -> None:
    """Name the pretraining folder relative to the kept study: ``.`` for its own, ``../<kept name>`` for a reused
    one (in environment.json's study record and PRETRAINING_DONE.json), valid wherever the repository is."""
    layout = StudyLayout(dest)
    recorded = "." if reused is None else f"../{reused}"
    if reused is not None and study.skip_pretraining != recorded:
        record = read_environment_record(dest)
        record["study"] = {**record["study"], "skip_pretraining": recorded}
        write_json(layout.environment, record)
    done = read_marker(layout.pretraining_done)
    if done is not None and done.get("pretraining_folder") != recorded:
        write_marker(layout.pretraining_done, {**done, "pretraining_folder": recorded})


def read_kept_record(folder: Path) -> dict | None:
    """kept.json of a kept study (None if there is none)."""
    path = StudyLayout(folder).kept
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_kept_record(dest: Path, source: Path) -> None:
    """kept.json: the folder the study was kept from (kept on through updates in place), the dates, the code."""
    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    earlier = read_kept_record(dest) or {}
    record = {"source": earlier.get("source", str(source)) if source == dest else str(source),
              "kept": earlier.get("kept", now), "updated": now, "code_version": records.code_version()}  # fmt: skip
    write_json(StudyLayout(dest).kept, record)


# ------------------------------------------------------------------------------------------------------ listing
def listing(studies: Path) -> str:
    """The list of kept studies (studies/README.md), from each folder's own records, in name order."""
    folders = sorted(p for p in studies.iterdir() if StudyLayout(p).environment.is_file())
    return "\n".join(study_entry(folder) for folder in folders) if folders else "(none kept yet)\n"


def study_entry(folder: Path) -> str:
    """One study's section of the listing: settings, code versions, the exact commands, its state."""
    record = read_environment_record(folder)
    study = StudyDesign.from_json(record.get("study"), folder)
    state = inventory.study_state(folder)
    kept = read_kept_record(folder) or {}
    runs = f"{study.runs} (stage 2 on the runs retained by `{study.skip_pretraining}`)" if study.skip_pretraining \
        else str(study.runs)  # fmt: skip
    versions = [record.get("code_version"), *(r.get("code_version") for r in record.get("resumes", []))]
    lines = [f"### `{folder.name}`", "",
             "| preset | seed | runs | configurations | code versions |", "|---|---|---|---|---|",
             f"| {study.preset} | {study.base_seed} | {runs} | {', '.join(study.configs)} | "
             f"{', '.join(dict.fromkeys(str(v)[:12] for v in versions if v))} |", "",
             f"State: {state.describe()}. {next_step(folder, state)}", "",
             f"Made with (kept from `{kept.get('source', '?')}`):", "", "```bash",
             *(command_text(c) for c in study_commands(record)), "```", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def next_step(folder: Path, state: inventory.StudyState) -> str:
    """The command that continues a kept study (or grows a complete one), as run from the repository root."""
    where = f"{folder.parent.name}/{folder.name}"
    if state.complete:
        return f"Grow it with `python main.py --resume {where} --runs N`."
    return f"Continue it with `python main.py --resume {where}`."


def study_commands(record: dict) -> list[list[str]]:
    """The command lines that made a study: its creation and every resumption (growths included)."""
    return [r["command_line"] for r in [record, *record.get("resumes", [])] if isinstance(r.get("command_line"), list)]


def command_text(command: Sequence[str]) -> str:
    """A recorded command line as a shell command (``python`` for the interpreter that ran it)."""
    return shlex.join(["python", *command[1:]])


def update_listing(studies: Path, check: bool = False) -> bool:
    """Rewrite the list of studies in ``studies/README.md`` (between LISTING_BEGIN and LISTING_END); with
    ``check``, only compare. Whether the README was (already) up to date."""
    readme = studies / STUDIES_README
    try:
        text = readme.read_text(encoding="utf-8")
        head, rest = text.split(LISTING_BEGIN + "\n", 1)
        _, tail = rest.split(LISTING_END, 1)
    except (OSError, ValueError) as error:
        raise KeepError(f"{readme} has no list of studies between {LISTING_BEGIN!r} and {LISTING_END!r}") from error
    new = head + LISTING_BEGIN + "\n" + listing(studies) + LISTING_END + tail
    if new == text:
        return True
    if not check:
        atomic_write_text(readme, new)
    return False


# ------------------------------------------------------------------------------------------------ command line
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m study.keep``."""
    parser = argparse.ArgumentParser(prog="python -m study.keep", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, metavar="FOLDER",
                        help="RESULTS_FOLDER studies/NAME (keep, or update), or studies/NAME (pack in place)")
    parser.add_argument("--verify", type=Path, metavar="FOLDER", help="list every missing or cut file of a study")
    parser.add_argument("--listing", type=Path, metavar="STUDIES", help="rewrite the list of studies/README.md")
    parser.add_argument("--check", action="store_true", help="with --listing: only check that it is up to date")
    args = parser.parse_args(argv)
    if sum(map(bool, (args.folders, args.verify, args.listing))) != 1 or len(args.folders) > 2:
        parser.error("give RESULTS_FOLDER DEST, a kept FOLDER, --verify FOLDER or --listing STUDIES")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m study.keep``; the exit status (2: bad input, 1: --check or --verify found
    something)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.verify:
            problems = inventory.damaged_files(args.verify)
            for line in problems:
                print(line)
            return 1 if problems else 0
        if args.listing:
            current = update_listing(args.listing, args.check)
            if args.check and not current:
                logger.error("%s/%s does not list the studies as their records say; run: python -m "
                             "study.keep --listing %s", args.listing, STUDIES_README, args.listing)  # fmt: skip
            return 0 if current or not args.check else 1
        source, dest = (args.folders * 2)[:2]
        report = keep_study(source, dest)
        logger.info("kept %s: %d files written, %d unchanged, %d removed, %d derived, %.1f MB", report.dest,
                    report.written, report.unchanged, report.removed, report.derived, report.size / 1e6)  # fmt: skip
        if (report.dest.parent / STUDIES_README).is_file():
            update_listing(report.dest.parent)
        return 0
    except (KeepError, ResultsFolderError, ResultsFileError) as error:
        logger.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
