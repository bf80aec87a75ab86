"""Outputs declared as data and one scheduler that brings them up to date.

A :class:`Target` names the files it writes, the targets it reads (as objects, so that a dependency cannot
be misspelled), the part of the pipeline it belongs to and the function that builds it. The
:class:`Scheduler` runs the targets of the requested parts in declaration order (a target may only depend on
targets declared before it):

* an ordinary target is rebuilt when ``overwrite`` is set, when one of its files is missing or was cut short
  (or its own ``current`` check fails), or when one of its inputs was rebuilt in the same call;
* an incremental target (a resumable table: tuning curves, features, MVPA scores) is always called: its
  builder computes only what the file lacks and returns whether it wrote anything;
* a target whose ``ready`` check fails (its input files are missing, e.g. the part that writes them was not
  run) is skipped;
* a fallible target (a figure) that raises is logged and remembered, so that one broken figure does not stop
  the others; :meth:`Scheduler.failures` lists them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from store.files import is_complete_output

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 15.0
"""Seconds between two progress lines of a long part."""


def _always() -> bool:
    return True


@dataclass(eq=False)
class Target:
    """One output (or a group of files written by one call) of the analysis."""

    name: str
    """Unique name, for logs and errors (``<what>/<configuration>``)."""
    part: str
    """Pipeline part that builds it (one of the parts of the command line)."""
    paths: tuple[Path, ...]
    """Files it writes (the first one names it in messages)."""
    build: Callable[[], object]
    """Writes the files; an incremental target returns whether it wrote anything."""
    inputs: tuple[Target, ...] = ()
    """Targets whose rebuild in the same call makes this one stale."""
    current: Callable[[], bool] | None = None
    """Up-to-date check replacing "every file exists and is complete"."""
    ready: Callable[[], bool] = _always
    """False when what it is built from is missing: the target is skipped."""
    incremental: bool = False
    """The builder decides itself what is missing (always called, returns whether it wrote anything)."""
    fallible: bool = False
    """A failure is logged and remembered instead of stopping the analysis (figures)."""


@dataclass
class Scheduler:
    """The declared targets of one analysis call and what was rebuilt in it."""

    parts: tuple[str, ...]
    """The valid part names, in pipeline order."""
    targets: list[Target] = field(default_factory=list)
    rebuilt: set[Target] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)

    def add(
        self,
        name: str,
        part: str,
        paths: Path | Sequence[Path],
        build: Callable[[], object],
        inputs: Iterable[Target] = (),
        **options: object,
    ) -> Target:
        """Declare a target; its part must be known, its name new and its inputs declared before it."""
        if part not in self.parts:
            raise ValueError(f"target {name}: unknown part {part!r}; valid: {list(self.parts)}")
        if any(t.name == name for t in self.targets):
            raise ValueError(f"target {name} is declared twice")
        inputs = tuple(inputs)
        unknown = [t.name for t in inputs if t not in self.targets]
        if unknown:
            raise ValueError(f"target {name}: inputs {unknown} are not declared before it")
        paths = (paths,) if isinstance(paths, Path) else tuple(paths)
        target = Target(name, part, paths, build, inputs, **options)  # type: ignore[arg-type]
        self.targets.append(target)
        return target

    def __getitem__(self, name: str) -> Target:
        """The target of that name (KeyError naming the valid ones otherwise)."""
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(f"no target {name!r}; declared: {[t.name for t in self.targets]}")

    def of_part(self, part: str) -> list[Target]:
        """The targets of one part, in declaration order."""
        if part not in self.parts:
            raise ValueError(f"unknown part {part!r}; valid: {list(self.parts)}")
        return [t for t in self.targets if t.part == part]

    def stale(self, target: Target, overwrite: bool) -> bool:
        """True if an ordinary target must be (re)built."""
        if overwrite or any(t in self.rebuilt for t in target.inputs):
            return True
        if target.current is not None:
            return not target.current()
        return not all(is_complete_output(p) for p in target.paths)

    def run_target(self, target: Target, overwrite: bool) -> None:
        """Build one target if it is ready and stale (incremental: always), and record a rebuild."""
        if not target.ready():
            return
        if not target.incremental and not self.stale(target, overwrite):
            return
        try:
            wrote = target.build()
        except Exception as error:
            if not target.fallible:
                raise
            logger.exception("%s failed", target.paths[0])
            self.failed.append(f"{target.paths[0]}: {error!r}")
            wrote = True
        if wrote or not target.incremental:
            self.rebuilt.add(target)

    def run_part(self, part: str, overwrite: bool) -> None:
        """Every target of one part, in declaration order, with a progress line at most every
        PROGRESS_INTERVAL seconds (the figure part runs for minutes)."""
        targets = self.of_part(part)
        last = time.monotonic()
        for i, target in enumerate(targets, start=1):
            if time.monotonic() - last >= PROGRESS_INTERVAL:
                logger.info("part %s: %d of %d outputs (%s)", part, i, len(targets), target.name)
                last = time.monotonic()
            self.run_target(target, overwrite)
