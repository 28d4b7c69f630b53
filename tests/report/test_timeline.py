"""The run's timeline: tokens and latencies of each interval, as a per-token walk gives them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onybench.metrics.record import RequestRecord
from onybench.report.timeline import digest_records

MS = 1_000_000


@st.composite
def records(draw: st.DrawFn) -> list[RequestRecord]:
    made = []
    for index in range(draw(st.integers(min_value=1, max_value=8))):
        # Stamps may fall before the window's start or after its end (clamped there), and
        # right on the edges between intervals (which are whole multiples of 10 ms).
        stamp = st.one_of(
            st.integers(-50 * MS, 2_500 * MS), st.integers(-5, 250).map(lambda k: k * 10 * MS)
        )
        times = sorted(draw(st.lists(stamp, min_size=1, max_size=60)))
        made.append(
            RequestRecord(
                index,
                "m",
                min(times[0], 0) - MS,
                times[-1],
                token_times_ns=tuple(times),
                output_tokens=draw(st.integers(min_value=1, max_value=200)),
            )
        )
    return made


@given(records(), st.integers(min_value=1, max_value=60))
def test_tokens_and_gaps_land_in_the_intervals_a_per_token_walk_puts_them_in(
    made: list[RequestRecord], max_intervals: int
) -> None:
    end_ns = 2_000 * MS
    timeline = digest_records(made, origin_ns=0, end_ns=end_ns, max_intervals=max_intervals)
    (model,) = timeline.models
    last = timeline.intervals - 1
    expected_tokens = [0.0] * timeline.intervals
    expected_itl: list[list[int]] = [[] for _ in range(timeline.intervals)]

    def slot(t_ns: int) -> int:
        return min(max(t_ns // timeline.interval_ns, 0), last)

    for record in made:
        per_chunk = record.output_token_count / len(record.token_times_ns)
        for t_ns in record.token_times_ns:
            expected_tokens[slot(t_ns)] += per_chunk
        expected_itl[slot(record.end_ns)] += [
            max(math.floor(gap / 1000 + 0.5), 0) for gap in record.itl_ns
        ]
    assert model.output_tokens == pytest.approx(expected_tokens, rel=1e-9, abs=1e-9)
    assert [list(values) for values in model.latency_us["itl"]] == expected_itl
    assert sum(model.output_tokens) == pytest.approx(sum(r.output_token_count for r in made))
