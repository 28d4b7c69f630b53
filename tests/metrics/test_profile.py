"""The server profile: counted per request, merged exactly, described with warnings."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from onybench.metrics.profile import ServerProfile
from onybench.metrics.record import RequestRecord

BASE = RequestRecord(
    index=0,
    model="m",
    start_ns=0,
    end_ns=100,
    status=200,
    token_times_ns=(10, 20, 30, 40),
    output_tokens=8,
    prompt_tokens=10,
    events=6,
    done=True,
    role_first=True,
    finish_reason="stop",
    cost_amount=Decimal("0.1"),
    cost_currency="USD",
    cost_source="server",
)


def profile_of(*records: RequestRecord) -> ServerProfile:
    profile = ServerProfile()
    for record in records:
        profile.add(record)
    return profile


def test_counts_follow_what_each_stream_showed() -> None:
    no_usage = replace(
        BASE, output_tokens=None, done=False, cost_amount=None, cost_source=None, connect_ns=5
    )
    cached = replace(BASE, cached_tokens=10)
    refused = replace(BASE, status=429, retry_after_s=1.0, events=0)
    lost = replace(BASE, status=None, error_class="connection_closed")
    # A stream cut short has no usage because it ended early, not because the server
    # sends none: it counts as a stream, not in the usage, cost or end figures.
    cut = replace(BASE, output_tokens=None, done=False, error_class="truncated", cost_amount=None)
    described = profile_of(BASE, no_usage, cached, refused, lost, cut).describe()
    assert (described["streams"], described["complete_streams"]) == (4, 3)
    assert described["usage"] == {
        "reported": 2,
        "continuous": 0,
        "missing": 1,
        "token_counts": "mixed",
    }
    assert described["tokens_per_chunk"] == {"mean": 2.0, "requests_by_mean": {"2.0": 2}}
    assert described["cost_source"] == {"server": 2, "usage_cost": 0, "pricing": 0, "none": 1}
    assert described["stream_end"] == {"done": 2, "finish_then_close": 1}
    assert described["connections"] == {"opened": 1, "reused": 4, "closed_by_server": 1}
    assert described["prompt_cache"] == {
        "reported": 1,
        "hit_requests": 1,
        "cached_tokens": 10,
        "hit_share": 1.0,
    }
    assert described["retries"] == {"retries": 0, "retry_after_requests": 1}
    warnings = " ".join(described["warnings"])
    assert "1 of 3 complete streams reported no usage" in warnings
    assert "chunks carried 2.00 tokens on average" in warnings
    assert "ESTIMATED by spreading" in warnings
    assert "prompt cache served 100%" in warnings
    assert "closed 1 connections" in warnings


def test_records_from_before_the_profile_existed_tell_nothing_of_the_server() -> None:
    old = replace(BASE, events=0, done=False, role_first=False, cost_source=None)
    assert profile_of(old).describe()["streams"] == 0


def test_a_well_behaved_server_gets_no_warning() -> None:
    one_per_chunk = replace(BASE, output_tokens=4)
    assert profile_of(one_per_chunk, one_per_chunk).warnings() == []


def test_merge_of_parts_equals_one_fold_and_json_round_trips() -> None:
    records = [
        BASE,
        replace(BASE, chunk_tokens=(2, 2, 2, 2), cost_source="usage_cost"),
        replace(BASE, output_tokens=None, cached_tokens=3, retries=2),
    ]
    whole = profile_of(*records)
    merged = profile_of(records[0])
    merged.merge(ServerProfile.from_json(profile_of(*records[1:]).to_json()))
    assert merged == whole
    assert ServerProfile.from_json({}) == ServerProfile()  # older reports have none
