from __future__ import annotations

import itertools
import statistics
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson
import pytest

from onybench.errors import ScenarioError
from onybench.mock import MockConfig
from onybench.mock.plan import (
    BadRequest,
    CompletionRequest,
    parse_request,
    plan_response,
)

from .conftest import chat_body


def request(**changes: Any) -> CompletionRequest:
    fields: dict[str, Any] = {
        "kind": "chat",
        "model": "m",
        "stream": True,
        "max_tokens": None,
        "include_usage": False,
        "prompt_tokens": 3,
        **changes,
    }
    return CompletionRequest(**fields)


def test_prompt_tokens_are_the_words_of_every_message_including_text_parts() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be  brief\n"},
            {"role": "user", "content": [{"type": "text", "text": "one two"}, {"type": "image"}]},
            {"role": "assistant", "content": None},
        ],
    }
    assert parse_request("chat", orjson.dumps(body)).prompt_tokens == 4


def test_a_prompt_without_words_still_counts_one_token() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "   "}]}
    assert parse_request("chat", orjson.dumps(body)).prompt_tokens == 1


def test_a_text_completion_counts_the_words_of_its_prompt_strings() -> None:
    parsed = parse_request("text", orjson.dumps({"model": "m", "prompt": ["a b", "c"]}))
    assert (parsed.kind, parsed.prompt_tokens, parsed.stream) == ("text", 3, False)


def test_parse_reads_stream_limits_and_include_usage() -> None:
    body = chat_body(max_completion_tokens=7, stream_options={"include_usage": True})
    assert parse_request("chat", orjson.dumps(body)) == CompletionRequest(
        kind="chat",
        model="openai/gpt-4o-mini",
        stream=True,
        max_tokens=7,
        include_usage=True,
        prompt_tokens=3,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (orjson.dumps({"messages": [{"content": "x"}]}), "'model'"),
        (orjson.dumps({"model": "m"}), "'messages'"),
        (orjson.dumps({"model": "m", "messages": []}), "'messages'"),
        (orjson.dumps({"model": "m", "messages": ["x"]}), "message must be an object"),
        (orjson.dumps({"model": "m", "messages": [{"content": 5}]}), "'content'"),
        (orjson.dumps(chat_body(stream="yes")), "'stream'"),
        (orjson.dumps(chat_body(max_tokens=0)), "'max_tokens'"),
        (orjson.dumps(chat_body(max_completion_tokens=1.5)), "'max_completion_tokens'"),
        (orjson.dumps(chat_body(stream_options=[])), "'stream_options'"),
    ],
)
def test_an_unusable_chat_body_is_a_bad_request_saying_why(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_request("chat", body)


def test_a_text_completion_needs_a_prompt() -> None:
    with pytest.raises(BadRequest, match="'prompt'"):
        parse_request("text", orjson.dumps({"model": "m", "prompt": 5}))


def test_tokens_are_numbered_words_grouped_by_tokens_per_chunk_the_last_chunk_shorter() -> None:
    plan = plan_response(MockConfig(output_tokens=7, tokens_per_chunk=3), request(), 0)
    assert plan.chunk_texts == ("tok0 tok1 tok2 ", "tok3 tok4 tok5 ", "tok6 ")
    assert (plan.output_tokens, plan.finish_reason) == (7, "stop")


@pytest.mark.parametrize(
    ("limit", "tokens", "finish_reason"),
    [(4, 4, "length"), (10, 10, "stop"), (25, 10, "stop"), (None, 10, "stop")],
)
def test_the_request_limit_caps_the_output_and_makes_finish_reason_length(
    limit: int | None, tokens: int, finish_reason: str
) -> None:
    plan = plan_response(MockConfig(output_tokens=10), request(max_tokens=limit), 0)
    assert (plan.output_tokens, len(plan.chunk_texts), plan.finish_reason) == (
        tokens,
        tokens,
        finish_reason,
    )


def test_fixed_timing_puts_chunk_k_at_ttft_plus_k_itl_exactly() -> None:
    config = MockConfig(ttft_ms=100.0, itl_ms=10.5, output_tokens=4)
    plan = plan_response(config, request(), 0)
    assert plan.chunk_offsets_ns == (100_000_000, 110_500_000, 121_000_000, 131_500_000)


def test_uniform_timing_keeps_every_gap_within_the_jitter_and_is_seeded() -> None:
    config = MockConfig(ttft_ms=50.0, itl_ms=10.0, timing="uniform", jitter_ms=2.0)
    plan = plan_response(config, request(), 3)
    offsets = (0, *plan.chunk_offsets_ns)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert 48_000_000 <= gaps[0] <= 52_000_000
    assert all(8_000_000 <= gap <= 12_000_000 for gap in gaps[1:])
    assert len(set(gaps[1:])) > 100  # really drawn, not fixed
    assert plan_response(config, request(), 3) == plan
    assert plan_response(config, request(), 4).chunk_offsets_ns != plan.chunk_offsets_ns
    assert plan_response(replace(config, seed=1), request(), 3) != plan


@pytest.mark.parametrize("timing", ["normal", "exponential"])
def test_random_timings_have_the_configured_mean_and_never_a_negative_gap(timing: Any) -> None:
    config = MockConfig(itl_ms=10.0, timing=timing, jitter_ms=3.0, output_tokens=4000)
    offsets = plan_response(config, request(), 0).chunk_offsets_ns
    gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(offsets)]
    assert min(gaps_ms) >= 0
    assert statistics.fmean(gaps_ms) == pytest.approx(10.0, rel=0.05)


def test_a_rate_of_one_gives_every_request_that_fault() -> None:
    config = MockConfig(cut_rate=1.0)
    assert {plan_response(config, request(), n).fault for n in range(50)} == {"cut"}


def test_fault_shares_follow_the_rates_over_many_requests() -> None:
    config = MockConfig(output_tokens=1, http_429_rate=0.1, stream_error_rate=0.2, no_done_rate=0.3)
    counts = Counter(plan_response(config, request(), n).fault for n in range(5000))
    assert counts["http_429"] / 5000 == pytest.approx(0.1, abs=0.02)
    assert counts["stream_error"] / 5000 == pytest.approx(0.2, abs=0.02)
    assert counts["no_done"] / 5000 == pytest.approx(0.3, abs=0.02)
    assert counts[None] / 5000 == pytest.approx(0.4, abs=0.02)


def test_stream_faults_spare_non_streaming_requests_but_http_faults_do_not() -> None:
    whole = request(stream=False)
    assert plan_response(MockConfig(malformed_chunk_rate=1.0), whole, 0).fault is None
    assert plan_response(MockConfig(http_500_rate=1.0), whole, 0).fault == "http_500"


def test_cost_is_exact_decimal_arithmetic() -> None:
    config = MockConfig(
        output_tokens=7,
        cost_per_prompt_token=Decimal("0.0000001"),
        cost_per_output_token=Decimal("0.000003"),
    )
    plan = plan_response(config, request(prompt_tokens=3), 0)
    assert plan.usage
    assert plan.cost == Decimal("0.0000213")


@pytest.mark.parametrize(
    ("config", "req", "usage", "cost"),
    [
        (MockConfig(always_usage=False), request(), False, None),
        (MockConfig(always_usage=False), request(include_usage=True), True, Decimal("0.0001283")),
        (MockConfig(always_usage=False), request(stream=False), True, Decimal("0.0001283")),
        (MockConfig(emit_cost=False), request(), True, None),
        (MockConfig(no_finish_rate=1.0), request(), False, None),
        (MockConfig(no_done_rate=1.0), request(), True, Decimal("0.0001283")),
    ],
)
def test_usage_and_cost_are_reported_when_the_config_and_request_say_so(
    config: MockConfig, req: CompletionRequest, usage: bool, cost: Decimal | None
) -> None:
    plan = plan_response(config, req, 0)
    assert (plan.usage, plan.cost) == (usage, cost)


def test_a_latency_factor_slows_only_its_model() -> None:
    config = MockConfig(ttft_ms=100, itl_ms=10, output_tokens=3, latency_factors={"slow": 2.0})
    fast = plan_response(config, request(model="fast"), arrival=0)
    slow = plan_response(config, request(model="slow"), arrival=0)
    assert fast.chunk_offsets_ns == (100_000_000, 110_000_000, 120_000_000)
    assert slow.chunk_offsets_ns == (200_000_000, 220_000_000, 240_000_000)


def test_latency_factors_must_be_positive() -> None:
    with pytest.raises(ScenarioError, match=r"mock\.latency_factors"):
        MockConfig(latency_factors={"m": 0})
