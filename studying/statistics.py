"""Statistics of a study: which test each cell gets, Holm over the primaries, the verdict, its robustness.

A cell is one metric in one comparison of two arms (difference = second arm minus first).

- The test follows the design. Arms trained at the same seeds share their data order (and their
  initial weights where the architecture matches), so a seed is a block: the test is paired, a
  paired t-test on the per-seed differences (scipy.stats.ttest_rel) with its 95% interval, beside an
  exact sign-flip permutation test (all 2^n sign flips of the n differences), which needs no
  normality but cannot go below 2 / 2^n. The
  t-test decides; the permutation p is reported as its check. Arms without shared seeds get Welch's
  t-test (unequal variances) and the Welch-Satterthwaite interval.
- Each study names its primary metrics (at most MAX_PRIMARY) and the direction it expects of each,
  before it runs. The p-values of every primary cell of every comparison in the study form one Holm
  family; only those cells get a verdict. Every other cell is exploratory: its difference and
  unadjusted 95% interval, and no verdict.
- Where nothing is detected, the smallest effect the design could have detected at POWER, in the
  metric's units: statsmodels' power of the paired (one-sample) or two-sample t-test at the level
  the cell had to meet (alpha / m for the primaries, Holm's first step; alpha for the exploratory
  cells), times the sd of the differences (paired) or the pooled sd (two arms).
- A verdict is fragile when leaving out any one seed (from every arm, then testing the whole family
  again) changes it.
"""

import functools
import math
import statistics
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from core.i18n import N_

ALPHA = 0.05
POWER = 0.8  # the power at which the smallest detectable effect is stated
MAX_EXACT_SEEDS = 16  # up to 2^16 sign flips are enumerated; beyond, FLIP_DRAWS random ones
FLIP_DRAWS = 100_000
MAX_PRIMARY = 5  # primary metrics a study may name: more would spend its Holm family on breadth
# What a claim expects of the second arm against the first.
DIRECTIONS = (N_("higher"), N_("lower"), N_("differs"))
# The verdict vocabulary stays English in comparison.json (tools read it); the markdown and the page
# show it translated (core.i18n.translate), so each word and template is marked for the catalog.
HOLDS, OPPOSITE = N_("holds"), N_("opposite direction detected")
NOT_TESTABLE, NO_DIFFERENCE = "not testable at this scale", "no detectable difference"  # the categories
NOT_TESTABLE_BECAUSE = N_("not testable at this scale ({reason})")
NO_DIFFERENCE_DETECTABLE = N_("no detectable difference (smallest detectable effect {effect})")
NO_VERDICT = N_("exploratory: no verdict")
WITHOUT_SEED = N_("without seed {seed}: {verdict}")
RULE = N_(
    "Per comparison (second arm minus first) and metric: the difference of means and its 95% confidence "
    "interval. Arms trained at the same seeds are paired by seed: paired t-test (decides) and an exact "
    "sign-flip permutation test over all 2^n flips (reported); arms without shared seeds get Welch's "
    "t-test. The study's primary metrics (named in the study file before it ran, at most {max_primary}) "
    "of every comparison form one Holm family at alpha = {alpha}; a primary cell's verdict is "
    '"holds" (Holm p below alpha, in the expected direction), "opposite direction detected", "no '
    'detectable difference (smallest detectable effect X)" (X: the difference the test would detect '
    "with power {power} at level alpha / m, in the metric's units) or \"not testable at this scale "
    '(why)". A verdict is fragile when leaving out any one seed changes it. Every other metric is '
    "exploratory: interval and p unadjusted, no verdict."
).format(max_primary=MAX_PRIMARY, alpha=ALPHA, power=POWER)


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
class Cell:
    """What one metric of one comparison is tested on: each arm's value per seed."""

    a: str
    b: str
    metric: str
    values_a: dict[int, float]  # seed -> value (seeds without a value are absent)
    values_b: dict[int, float]
    paired: bool  # the arms were trained at the same seeds
    direction: str | None = None  # primary: one of DIRECTIONS; None: exploratory


@dataclass
class Difference:
    """The test of one cell, and (for a primary cell) its verdict."""

    metric: str
    test: str  # "paired t", "Welch" or "" (not testable)
    n: tuple[int, int]  # values used from each arm (paired: the shared seeds, twice)
    difference: float  # mean b - mean a
    low: float  # 95% confidence interval of the difference
    high: float
    p: float  # two-sided, unadjusted (nan: not testable)
    p_permutation: float = math.nan  # exact sign-flip test (paired cells only)
    smallest_detectable: float = math.nan  # at POWER and the cell's level, in the metric's units
    reason: str = ""  # why it is not testable
    direction: str | None = None
    p_holm: float = math.nan
    detected: bool = False
    verdict: str = NO_VERDICT
    fragile: bool = False
    fragile_because: list[str] = field(default_factory=list)

    @property
    def primary(self) -> bool:
        return self.direction is not None


def sign_flip_p(differences: np.ndarray) -> float:
    """Two-sided p of the mean of paired differences among its sign flips: exact (all 2^n) up to
    MAX_EXACT_SEEDS differences, else scipy's permutation_test over FLIP_DRAWS random flips."""
    d = np.asarray(differences, dtype=float)
    if not np.any(d):
        return 1.0
    observed = abs(d.mean())
    if len(d) <= MAX_EXACT_SEEDS:
        signs = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)  # (2^n, n)
        flipped = np.abs(signs @ d) / len(d)
        return float(np.mean(flipped >= observed * (1 - 1e-12)))  # ties within rounding count
    result = stats.permutation_test(
        (d, np.zeros_like(d)), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
        vectorized=True, n_resamples=FLIP_DRAWS, alternative="two-sided", random_state=0,
    )
    return float(result.pvalue)


@functools.cache
def detectable_in_sd(n_a: int, n_b: int | None, level: float) -> float:
    """The standardized effect (Cohen's d) a t-test detects with power POWER at `level`: one-sample
    (paired) over n_a when n_b is None, else two-sample (cached: the same few sizes recur)."""
    if n_b is None:
        return float(TTestPower().solve_power(effect_size=None, nobs=n_a, alpha=level, power=POWER))
    power = TTestIndPower()
    return float(power.solve_power(effect_size=None, nobs1=n_a, ratio=n_b / n_a, alpha=level, power=POWER))


def smallest_detectable_paired(sd: float, n: int, level: float) -> float:
    """The mean difference a paired t-test over n seeds detects with power POWER at `level`."""
    return 0.0 if sd == 0 else detectable_in_sd(n, None, level) * sd


def smallest_detectable_two_sample(a: np.ndarray, b: np.ndarray, level: float) -> float:
    """The difference of means a two-sample t-test detects with power POWER at `level` (pooled sd)."""
    n_a, n_b = len(a), len(b)
    pooled = math.sqrt(((n_a - 1) * a.var(ddof=1) + (n_b - 1) * b.var(ddof=1)) / (n_a + n_b - 2))
    return 0.0 if pooled == 0 else detectable_in_sd(n_a, n_b, level) * pooled


def paired_test(cell: Cell, level: float) -> Difference:
    """Paired t-test and exact sign-flip test over the seeds both arms have a value at."""
    seeds = sorted(set(cell.values_a) & set(cell.values_b))
    a = np.array([cell.values_a[s] for s in seeds], dtype=float)
    b = np.array([cell.values_b[s] for s in seeds], dtype=float)
    n = len(seeds)
    diff = float(np.mean(b - a)) if n else math.nan
    if n < 2:
        return Difference(cell.metric, "", (n, n), diff, math.nan, math.nan, math.nan,
                          reason=(N_("1 seed with a value in both arms; needs 2") if n == 1 else
                                  N_("{count} seeds with a value in both arms; needs 2").format(count=n)))
    d = b - a
    sd = float(d.std(ddof=1))
    if sd == 0:  # every seed gave the same difference: it is exact
        p = 0.0 if diff != 0 else 1.0
        low = high = diff
    else:
        with warnings.catch_warnings():  # near-equal values: scipy warns of precision, the test holds
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_rel(b, a)
        interval = result.confidence_interval(0.95)
        p, low, high = float(result.pvalue), float(interval.low), float(interval.high)
    return Difference(cell.metric, "paired t", (n, n), diff, low, high, p, sign_flip_p(d),
                      smallest_detectable_paired(sd, n, level))


def welch_test(cell: Cell, level: float) -> Difference:
    """Welch's t-test and the Welch-Satterthwaite interval of mean(b) - mean(a)."""
    a = np.array(list(cell.values_a.values()), dtype=float)
    b = np.array(list(cell.values_b.values()), dtype=float)
    n_a, n_b = len(a), len(b)
    diff = float(b.mean() - a.mean()) if n_a and n_b else math.nan
    if n_a < 2 or n_b < 2:
        return Difference(cell.metric, "", (n_a, n_b), diff, math.nan, math.nan, math.nan,
                          reason=N_("n = {count_a} vs {count_b}; needs 2 per arm").format(
                              count_a=n_a, count_b=n_b))
    if a.var(ddof=1) + b.var(ddof=1) == 0:  # every seed gave one value in each arm: the difference is exact
        p = 0.0 if diff != 0 else 1.0
        return Difference(cell.metric, "Welch", (n_a, n_b), diff, diff, diff, p, smallest_detectable=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(b, a, equal_var=False)
    interval = result.confidence_interval(0.95)
    return Difference(cell.metric, "Welch", (n_a, n_b), diff, float(interval.low), float(interval.high),
                      float(result.pvalue), smallest_detectable=smallest_detectable_two_sample(a, b, level))


def verdict(d: Difference) -> str:
    """The verdict vocabulary: what the rule decides for one primary cell."""
    if d.reason:
        return NOT_TESTABLE_BECAUSE.format(reason=d.reason)
    if not d.detected:
        return NO_DIFFERENCE_DETECTABLE.format(effect=f"{d.smallest_detectable:.3g}")
    expected = d.direction == "differs" or (d.difference > 0) == (d.direction == "higher")
    return HOLDS if expected else OPPOSITE


def category(d: Difference) -> str:
    """A verdict without its numbers: what leaving a seed out must not change."""
    return d.verdict.split(" (")[0]


def testable(cell: Cell) -> bool:
    """Enough values for the cell's test: 2 shared seeds (paired), or 2 per arm (Welch)."""
    if cell.paired:
        return len(set(cell.values_a) & set(cell.values_b)) >= 2
    return len(cell.values_a) >= 2 and len(cell.values_b) >= 2


def judge_family(cells: list[Cell], alpha: float = ALPHA) -> list[Difference]:
    """Test every cell (paired or Welch, by its design), Holm-correct the primary cells together and
    give each its verdict. Exploratory cells are tested at alpha, unadjusted, with no verdict."""
    m = sum(c.direction is not None and testable(c) for c in cells)  # the Holm family's size
    results = []
    for cell in cells:
        level = alpha / max(m, 1) if cell.direction is not None else alpha
        d = (paired_test if cell.paired else welch_test)(cell, level)
        d.direction = cell.direction
        results.append(d)
    primaries = [d for d in results if d.primary and not d.reason]
    if primaries:
        reject, corrected, _, _ = multipletests([d.p for d in primaries], alpha=alpha, method="holm")
        for d, r, p in zip(primaries, reject, corrected, strict=True):
            d.detected, d.p_holm = bool(r), float(p)
    for d in results:
        if d.primary:
            d.verdict = verdict(d)
    return results


def without_seed(cell: Cell, seed: int) -> Cell:
    return Cell(cell.a, cell.b, cell.metric, {s: v for s, v in cell.values_a.items() if s != seed},
                {s: v for s, v in cell.values_b.items() if s != seed}, cell.paired, cell.direction)


def decide(cells: list[Cell], alpha: float = ALPHA) -> list[Difference]:
    """judge_family, then the robustness check: each seed left out of every arm in turn, the whole
    family tested again; a primary verdict that changes under any one leave-out is marked fragile."""
    results = judge_family(cells, alpha)
    seeds = sorted(set().union(*(set(c.values_a) | set(c.values_b) for c in cells))) if cells else []
    for seed in seeds:
        again = judge_family([without_seed(c, seed) for c in cells], alpha)
        for d, other in zip(results, again, strict=True):
            if d.primary and category(other) != category(d):
                d.fragile = True
                d.fragile_because.append(WITHOUT_SEED.format(seed=seed, verdict=other.verdict))
    return results
