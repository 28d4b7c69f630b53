import heapq
import itertools
import math
import statistics
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onybench.errors import ScenarioError
from onybench.load.arrivals import (
    Stage,
    arrivals,
    concurrency_at,
    constant,
    gamma,
    label,
    poisson,
    shard,
    staged_arrivals,
    stages_duration_s,
)

SAMPLE = 20_000


def take(offsets: Iterator[float], count: int) -> list[float]:
    return list(itertools.islice(offsets, count))


def gaps(offsets: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(offsets)]


def within(measured: float, expected: float, relative: float) -> bool:
    return abs(measured - expected) <= relative * expected


# --- endless schedules ---------------------------------------------------------


def test_constant_10_per_s_sends_request_k_at_exactly_k_tenths() -> None:
    offsets = take(constant(10.0), 1000)
    assert offsets == [k / 10 for k in range(1000)]
    assert offsets[0] == 0.0
    assert offsets[999] == 99.9


def test_constant_offsets_do_not_drift_over_a_long_run() -> None:
    # Summing 1/3 a million times would drift; k / r stays the nearest float.
    offset = next(itertools.islice(constant(3.0), 300_000, None))
    assert offset == 100_000.0


def test_poisson_gaps_have_mean_one_over_rate_and_variance_one_over_rate_squared() -> None:
    rate = 5.0
    sample = gaps(take(poisson(rate, seed=1), SAMPLE + 1))
    assert len(sample) == SAMPLE
    assert within(statistics.fmean(sample), 1 / rate, 0.05)
    assert within(statistics.pvariance(sample), 1 / rate**2, 0.05)


@pytest.mark.parametrize(
    ("burstiness", "variance_tolerance"), [(0.25, 0.10), (1.0, 0.05), (4.0, 0.05)]
)
def test_gamma_gaps_have_mean_one_over_rate_and_variance_one_over_rate_squared_times_b(
    burstiness: float, variance_tolerance: float
) -> None:
    rate = 5.0
    sample = gaps(take(gamma(rate, burstiness, seed=1), SAMPLE + 1))
    assert within(statistics.fmean(sample), 1 / rate, 0.05)
    assert within(statistics.pvariance(sample), 1 / (rate**2 * burstiness), variance_tolerance)


def test_every_schedule_starts_at_zero_and_never_goes_back() -> None:
    for offsets in (
        constant(2.0),
        poisson(2.0, seed=3),
        gamma(2.0, 0.5, seed=3),
        arrivals("gamma", 2.0, burstiness=4.0, seed=9),
    ):
        head = take(offsets, 500)
        assert head[0] == 0.0
        assert head == sorted(head)


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    for kind in ("poisson", "gamma"):
        first = take(arrivals(kind, 3.0, burstiness=0.5, seed=42), 200)
        again = take(arrivals(kind, 3.0, burstiness=0.5, seed=42), 200)
        other = take(arrivals(kind, 3.0, burstiness=0.5, seed=43), 200)
        assert first == again
        assert first != other


def test_arrivals_dispatches_by_kind() -> None:
    assert take(arrivals("constant", 4.0), 5) == take(constant(4.0), 5)
    assert take(arrivals("poisson", 4.0, seed=7), 50) == take(poisson(4.0, 7), 50)
    assert take(arrivals("gamma", 4.0, burstiness=2.0, seed=7), 50) == take(gamma(4.0, 2.0, 7), 50)


# --- stages ----------------------------------------------------------------------------


def test_ramp_to_10_per_s_over_10_s_then_10_per_s_for_5_s_sends_exactly_100_at_expected_times() -> (
    None
):
    offsets = list(staged_arrivals([Stage(10, 10), Stage(5, 10)], "constant"))
    # ∫ r = 10·10/2 + 10·5 = 100 requests; the ramp's rate is r(t) = t, so
    # request k (k < 50) is due when t²/2 = k, and the hold sends every 0.1 s.
    assert len(offsets) == 100
    for k in range(50):
        assert math.isclose(offsets[k], math.sqrt(2 * k), rel_tol=1e-12, abs_tol=1e-12)
    assert offsets[50:] == [10 + (k - 50) / 10 for k in range(50, 100)]


def test_a_constant_rate_stage_is_exactly_the_constant_schedule() -> None:
    offsets = list(staged_arrivals([Stage(60, 10)], "constant", start_rate_per_s=10))
    assert offsets == take(constant(10.0), 600)


def test_a_ramp_down_to_zero_sends_its_integral_and_ends_before_the_stage_does() -> None:
    offsets = list(staged_arrivals([Stage(10, 0)], "constant", start_rate_per_s=10))
    assert len(offsets) == 50  # 10 · 10 / 2
    assert offsets[-1] < 10
    # r(t) = 10 − t, so ∫₀ᵗ r = 10t − t²/2 = k at each offset.
    for k, t in enumerate(offsets):
        assert math.isclose(10 * t - t * t / 2, k, abs_tol=1e-9)


def test_a_stretch_at_rate_zero_sends_nothing_and_a_zero_duration_stage_jumps() -> None:
    stages = [Stage(5, 0), Stage(0, 10), Stage(1, 10)]
    offsets = list(staged_arrivals(stages, "constant"))
    assert offsets == [5 + k / 10 for k in range(10)]


def test_poisson_stages_send_the_integral_of_the_rate_on_average() -> None:
    stages = [Stage(10, 10), Stage(5, 10)]
    counts = []
    for seed in range(200):
        offsets = list(staged_arrivals(stages, "poisson", seed=seed))
        assert offsets == sorted(offsets)
        assert all(0 <= t < 15 for t in offsets)
        counts.append(len(offsets))
    # Poisson count with mean 100: the mean of 200 runs has a stdev of 0.7.
    assert within(statistics.fmean(counts), 100, 0.03)
    assert within(statistics.pvariance(counts), 100, 0.25)


def test_gamma_stages_are_seeded_like_the_rest() -> None:
    stages = [Stage(5, 20)]
    first = list(staged_arrivals(stages, "gamma", burstiness=0.5, seed=1))
    assert first == list(staged_arrivals(stages, "gamma", burstiness=0.5, seed=1))
    assert first != list(staged_arrivals(stages, "gamma", burstiness=0.5, seed=2))


stage_lists = st.lists(
    st.builds(Stage, st.integers(0, 10).map(float), st.integers(0, 12).map(float)),
    min_size=1,
    max_size=5,
).filter(lambda stages: any(s.duration_s > 0 for s in stages))


@settings(max_examples=60)
@given(stages=stage_lists, start=st.integers(0, 12))
def test_constant_stages_send_the_ceiling_of_the_integral_each_where_it_is_due(
    stages: list[Stage], start: int
) -> None:
    rates = [float(start), *(s.target for s in stages)]
    pieces = zip(itertools.pairwise(rates), stages, strict=True)
    area = sum((a + b) / 2 * s.duration_s for (a, b), s in pieces)
    if area == 0:
        with pytest.raises(ScenarioError):
            staged_arrivals(stages, "constant", start_rate_per_s=start)
        return
    offsets = list(staged_arrivals(stages, "constant", start_rate_per_s=start))
    assert len(offsets) == math.ceil(area)
    assert offsets == sorted(offsets)
    assert all(0 <= t <= stages_duration_s(stages) for t in offsets)
    for k, t in enumerate(offsets):
        assert math.isclose(_integral(stages, start, t), k, rel_tol=1e-9, abs_tol=1e-9)


float_stage_lists = st.lists(
    st.builds(
        Stage,
        st.floats(0.01, 10, allow_nan=False),
        st.floats(0, 40, allow_nan=False),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60)
@given(stages=float_stage_lists, start=st.floats(0, 40, allow_nan=False))
def test_any_ramp_puts_arrival_k_where_the_integral_of_the_rate_reaches_k(
    stages: list[Stage], start: float
) -> None:
    area = _integral(stages, start, stages_duration_s(stages))
    if area <= 0:
        return
    offsets = list(staged_arrivals(stages, "constant", start_rate_per_s=start))
    assert abs(len(offsets) - area) < 1 + 1e-6
    assert offsets == sorted(offsets)
    for k, t in enumerate(offsets):
        assert math.isclose(_integral(stages, start, t), k, rel_tol=1e-7, abs_tol=1e-7)


def _integral(stages: list[Stage], start: float, t: float) -> float:
    """∫₀ᵗ r, r piecewise linear through the stages (the test's own reading)."""
    total, begin, rate = 0.0, 0.0, start
    for stage in stages:
        end = begin + stage.duration_s
        if t <= begin:
            break
        if stage.duration_s == 0:
            rate = stage.target
            continue
        upto = min(t, end)
        rate_at = rate + (stage.target - rate) * (upto - begin) / stage.duration_s
        total += (rate + rate_at) / 2 * (upto - begin)
        begin, rate = end, stage.target
    return total


# --- concurrency ramps ----------------------------------------------------------


def test_concurrency_at_follows_a_ramp_up_hold_and_down_rounding_down() -> None:
    stages = [Stage(10, 10), Stage(5, 10), Stage(5, 0)]
    expected = {
        -1.0: 0,
        0.0: 0,
        0.99: 0,
        1.0: 1,
        5.5: 5,
        9.99: 9,
        10.0: 10,
        12.5: 10,
        15.0: 10,
        17.5: 5,
        19.99: 0,
        20.0: 0,
        100.0: 0,
    }
    assert {t: concurrency_at(stages, t) for t in expected} == expected


def test_concurrency_at_starts_from_start_and_holds_the_last_target_after_the_end() -> None:
    stages = [Stage(4, 8)]
    assert concurrency_at(stages, 0.0, start=4) == 4
    assert concurrency_at(stages, 2.0, start=4) == 6
    assert concurrency_at(stages, 60.0, start=4) == 8


def test_concurrency_at_does_not_lose_a_worker_to_float_rounding() -> None:
    # 1/3 of the way to 3 is 0.9999999999999999 in floats.
    assert concurrency_at([Stage(3, 3)], 1.0) == 1
    assert concurrency_at([Stage(0.3, 3)], 0.1) == 1


def test_a_zero_duration_concurrency_stage_jumps_at_its_start() -> None:
    stages = [Stage(0, 5), Stage(10, 5)]
    assert concurrency_at(stages, 0.0) == 5
    assert concurrency_at(stages, 3.0) == 5


def test_stages_duration_is_the_sum_of_the_stages() -> None:
    assert stages_duration_s([Stage(10, 1), Stage(0, 5), Stage(2.5, 0)]) == 12.5


# --- shards ------------------------------------------------------------------------------


@given(count=st.integers(1, 8), length=st.integers(0, 200), seed=st.integers(0, 5))
def test_shards_partition_the_schedule_exactly(count: int, length: int, seed: int) -> None:
    schedule = take(poisson(3.0, seed), length)
    shards = [list(shard(iter(schedule), index, count)) for index in range(count)]
    assert sum(len(s) for s in shards) == length
    assert list(heapq.merge(*shards)) == schedule
    for index, part in enumerate(shards):
        assert part == schedule[index::count]


def test_a_shard_of_an_endless_schedule_is_endless_and_lazy() -> None:
    assert take(shard(constant(10.0), 1, 3), 4) == [0.1, 0.4, 0.7, 1.0]


@pytest.mark.parametrize(("index", "count"), [(0, 0), (3, 3), (-1, 2)])
def test_an_impossible_shard_is_a_value_error(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        shard(constant(1.0), index, count)


# --- labels -------------------------------------------------------------------------------


def test_labels_name_the_process_and_its_rate_in_guidellm_style() -> None:
    assert label("poisson", 5) == "poisson@5.00"
    assert label("constant", 2) == "constant@2.00"
    assert label("gamma", 5, 0.5) == "gamma(B=0.5)@5.00"
    assert label("gamma", 12.345, 4) == "gamma(B=4)@12.35"


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
def test_a_rate_that_is_not_positive_and_finite_is_rejected_at_load_rate(rate: float) -> None:
    for make in (
        lambda: constant(rate),
        lambda: poisson(rate, 0),
        lambda: gamma(rate, 1.0, 0),
        lambda: arrivals("poisson", rate),
    ):
        with pytest.raises(ScenarioError, match="positive number of requests/s") as error:
            make()  # raised by the call, before any offset is drawn
        assert error.value.key_path == "load.rate"


@pytest.mark.parametrize("burstiness", [0.0, -0.5, math.nan])
def test_burstiness_that_is_not_positive_is_rejected_at_load_burstiness(burstiness: float) -> None:
    with pytest.raises(ScenarioError, match="must be a positive number") as error:
        arrivals("gamma", 1.0, burstiness=burstiness)
    assert error.value.key_path == "load.burstiness"
    with pytest.raises(ScenarioError) as error:
        staged_arrivals([Stage(1, 1)], "gamma", burstiness=burstiness)
    assert error.value.key_path == "load.burstiness"


def test_burstiness_is_ignored_by_processes_that_have_none() -> None:
    assert take(arrivals("poisson", 1.0, burstiness=0.0), 3)


def test_an_unknown_arrival_process_is_rejected_at_load_arrival() -> None:
    with pytest.raises(ScenarioError, match="'uniform' is not an arrival process") as error:
        arrivals("uniform", 1.0)  # type: ignore[arg-type]
    assert error.value.key_path == "load.arrival"


@pytest.mark.parametrize(
    ("stages", "key_path", "message"),
    [
        ([], "load.stages", "give at least one stage"),
        ([Stage(1, 1), Stage(1, 2), Stage(-1, 3)], "load.stages[2].duration", "at least 0 s"),
        ([Stage(1, 1), Stage(math.inf, 2)], "load.stages[1].duration", "at least 0 s"),
        ([Stage(1, 1), Stage(1, -2)], "load.stages[1].target", "at least 0"),
        ([Stage(0, 1), Stage(0, 2)], "load.stages", "every stage lasts 0 s"),
    ],
)
def test_bad_stages_are_rejected_with_the_key_path_of_the_stage(
    stages: list[Stage], key_path: str, message: str
) -> None:
    for make in (
        lambda: staged_arrivals(stages, "constant"),
        lambda: concurrency_at(stages, 1.0),
    ):
        with pytest.raises(ScenarioError, match=message) as error:
            make()
        assert error.value.key_path == key_path


def test_rate_stages_that_are_all_zero_are_rejected_as_sending_nothing() -> None:
    with pytest.raises(ScenarioError, match="nothing would be sent") as error:
        staged_arrivals([Stage(10, 0), Stage(5, 0)], "poisson")
    assert error.value.key_path == "load.stages"


def test_a_negative_start_rate_is_rejected() -> None:
    with pytest.raises(ScenarioError) as error:
        staged_arrivals([Stage(10, 5)], "constant", start_rate_per_s=-1)
    assert error.value.key_path == "load.start_rate"
