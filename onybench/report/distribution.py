"""Percentile and CDF curves read from encoded HDR histograms (never from records).

The percentile curve is HdrHistogram's percentile iteration (the same steps as
its `outputPercentileDistribution`: `ticks_per_half_distance` levels between
each halving of the distance to 100 %); the CDF walks the histogram's non-empty
buckets. Values are in the histogram's display unit (stored value ÷ scale),
each bucket read at its highest equivalent value, as percentiles are.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from onybench.metrics.histogram import nonzero_buckets, percentile_steps

PERCENTILE_TICKS_PER_HALF_DISTANCE = 5
MAX_CDF_POINTS = 300


@dataclass(frozen=True, slots=True)
class Distribution:
    """`percentiles`: (percentile 0..100, value); `cdf`: (value, fraction of values ≤ it)."""

    count: int
    percentiles: tuple[tuple[float, float], ...]
    cdf: tuple[tuple[float, float], ...]


def read_distribution(
    encoded: str,
    scale: float,
    *,
    ticks_per_half_distance: int = PERCENTILE_TICKS_PER_HALF_DISTANCE,
    max_cdf_points: int = MAX_CDF_POINTS,
) -> Distribution | None:
    """The curves of one encoded histogram; None when it holds no value."""
    histogram = HdrHistogram.decode(encoded)
    total: int = histogram.get_total_count()
    if total == 0:
        return None
    percentiles: list[tuple[float, float]] = []
    for level, value in percentile_steps(histogram, ticks_per_half_distance):
        point = (float(level), value / scale)
        if not percentiles or point != percentiles[-1]:
            percentiles.append(point)
    return Distribution(total, tuple(percentiles), _cdf(histogram, total, scale, max_cdf_points))


def _cdf(
    histogram: HdrHistogram, total: int, scale: float, max_points: int
) -> tuple[tuple[float, float], ...]:
    points: list[tuple[float, float]] = []
    cumulative = 0
    for index, count in nonzero_buckets(histogram):
        cumulative += count
        value = histogram.get_highest_equivalent_value(histogram.get_value_from_index(index))
        points.append((value / scale, cumulative / total))
    if len(points) > max_points:
        # Keep the steps evenly spread over the buckets, and always the last (1.0).
        step = len(points) / (max_points - 1)
        points = [points[int(i * step)] for i in range(max_points - 1)] + [points[-1]]
    return tuple(points)
