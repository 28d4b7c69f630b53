"""Every server dialect the mock speaks, measured end to end: exact counts, a TTFT
that a role-only chunk does not stop, and a server profile that matches the dialect."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from onybench.benchmark import RunResult
from onybench.benchmark import run as benchmark_run
from onybench.config import Scenario
from onybench.mock.config import MockConfig
from onybench.pricing import parse_pricing
from onybench.rundir import read_records
from tests.report.schema_check import assert_valid_report

REQUESTS = 12
TOKENS = 10
TTFT_MS = 20.0


def dialect_run(
    tmp_path: Path, dialect: str, *, requests: int = REQUESTS, **changes: Any
) -> tuple[RunResult, list[dict[str, Any]]]:
    log = tmp_path / "sent.jsonl"
    mock_fields: dict[str, Any] = {"ttft_ms": TTFT_MS, "itl_ms": 1.0, "output_tokens": TOKENS}
    mock_fields.update(
        (k, changes.pop(k)) for k in list(changes) if k in MockConfig.__dataclass_fields__
    )
    mock = MockConfig(dialect=dialect, send_log=str(log), **mock_fields)
    scenario = Scenario(
        base_url="mock", mock=mock, prompt="one two three four", max_tokens=None
    ).with_overrides(concurrency=3, requests=requests, **changes)
    result = benchmark_run(scenario, out_dir=tmp_path / "run")
    assert_valid_report(result.report)
    sent = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    return result, sent


# dialect -> (usage reported, cost source, [DONE] sent, server timings, token counts)
EXPECTED = {
    "onysoft": (True, "server", True, False, "usage"),
    "openai": (True, "none", True, False, "usage"),
    "vllm": (True, "none", True, False, "usage"),
    "litellm": (True, "usage_cost", True, False, "usage"),
    "hf-serve": (True, "none", False, False, "usage"),
    "llama-cpp-python": (False, "none", True, False, "estimated_from_chunks"),
}


@pytest.mark.parametrize("dialect", sorted(EXPECTED))
def test_each_dialect_is_measured_exactly_and_profiled(tmp_path: Path, dialect: str) -> None:
    usage, cost_source, done, timings, token_counts = EXPECTED[dialect]
    result, sent = dialect_run(tmp_path, dialect)
    figures = result.report["groups"][0]["figures"]
    assert figures["requests.succeeded"] == figures["requests.total"] == len(sent) == REQUESTS
    assert figures["tokens.output"] == REQUESTS * TOKENS == sum(s["output_tokens"] for s in sent)
    assert figures["tokens.estimated_requests"] == (0 if usage else REQUESTS)
    # The role-only opening chunk (sent on receipt) must not stop the TTFT clock.
    assert figures["ttft.min_ms"] >= TTFT_MS
    records = list(read_records(tmp_path / "run"))
    assert all(r.output_text == "".join(f"tok{k} " for k in range(TOKENS)) for r in records)

    profile = result.report["server_profile"]
    assert profile["streams"] == REQUESTS
    assert profile["usage"]["reported"] == (REQUESTS if usage else 0)
    assert profile["usage"]["token_counts"] == token_counts
    assert profile["cost_source"][cost_source] == REQUESTS
    assert profile["stream_end"] == {
        "done": REQUESTS if done else 0,
        "finish_then_close": 0 if done else REQUESTS,
    }
    assert profile["role_first_chunk"] == REQUESTS
    assert profile["server_timings"] == (REQUESTS if timings else 0)
    estimated_warning = [w for w in profile["warnings"] if "no usage" in w]
    assert bool(estimated_warning) == (not usage)
    if cost_source != "none":
        expected_cost = sum((Decimal(s["cost"]) for s in sent), Decimal(0))
        assert result.groups[next(iter(result.groups))].cost == {"USD": expected_cost}


def test_word_cut_chunks_are_labelled_and_usage_keeps_the_token_count_exact(
    tmp_path: Path,
) -> None:
    result, _ = dialect_run(tmp_path, "hf-serve", output_tokens=64)
    profile = result.report["server_profile"]
    # Every event but the role chunk carries content (usage rides on the finish chunk).
    content_chunks = profile["events"] - REQUESTS
    assert result.report["groups"][0]["figures"]["tokens.output"] == 64 * REQUESTS
    assert 1.0 < profile["tokens_per_chunk"]["mean"] < 2.0
    assert profile["tokens_per_chunk"]["mean"] == pytest.approx(64 * REQUESTS / content_chunks)
    assert any("ESTIMATED" in w and "per-token ITL" in w for w in profile["warnings"])
    assert result.report["groups"][0]["figures"]["itl_per_token.count"] > 0


def test_vllm_continuous_usage_gives_each_chunks_tokens_and_an_exact_per_token_itl(
    tmp_path: Path,
) -> None:
    stream_options = {"include_usage": True, "continuous_usage_stats": True}
    result, _ = dialect_run(
        tmp_path,
        "vllm",
        tokens_per_chunk=3,
        output_tokens=10,
        extra_body=(("stream_options", stream_options),),
    )
    records = list(read_records(tmp_path / "run"))
    assert {r.chunk_tokens for r in records} == {(3, 3, 3, 1)}
    profile = result.report["server_profile"]
    assert profile["usage"]["continuous"] == REQUESTS
    assert any("exact" in w for w in profile["warnings"])
    # Each gap over the later chunk's own tokens: 3 gaps per request.
    assert result.report["groups"][0]["figures"]["itl_per_token.count"] == 3 * REQUESTS


def test_llama_server_closing_every_connection_loses_almost_nothing(tmp_path: Path) -> None:
    requests = 400
    result, sent = dialect_run(tmp_path, "llamacpp", requests=requests, ttft_ms=1.0)
    figures = result.report["groups"][0]["figures"]
    profile = result.report["server_profile"]
    # Lost requests are only those that raced the close before onybench saw it:
    # at most one per concurrent stream, and classified as such, never retried.
    lost = figures.get("errors.connection_closed", 0)
    assert figures["requests.succeeded"] + lost == requests
    assert figures["requests.succeeded"] >= 0.995 * requests
    assert profile["connections"]["closed_by_server"] == lost
    assert profile["connections"]["reused"] <= 3  # the few that raced, then never again
    assert profile["server_timings"] == figures["requests.succeeded"]
    assert profile["retries"]["retries"] == 0
    answered = [s for s in sent if s["status"] == 200 and not s["client_disconnected"]]
    assert len(answered) == figures["requests.succeeded"]


@pytest.mark.parametrize(
    ("dialect", "error_class", "message"),
    [
        ("openai", "http_400", "maximum context length is 8 tokens"),
        ("llamacpp", "http_400", "context size, try increasing it (n_prompt_tokens=4, n_ctx=8)"),
        ("llama-cpp-python", "empty_response", "empty body"),
    ],
)
def test_a_prompt_over_the_context_window_is_refused_the_dialects_way(
    tmp_path: Path, dialect: str, error_class: str, message: str
) -> None:
    result, _ = dialect_run(tmp_path, dialect, requests=3, context_tokens=8)
    records = list(read_records(tmp_path / "run"))
    assert {r.error_class for r in records} == {error_class}
    assert all(message in (r.error_message or "") for r in records)
    assert result.report["groups"][0]["figures"][f"errors.{error_class}"] == 3


def test_a_strict_server_refuses_fields_outside_openais_schema(tmp_path: Path) -> None:
    dialect_run(tmp_path, "openai", requests=2, ignore_eos=True)
    records = list(read_records(tmp_path / "run"))
    assert {r.error_class for r in records} == {"http_400"}
    assert all("ignore_eos" in (r.error_message or "") for r in records)


def test_prompt_cache_hits_are_reported_with_a_warning(tmp_path: Path) -> None:
    result, _ = dialect_run(tmp_path, "onysoft", prompt_cache=True)
    cache = result.report["server_profile"]["prompt_cache"]
    # One prompt for every request: all but the first concurrent ones hit the cache.
    assert cache["reported"] == REQUESTS
    assert 0 < cache["hit_requests"] < REQUESTS
    assert cache["hit_share"] == pytest.approx(cache["hit_requests"] / REQUESTS)
    assert any("prompt cache" in w for w in result.report["server_profile"]["warnings"])


def test_sse_comment_pings_change_nothing(tmp_path: Path) -> None:
    result, _ = dialect_run(tmp_path, "onysoft", ping_every=2)
    figures = result.report["groups"][0]["figures"]
    assert figures["tokens.output"] == REQUESTS * TOKENS
    assert figures["itl.count"] == REQUESTS * (TOKENS - 1)


def test_a_server_without_cost_gets_the_price_tables_estimate_labelled(tmp_path: Path) -> None:
    pricing = parse_pricing(
        {"openai/gpt-4o-mini": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}}
    )
    result, sent = dialect_run(tmp_path, "openai", pricing=pricing)
    records = list(read_records(tmp_path / "run"))
    assert {r.cost_source for r in records} == {"pricing"}
    expected = sum(
        (s["prompt_tokens"] * Decimal("0.15") + s["output_tokens"] * Decimal("0.60")) / 1_000_000
        for s in sent
    )
    assert result.groups[next(iter(result.groups))].cost == {"USD": expected}
    profile = result.report["server_profile"]
    assert profile["cost_source"]["pricing"] == REQUESTS
    assert any("ESTIMATED from the scenario's price table" in w for w in profile["warnings"])
