"""RequestRecord's derived figures, on records whose timestamps are known exactly."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from onybench.metrics.record import RequestRecord

MS = 1_000_000  # ns


def record(**overrides: object) -> RequestRecord:
    fields: dict[str, object] = {"index": 0, "model": "m", "start_ns": 0, "end_ns": 210 * MS}
    fields.update(overrides)
    return RequestRecord(**fields)  # type: ignore[arg-type]


def test_ttft_is_first_token_arrival_minus_start() -> None:
    assert record(start_ns=5 * MS, token_times_ns=(105 * MS, 120 * MS)).ttft_ns == 100 * MS


def test_ttft_is_none_without_any_token() -> None:
    assert record().ttft_ns is None


def test_ttft_content_counts_from_start_to_the_first_content_token() -> None:
    assert record(token_times_ns=(50 * MS, 90 * MS), first_content_ns=90 * MS).ttft_content_ns == (
        90 * MS
    )


def test_e2e_is_end_minus_start() -> None:
    assert record(start_ns=10 * MS, end_ns=260 * MS).e2e_ns == 250 * MS


def test_itl_is_every_gap_between_consecutive_token_chunks() -> None:
    times = (100 * MS, 120 * MS, 150 * MS, 200 * MS)
    assert record(token_times_ns=times).itl_ns == [20 * MS, 30 * MS, 50 * MS]


def test_output_token_count_comes_from_usage_when_the_server_sent_it() -> None:
    r = record(token_times_ns=(1, 2, 3), output_tokens=7)
    assert (r.output_token_count, r.token_count_source) == (7, "usage")


def test_output_token_count_is_estimated_from_chunks_without_usage() -> None:
    r = record(token_times_ns=(1, 2, 3))
    assert (r.output_token_count, r.token_count_source) == (3, "estimated_from_chunks")


def test_itl_per_token_divides_each_gap_by_the_mean_tokens_per_chunk() -> None:
    r = record(token_times_ns=(100 * MS, 140 * MS, 180 * MS), output_tokens=12)
    assert r.tokens_per_chunk == 4
    assert r.itl_per_token_ns == [10 * MS, 10 * MS]


def test_itl_per_token_is_empty_when_each_chunk_carries_one_token() -> None:
    r = record(token_times_ns=(100 * MS, 140 * MS, 180 * MS), output_tokens=3)
    assert (r.tokens_per_chunk, r.itl_per_token_ns) == (None, [])


def test_tpot_is_time_after_the_first_token_over_the_remaining_tokens() -> None:
    r = record(token_times_ns=(100 * MS, 120 * MS, 150 * MS, 200 * MS), output_tokens=4)
    assert r.tpot_ns == pytest.approx((210 - 100) * MS / 3)


def test_tpot_is_undefined_for_a_one_token_response() -> None:
    assert record(token_times_ns=(100 * MS,), output_tokens=1).tpot_ns is None


def test_output_tokens_per_s_is_output_tokens_over_e2e() -> None:
    r = record(end_ns=250 * MS, token_times_ns=(100 * MS, 200 * MS), output_tokens=2)
    assert r.output_tokens_per_s == pytest.approx(8.0)


def test_output_tokens_per_s_is_undefined_without_tokens() -> None:
    assert record().output_tokens_per_s is None


def test_json_round_trip_keeps_cost_as_an_exact_decimal() -> None:
    r = record(
        token_times_ns=(100 * MS, 200 * MS),
        output_tokens=2,
        cost_amount=Decimal("0.000008"),
        cost_currency="USD",
    )
    data = r.to_json_dict()
    assert data["cost_amount"] == "0.000008"
    assert RequestRecord.from_json_dict(data) == r


def test_a_retried_request_has_no_schedule_lag_the_server_caused_its_late_start() -> None:
    late = RequestRecord(index=0, model="m", start_ns=5_000, end_ns=9_000, intended_start_ns=1_000)
    assert late.schedule_lag_ns == 4_000
    assert replace(late, retries=1).schedule_lag_ns is None
