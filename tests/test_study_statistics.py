"""The statistics of a study comparison, on constructed cases (issue 13 §2)."""

import gc
import math

import numpy as np
import pytest
from scipy import stats

from studying.statistics import ALPHA, compare_arms, welch


@pytest.fixture
def fast_holm(monkeypatch):
    """statsmodels' Holm correction runs gc.collect() on every call (0.3 s with torch loaded); the
    thousands of comparisons below skip that housekeeping, which changes no number."""
    monkeypatch.setattr(gc, "collect", lambda *args: 0)


def draws(rng, n, shift=0.0, metrics=5):
    return {f"m{i}": list(rng.normal(shift if i == 0 else 0.0, 1.0, n)) for i in range(metrics)}


def test_identical_arms_are_called_different_at_about_the_nominal_rate(fast_holm):
    """Two arms with the same distribution, n = 3 seeds each, many fake draws: Welch's test alone is
    wrong about 5% of the time per metric; after Holm over 5 metrics, a comparison claims any
    difference in at most about 5% of the draws."""
    rng = np.random.default_rng(0)
    trials, per_metric, any_metric = 2000, 0, 0
    for _ in range(trials):
        results = compare_arms(draws(rng, 3), draws(rng, 3))
        per_metric += sum(r.p < ALPHA for r in results)
        any_metric += any(r.detected for r in results)
    per_metric_rate, familywise = per_metric / (5 * trials), any_metric / trials
    assert 0.035 < per_metric_rate < 0.065, per_metric_rate
    assert familywise <= 0.065, familywise


def test_a_planted_difference_of_several_sd_is_found_and_only_where_planted(fast_holm):
    rng = np.random.default_rng(1)
    trials, found, elsewhere = 300, 0, 0
    for _ in range(trials):
        results = {r.metric: r for r in compare_arms(draws(rng, 5), draws(rng, 5, shift=4.0))}
        found += results["m0"].detected and results["m0"].difference > 0
        elsewhere += any(results[m].detected for m in results if m != "m0")
    assert found / trials > 0.95
    assert elsewhere / trials < 0.07


def test_interval_and_p_match_a_direct_welch_computation():
    a, b = [1.0, 1.4, 0.9, 1.2], [2.0, 2.6, 1.7]
    d = welch(a, b)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = np.mean(b) - np.mean(a)
    assert math.isclose(d.difference, diff)
    assert math.isclose(d.low, diff - half, rel_tol=1e-9) and math.isclose(d.high, diff + half, rel_tol=1e-9)
    p = 2 * stats.t.sf(diff / math.sqrt(va + vb), df)
    assert math.isclose(d.p, p, rel_tol=1e-9)


def test_zero_spread_and_too_few_seeds():
    exact = welch([0.0, 0.0, 0.0], [0.5, 0.5, 0.5])
    assert exact.p == 0.0 and exact.low == exact.high == 0.5
    assert welch([1.0, 1.0], [1.0, 1.0]).p == 1.0
    single = compare_arms({"m": [1.0]}, {"m": [2.0, 3.0]})[0]
    assert math.isnan(single.p) and not single.detected
    assert "not testable" in single.verdict("a", "b")
    none = compare_arms({"m": [1.0, 2.0, 1.5]}, {"m": [1.2, 1.9, 1.4]})[0]
    assert none.verdict("a", "b") == "no detectable difference at n = 3 vs 3"
