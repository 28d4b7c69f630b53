"""The run over time: records bucketed into intervals, plus error examples (pure).

One pass over the records (`digest_records`) folds what the time-series charts
and the HdrHistogram interval logs need:

- per model and interval: requests that ended (succeeded / failed, by end
  time), output tokens received (by the arrival time of each token-bearing
  chunk, each weighing the request's mean tokens per chunk), requests in flight
  (time-averaged over the interval, from each request's start and end), and
  the latency values of the succeeded requests that ended in the interval
  (ttft, itl, tpot, e2e, in whole µs as the summary histograms round them);
- per error class and interval: failed requests, by end time;
- per model and error class: how many, and the first distinct messages.

Time 0 is `origin_ns`, the first request's start on the records' monotonic
clock; intervals are `interval_ns` long (`choose_interval_ns`: 1 s, longer so
a run has at most `MAX_INTERVALS`, shorter for runs under `MIN_INTERVALS`
seconds). Latency values are kept as raw integers, so a percentile of an
interval is exact and a histogram of it costs nothing until it is written.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

from onybench.metrics.record import RequestRecord

MAX_INTERVALS = 200
MIN_INTERVALS = 20
# Interval lengths a reader can count in, shortest first (ns).
_NICE_INTERVALS_NS = tuple(
    round(seconds * 1e9)
    for seconds in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
)
# Latency metrics kept per interval, in the summary's names.
INTERVAL_METRICS = ("ttft", "itl", "tpot", "e2e")
ERROR_EXAMPLES = 3
ERROR_EXAMPLE_CHARS = 500


def choose_interval_ns(
    span_ns: int, max_intervals: int = MAX_INTERVALS, min_intervals: int = MIN_INTERVALS
) -> int:
    """A round interval: 1 s, longer when the run would have more than `max_intervals`,
    shorter (down to 100 ms) when it would have fewer than `min_intervals`."""
    wanted_ns = max(span_ns / max_intervals, min(1e9, span_ns / min_intervals))
    for interval in _NICE_INTERVALS_NS:
        if interval >= wanted_ns:
            return interval
    hour = _NICE_INTERVALS_NS[-1]
    return hour * math.ceil(span_ns / (hour * max_intervals))


@dataclass(frozen=True, slots=True)
class ModelTimeline:
    """One model's series; every list has one entry per interval."""

    model: str
    succeeded: list[int]
    failed: list[int]
    output_tokens: list[float]
    in_flight: list[float]
    # metric -> per interval, the values in µs (unsorted)
    latency_us: dict[str, list[array[int]]]


@dataclass(frozen=True, slots=True)
class ErrorExample:
    model: str
    error_class: str
    count: int
    statuses: tuple[int, ...]
    messages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Timeline:
    origin_ns: int
    interval_ns: int
    intervals: int
    models: tuple[ModelTimeline, ...]
    errors: dict[str, list[int]]  # error class -> failed requests per interval
    error_examples: tuple[ErrorExample, ...]

    @property
    def interval_s(self) -> float:
        return self.interval_ns / 1e9

    def start_s(self, index: int) -> float:
        """Seconds from the origin to the start of interval `index`."""
        return index * self.interval_ns / 1e9


@dataclass
class _ModelFold:
    succeeded: list[int]
    failed: list[int]
    output_tokens: list[float]
    in_flight_ns: list[int]
    latency_us: dict[str, list[array[int]]]

    @classmethod
    def empty(cls, intervals: int) -> _ModelFold:
        return cls(
            [0] * intervals,
            [0] * intervals,
            [0.0] * intervals,
            [0] * intervals,
            {m: [array("q") for _ in range(intervals)] for m in INTERVAL_METRICS},
        )


@dataclass
class _ErrorFold:
    count: int = 0
    statuses: dict[int, None] = field(default_factory=dict)
    messages: dict[str, None] = field(default_factory=dict)


def digest_records(
    records: Iterable[RequestRecord],
    *,
    origin_ns: int,
    end_ns: int,
    models: Iterable[str] = (),
    max_intervals: int = MAX_INTERVALS,
) -> Timeline:
    """Fold `records` into a Timeline from `origin_ns` to `end_ns` (monotonic ns).

    `models` gives the order of the series (others follow as first seen). A
    record outside the window is counted in the first or last interval.
    """
    span_ns = max(end_ns - origin_ns, 1)
    interval_ns = choose_interval_ns(span_ns, max_intervals)
    intervals = max(1, math.ceil(span_ns / interval_ns))
    last = intervals - 1
    folds: dict[str, _ModelFold] = {model: _ModelFold.empty(intervals) for model in models}
    errors: dict[str, list[int]] = {}
    examples: dict[tuple[str, str], _ErrorFold] = {}

    def slot(t_ns: int) -> int:
        return min(max((t_ns - origin_ns) // interval_ns, 0), last)

    for record in records:
        fold = folds.get(record.model)
        if fold is None:
            fold = folds[record.model] = _ModelFold.empty(intervals)
        ended = slot(record.end_ns)
        _add_in_flight(fold.in_flight_ns, record, origin_ns, interval_ns, last)
        if record.error_class is not None:
            fold.failed[ended] += 1
            errors.setdefault(record.error_class, [0] * intervals)[ended] += 1
            example = examples.setdefault((record.model, record.error_class), _ErrorFold())
            example.count += 1
            if record.status is not None:
                example.statuses[record.status] = None
            if record.error_message and len(example.messages) < ERROR_EXAMPLES:
                example.messages[record.error_message[:ERROR_EXAMPLE_CHARS]] = None
            continue
        fold.succeeded[ended] += 1
        times = record.token_times_ns
        if times:
            per_chunk = record.output_token_count / len(times)
            tokens = fold.output_tokens
            # The stamps are in order: count them per interval by bisecting at its ends.
            first, final = slot(times[0]), slot(times[-1])
            done = 0
            for index in range(first, final):
                upto = bisect.bisect_left(times, origin_ns + (index + 1) * interval_ns, done)
                tokens[index] += per_chunk * (upto - done)
                done = upto
            tokens[final] += per_chunk * (len(times) - done)
        latency = fold.latency_us
        for metric, value_ns in (
            ("ttft", record.ttft_ns),
            ("tpot", record.tpot_ns),
            ("e2e", record.e2e_ns),
        ):
            if value_ns is not None:
                latency[metric][ended].append(_whole_us(value_ns))
        # _whole_us for whole nanoseconds (gaps are >= 0), inlined: a request has many.
        latency["itl"][ended].extend([(gap + 500) // 1000 for gap in record.itl_ns])

    return Timeline(
        origin_ns=origin_ns,
        interval_ns=interval_ns,
        intervals=intervals,
        models=tuple(
            ModelTimeline(
                model=model,
                succeeded=fold.succeeded,
                failed=fold.failed,
                output_tokens=fold.output_tokens,
                in_flight=[busy / interval_ns for busy in fold.in_flight_ns],
                latency_us=fold.latency_us,
            )
            for model, fold in folds.items()
        ),
        errors=errors,
        error_examples=tuple(
            ErrorExample(
                model=model,
                error_class=error_class,
                count=fold.count,
                statuses=tuple(sorted(fold.statuses)),
                messages=tuple(fold.messages),
            )
            for (model, error_class), fold in examples.items()
        ),
    )


def _whole_us(value_ns: float) -> int:
    # The rounding of `Histogram.record_ns`, so interval and run histograms agree.
    return max(math.floor(value_ns / 1000 + 0.5), 0)


def _add_in_flight(
    busy_ns: list[int], record: RequestRecord, origin_ns: int, interval_ns: int, last: int
) -> None:
    """Add the time `record` was in flight to each interval it overlaps."""
    start = record.start_ns - origin_ns
    end = record.end_ns - origin_ns
    if end <= start:
        return
    first = min(max(start // interval_ns, 0), last)
    final = min(max((end - 1) // interval_ns, 0), last)
    for index in range(first, final + 1):
        low = max(start, index * interval_ns)
        high = min(end, (index + 1) * interval_ns)
        if high > low:
            busy_ns[index] += high - low


def nearest_rank(values: array[int], percentiles: Iterable[float]) -> list[int] | None:
    """The nearest-rank value of `values` at each percentile (0..100); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    size = len(ordered)
    return [ordered[max(math.ceil(p / 100 * size), 1) - 1] for p in percentiles]
