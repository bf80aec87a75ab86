"""Every preset's exclusion rule on pretraining outcomes that real studies produce: failed runs, runs without
pretraining rows, no threshold at all, the 180° of a fit that finds none, and thresholds on the bounds."""

from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from analysis.exclusion_rules import claim_table, preset_rules, rules_table
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


def trained_study() -> SimpleNamespace:
    """A final-preset study (keeps [0°, 25°]) whose stage-2 runs 0-3 are original runs 0, 1, 2 and 6; its analysis
    dropped stage-2 run 3 (original 6), so its changes hold three runs."""
    thresholds = {0: 5.0, 1: 12.0, 2: 2.0, 3: 40.0, 6: 7.0}
    rows = [{"run_index": run, "stage": 0, "psychometric_offset": value} for run, value in thresholds.items()]
    changes = pd.DataFrame({"run_index": [0, 1, 2], "J_II_m": [10.0, 10.0, 10.0], "J_II_s": [14.0, 7.0, 30.0]})
    return SimpleNamespace(label="f", preset="final", folder=Path("f"), pretraining_folder=None, runs_started=7,
                           pretraining=pd.DataFrame(rows), pretraining_failed=[], original_runs=(0, 1, 2, 6),
                           configurations=("conf_baseline",), changes={"conf_baseline": changes})  # fmt: skip


def test_the_claim_under_each_rule_uses_only_runs_the_rule_keeps_and_counts_the_untrained() -> None:
    claims = claim_table([trained_study()], preset_rules()).set_index("rule")
    # sup - mid per original run: 0 -> +4, 1 -> -3, 2 -> +20 (original 6 was trained, then dropped by the analysis)
    final, reference, figure = claims.loc["final"], claims.loc["reference"], claims.loc["figure"]
    assert final["own_rule"] and not reference["own_rule"]
    assert final["runs"] == "0 1 2" and final["n"] == 3 and final["positive"] == 2 and final["median_difference"] == 4
    assert final["kept_by_rule"] == 4 and final["not_trained"] == 0  # runs 4, 5 have no rows: failed
    assert reference["runs"] == "0 1" and reference["median_difference"] == 0.5  # run 2 (2°) is below 5°
    assert reference["kept_by_rule"] == 3 and reference["not_trained"] == 0
    # the figure rule keeps run 3 (40°), which the final rule dropped before stage 2: counted, not invented
    assert figure["kept_by_rule"] == 5 and figure["not_trained"] == 1 and figure["runs"] == "0 1 2"
