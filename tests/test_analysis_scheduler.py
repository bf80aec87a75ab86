"""The declared outputs of the analysis and their scheduler (analysis/scheduler.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.scheduler import Scheduler

PARTS = ("tables", "figures")


def writer(path: Path, log: list[str]):
    """A builder that writes path and records the call."""

    def build() -> None:
        log.append(path.name)
        path.write_text("x\n")

    return build


def test_declarations_are_checked() -> None:
    s = Scheduler(PARTS)
    a = s.add("a", "tables", Path("a.csv"), lambda: None)
    with pytest.raises(ValueError, match="unknown part"):
        s.add("b", "tabels", Path("b.csv"), lambda: None)
    with pytest.raises(ValueError, match="declared twice"):
        s.add("a", "tables", Path("a2.csv"), lambda: None)
    other = Scheduler(PARTS).add("c", "tables", Path("c.csv"), lambda: None)
    with pytest.raises(ValueError, match="not declared before"):
        s.add("d", "figures", Path("d.png"), lambda: None, (a, other))
    assert s["a"] is a
    with pytest.raises(KeyError, match="no target"):
        s["b"]
    with pytest.raises(ValueError, match="unknown part"):
        s.of_part("tabels")


def test_missing_and_stale_targets_are_rebuilt(tmp_path: Path) -> None:
    log: list[str] = []
    s = Scheduler(PARTS)
    table = s.add("table", "tables", tmp_path / "t.csv", writer(tmp_path / "t.csv", log))
    s.add("figure", "figures", tmp_path / "f.csv", writer(tmp_path / "f.csv", log), (table,))
    s.add("other", "figures", tmp_path / "o.csv", writer(tmp_path / "o.csv", log))
    for part in PARTS:
        s.run_part(part, overwrite=False)
    assert log == ["t.csv", "f.csv", "o.csv"]
    log.clear()
    again = Scheduler(PARTS)
    again.targets, again.rebuilt = s.targets, set()
    (tmp_path / "t.csv").unlink()
    for part in PARTS:
        again.run_part(part, overwrite=False)
    assert log == ["t.csv", "f.csv"]  # the figure follows its rebuilt input; the other one is current
    log.clear()
    again.rebuilt = set()
    again.run_part("figures", overwrite=True)
    assert log == ["f.csv", "o.csv"]


def test_incremental_ready_and_fallible_targets(tmp_path: Path) -> None:
    calls: list[str] = []
    s = Scheduler(PARTS)
    resumable = s.add("resumable", "tables", tmp_path / "r.csv", lambda: calls.append("r") or False, incremental=True)
    s.add("skipped", "figures", tmp_path / "s.png", lambda: calls.append("s"), ready=lambda: False)
    s.add("follows", "figures", tmp_path / "f.csv", lambda: calls.append("f"), (resumable,))

    def broken() -> None:
        raise RuntimeError("no data")

    s.add("broken", "figures", tmp_path / "b.png", broken, fallible=True)
    for part in PARTS:
        s.run_part(part, overwrite=False)
    assert calls == ["r", "f"]  # called although its file is missing; wrote nothing, so it is not "rebuilt"
    assert resumable not in s.rebuilt
    assert len(s.failed) == 1 and "no data" in s.failed[0]


def test_a_long_part_reports_progress(tmp_path, caplog, monkeypatch) -> None:
    import logging

    from analysis import scheduler as sched

    monkeypatch.setattr(sched, "PROGRESS_INTERVAL", 0.0)
    s = sched.Scheduler(("figures",))
    for i in range(3):
        s.add(f"fig{i}", "figures", tmp_path / f"f{i}.png", lambda i=i: (tmp_path / f"f{i}.png").write_bytes(b"x"))
    with caplog.at_level(logging.INFO, logger="analysis.scheduler"):
        s.run_part("figures", overwrite=False)
    assert "part figures: 3 of 3 outputs (fig2)" in caplog.text
