"""The statistics of a study comparison, on constructed cases (issues 13 and 22): paired tests where
arms share seeds, Welch where they do not, Holm over the primaries, the verdict vocabulary, the
smallest detectable effect, and the leave-one-seed-out robustness flag."""

import gc
import itertools
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from studying.statistics import (
    ALPHA,
    HOLDS,
    NO_DIFFERENCE,
    NOT_TESTABLE,
    OPPOSITE,
    Cell,
    decide,
    judge_family,
    sign_flip_p,
    smallest_detectable_paired,
)


@pytest.fixture
def fast_holm(monkeypatch):
    """statsmodels' Holm correction runs gc.collect() on every call (0.3 s with torch loaded); the
    thousands of families below skip that housekeeping, which changes no number."""
    monkeypatch.setattr(gc, "collect", lambda *args: 0)


def cell(a, b, paired=True, direction="higher", metric="m", arms=("a", "b")) -> Cell:
    """A cell from per-seed lists (seed i at position i)."""
    values_a, values_b = dict(enumerate(map(float, a))), dict(enumerate(map(float, b)))
    return Cell(*arms, metric, values_a, values_b, paired, direction)


def by_differences(differences, direction="higher") -> Cell:
    return cell([0.0] * len(differences), differences, direction=direction)


def test_paired_test_beats_welch_on_blocked_data(fast_holm):
    """Seeds are blocks: each seed moves both arms by a shared amount (sd 3) far larger than the
    effect (0.8) and the noise within a seed (sd 0.3). Pairing removes the block; Welch cannot."""
    rng = np.random.default_rng(0)
    trials, paired_found, welch_found = 300, 0, 0
    for _ in range(trials):
        block = rng.normal(0, 3.0, 6)
        a, b = block + rng.normal(0, 0.3, 6), block + 0.8 + rng.normal(0, 0.3, 6)
        paired_found += judge_family([cell(a, b, paired=True)])[0].verdict == HOLDS
        welch_found += judge_family([cell(a, b, paired=False)])[0].verdict == HOLDS
    assert paired_found / trials > 0.85, paired_found / trials
    assert welch_found / trials < 0.15, welch_found / trials


def test_paired_t_matches_its_definition():
    a, b = [1.0, 1.4, 0.9, 1.2, 0.7], [1.5, 1.6, 1.6, 1.5, 1.0]
    d = judge_family([cell(a, b)])[0]
    diff = np.subtract(b, a)
    se = diff.std(ddof=1) / math.sqrt(5)
    t = diff.mean() / se
    assert d.test == "paired t" and d.n == (5, 5)
    assert math.isclose(d.difference, diff.mean())
    assert math.isclose(d.p, 2 * stats.t.sf(abs(t), 4), rel_tol=1e-9)
    half = stats.t.ppf(0.975, 4) * se
    assert math.isclose(d.low, diff.mean() - half, rel_tol=1e-9)
    assert math.isclose(d.high, diff.mean() + half, rel_tol=1e-9)


def test_the_sign_flip_test_is_exact_over_all_flips():
    differences = np.array([0.3, -0.1, 0.5, 0.2, 0.45, 0.05])
    observed = abs(differences.mean())
    flips = [abs((differences * signs).mean()) for signs in itertools.product([1, -1], repeat=6)]
    expected = sum(f >= observed - 1e-12 for f in flips) / 64
    assert math.isclose(sign_flip_p(differences), expected, rel_tol=1e-12)
    assert math.isclose(sign_flip_p(np.ones(6)), 2 / 64)  # the least it can say at n = 6
    assert sign_flip_p(np.zeros(4)) == 1.0
    many = np.random.default_rng(0).normal(0.3, 1, 20)  # past exact enumeration: scipy's random flips
    assert abs(sign_flip_p(many) - stats.permutation_test(
        (many, np.zeros(20)), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
        vectorized=True, n_resamples=50_000, random_state=1).pvalue) < 0.01


def test_welch_where_arms_do_not_share_seeds():
    a, b = [1.0, 1.4, 0.9, 1.2], [2.0, 2.6, 1.7]
    other_seeds = {10: 2.0, 11: 2.6, 12: 1.7}
    d = judge_family([Cell("a", "b", "m", dict(enumerate(a)), other_seeds, False, "higher")])[0]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    diff = np.mean(b) - np.mean(a)
    assert d.test == "Welch" and d.n == (4, 3)
    assert math.isclose(d.p, 2 * stats.t.sf(diff / math.sqrt(va + vb), df), rel_tol=1e-9)
    assert math.isclose(d.high - d.low, 2 * stats.t.ppf(0.975, df) * math.sqrt(va + vb), rel_tol=1e-9)


def test_identical_arms_are_called_different_at_about_the_nominal_rate(fast_holm):
    """Five primary metrics, paired, 6 seeds, no effect: each test alone is wrong about 5% of the
    time; after Holm over the five, a family claims anything in at most about 5% of the draws."""
    rng = np.random.default_rng(0)
    trials, per_metric, any_metric = 800, 0, 0
    for _ in range(trials):
        block = rng.normal(0, 1, 6)
        cells = [cell(block + rng.normal(0, 1, 6), block + rng.normal(0, 1, 6), metric=f"m{i}")
                 for i in range(5)]
        results = judge_family(cells)
        per_metric += sum(r.p < ALPHA for r in results)
        any_metric += any(r.detected for r in results)
    assert 0.035 < per_metric / (5 * trials) < 0.065
    assert any_metric / trials <= 0.065


def test_the_smallest_detectable_effect_is_detected_at_80_percent(fast_holm):
    """A true effect equal to the stated smallest detectable effect (for sd 1, 6 seeds, alpha 0.05)
    is found in about 80% of repeated studies."""
    effect = smallest_detectable_paired(1.0, 6, ALPHA)
    assert 1.3 < effect < 1.6  # about 1.43 sd at n = 6
    rng = np.random.default_rng(2)
    found = sum(judge_family([by_differences(rng.normal(effect, 1.0, 6))])[0].detected for _ in range(1000))
    assert 0.75 < found / 1000 < 0.85


def test_the_verdict_vocabulary(fast_holm):
    rising = [1.0, 1.2, 0.8, 1.1, 0.9, 1.05]
    assert judge_family([by_differences(rising, "higher")])[0].verdict == HOLDS
    assert judge_family([by_differences(rising, "differs")])[0].verdict == HOLDS
    assert judge_family([by_differences(rising, "lower")])[0].verdict == OPPOSITE
    flat = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0]
    d = judge_family([by_differences(flat)])[0]
    sd = np.std(flat, ddof=1)
    detectable = smallest_detectable_paired(sd, 6, ALPHA)
    assert d.verdict == f"{NO_DIFFERENCE} (smallest detectable effect {detectable:.3g})"
    single = judge_family([by_differences([0.5])])[0]
    assert single.verdict.startswith(f"{NOT_TESTABLE} (1 seed with a value in both arms")
    exact = judge_family([by_differences([0.5] * 3)])[0]  # zero spread: the difference is exact
    assert exact.p == 0.0 and exact.low == exact.high == 0.5 and exact.verdict == HOLDS


def test_holm_spans_every_primary_of_every_comparison_and_nothing_else():
    rng = np.random.default_rng(3)
    primaries = [cell(rng.normal(0, 1, 6), rng.normal(0.8, 1, 6), metric=f"m{i}", arms=arms)
                 for i, arms in enumerate([("a", "b"), ("a", "b"), ("a", "c"), ("a", "c")])]
    exploratory = [cell(rng.normal(0, 1, 6), rng.normal(5, 0.1, 6), direction=None, metric="x")]
    results = judge_family(primaries + exploratory)
    _, expected, _, _ = multipletests([r.p for r in results[:4]], method="holm")
    assert np.allclose([r.p_holm for r in results[:4]], expected)
    explored = results[4]
    assert not explored.primary and math.isnan(explored.p_holm) and not explored.detected
    assert explored.verdict == "exploratory: no verdict" and explored.low > 4  # its interval, unadjusted


def test_leaving_out_one_seed_marks_a_borderline_verdict_fragile(fast_holm):
    # p = 0.047 with seed 5's negative difference; without any one of the others it is not detected.
    borderline = decide([by_differences([0.2, 0.3, 0.1, 0.25, 0.05, -0.05])])[0]
    assert borderline.verdict == HOLDS and borderline.fragile
    assert borderline.fragile_because[0].startswith(f"without seed 0: {NO_DIFFERENCE}")
    # One seed hides a clear effect: not detected, but detected without it.
    hidden = decide([by_differences([1.0, 1.1, 0.9, 1.05, 0.95, -3.0])])[0]
    assert hidden.verdict.startswith(NO_DIFFERENCE) and hidden.fragile_because == ["without seed 5: holds"]
    robust = decide([by_differences([1.0, 1.1, 0.9, 1.05, 0.95, 1.02])])[0]
    assert robust.verdict == HOLDS and not robust.fragile and robust.fragile_because == []


def test_the_smallest_detectable_effect_of_a_primary_is_at_holms_first_level():
    """With m testable primaries the stated effect is the one detectable at alpha / m; an untestable
    primary (one seed) is not part of the family and does not shrink that level."""
    rng = np.random.default_rng(4)
    noise = [list(rng.normal(0, 1, 6)) for _ in range(3)]
    results = judge_family([by_differences(d) for d in noise] + [by_differences([0.2])])
    for d, values in zip(results[:3], noise, strict=True):
        expected = smallest_detectable_paired(np.std(values, ddof=1), 6, ALPHA / 3)
        assert math.isclose(d.smallest_detectable, expected)
    assert results[3].verdict.startswith(NOT_TESTABLE)
