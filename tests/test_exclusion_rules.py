"""Every preset's exclusion rule on pretraining outcomes that real studies produce: failed runs, runs without
pretraining rows, no threshold at all, the 180° of a fit that finds none, and thresholds on the bounds."""

from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from analysis.exclusion_rules import preset_rules, rules_table
from training.psychometrics import NO_THRESHOLD

# run -> final stage-0 threshold (deg); run 5 has no rows (its job died), run 6 failed by its marker
THRESHOLDS = {0: 5.0, 1: 25.0, 2: 0.5, 3: float(NO_THRESHOLD), 4: float("nan"), 6: 12.0, 7: 30.0}


def study() -> SimpleNamespace:
    rows = [{"run_index": run, "stage": 0, "psychometric_offset": value} for run, value in THRESHOLDS.items()]
    return SimpleNamespace(label="s", preset="reference", folder=Path("s"), pretraining_folder=None,
                           pretraining=pd.DataFrame(rows), pretraining_failed=[6], runs_started=8)  # fmt: skip


def test_each_rule_keeps_its_bounds_and_says_why_it_drops() -> None:
    table = rules_table([study()], preset_rules()).set_index("original_run_index")
    assert list(table.index) == list(range(8))
    assert table.loc[[5, 6], "failed"].all() and not table.loc[[0, 1, 2, 3, 4, 7], "failed"].any()
    assert list(table.index[table["kept_reference"]]) == [0, 1]  # [5°, 25°], bounds kept
    assert list(table.index[table["kept_final"]]) == [0, 1, 2]  # [0°, 25°]
    assert list(table.index[table["kept_figure"]]) == [0, 1, 2, 3, 4, 7]  # every run that finished
    reasons = table["reason_reference"].to_dict()
    assert reasons[2] == "below 5°" and reasons[7] == "above 25°" and reasons[4] == "no threshold"
    assert reasons[3] == "above 25° (no measurable threshold)"
    assert reasons[5] == reasons[6] == "failed" and table.loc[6, "reason_figure"] == "failed"
    assert (table.loc[table["kept_final"], "reason_final"] == "").all()
