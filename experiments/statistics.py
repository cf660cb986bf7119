"""The tests behind every verdict: p-values against nulls, confidence intervals, Holm's correction.

A verdict in a report is the outcome of a stated test, never "the value is bigger":
    empirical_p     value against many draws of a null (random bases, shuffled labels, random
                    directions): one-sided, (1 + draws at least as extreme) / (1 + draws)
    paired_p        per-item values against the same items under a control (own embedding,
                    reference model, "only c"): a sign-flip permutation test of the mean difference
    bootstrap_ci    95% interval of a per-item mean (analogies, prompts, positions)
    holm            Holm's step-down correction across one experiment's judged metrics
A metric is said to beat its control only when its Holm-corrected p-value is below ALPHA.
"""

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05  # family-wise error rate of one experiment's verdicts
MIN_NULL_DRAWS = 20  # fewer draws of a null give no verdict (p could not go below 1/(n+1))
BOOTSTRAP_RESAMPLES = 2000
PERMUTATIONS = 5000  # random sign flips when 2^n is larger; exact enumeration otherwise


def empirical_p(value: float, null_draws, higher_is_structure: bool) -> float:
    """One-sided p-value of `value` among draws of a null: the chance that a null draw is at least
    as structured as value, counting value itself as one draw (never 0, valid at any n)."""
    draws = np.asarray([d for d in null_draws if d is not None and np.isfinite(d)], dtype=float)
    extreme = draws >= value if higher_is_structure else draws <= value
    return float((1 + extreme.sum()) / (1 + len(draws)))


def percentile(value: float, null_draws) -> float:
    """Share of the null draws strictly below value, in percent (100 = above every draw)."""
    draws = np.asarray(null_draws, dtype=float)
    return float(100 * (draws < value).mean() + 50 * (draws == value).mean())


def paired_p(values, control_values, higher_is_structure: bool) -> float:
    """One-sided p-value that the per-item values exceed (or, for lower-is-structure, fall below) the
    same items' control values: a paired permutation test (random sign flips of the differences,
    exact for up to 12 items). All-equal pairs give p = 1."""
    diff = np.asarray(values, dtype=float) - np.asarray(control_values, dtype=float)
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0 or np.all(diff == 0):
        return 1.0
    if len(diff) == 1:  # the two sign flips of one item: p = 1/2 at best
        return 0.5 if (diff[0] > 0) == higher_is_structure else 1.0
    result = stats.permutation_test(
        (diff,), np.mean, permutation_type="samples", vectorized=True, n_resamples=PERMUTATIONS,
        alternative="greater" if higher_is_structure else "less", random_state=0)
    return float(result.pvalue)


def bootstrap_ci(values, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of per-item values; None with fewer than 2 items,
    (x, x) when every item is equal."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(x) < 2:
        return None
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    result = stats.bootstrap((x,), np.mean, confidence_level=level, n_resamples=BOOTSTRAP_RESAMPLES,
                             method="percentile", vectorized=True, random_state=0)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (same order), controlling the family-wise error rate."""
    if not p_values:
        return []
    return multipletests(p_values, alpha=ALPHA, method="holm")[1].tolist()
