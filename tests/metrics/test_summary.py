"""Folding RequestRecords into GroupMetrics: hand-computed figures, exact merge and JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest

from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupKey, GroupMetrics, summarize

MS = 1_000_000  # ns
USD = Decimal("0.000008")


def record(
    start_ms: int,
    end_ms: int,
    token_ms: tuple[int, ...] = (),
    *,
    output_tokens: int | None = None,
    prompt_tokens: int | None = None,
    error_class: str | None = None,
    cost: Decimal | None = None,
    currency: str | None = "USD",
    connect_ms: int | None = None,
    model: str = "m",
) -> RequestRecord:
    return RequestRecord(
        index=0,
        model=model,
        start_ns=start_ms * MS,
        end_ns=end_ms * MS,
        error_class=error_class,
        token_times_ns=tuple(t * MS for t in token_ms),
        first_content_ns=token_ms[0] * MS if token_ms else None,
        output_tokens=output_tokens,
        prompt_tokens=prompt_tokens,
        cost_amount=cost,
        cost_currency=currency if cost is not None else None,
        connect_ns=connect_ms * MS if connect_ms is not None else None,
    )


# Three successful requests over a 0 → 400 ms window:
#   A: ttft 100, itl 20 30 50, e2e 210, tpot (210-100)/3, 4 tokens / 0.21 s
#   B: ttft 200, itl 10,       e2e 250, tpot (250-200)/1, 2 tokens / 0.25 s
#   C: ttft  30, itl 40,       e2e 300, tpot (300-30)/1,  2 tokens / 0.30 s
THREE = [
    record(0, 210, (100, 120, 150, 200), output_tokens=4, prompt_tokens=10, cost=USD, connect_ms=5),
    record(50, 300, (250, 260), output_tokens=2, prompt_tokens=20, cost=USD),
    record(100, 400, (130, 170), output_tokens=2, prompt_tokens=30, cost=USD),
]


def group_of(records: list[RequestRecord]) -> GroupMetrics:
    group = GroupMetrics()
    for r in records:
        group.add(r)
    return group


# A mixed bag for merge and round-trip tests: errors, two currencies, estimated
# tokens, several tokens per chunk, an unbilled request, a one-token response.
MIXED = [
    *THREE,
    record(120, 130, error_class="http_429", cost=Decimal("0.000001")),
    record(130, 900, (300, 700), output_tokens=2, error_class="truncated"),
    record(140, 500, (200, 240, 280), output_tokens=12, cost=Decimal("0.25"), currency="TRY"),
    record(150, 450, (220, 260, 290, 310, 330)),
    record(160, 260, (200,), output_tokens=1, cost=Decimal("0.0000015"), connect_ms=2),
    record(170, 171, error_class="cancelled"),
]


def test_latency_figures_match_the_hand_computed_values() -> None:
    figures = group_of(THREE).figures()
    assert figures["ttft.count"] == 3
    assert figures["ttft.min_ms"] == pytest.approx(30, rel=1e-3)
    assert figures["ttft.p50_ms"] == pytest.approx(100, rel=1e-3)
    assert figures["ttft.max_ms"] == pytest.approx(200, rel=1e-3)
    assert figures["ttft.mean_ms"] == pytest.approx(110, rel=1e-3)
    assert figures["e2e.mean_ms"] == pytest.approx((210 + 250 + 300) / 3, rel=1e-3)
    assert figures["tpot.count"] == 3
    assert figures["tpot.mean_ms"] == pytest.approx((110 / 3 + 50 + 270) / 3, rel=1e-3)
    assert figures["connect.count"] == 1
    assert figures["connect.max_ms"] == pytest.approx(5, rel=1e-3)


def test_itl_pools_every_gap_of_every_successful_request() -> None:
    figures = group_of(THREE).figures()
    assert figures["itl.count"] == 5  # 20 30 50 | 10 | 40
    assert figures["itl.min_ms"] == pytest.approx(10, rel=1e-3)
    assert figures["itl.p50_ms"] == pytest.approx(30, rel=1e-3)
    assert figures["itl.mean_ms"] == pytest.approx(30, rel=1e-3)
    assert figures["itl.max_ms"] == pytest.approx(50, rel=1e-3)


def test_throughput_is_measured_over_the_first_start_to_last_end_window() -> None:
    figures = group_of(THREE).figures()
    assert figures["duration_s"] == 0.4
    assert figures["request_throughput.per_s"] == pytest.approx(3 / 0.4)
    assert figures["output_throughput.tokens_per_s"] == pytest.approx(8 / 0.4)
    assert figures["total_throughput.tokens_per_s"] == pytest.approx((60 + 8) / 0.4)
    assert (figures["tokens.output"], figures["tokens.prompt"]) == (8, 60)


def test_request_output_rate_is_per_request_tokens_over_e2e_in_tokens_per_s() -> None:
    figures = group_of(THREE).figures()
    assert figures["request_output_tokens_per_s.count"] == 3
    assert figures["request_output_tokens_per_s.min"] == pytest.approx(2 / 0.3, rel=1e-3)
    assert figures["request_output_tokens_per_s.p50"] == pytest.approx(8.0, rel=1e-3)
    assert figures["request_output_tokens_per_s.max"] == pytest.approx(4 / 0.21, rel=1e-3)


def test_cost_is_summed_exactly_in_decimals() -> None:
    group = group_of(THREE)
    assert group.cost == {"USD": Decimal("0.000024")}
    assert group.to_json()["cost"] == {"USD": "0.000024"}
    figures = group.figures()
    assert figures["cost.total_usd"] == 0.000024
    assert figures["cost.per_1m_output_tokens_usd"] == 3.0  # 0.000024 / 8 tokens * 10**6


def test_a_one_token_response_has_no_tpot_but_counts_everywhere_else() -> None:
    figures = group_of([*THREE, record(0, 100, (60,), output_tokens=1)]).figures()
    assert figures["tpot.count"] == 3
    assert figures["ttft.count"] == 4
    assert figures["e2e.count"] == 4
    assert figures["tokens.output"] == 9


def test_an_errored_request_counts_in_errors_and_nowhere_in_latencies_or_tokens() -> None:
    failed = record(10, 900, (300, 700), output_tokens=2, prompt_tokens=5, error_class="truncated")
    group = group_of([*THREE, failed])
    figures = group.figures()
    assert (figures["requests.total"], figures["requests.succeeded"]) == (4, 3)
    assert (figures["requests.failed"], figures["errors.truncated"]) == (1, 1)
    assert figures["error_rate"] == 0.25
    assert figures["ttft.count"] == figures["e2e.count"] == 3
    assert figures["itl.count"] == 5
    assert (figures["tokens.output"], figures["tokens.prompt"]) == (8, 60)
    assert group.histograms == group_of(THREE).histograms


def test_a_failed_request_that_was_billed_counts_in_the_cost() -> None:
    billed = record(10, 20, error_class="http_429", cost=Decimal("0.000001"))
    assert group_of([*THREE, billed]).cost == {"USD": Decimal("0.000025")}


def test_a_failed_request_still_stretches_the_run_window() -> None:
    assert group_of([*THREE, record(10, 600, error_class="cancelled")]).figures()[
        "duration_s"
    ] == pytest.approx(0.6)


def test_itl_per_token_divides_gaps_when_usage_says_4_tokens_per_chunk() -> None:
    figures = group_of([record(0, 200, (100, 140, 180), output_tokens=12)]).figures()
    assert figures["itl.count"] == 2
    assert figures["itl.mean_ms"] == pytest.approx(40, rel=1e-3)
    assert figures["itl_per_token.count"] == 2
    assert figures["itl_per_token.mean_ms"] == pytest.approx(10, rel=1e-3)


def test_itl_per_token_is_empty_when_chunks_carry_one_token_each() -> None:
    figures = group_of(THREE).figures()
    assert figures["itl_per_token.count"] == 0
    assert "itl_per_token.p50_ms" not in figures


def test_tokens_are_estimated_from_chunks_when_usage_is_absent() -> None:
    figures = group_of([*THREE, record(0, 300, (100, 150, 200, 250, 290))]).figures()
    assert figures["tokens.output"] == 8 + 5
    assert figures["tokens.estimated_requests"] == 1


def test_currencies_are_kept_apart_never_added() -> None:
    try_record = record(0, 100, (50,), output_tokens=1, cost=Decimal("0.25"), currency="TRY")
    group = group_of([*THREE, try_record])
    assert group.cost == {"USD": Decimal("0.000024"), "TRY": Decimal("0.25")}
    figures = group.figures()
    assert (figures["cost.total_usd"], figures["cost.total_try"]) == (0.000024, 0.25)
    assert figures["cost.per_1m_output_tokens_try"] == pytest.approx(0.25 / 9 * 1e6)


def test_an_amount_without_a_currency_is_kept_under_unknown() -> None:
    group = group_of([record(0, 100, (50,), cost=Decimal("0.5"), currency=None)])
    assert group.cost == {"UNKNOWN": Decimal("0.5")}


def test_a_latency_beyond_the_histogram_range_shows_as_overflow() -> None:
    two_hours_ms = 2 * 3_600_000
    figures = group_of([*THREE, record(0, two_hours_ms, (100, 200), output_tokens=2)]).figures()
    assert (figures["e2e.count"], figures["e2e.overflow"]) == (3, 1)
    assert "ttft.overflow" not in figures


def test_throughput_is_left_out_when_the_window_is_empty() -> None:
    figures = group_of([record(5, 5)]).figures()
    assert figures["duration_s"] == 0.0
    assert "request_throughput.per_s" not in figures
    assert "output_throughput.tokens_per_s" not in figures


def test_an_empty_group_has_counts_but_no_rates() -> None:
    figures = GroupMetrics().figures()
    assert figures["requests.total"] == 0
    assert "error_rate" not in figures
    assert "duration_s" not in figures
    assert figures["ttft.count"] == 0


@pytest.mark.parametrize("split", range(len(MIXED) + 1))
def test_two_groups_from_a_split_merged_equal_one_group_of_all_records(split: int) -> None:
    merged = group_of(MIXED[:split])
    merged.merge(group_of(MIXED[split:]))
    whole = group_of(MIXED)
    assert merged.figures() == whole.figures()
    assert merged.to_json() == whole.to_json()
    assert merged == whole


def test_merging_leaves_the_other_group_unchanged() -> None:
    other = group_of(MIXED[3:])
    before = other.to_json()
    group_of(MIXED[:3]).merge(other)
    assert other.to_json() == before


def test_to_json_then_from_json_through_json_text_is_exact() -> None:
    whole = group_of(MIXED)
    text = json.dumps(whole.to_json())
    restored = GroupMetrics.from_json(json.loads(text))
    assert restored == whole
    assert restored.figures() == whole.figures()
    assert json.dumps(restored.to_json()) == text


def test_a_restored_group_keeps_merging_exactly() -> None:
    restored = GroupMetrics.from_json(group_of(MIXED[:4]).to_json())
    restored.merge(GroupMetrics.from_json(group_of(MIXED[4:]).to_json()))
    assert restored == group_of(MIXED)


def test_summarize_groups_by_model_in_first_seen_order() -> None:
    records = [
        record(0, 100, (50,), output_tokens=1, model="b"),
        record(0, 100, (50,), output_tokens=1, model="a"),
        record(0, 100, (50,), output_tokens=1, model="b"),
    ]
    groups = summarize(records)
    assert list(groups) == [GroupKey("b"), GroupKey("a")]
    assert (groups[GroupKey("b")].requests, groups[GroupKey("a")].requests) == (2, 1)


def test_summarize_keeps_stages_and_warmup_apart() -> None:
    records = [
        replace(record(0, 100, (50,), output_tokens=1), stage="warmup"),
        replace(record(0, 100, (50,), output_tokens=1), stage="stage 1"),
        replace(record(0, 100, (50,), output_tokens=1), stage="stage 1"),
    ]
    groups = summarize(records)
    assert {key.stage: group.requests for key, group in groups.items()} == {
        "warmup": 1,
        "stage 1": 2,
    }


def test_open_loop_records_measure_schedule_lag_and_latency_from_the_intended_start() -> None:
    late = replace(record(2, 10, (5,), output_tokens=1), intended_start_ns=0)
    group = GroupMetrics()
    group.add(late)
    figures = group.figures()
    assert figures["schedule_lag.p50_ms"] == pytest.approx(2.0, rel=1e-3)
    assert figures["ttft_from_intended.p50_ms"] == pytest.approx(5.0, rel=1e-3)
    assert figures["ttft.p50_ms"] == pytest.approx(3.0, rel=1e-3)
    assert figures["e2e_from_intended.p50_ms"] == pytest.approx(10.0, rel=1e-3)


def test_a_currency_with_odd_characters_still_makes_a_valid_figure_name() -> None:
    group = GroupMetrics()
    group.add(record(0, 100, (50,), output_tokens=1, cost=Decimal("0.5"), currency="US$ (test)"))
    assert group.figures()["cost.total_us_test"] == 0.5
