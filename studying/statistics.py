"""Statistics of a comparison between two arms: difference of means, its interval, a test, Holm.

The rule, written into every comparison report (RULE): for each named pair of arms and each metric,
the difference of means (second arm minus first) with its 95% Welch confidence interval and Welch's
t-test p-value (scipy.stats.ttest_ind, equal_var=False; it does not assume equal spreads and is
valid at n = 3-5 per arm when seed-to-seed values are roughly normal). The p-values of the metrics of
one comparison are Holm-corrected together (statsmodels' multipletests), and a difference is called
only when the corrected p-value is below ALPHA; otherwise the report says "no detectable difference
at n = a vs b". Two arms whose seeds all give one value each (zero spread) differ exactly when their
values differ (p = 0, the limit of Welch's t), and do not when they are equal (p = 1).
"""

import math
import statistics
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05
RULE = (
    f"For each pair of arms and each metric: the difference of means (second arm minus first), its "
    f"95% Welch confidence interval, and Welch's t-test (unequal variances) over the seeds. The "
    f"p-values of one comparison's metrics are Holm-corrected together; a difference is called only "
    f'when the corrected p < {ALPHA}, otherwise the report says "no detectable difference at n = a vs '
    f'b". An arm with fewer than 2 values is not tested.'
)


@dataclass
class Summary:
    """One arm's values of one metric: mean, sd (n - 1), n, and a 95% t interval of the mean."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else math.nan

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        if self.n < 2:
            return math.nan, math.nan
        half = stats.t.ppf(0.5 + level / 2, self.n - 1) * self.sd / math.sqrt(self.n)
        return self.mean - half, self.mean + half


@dataclass
class Difference:
    """The test of one metric between arms a and b (difference = mean b - mean a)."""

    metric: str
    n_a: int
    n_b: int
    difference: float
    low: float  # 95% confidence interval of the difference
    high: float
    p: float  # Welch's t-test, uncorrected (nan: not testable)
    p_holm: float = math.nan
    detected: bool = False

    def verdict(self, a: str, b: str) -> str:
        if math.isnan(self.p):
            return f"not testable (n = {self.n_a} vs {self.n_b}; needs 2 per arm)"
        if not self.detected:
            return f"no detectable difference at n = {self.n_a} vs {self.n_b}"
        direction = "higher" if self.difference > 0 else "lower"
        return f"{b} {direction} than {a} (Holm p = {self.p_holm:.2g})"


def welch(a: list[float], b: list[float], metric: str = "", level: float = 0.95) -> Difference:
    """Welch's t-test and the Welch-Satterthwaite interval of mean(b) - mean(a)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = len(a_arr), len(b_arr)
    if n_a < 2 or n_b < 2:
        diff = float(b_arr.mean() - a_arr.mean()) if n_a and n_b else math.nan
        return Difference(metric, n_a, n_b, diff, math.nan, math.nan, math.nan)
    diff = float(b_arr.mean() - a_arr.mean())
    var_a, var_b = a_arr.var(ddof=1) / n_a, b_arr.var(ddof=1) / n_b
    if var_a + var_b == 0:  # every seed gave the same value in both arms: the difference is exact
        return Difference(metric, n_a, n_b, diff, diff, diff, 0.0 if diff != 0 else 1.0)
    with warnings.catch_warnings():  # near-equal values: scipy warns of precision, the test still holds
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(b_arr, a_arr, equal_var=False)
    interval = result.confidence_interval(level)
    return Difference(metric, n_a, n_b, diff, float(interval.low), float(interval.high), float(result.pvalue))


def compare_arms(
    a: dict[str, list[float]], b: dict[str, list[float]], alpha: float = ALPHA
) -> list[Difference]:
    """Welch test per metric (the metrics both arms have), Holm-corrected across those metrics."""
    differences = [welch(a[m], b[m], m) for m in a if m in b]
    testable = [d for d in differences if not math.isnan(d.p)]
    if testable:
        reject, corrected, _, _ = multipletests([d.p for d in testable], alpha=alpha, method="holm")
        for d, r, p in zip(testable, reject, corrected, strict=True):
            d.detected, d.p_holm = bool(r), float(p)
    return differences
