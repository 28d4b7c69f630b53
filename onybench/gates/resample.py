"""Bootstrap resampling of a statistic's change between two samples, and Holm's method.

Pure code: no I/O, no clock; every random draw comes from the `random.Random`
handed in, so a seed repeats a result exactly. No numpy: each statistic has a
resampling shortcut that keeps a replicate at O(1) or O(requests):

- A percentile of values resampled with replacement is an order statistic of
  the resample. Resampling n values means drawing n indices into the sorted
  values; the k-th smallest of n uniform indices is ``floor(n * U)`` with
  ``U ~ Beta(k, n - k + 1)``, the k-th order statistic of n uniforms. One
  `betavariate` per replicate therefore gives exactly the distribution a full
  resample-and-sort would, at 2 µs instead of 200 µs for n = 1,000; drawing
  from a precomputed table of that distribution's CDF (`order_statistic_table`)
  makes it 0.3 µs.
- A mean (or stdev) is resampled by drawing the values (`random.choices`),
  up to `EXACT_DRAWS` of them; beyond that the bootstrap distribution of a mean
  is normal to within its resampling noise, and is drawn as such.
- Pooled gaps (ITL: every gap of every request) are resampled by *request*,
  not by gap, since gaps of one response share its server's state: a cluster
  bootstrap. A replicate draws requests with replacement, weighs each
  request's gaps by how often it was drawn, and finds the percentile by a
  binary search over precomputed per-request cumulative counts in a window of
  the pooled distribution (linear interpolation inside a step). Runs with more
  than `MAX_CLUSTERS` requests are folded into that many blocks of requests
  (a block of independent requests is itself an independent unit).
- An error rate is resampled as a binomial draw of failures.

Percentiles follow HdrHistogram's rank rule (the value at rank
``max(1, int(p / 100 * n + 0.5))``), so a statistic computed here from
histograms equals report.json's figure.

Holm's step-down method holds the family-wise error over many comparisons;
`holm` also gives each hypothesis the confidence level whose interval agrees
with its decision (see `holm`).
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

PERCENTILES: dict[str, float] = {
    "p50": 50.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p99_9": 99.9,
}
# min and max are left out: the bootstrap cannot judge a sample's extremes (a
# resample never goes beyond them), so an interval for them would be a lie.
STATISTICS: tuple[str, ...] = ("mean", "stdev", *PERCENTILES)

# Up to this many values a mean is resampled by drawing them; beyond, by its
# normal limit (the draws would cost O(n) per replicate for no visible gain).
EXACT_DRAWS = 2_000
# Pooled-gap samples with more requests are folded into this many blocks.
MAX_CLUSTERS = 250
# Window steps of the cluster bootstrap's percentile search.
CLUSTER_STEPS = 128


def percentile_rank(percentile: float, count: int) -> int:
    """HdrHistogram's rank (1-based) of the value at `percentile` among `count` values."""
    return max(1, int(percentile / 100 * count + 0.5))


class Population(ABC):
    """One side's values of one metric: its statistics and their bootstrap replicates."""

    @property
    @abstractmethod
    def count(self) -> int:
        """How many values (requests, or gaps for pooled metrics) the statistic reads."""

    @abstractmethod
    def statistic(self, stat: str) -> float:
        """`stat` (one of STATISTICS) of the sample itself."""

    @abstractmethod
    def replicates(self, stat: str, rng: random.Random, resamples: int) -> list[float]:
        """`stat` of `resamples` bootstrap resamples."""


@lru_cache(maxsize=512)
def order_statistic_table(rank: int, count: int) -> tuple[int, tuple[float, ...]]:
    """The distribution of the 0-based position of the `rank`-th smallest of `count`
    indices drawn uniformly with replacement from 0..count-1: (first position, CDF).

    That position is ``floor(count * U)`` with ``U ~ Beta(rank, count - rank + 1)``,
    so ``P(position <= j) = I_{(j+1)/count}(rank, count - rank + 1)``, the
    regularized incomplete beta function. The table covers the positions within
    12 standard deviations (the mass beyond is below 1e-30); a replicate is then
    one `random()` and a binary search, some ten times cheaper than a
    `betavariate` draw.
    """
    n = count
    a, b = rank, count - rank + 1
    spread = n * math.sqrt(a * b / ((n + 1) ** 2 * (n + 2)))
    centre = n * a / (n + 1)
    first = max(0, int(centre - 12 * spread) - 2)
    last = min(n - 1, int(centre + 12 * spread) + 2)
    cdf = [regularized_beta(a, b, (j + 1) / n) for j in range(first, last)]
    return first, (*cdf, 1.0)


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), by its continued fraction (modified Lentz), to ~1e-14."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + even * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + even / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + odd * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + odd / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        result *= step
        if abs(step - 1.0) < 1e-15:
            break
    return result


class WeightedValues(Population):
    """Sorted values with counts: per-request values (count 1 each) or histogram buckets.

    `highs` are what percentiles report (a bucket's highest equivalent value, as
    HdrHistogram reports them), `mids` what means use (a bucket's midpoint, as
    HdrHistogram's mean does); for raw values both are the values.
    """

    def __init__(self, highs: Sequence[float], mids: Sequence[float], counts: Sequence[int]):
        if not (len(highs) == len(mids) == len(counts)):
            raise ValueError("highs, mids and counts differ in length")
        self.highs = list(highs)
        self.mids = list(mids)
        self.cumulative = list(accumulate(counts))
        self._count = self.cumulative[-1] if self.cumulative else 0
        self._moments = _moments(self.mids, counts)
        # Raw values (one each) are indexed directly, without a search.
        self._ones = self._count == len(self.highs)

    @classmethod
    def of(cls, values: Sequence[float]) -> WeightedValues:
        ordered = sorted(values)
        return cls(ordered, ordered, [1] * len(ordered))

    @property
    def count(self) -> int:
        return self._count

    def at_index(self, index: int) -> float:
        """The value at 0-based position `index` of the expanded, sorted sample."""
        if self._ones:
            return self.highs[index]
        return self.highs[bisect_right(self.cumulative, index)]

    def statistic(self, stat: str) -> float:
        if stat in PERCENTILES:
            return self.at_index(percentile_rank(PERCENTILES[stat], self._count) - 1)
        mean, stdev = self._moments
        return mean if stat == "mean" else stdev

    def replicates(self, stat: str, rng: random.Random, resamples: int) -> list[float]:
        n = self._count
        if stat in PERCENTILES:
            k = percentile_rank(PERCENTILES[stat], n)
            last = n - 1
            first, cdf = order_statistic_table(k, n)
            uniform = rng.random
            positions = [min(last, first + bisect_right(cdf, uniform())) for _ in range(resamples)]
            if self._ones:
                return [self.highs[i] for i in positions]
            return [self.at_index(i) for i in positions]
        if n <= EXACT_DRAWS:
            draw = rng.choices
            out = []
            for _ in range(resamples):
                values = draw(self.mids, cum_weights=self.cumulative, k=n)
                out.append(_mean_or_stdev(stat, values))
            return out
        return _normal_replicates(
            stat, self.mids, self.cumulative, self._moments, n, rng, resamples
        )


class ClusteredValues(Population):
    """Values pooled over requests (ITL gaps), resampled by request.

    `groups[i]` holds request i's values; requests without a value still count
    as units drawn (they add no value when drawn).
    """

    def __init__(self, groups: Sequence[Sequence[float]]):
        units: list[list[float]]
        if len(groups) > MAX_CLUSTERS:
            units = [[] for _ in range(MAX_CLUSTERS)]
            for number, group in enumerate(groups):
                units[number % MAX_CLUSTERS].extend(group)
        else:
            units = [list(group) for group in groups]
        self.units = [sorted(unit) for unit in units]
        self.pooled = sorted(value for unit in self.units for value in unit)
        self.sizes = [len(unit) for unit in self.units]
        self.sums = [math.fsum(unit) for unit in self.units]
        self.squares = [math.fsum(v * v for v in unit) for unit in self.units]
        self._unit_numbers = range(len(self.units))

    @property
    def count(self) -> int:
        return len(self.pooled)

    def statistic(self, stat: str) -> float:
        n = len(self.pooled)
        if stat in PERCENTILES:
            return self.pooled[percentile_rank(PERCENTILES[stat], n) - 1]
        mean = math.fsum(self.sums) / n
        if stat == "mean":
            return mean
        return math.sqrt(max(0.0, math.fsum(self.squares) / n - mean * mean))

    def _draw(self, rng: random.Random) -> list[int]:
        """The units of one resample: as many as there are, drawn with replacement."""
        return rng.choices(self._unit_numbers, k=len(self.units))

    @staticmethod
    def _total(values: Sequence[float], drawn: list[int]) -> float:
        """Sum of a per-unit quantity over the drawn units (a unit drawn twice counts twice)."""
        return sum(map(values.__getitem__, drawn))

    def replicates(self, stat: str, rng: random.Random, resamples: int) -> list[float]:
        if stat not in PERCENTILES:
            out = []
            for _ in range(resamples):
                drawn = self._draw(rng)
                n = self._total(self.sizes, drawn)
                if n == 0:
                    out.append(math.nan)
                    continue
                mean = self._total(self.sums, drawn) / n
                if stat == "mean":
                    out.append(mean)
                else:
                    square = self._total(self.squares, drawn) / n
                    out.append(math.sqrt(max(0.0, square - mean * mean)))
            return out
        return self._percentile_replicates(PERCENTILES[stat], rng, resamples)

    def _percentile_replicates(
        self, percentile: float, rng: random.Random, resamples: int
    ) -> list[float]:
        pooled = self.pooled
        n = len(pooled)
        rank = percentile_rank(percentile, n)
        share = percentile / 100
        # How far (in ranks) a replicate's percentile can stray: six standard
        # errors as if every request's gaps moved together (the most a cluster
        # can matter), widened if replicates still fall outside.
        spread = n * math.sqrt(max(share * (1 - share), 1 / n) / len(self.units))
        half_width = int(6 * spread) + 8
        for _ in range(4):
            replicates, outside = self._search(rank, half_width, percentile, rng, resamples)
            if outside <= resamples // 200 or half_width >= n:
                return replicates
            half_width *= 2
        return replicates

    def _search(
        self,
        rank: int,
        half_width: int,
        percentile: float,
        rng: random.Random,
        resamples: int,
    ) -> tuple[list[float], int]:
        pooled = self.pooled
        n = len(pooled)
        low = max(0, rank - 1 - half_width)
        high = min(n - 1, rank - 1 + half_width)
        step = max(1, (high - low) // CLUSTER_STEPS)
        edges = sorted({pooled[i] for i in range(low, high + 1, step)} | {pooled[high]})
        # columns[j][u]: how many of unit u's values are <= edges[j].
        columns = [[bisect_right(unit, edge) for unit in self.units] for edge in edges]
        below = [bisect_left(unit, edges[0]) for unit in self.units]
        out: list[float] = []
        outside = 0
        for _ in range(resamples):
            drawn = self._draw(rng)
            total = int(self._total(self.sizes, drawn))
            if total == 0:
                out.append(math.nan)
                continue
            wanted = percentile_rank(percentile, total)

            def at_or_below(j: int, drawn: list[int] = drawn) -> int:
                return sum(map(columns[j].__getitem__, drawn))

            lo, hi = 0, len(edges) - 1
            if at_or_below(hi) < wanted:
                outside += 1
                out.append(edges[hi])
                continue
            while lo < hi:
                middle = (lo + hi) // 2
                if at_or_below(middle) >= wanted:
                    hi = middle
                else:
                    lo = middle + 1
            if lo == 0:
                under = sum(map(below.__getitem__, drawn))
                if under >= wanted:
                    outside += 1
                out.append(edges[0])
                continue
            before = at_or_below(lo - 1)
            after = at_or_below(lo)
            fraction = (wanted - before) / (after - before)
            out.append(edges[lo - 1] + (edges[lo] - edges[lo - 1]) * fraction)
        return out, outside


@dataclass(frozen=True, slots=True)
class Proportion:
    """`events` of `trials` (failed requests of all requests): an error rate."""

    events: int
    trials: int

    @property
    def rate(self) -> float:
        return self.events / self.trials

    def replicates(self, rng: random.Random, resamples: int) -> list[float]:
        return [binomial(self.trials, self.rate, rng) / self.trials for _ in range(resamples)]


def binomial(trials: int, chance: float, rng: random.Random) -> int:
    """A Binomial(trials, chance) draw, in O(trials * min(chance, 1 - chance)) expected time.

    Counts successes by skipping over failures with geometric gaps (Python 3.11
    has no `binomialvariate`).
    """
    if chance <= 0.0:
        return 0
    if chance >= 1.0:
        return trials
    if chance > 0.5:
        return trials - binomial(trials, 1.0 - chance, rng)
    log_miss = math.log1p(-chance)
    successes = 0
    position = 0
    while True:
        position += int(math.log(1.0 - rng.random()) / log_miss) + 1
        if position > trials:
            return successes
        successes += 1


def _moments(values: Sequence[float], counts: Sequence[int]) -> tuple[float, float]:
    total = sum(counts)
    if total == 0:
        return math.nan, math.nan
    mean = math.fsum(v * c for v, c in zip(values, counts, strict=True)) / total
    variance = math.fsum(c * (v - mean) ** 2 for v, c in zip(values, counts, strict=True)) / total
    return mean, math.sqrt(variance)


def _mean_or_stdev(stat: str, values: Sequence[float]) -> float:
    n = len(values)
    mean = math.fsum(values) / n
    if stat == "mean":
        return mean
    return math.sqrt(max(0.0, math.fsum(v * v for v in values) / n - mean * mean))


def _normal_replicates(
    stat: str,
    values: Sequence[float],
    cumulative: Sequence[int],
    moments: tuple[float, float],
    n: int,
    rng: random.Random,
    resamples: int,
) -> list[float]:
    """The normal limit of a mean's (or stdev's) bootstrap distribution."""
    mean, stdev = moments
    if stat == "mean":
        error = stdev / math.sqrt(n)
        return [rng.gauss(mean, error) for _ in range(resamples)]
    counts = [b - a for a, b in zip([0, *cumulative[:-1]], cumulative, strict=True)]
    fourth = math.fsum(c * (v - mean) ** 4 for v, c in zip(values, counts, strict=True)) / n
    variance = stdev * stdev
    # Delta method: Var(s^2) ~ (m4 - s^4) / n, and s = sqrt(s^2).
    error = math.sqrt(max(0.0, fourth - variance * variance) / n) / (2 * stdev) if stdev else 0.0
    return [max(0.0, rng.gauss(stdev, error)) for _ in range(resamples)]


# --- changes, intervals, Holm ---------------------------------------------------------


def relative_change(baseline: float, current: float) -> float:
    """current / baseline - 1; +inf for growth from 0, 0 for 0 -> 0."""
    if baseline == 0:
        return 0.0 if current == 0 else math.inf
    return current / baseline - 1


def interval_index(level: float, resamples: int) -> int:
    """j such that the (1 - level) two-sided percentile interval is the j-th smallest
    and j-th largest replicate; 0 means the replicates cannot reach that level."""
    return math.floor(level / 2 * (resamples + 1) + 1e-9)


def percentile_interval(ordered: Sequence[float], level: float) -> tuple[float, float]:
    """The two-sided interval with error `level` (e.g. 0.05 for 95 %), from sorted replicates.

    With j = `interval_index`, the bounds are the j-th smallest and j-th largest
    replicates, so ``lower > x`` exactly when ``2 (#{r <= x} + 1) / (B + 1) <= level``:
    an interval and the p-value of `p_value_above` always agree.
    """
    j = interval_index(level, len(ordered))
    if j < 1:
        return -math.inf, math.inf
    return ordered[j - 1], ordered[len(ordered) - j]


def p_value_above(ordered: Sequence[float], margin: float) -> float:
    """Two-sided-scale p-value that the change exceeds `margin` (H0: change <= margin)."""
    at_or_below = bisect_right(ordered, margin)
    return min(1.0, 2 * (at_or_below + 1) / (len(ordered) + 1))


def p_value_below(ordered: Sequence[float], margin: float) -> float:
    """Two-sided-scale p-value that the change is below `margin` (H0: change >= margin)."""
    at_or_above = len(ordered) - bisect_left(ordered, margin)
    return min(1.0, 2 * (at_or_above + 1) / (len(ordered) + 1))


def p_value_changed(ordered: Sequence[float]) -> float:
    """Two-sided p-value of H0: no change (the replicates straddle 0)."""
    return min(p_value_above(ordered, 0.0), p_value_below(ordered, 0.0))


@dataclass(frozen=True, slots=True)
class HolmDecision:
    """One hypothesis after Holm's step-down: adjusted p-value, verdict, interval level.

    `level` is the error level (e.g. 0.0125) of the interval that agrees with
    the verdict: a rejected hypothesis's own step (alpha / (m - rank + 1)); an
    accepted one's is the step where the procedure stopped, which its interval
    then fails too (its p-value is at least the stopping one's).
    """

    adjusted_p: float
    rejected: bool
    level: float


def holm(p_values: Sequence[float], alpha: float) -> list[HolmDecision]:
    """Holm's step-down method over `p_values` (in their order), family-wise error `alpha`.

    Sorted ascending, hypothesis k (1-based) is rejected while every p(j <= k)
    is at most alpha / (m - j + 1). The adjusted p-value is
    max over j <= k of min(1, (m - j + 1) p(j)).
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda index: (p_values[index], index))
    decisions: list[HolmDecision | None] = [None] * m
    running = 0.0
    stopped_at: float | None = None
    for position, index in enumerate(order):
        step = alpha / (m - position)
        running = max(running, min(1.0, (m - position) * p_values[index]))
        if stopped_at is None and p_values[index] > step:
            stopped_at = step
        rejected = stopped_at is None
        level = step if rejected else stopped_at
        assert level is not None
        decisions[index] = HolmDecision(running, rejected, level)
    return [decision for decision in decisions if decision is not None]
