"""An HDR histogram that never loses a value, merges exactly and travels as text.

A thin wrapper over `hdrh` (the Python port of HdrHistogram). Every histogram in
onybench has the same shape: integer values from 1 to 3,600,000,000 stored units
at 3 significant digits, so any two can be merged and any encoding decoded by
any process. Latencies are stored in microseconds (1 µs .. 1 hour) and shown in
milliseconds; per-request rates are stored in milli-units (tokens/s * 1000).

What hdrh does, and what this wrapper does about it:

- Precision: a value is kept in a bucket no wider than 1/1000 of it; values
  below 2048 stored units (2.048 ms for latencies) are exact. Percentiles report
  the bucket's *highest* equivalent value (so they may read up to 0.1 % high),
  `min` the bucket's lowest, `mean` and `stdev` use bucket midpoints, as hdrh
  defines them (computed here in one pass, see `_mean_and_stdev`).
- Below the lowest trackable value: 0 has a bucket of its own and is recorded
  exactly (a sub-µs gap rounds to 0 µs and counts as 0, not as 1).
- Above the range: hdrh rounds the range up to whole buckets, so values up to
  2**32 - 1 stored units (≈ 71.6 min of µs) are kept; beyond that
  `record_value` returns False. Those values are counted in `overflow_count`
  instead of vanishing; they are not in `count` or the percentiles.
- Negative values are rejected by hdrh too; here they raise `ValueError`, since
  a negative duration of a monotonic clock is a bug upstream, not data.
- `record_corrected_value` is never used: latencies are measured from the
  intended start already, and the correction would count the delay twice.
- hdrh's `add` sets the tracked minimum to 0 when the *added* histogram is empty;
  `stats()` therefore reads the minimum from the counts (percentile 0), never
  from hdrh's tracked minimum.
- Encoding: HdrHistogram's standard V2 compressed format, base64-wrapped
  ("HISTF..." text, the format of HdrHistogram's own logs), produced by
  `HdrHistogram.encode`. The overflow count is not part of it and travels next
  to it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Literal

from hdrh.histogram import HdrHistogram

LOWEST_TRACKABLE = 1
HIGHEST_TRACKABLE = 3_600_000_000  # one hour in µs
SIGNIFICANT_DIGITS = 3

# stats() key -> hdrh percentile, for the keys read from the counts; percentile 0
# gives the lowest equivalent value of the first non-empty bucket (the minimum).
_PERCENTILES = {
    "min": 0.0,
    "p50": 50.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p99_9": 99.9,
    "max": 100.0,
}
STAT_NAMES = ("min", "mean", "stdev", "p50", "p90", "p95", "p99", "p99_9", "max")


class Histogram:
    """Integer values in stored units, read back in a display unit.

    `scale` is the number of stored units per display unit: 1000 for latencies
    (µs stored, `unit="ms"` shown) and for rates (milli-tokens/s stored,
    tokens/s shown). `count` is the number of values inside the histogram;
    `overflow_count` the number too large for it.
    """

    __slots__ = ("_hdr", "overflow_count", "scale", "unit")

    def __init__(self, unit: str = "ms", scale: float = 1000.0) -> None:
        self.unit = unit
        self.scale = scale
        self.overflow_count = 0
        self._hdr = HdrHistogram(LOWEST_TRACKABLE, HIGHEST_TRACKABLE, SIGNIFICANT_DIGITS)

    @property
    def count(self) -> int:
        total: int = self._hdr.get_total_count()
        return total

    def record(self, value: int) -> None:
        """Record one value in stored units (µs for latencies)."""
        if value < 0:
            raise ValueError(f"cannot record a negative value: {value}")
        if not self._hdr.record_value(value):
            self.overflow_count += 1

    def record_ns(self, value_ns: float) -> None:
        """Record a duration in nanoseconds as whole µs, rounded half up.

        Only meaningful for latency histograms, whose stored unit is the µs.
        """
        self.record(math.floor(value_ns / 1000 + 0.5))

    def record_all_ns(self, values_ns: Iterable[float]) -> None:
        """`record_ns` for every value, in one pass: a stream's ITL gaps."""
        self.record_all([math.floor(value_ns / 1000 + 0.5) for value_ns in values_ns])

    def record_all(self, values: Sequence[int]) -> None:
        """`record` for every value (stored units), in one pass.

        hdrh's `record_value` costs four Python calls a value (~1 µs); its bucket
        arithmetic is inlined here instead, so a 128-token request's gaps cost a
        quarter of that. The histogram ends up exactly as with `record` one by one
        (tests compare the encodings, the minimum and the maximum).
        """
        if not values:
            return
        if min(values) < 0:
            raise ValueError(f"cannot record a negative value: {min(values)}")
        hdr = self._hdr
        counts, size = hdr.counts, hdr.counts_len
        mask, unit = hdr.sub_bucket_mask, hdr.unit_magnitude
        half_magnitude, half = hdr.sub_bucket_half_count_magnitude, hdr.sub_bucket_half_count
        # hdrh's _get_bucket_index: its "64 - clz(value | mask)" is the bit length.
        bucket_base = unit + half_magnitude + 1
        recorded = []
        for value in values:
            bucket = (value | mask).bit_length() - bucket_base
            index = ((bucket + 1) << half_magnitude) + (value >> (bucket + unit)) - half
            if index < size:
                counts[index] += 1
                recorded.append(value)
        self.overflow_count += len(values) - len(recorded)
        if recorded:
            hdr.total_count += len(recorded)
            hdr.min_value = min(hdr.min_value, min(recorded))
            hdr.max_value = max(hdr.max_value, max(recorded))

    @property
    def hdr(self) -> HdrHistogram:
        """The underlying hdrh histogram, for hdrh's own writers (`report/hlog.py`)."""
        return self._hdr

    def merge(self, other: Histogram) -> None:
        """Add every value (and overflow) of `other` into this histogram, exactly."""
        if (other.unit, other.scale) != (self.unit, self.scale):
            raise ValueError(
                f"cannot merge a histogram in {other.unit}/{other.scale} "
                f"into one in {self.unit}/{self.scale}"
            )
        self._hdr.add(other._hdr)
        self.overflow_count += other.overflow_count

    def encode(self) -> str:
        """HdrHistogram's compressed base64 text; `overflow_count` is not in it."""
        encoded: bytes = self._hdr.encode()
        return encoded.decode("ascii")

    @classmethod
    def decode(
        cls,
        encoded: str,
        *,
        unit: str = "ms",
        scale: float = 1000.0,
        overflow_count: int = 0,
    ) -> Histogram:
        """Rebuild a histogram from `encode()`'s text.

        A blob of another shape (range or precision) is refused rather than
        re-bucketed: re-bucketing would silently drop values that do not fit.
        """
        hdr = HdrHistogram.decode(encoded)
        shape = (hdr.lowest_trackable_value, hdr.highest_trackable_value, hdr.significant_figures)
        if shape != (LOWEST_TRACKABLE, HIGHEST_TRACKABLE, SIGNIFICANT_DIGITS):
            raise ValueError(f"histogram of another shape (lowest, highest, digits): {shape}")
        histogram = cls(unit, scale)
        histogram._hdr = hdr
        histogram.overflow_count = overflow_count
        return histogram

    def value_at_percentile(self, percentile: float) -> float:
        """The value (display unit) at `percentile` (0..100); 0.0 when empty."""
        return values_at_percentiles(self._hdr, [percentile]).get(percentile, 0) / self.scale

    def stats(self) -> dict[str, float]:
        """min, mean, stdev, p50, p90, p95, p99, p99_9, max in the display unit.

        Empty when nothing was recorded: no figure is better than a made-up 0.
        """
        if self.count == 0:
            return {}
        buckets = nonzero_buckets(self._hdr)
        by_percentile = values_at_percentiles(self._hdr, _PERCENTILES.values(), buckets)
        stored: dict[str, float] = {name: by_percentile[p] for name, p in _PERCENTILES.items()}
        stored["mean"], stored["stdev"] = self._mean_and_stdev(buckets)
        return {name: stored[name] / self.scale for name in STAT_NAMES}

    def _mean_and_stdev(self, buckets: list[tuple[int, int]]) -> tuple[float, float]:
        """Mean and population stdev (stored units) over bucket midpoints, as hdrh's
        `get_mean_value` / `get_stddev` define them, from the non-empty `buckets`.

        hdrh walks every bucket up to the largest value through its Python
        iterator, twice (~0.2 s for a histogram reaching 100 s).
        """
        hdr = self._hdr
        midpoints: list[tuple[int, int]] = []
        for index, count in buckets:
            lowest = hdr.get_lowest_equivalent_value(hdr.get_value_from_index(index))
            highest = hdr.get_highest_equivalent_value(lowest)
            midpoints.append((lowest + ((highest - lowest + 1) >> 1), count))
        total = self.count
        mean = sum(value * count for value, count in midpoints) / total
        variance = sum(count * (value - mean) ** 2 for value, count in midpoints) / total
        return mean, math.sqrt(variance)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (self.unit, self.scale, self.overflow_count, self.encode()) == (
            other.unit,
            other.scale,
            other.overflow_count,
            other.encode(),
        )

    def __repr__(self) -> str:
        return (
            f"Histogram(unit={self.unit!r}, scale={self.scale}, count={self.count}, "
            f"overflow_count={self.overflow_count})"
        )


# Reading a histogram: hdrh walks all of its ~47,000 buckets in Python, empty ones
# included, for every question (percentiles, mean, curves): some 10-30 ms each on a
# small VM, many times per report. These walk only the non-empty buckets, found in C,
# and give exactly hdrh's answers (tests compare them on random histograms).


def nonzero_buckets(hdr: HdrHistogram) -> list[tuple[int, int]]:
    """(index, count) of every non-empty bucket of `hdr`, in index order."""
    # hdrh keeps its counts in a ctypes array, whose items Python reads one by one
    # (~2.5 ms for the ~23,500 buckets); as a memoryview of native integers they are
    # scanned in C.
    raw = memoryview(hdr.counts)
    code = _UNSIGNED_CODES.get(raw.itemsize)
    counts = raw.cast("B").cast(code) if code is not None else list(hdr.counts)
    return [(index, counts[index]) for index in itertools.compress(range(len(counts)), counts)]


# Item size -> memoryview format of hdrh's count words (its word size, 8 by default).
_UNSIGNED_CODES: dict[int, Literal["H", "I", "Q"]] = {2: "H", 4: "I", 8: "Q"}


def values_at_percentiles(
    hdr: HdrHistogram,
    percentiles: Iterable[float],
    buckets: list[tuple[int, int]] | None = None,
) -> dict[float, int]:
    """hdrh's `get_percentile_to_value_dict`: percentile -> value (stored units); the
    bucket's highest equivalent value, its lowest for percentile 0. Empty when `hdr` is.

    `buckets`, when given, are `nonzero_buckets(hdr)` already read.
    """
    if buckets is None:
        buckets = nonzero_buckets(hdr)
    wanted = sorted(set(percentiles))
    result: dict[float, int] = {}
    position, cumulative = 0, 0
    for percentile in wanted:
        if percentile > 100:
            break
        target = hdr.get_target_count_at_percentile(percentile)
        while position < len(buckets) and cumulative + buckets[position][1] < target:
            cumulative += buckets[position][1]
            position += 1
        if position == len(buckets):
            break
        value = hdr.get_value_from_index(buckets[position][0])
        result[percentile] = (
            hdr.get_highest_equivalent_value(value)
            if percentile
            else hdr.get_lowest_equivalent_value(value)
        )
    return result


def percentile_steps(hdr: HdrHistogram, ticks_per_half_distance: int) -> list[tuple[float, int]]:
    """hdrh's percentile iteration (`get_percentile_iterator`): (percentile level
    iterated to, value iterated to) at each step, the levels halving their distance
    to 100 % every `ticks_per_half_distance` steps, then one last step at 100 %."""
    total: int = hdr.get_total_count()
    steps: list[tuple[float, int]] = []
    level, cumulative = 0.0, 0
    for index, count in nonzero_buckets(hdr):
        cumulative += count
        value = hdr.get_highest_equivalent_value(hdr.get_value_from_index(index))
        while (100.0 * cumulative) / total >= level:
            steps.append((level, value))
            gap = 100.0 - level
            if gap:  # hdrh's increment_iteration_level, to the last bit
                half_distance = math.pow(2, (math.log(100 / gap) / math.log(2)) + 1)
                level += 100.0 / (ticks_per_half_distance * half_distance)
            if cumulative == total:
                steps.append((100.0, value))
                return steps
    return steps
