"""Capacity analysis by hand: per-request SLOs, goodput, attainment, sustain, capacity,
knee, and the cost projected on each path (API cost, price table, price per hour,
two currencies kept apart)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from onybench.capacity import (
    LevelResult,
    LevelTally,
    RequestSlos,
    analyze,
    judge_level,
    project_costs,
)
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupMetrics
from onybench.pricing import Pricing, parse_pricing, with_estimated_cost
from onybench.sweep_plan import SweepMode
from onybench.thresholds import parse_threshold

MS = 1_000_000
S = 1_000 * MS


def record(
    start_ms: float,
    ttft_ms: float,
    gaps_ms: Sequence[float] = (10, 10, 10),
    *,
    model: str = "m",
    error: str | None = None,
    cost: str | None = None,
    currency: str = "USD",
    prompt_tokens: int = 10,
) -> RequestRecord:
    start = round(start_ms * MS)
    times = [start + round(ttft_ms * MS)]
    for gap in gaps_ms:
        times.append(times[-1] + round(gap * MS))
    return RequestRecord(
        index=0,
        model=model,
        start_ns=start,
        end_ns=times[-1] + MS,
        error_class=error,
        status=200,
        token_times_ns=tuple(times),
        first_content_ns=times[0],
        output_tokens=len(times),
        prompt_tokens=prompt_tokens,
        cost_amount=None if cost is None else Decimal(cost),
        cost_currency=None if cost is None else currency,
    )


def slos(*texts: str) -> RequestSlos:
    return RequestSlos([parse_threshold(text) for text in texts])


def level(
    value: float,
    records: Sequence[RequestRecord],
    *,
    mode: SweepMode = "concurrency",
    slo_texts: Sequence[str] = ("ttft.p95 < 100ms",),
    hold_s: float = 1.0,
    dropped: int = 0,
    target: float = 0.9,
    pricing: Pricing | None = None,
) -> LevelResult:
    """A judged level; `pricing` prices the records that carry no cost, as a run does."""
    tally = LevelTally(slos(*slo_texts), 0, round(hold_s * S))
    groups: dict[str, GroupMetrics] = {}
    for r in (with_estimated_cost(r, pricing) for r in records):
        tally.add(r, measured=True)
        groups.setdefault(r.model, GroupMetrics()).add(r)
    next(iter(groups.values())).dropped = dropped
    return judge_level(
        mode=mode,
        level=value,
        stage=f"c={value:g}",
        hold_s=hold_s,
        tally=tally,
        groups=groups,
        target=target,
    )


# --- per-request SLOs ------------------------------------------------------------------


def test_a_latency_slo_bounds_each_requests_own_value() -> None:
    ttft = slos("ttft.p95 < 100ms")
    assert ttft.met(record(0, 99))
    assert not ttft.met(record(0, 100))
    assert not ttft.met(record(0, 10, error="http_500"))  # a failure meets no SLO


def test_an_itl_slo_reads_the_stat_of_the_requests_own_gaps() -> None:
    gaps = [10] * 19 + [80]  # p95 of 20 gaps by nearest rank is the 19th: 10 ms; max 80
    assert slos("itl.p95 < 20ms").met(record(0, 10, gaps))
    assert not slos("itl.max < 20ms").met(record(0, 10, gaps))
    assert not slos("itl.mean < 13ms").met(record(0, 10, gaps))  # mean 13.5


def test_a_model_selector_and_a_run_wide_figure_do_not_bound_other_requests() -> None:
    selected = slos("ttft.p95{model=big} < 50ms", "error_rate < 1%")
    assert selected.met(record(0, 90, model="small"))
    assert not selected.met(record(0, 90, model="big"))


# --- one level ---------------------------------------------------------------------------


def test_a_concurrency_level_takes_its_throughput_from_littles_law() -> None:
    # 4 in flight, every request 200 ms end to end (ttft 169 + 3 gaps of 10 + 1):
    # 4 / 0.2 s = 20 requests/s, 4 tokens each; 3 of 4 meet the TTFT bound of 100 ms.
    records = [
        record(i * 50, 169 if i % 4 == 0 else 69, (10, 10, 10 + (100 if i % 4 else 0)))
        for i in range(8)
    ]
    result = level(4, records, slo_texts=("ttft.p95 < 100ms",))
    assert result.achieved_per_s == pytest.approx(20.0)
    assert result.output_tokens_per_s == pytest.approx(80.0)
    assert result.attainment == pytest.approx(0.75)
    assert result.goodput_per_s == pytest.approx(15.0)
    assert result.offered_per_s is None
    assert result.sustained
    assert not result.within_slo
    assert result.slo_failures[0] == "attainment 75.0% < 90%"


def test_a_level_can_reach_the_attainment_target_and_still_fail_a_percentile_slo() -> None:
    # 92 % of requests under 100 ms: attainment passes at 90 %, the p95 does not.
    records = [record(i, 50) for i in range(92)] + [record(i, 500) for i in range(8)]
    result = level(8, records)
    assert result.attainment == pytest.approx(0.92)
    assert not result.within_slo
    (failure,) = result.slo_failures
    assert failure.startswith("ttft.p95 < 100ms (m: 50")  # HDR's p95: ~500 ms


def test_a_rate_level_is_sustained_only_when_it_keeps_up_and_drops_nothing() -> None:
    # 10 arrivals in a 1 s hold, all completed inside it: 10/s achieved of 10/s offered.
    kept_up = [record(i * 100, 20) for i in range(10)]
    assert level(10, kept_up, mode="rate").sustained
    assert level(10, kept_up, mode="rate").within_slo
    # Two of the ten end after the hold: 8/s achieved < 95 % of 10/s.
    late = [*kept_up[:8], record(950, 20, (500,)), record(990, 20, (500,))]
    behind = level(10, late, mode="rate")
    assert behind.achieved_per_s == pytest.approx(8.0)
    assert not behind.sustained
    assert not behind.within_slo
    # One arrival dropped: offered 11/s, 10 achieved, and dropped is never sustained.
    dropped = level(10, kept_up, mode="rate", dropped=1)
    assert dropped.offered_per_s == pytest.approx(11.0)
    assert not dropped.sustained
    assert dropped.attainment == pytest.approx(10 / 11)


# --- capacity and knee ---------------------------------------------------------------------


def steady(value: float, ttft_ms: float, e2e_ms: float) -> LevelResult:
    """A concurrency level whose requests all have this TTFT and end-to-end time."""
    gaps = (e2e_ms - ttft_ms - 1,)
    return level(value, [record(i, ttft_ms, gaps) for i in range(20)])


def test_capacity_is_the_highest_level_within_slos_and_the_knee_is_where_gain_stalls() -> None:
    # Throughput = c / e2e: 10, 20, 40, then 16 / 0.42 s = 38: a loss for +100 % load.
    results = [
        steady(8, 40, 200),
        steady(2, 30, 200),
        steady(4, 35, 200),
        steady(16, 150, 420),
    ]
    analysis = analyze(results)
    assert [r.level for r in analysis.levels] == [2, 4, 8, 16]
    assert analysis.capacity is not None
    assert analysis.capacity.level == 8
    assert analysis.knee is not None
    assert analysis.knee.level == 16
    assert analysis.knee_reason == "throughput -4.8% for +100% load (under 10% of it)"


def test_the_knee_is_also_where_ttft_p95_passes_twice_the_lowest_levels() -> None:
    results = [steady(2, 20, 200), steady(4, 30, 100), steady(8, 45, 50)]
    analysis = analyze(results, knee_ttft_factor=2.0)
    assert analysis.knee is not None
    assert analysis.knee.level == 8
    assert "TTFT p95 45 ms > 2 x the lowest level's 20 ms" in analysis.knee_reason
    assert analyze(results, knee_ttft_factor=3.0).knee is None


def test_no_level_within_slos_means_no_capacity() -> None:
    assert analyze([steady(2, 500, 600)]).capacity is None


# --- cost at capacity --------------------------------------------------------------------


def test_the_apis_own_cost_projects_to_per_hour_and_per_month() -> None:
    # 10 requests in a 2 s hold, 0.001 USD each: 0.01 per 2 s = 18 USD an hour.
    result = level(10, [record(i, 20, cost="0.001") for i in range(10)], hold_s=2.0)
    (cost,) = project_costs(result, pricing=None)
    assert (cost.source, cost.currency) == ("api", "USD")
    assert cost.per_request == Decimal("0.001")
    assert cost.per_hour == Decimal("18")
    assert cost.per_month == Decimal("13140")  # 730 hours
    assert cost.per_1m_output_tokens == Decimal("250")  # 4 tokens a request


def test_a_price_table_prices_a_run_whose_stream_carried_no_cost() -> None:
    pricing = parse_pricing({"m": {"input_per_mtok": "1", "output_per_mtok": "2"}})
    # 10 requests, each 10 prompt + 4 output tokens: (100 * 1 + 40 * 2) / 1M per 1 s hold.
    result = level(10, [record(i, 20) for i in range(10)], pricing=pricing)
    (cost,) = project_costs(result, pricing)
    assert (cost.source, cost.currency) == ("pricing", "USD")
    assert cost.per_request == Decimal("0.000018")
    assert cost.per_hour == Decimal("0.648")
    assert project_costs(level(10, [record(i, 20) for i in range(10)]), None) == []


def test_reported_and_table_costs_are_projected_as_separate_sources() -> None:
    pricing = parse_pricing({"local": {"input_per_mtok": "0", "output_per_mtok": "250"}})
    records = [record(i, 20, model="api", cost="0.001") for i in range(4)] + [
        record(i, 20, model="local") for i in range(4)
    ]
    costs = {c.source: c for c in project_costs(level(8, records, pricing=pricing), pricing)}
    assert set(costs) == {"api", "pricing"}
    assert costs["api"].per_request == Decimal("0.001")  # the server's figure, not the table's
    assert costs["pricing"].per_request == Decimal("0.001")  # 4 tokens x 250 / 1M
    assert costs["pricing"].per_hour == costs["api"].per_hour == Decimal("14.4")


def test_a_price_per_hour_becomes_cost_per_request_and_per_million_tokens() -> None:
    pricing = parse_pricing({"price_per_hour": "3.60", "currency": "EUR"})
    # Concurrency 10, 51 ms a request: 196.08 requests/s, 4 tokens each.
    result = level(10, [record(i, 20) for i in range(10)])
    (cost,) = project_costs(result, pricing)
    assert (cost.source, cost.currency, cost.per_hour) == ("price_per_hour", "EUR", Decimal("3.60"))
    assert cost.per_month == Decimal("2628.00")
    assert cost.per_request == pytest.approx(Decimal("0.0000051"), rel=Decimal("1e-9"))
    tokens_per_hour = Decimal(repr(result.output_tokens_per_s)) * 3600
    assert cost.per_1m_output_tokens == pytest.approx(
        Decimal("3.60") * 1_000_000 / tokens_per_hour, rel=Decimal("1e-10")
    )


def test_models_billed_in_two_currencies_are_projected_apart_never_added() -> None:
    records = [record(i, 20, model="us", cost="0.002") for i in range(5)] + [
        record(i, 20, model="eu", cost="0.003", currency="EUR") for i in range(5)
    ]
    costs = {c.currency: c for c in project_costs(level(10, records), pricing=None)}
    assert set(costs) == {"USD", "EUR"}
    assert costs["USD"].per_hour == Decimal("36")  # 5 x 0.002 per 1 s hold
    assert costs["EUR"].per_hour == Decimal("54")
    assert costs["USD"].per_request == Decimal("0.002")
    assert costs["EUR"].per_1m_output_tokens == Decimal("750")
