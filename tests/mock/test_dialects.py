"""The mock's dialects, byte for byte where it matters: each is what the real server sends."""

from __future__ import annotations

from typing import Any

import orjson

from onybench.mock.dialects import DIALECTS

from .test_app import client_of, fast, stream_events


async def parsed(dialect: str, **extra: Any) -> list[Any]:
    """The parsed data of each event of one stream (the [DONE] sentinel kept as bytes)."""
    config = fast(dialect=dialect, **extra.pop("config", {}))
    response, events = await stream_events(config, **extra)
    assert response.status_code == 200
    return [e if e == b"[DONE]" else orjson.loads(e) for e in events]


async def test_litellm_sends_usage_in_an_empty_delta_chunk_with_its_own_usd_cost() -> None:
    events = await parsed("litellm", stream_options={"include_usage": True})
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == [{"index": 0, "delta": {}}]
    assert "cost" not in usage_chunk  # the upstream's cost object is dropped
    assert isinstance(usage_chunk["usage"]["cost"], float)
    assert events[-1] == b"[DONE]"


async def test_openai_sends_usage_only_when_asked_and_no_cost() -> None:
    unasked = await parsed("openai")
    assert all("usage" not in e for e in unasked if e != b"[DONE]")
    asked = await parsed("openai", stream_options={"include_usage": True})
    assert asked[-2]["choices"] == []
    assert "cost" not in asked[-2]
    assert asked[-2]["usage"]["completion_tokens"] == 5


async def test_hf_serve_puts_usage_in_the_finish_chunk_and_sends_no_done() -> None:
    events = await parsed("hf-serve", config={"output_tokens": 20})
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    last = events[-1]
    assert last != b"[DONE]"
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"]["completion_tokens"] == 20
    # Word cuts: 1 or 2 tokens per chunk, 20 in all.
    sizes = [len(e["choices"][0]["delta"]["content"].split()) for e in events[1:]]
    assert set(sizes) == {1, 2}
    assert sum(sizes) == 20


async def test_llama_server_sends_timings_in_its_last_chunk_and_usage_when_asked() -> None:
    asked = await parsed("llamacpp", stream_options={"include_usage": True})
    assert asked[0]["choices"][0]["delta"]["content"] is None
    assert asked[-3]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert "timings" not in asked[-3]
    assert asked[-2]["timings"]["predicted_n"] == 5
    assert asked[-2]["usage"]["completion_tokens"] == 5
    unasked = await parsed("llamacpp")
    assert unasked[-2]["choices"][0]["finish_reason"] == "stop"
    assert unasked[-2]["timings"]["predicted_n"] == 5
    assert all("usage" not in e for e in unasked if e != b"[DONE]")


async def test_vllm_sends_a_running_usage_when_asked() -> None:
    options = {"include_usage": True, "continuous_usage_stats": True}
    events = await parsed("vllm", stream_options=options, config={"tokens_per_chunk": 2})
    running = [e["usage"]["completion_tokens"] for e in events[1:-2]]
    assert running == [2, 4, 5]


async def test_llama_cpp_python_never_sends_usage() -> None:
    events = await parsed("llama-cpp-python", stream_options={"include_usage": True})
    assert all("usage" not in e for e in events if e != b"[DONE]")


async def test_the_strict_dialect_refuses_unknown_fields_and_others_accept_them() -> None:
    for dialect in DIALECTS:
        async with client_of(fast(dialect=dialect)) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_k": 5}
            response = await client.post("/chat/completions", json=body)
        strict = DIALECTS[dialect].strict_fields
        assert response.status_code == (400 if strict else 200), dialect
        if strict:
            assert "top_k" in response.json()["error"]["message"]


async def test_litellm_sends_the_finish_reason_in_a_chunk_of_its_own() -> None:
    events = await parsed("litellm", stream_options={"include_usage": True})
    closing = events[-3]
    assert closing["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-3])
