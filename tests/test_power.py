"""The power of the claim's test, resampled from a study's runs: the vectorised test against scipy's, and power
where the answer is known (a clear shift, and no shift at all)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy import stats

from analysis.power import (
    ALPHA,
    MIN_RUNS,
    power_markdown,
    power_rows,
    power_table,
    signed_rank_p,
    tie_correction,
    wilcoxon_power,
)


def test_vectorised_signed_rank_p_is_scipys_normal_approximation_with_ties_and_zeros() -> None:
    rng = np.random.default_rng(3)
    pool = np.round(rng.normal(2.0, 10.0, 15), 0)  # rounding makes ties, and a zero or two
    pool[0] = 0.0
    draws = rng.choice(pool, size=(200, 14), replace=True)
    expected = [stats.wilcoxon(row, method="approx", zero_method="wilcox").pvalue for row in draws]
    np.testing.assert_allclose(signed_rank_p(draws), expected, rtol=1e-10, atol=1e-12)
    assert signed_rank_p(np.zeros((1, 5)))[0] == 1.0


def test_tie_correction_counts_each_group_of_equal_values_in_its_own_row() -> None:
    rows = np.array([[2.0, 1.0, 2.0, 1.0, 2.0, np.inf],  # groups of 2 and 3: (8 - 2) + (27 - 3); zeros left out
                     [3.0, 3.0, 4.0, 5.0, 6.0, 7.0],  # one pair: 6 (a row that ends where the next begins
                     [7.0, 8.0, 9.0, np.inf, np.inf, np.inf]])  # with the same value must not join it)
    np.testing.assert_array_equal(tie_correction(rows), [30.0, 6.0, 0.0])


def test_power_is_near_one_for_a_clear_shift_and_near_alpha_without_one() -> None:
    rng = np.random.default_rng(0)
    shifted = rng.normal(10.0, 5.0, 30)
    assert wilcoxon_power(shifted, 20, np.random.default_rng(0), resamples=1000) > 0.99
    symmetric = np.concatenate([np.arange(1.0, 16.0), -np.arange(1.0, 16.0)])  # median exactly 0
    null_power = wilcoxon_power(symmetric, 20, np.random.default_rng(0), resamples=4000)
    assert abs(null_power - ALPHA) < 0.02


def study(label: str, differences: list[float], configuration: str = "conf_baseline") -> SimpleNamespace:
    changes = pd.DataFrame({"run_index": range(len(differences)), "J_II_m": 10.0,
                            "J_II_s": 10.0 + np.asarray(differences)})  # fmt: skip
    return SimpleNamespace(label=label, preset="figure", changes={configuration: changes})


def test_rows_per_size_are_seeded_and_small_or_baseline_less_studies_have_none() -> None:
    rng = np.random.default_rng(1)
    big = study("big", list(rng.normal(4.0, 12.0, 20)))
    rows = power_rows(big, sizes=(12, 49), resamples=300)
    assert [r["n"] for r in rows] == [12, 49] and rows[0]["observed_n"] == 20
    assert rows[0]["power"] <= rows[1]["power"]  # more runs, more power
    assert rows == power_rows(big, sizes=(12, 49), resamples=300)  # the same seed, the same table
    assert power_rows(study("small", [1.0] * (MIN_RUNS - 1))) == []
    assert power_rows(study("ablation", [1.0] * 20, configuration="conf_no_horiconn")) == []
    table = power_table([big, study("small", [1.0] * 3)], resamples=100)
    assert set(table["study"]) == {"big"} and "| big |" in power_markdown(table)
    assert "No study has" in power_markdown(power_table([], resamples=100))
