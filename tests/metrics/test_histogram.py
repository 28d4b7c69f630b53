"""The HDR histogram wrapper: exact percentiles, no lost values, exact merge and encoding."""

from __future__ import annotations

import math
import random

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from onybench.metrics.histogram import Histogram, percentile_steps, values_at_percentiles

MS_NS = 1_000_000
HOUR_US = 3_600_000_000


def known_data_set() -> Histogram:
    """HdrHistogram's own test data: 10,000 responses of 1 ms and one 100 s stall."""
    histogram = Histogram()
    for _ in range(10_000):
        histogram.record_ns(1 * MS_NS)
    histogram.record_ns(100_000 * MS_NS)
    return histogram


def histogram_of(values_us: list[int]) -> Histogram:
    histogram = Histogram()
    for value in values_us:
        histogram.record(value)
    return histogram


def test_known_data_set_percentiles_are_1_ms_up_to_p99_99_and_100_s_beyond() -> None:
    histogram = known_data_set()
    stats = histogram.stats()
    assert histogram.count == 10_001
    # 1 ms = 1000 µs is below 2048 stored units, where every value has its own bucket.
    assert stats["min"] == stats["p50"] == stats["p90"] == stats["p99"] == stats["p99_9"] == 1.0
    # 99.99 % of 10,001 is 10,000 values: still the last 1 ms one.
    assert histogram.value_at_percentile(99.99) == 1.0
    # 99.999 % is the 10,001st value: the stall, within 3 significant digits.
    assert histogram.value_at_percentile(99.999) == pytest.approx(100_000, rel=1e-3)
    assert stats["max"] == pytest.approx(100_000, rel=1e-3)


def test_known_data_set_mean_and_stdev_match_the_hand_computed_values() -> None:
    stats = known_data_set().stats()
    mean_ms = (10_000 * 1 + 100_000) / 10_001  # 10.9989 ms
    stdev_ms = math.sqrt((10_000 * (1 - mean_ms) ** 2 + (100_000 - mean_ms) ** 2) / 10_001)
    assert stats["mean"] == pytest.approx(mean_ms, rel=1e-3)
    assert stats["stdev"] == pytest.approx(stdev_ms, rel=1e-3)  # 999.89 ms


def test_percentiles_report_the_highest_value_of_the_bucket() -> None:
    # 100 s = 100,000,000 µs falls in a bucket 65,536 µs wide starting at 99,942,400 µs.
    assert known_data_set().stats()["max"] == 100_007.935


def test_stats_keys_are_in_reading_order() -> None:
    assert list(known_data_set().stats()) == [
        "min", "mean", "stdev", "p50", "p90", "p95", "p99", "p99_9", "max",
    ]  # fmt: skip


def test_an_empty_histogram_has_no_stats_rather_than_zeros() -> None:
    assert Histogram().stats() == {}


def test_record_ns_rounds_half_up_to_the_nearest_microsecond() -> None:
    for value_ns, expected_ms in [(1_499, 0.001), (1_500, 0.002), (2_500.0, 0.003), (999.4, 0.001)]:
        histogram = Histogram()
        histogram.record_ns(value_ns)
        assert histogram.stats()["max"] == expected_ms


def test_zero_below_the_lowest_trackable_value_is_recorded_exactly() -> None:
    histogram = Histogram()
    histogram.record_ns(400)  # rounds to 0 µs
    histogram.record(5)
    assert (histogram.count, histogram.overflow_count) == (2, 0)
    assert histogram.stats()["min"] == 0.0


def test_a_value_above_the_range_is_counted_as_overflow_not_lost() -> None:
    histogram = Histogram()
    histogram.record(1000)
    histogram.record(2 * HOUR_US)
    assert (histogram.count, histogram.overflow_count) == (1, 1)
    assert histogram.stats()["max"] == 1.0


def test_hdrh_keeps_values_up_to_2_to_the_32_minus_1_because_it_rounds_the_range_up() -> None:
    histogram = Histogram()
    histogram.record(HOUR_US + 1)
    histogram.record(2**32 - 1)
    histogram.record(2**32)
    assert (histogram.count, histogram.overflow_count) == (2, 1)


def test_a_negative_value_is_refused_loudly() -> None:
    with pytest.raises(ValueError, match="negative"):
        Histogram().record_ns(-1_000)


def test_two_merged_histograms_equal_one_histogram_of_all_values() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(10, 2)) for _ in range(5_000)] + [3 * HOUR_US]
    first, second = histogram_of(values[:1_234]), histogram_of(values[1_234:])
    first.merge(second)
    whole = histogram_of(values)
    assert first == whole
    assert first.encode() == whole.encode()
    assert (first.count, first.overflow_count) == (whole.count, whole.overflow_count) == (5_000, 1)
    assert first.stats() == whole.stats()


@settings(deadline=None)  # each example allocates ~24k-counter histograms; timing is not the point
@given(st.lists(st.integers(0, 2**33), max_size=50), st.integers(0, 50))
def test_any_split_merged_back_equals_the_whole(values: list[int], split: int) -> None:
    merged = histogram_of(values[:split])
    merged.merge(histogram_of(values[split:]))
    assert merged == histogram_of(values)
    assert merged.stats() == histogram_of(values).stats()


@settings(deadline=None)
@given(
    st.lists(st.integers(0, 2**33), max_size=10),
    st.lists(
        st.one_of(st.integers(0, 2**33 * 1000), st.floats(0, 2**33 * 1000, allow_nan=False)),
        max_size=60,
    ),
)
def test_recording_all_at_once_equals_recording_one_by_one(
    before_us: list[int], values_ns: list[float]
) -> None:
    one_by_one, at_once = histogram_of(before_us), histogram_of(before_us)
    for value_ns in values_ns:
        one_by_one.record_ns(value_ns)
    at_once.record_all_ns(values_ns)
    assert at_once == one_by_one
    # What hdrh tracks beside the counts (record_all_ns sets it by hand).
    assert (at_once._hdr.total_count, at_once._hdr.min_value, at_once._hdr.max_value) == (
        one_by_one._hdr.total_count,
        one_by_one._hdr.min_value,
        one_by_one._hdr.max_value,
    )


def test_recording_all_at_once_refuses_a_negative_value_and_records_nothing() -> None:
    histogram = Histogram()
    with pytest.raises(ValueError, match="negative"):
        histogram.record_all_ns([5_000, -1_000])
    assert histogram.count == 0


def test_merging_an_empty_histogram_keeps_the_minimum() -> None:
    # hdrh's own add() resets its tracked minimum to 0 here; stats() must not show it.
    histogram = histogram_of([5_000, 7_000])
    histogram.merge(Histogram())
    assert histogram.stats()["min"] == 5.0


def test_merging_histograms_of_different_units_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        Histogram("ms", 1000.0).merge(Histogram("tokens_per_s", 1000.0))


def test_encode_then_decode_gives_an_equal_histogram() -> None:
    original = known_data_set()
    original.record(2 * HOUR_US)
    decoded = Histogram.decode(original.encode(), overflow_count=original.overflow_count)
    assert decoded == original
    assert decoded.encode() == original.encode()
    assert decoded.stats() == original.stats()
    assert decoded.count == 10_001


def test_an_empty_histogram_survives_the_round_trip() -> None:
    assert Histogram.decode(Histogram().encode()) == Histogram()


def test_a_decoded_histogram_keeps_recording_and_merging() -> None:
    decoded = Histogram.decode(histogram_of([1_000, 2_000]).encode())
    decoded.record(3_000)
    decoded.merge(histogram_of([4_000]))
    assert decoded == histogram_of([1_000, 2_000, 3_000, 4_000])


def test_the_encoding_is_hdrhistogram_standard_compressed_base64() -> None:
    encoded = known_data_set().encode()
    assert encoded.startswith("HISTF")  # the V2 compressed cookie, as in HdrHistogram logs
    assert HdrHistogram.decode(encoded).get_total_count() == 10_001


def test_decoding_a_histogram_of_another_shape_is_refused() -> None:
    foreign = HdrHistogram(1, 60_000_000, 2)
    foreign.record_value(1_000)
    with pytest.raises(ValueError, match="another shape"):
        Histogram.decode(foreign.encode().decode("ascii"))


def test_mean_and_stdev_equal_hdrh_own_get_mean_value_and_get_stddev() -> None:
    rng = random.Random(11)
    values = [int(rng.lognormvariate(12, 2)) for _ in range(2_000)]
    reference = HdrHistogram(1, HOUR_US, 3)
    for value in values:
        reference.record_value(value)
    stats = histogram_of(values).stats()
    assert stats["mean"] == reference.get_mean_value() / 1000
    assert stats["stdev"] == reference.get_stddev() / 1000


# Values as latencies spread them: mostly small, some huge, zeros and repeats.
_LATENCIES_US = st.lists(
    st.one_of(
        st.integers(min_value=0, max_value=5_000),
        st.integers(min_value=0, max_value=HOUR_US),
        st.sampled_from([0, 1, 2047, 2048, 2049, 1_000_000]),
    ),
    min_size=1,
    max_size=300,
)


def _hdrh_of(values_us: list[int]) -> HdrHistogram:
    reference = HdrHistogram(1, HOUR_US, 3)
    for value in values_us:
        reference.record_value(value)
    return reference


@settings(max_examples=60, deadline=None)
@given(_LATENCIES_US, st.lists(st.floats(min_value=0, max_value=100), max_size=8))
def test_values_at_percentiles_equal_hdrh_own_walk(
    values_us: list[int], extra_percentiles: list[float]
) -> None:
    reference = _hdrh_of(values_us)
    percentiles = [0.0, 50.0, 90.0, 99.9, 100.0, *extra_percentiles]
    assert values_at_percentiles(reference, percentiles) == (
        reference.get_percentile_to_value_dict(percentiles)
    )
    histogram = histogram_of(values_us)
    for percentile in (0.0, 37.5, 100.0):
        expected = reference.get_value_at_percentile(percentile) / 1000
        assert histogram.value_at_percentile(percentile) == expected


@settings(max_examples=60, deadline=None)
@given(_LATENCIES_US, st.integers(min_value=1, max_value=10))
def test_percentile_steps_equal_hdrh_own_percentile_iterator(
    values_us: list[int], ticks: int
) -> None:
    reference = _hdrh_of(values_us)
    expected = [
        (step.percentile_level_iterated_to, step.value_iterated_to)
        for step in reference.get_percentile_iterator(ticks)
    ]
    assert percentile_steps(reference, ticks) == expected
    assert expected[-1][0] == 100.0  # the walk reached its last step


def test_an_empty_histogram_has_no_percentile_and_no_step() -> None:
    empty = HdrHistogram(1, HOUR_US, 3)
    assert values_at_percentiles(empty, [50.0]) == {}
    assert percentile_steps(empty, 5) == []
    assert Histogram().value_at_percentile(50.0) == 0.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=HOUR_US * 2), max_size=200))
def test_record_all_equals_recording_one_by_one(values_us: list[int]) -> None:
    at_once = Histogram()
    at_once.record_all(values_us)
    one_by_one = Histogram()
    for value in values_us:
        one_by_one.record(value)
    assert at_once == one_by_one
    assert at_once.overflow_count == sum(1 for value in values_us if value > 2**32 - 1)
