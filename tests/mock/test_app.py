"""The mock over real HTTP on loopback: an in-process server, httpx as the client."""

from __future__ import annotations

import re
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from onybench.mock import MockConfig, running_mock

from .conftest import (
    MESSAGES,
    MODEL,
    chat_body,
    content_text,
    exact_json,
    expected_text,
    read_send_log,
    sse_data,
)

MS = 1_000_000  # nanoseconds


def fast(**changes: Any) -> MockConfig:
    """A config whose responses take milliseconds; 5 tokens, 3 prompt words in the bodies used."""
    return MockConfig(**{"ttft_ms": 1.0, "itl_ms": 0.5, "output_tokens": 5, **changes})


@asynccontextmanager
async def client_of(config: MockConfig) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_mock(config) as endpoint,
        # Plain HTTP on loopback: verify=False skips loading the CA bundle (~60 ms a client).
        httpx.AsyncClient(base_url=endpoint.base_url, verify=False) as client,
    ):
        yield client


async def stream_events(config: MockConfig, **extra: Any) -> tuple[httpx.Response, list[bytes]]:
    """One streamed chat request's response and the data of its events."""
    async with client_of(config) as client:
        response = await client.post("/chat/completions", json=chat_body(**extra))
    return response, sse_data(response.content)


async def read_until_cut(client: httpx.AsyncClient) -> bytes:
    """The body of a streamed chat response whose connection closes mid-body."""
    received = bytearray()

    async def read(response: httpx.Response) -> None:
        async for piece in response.aiter_raw():
            received.extend(piece)

    async with client.stream("POST", "/chat/completions", json=chat_body()) as response:
        # The chunked body never ends: the connection closes first.
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            await read(response)
    return bytes(received)


# --- the normal stream ---------------------------------------------------------------


async def test_a_stream_is_role_chunk_then_one_chunk_per_token_then_usage_then_done() -> None:
    response, events = await stream_events(fast())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert events[-1] == b"[DONE]"
    chunks = [exact_json(e) for e in events[:-1]]
    assert len(chunks) == 1 + 5 + 1
    role, *content, usage = chunks
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"] for c in content] == [
        {"content": f"tok{k} "} for k in range(5)
    ]
    assert [c["choices"][0]["finish_reason"] for c in content] == [None] * 4 + ["stop"]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    # 3 x 0.0000001 + 5 x 0.000001, exactly.
    assert usage["cost"] == {"amount": Decimal("0.0000053"), "currency": "USD"}
    assert b'"cost":{"amount":0.0000053,"currency":"USD"}' in events[-2]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1
    (response_id,) = ids
    assert re.fullmatch(r"req_[0-9a-f]{24}", response_id)
    assert response.headers["x-request-id"] == response_id
    assert {(c["object"], c["model"]) for c in chunks} == {("chat.completion.chunk", MODEL)}
    assert all(isinstance(c["created"], int) for c in chunks)


async def test_each_chunk_carries_tokens_per_chunk_tokens_and_the_last_the_rest() -> None:
    _, events = await stream_events(fast(tokens_per_chunk=2))
    content = [orjson.loads(e) for e in events[1:-2]]
    assert [c["choices"][0]["delta"]["content"] for c in content] == [
        "tok0 tok1 ",
        "tok2 tok3 ",
        "tok4 ",
    ]


@pytest.mark.parametrize("limit_key", ["max_tokens", "max_completion_tokens"])
async def test_a_smaller_request_limit_cuts_the_output_with_finish_reason_length(
    limit_key: str,
) -> None:
    _, events = await stream_events(fast(), **{limit_key: 3})
    chunks = [orjson.loads(e) for e in events[1:-1]]
    assert content_text(chunks) == expected_text(3)
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_a_limit_above_the_output_leaves_finish_reason_stop() -> None:
    _, events = await stream_events(fast(), max_tokens=50)
    chunks = [orjson.loads(e) for e in events[1:-1]]
    assert content_text(chunks) == expected_text(5)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_without_role_chunk_the_first_event_is_the_first_token() -> None:
    _, events = await stream_events(fast(role_chunk=False))
    assert orjson.loads(events[0])["choices"][0]["delta"] == {"content": "tok0 "}
    assert len(events) == 5 + 2


async def test_like_openai_usage_comes_only_when_the_request_asks_for_it() -> None:
    _, events = await stream_events(fast(always_usage=False))
    assert all(orjson.loads(e)["choices"] for e in events[:-1])
    _, events = await stream_events(
        fast(always_usage=False), stream_options={"include_usage": True}
    )
    assert orjson.loads(events[-2])["usage"]["total_tokens"] == 8


async def test_without_emit_cost_the_usage_chunk_has_no_cost() -> None:
    _, events = await stream_events(fast(emit_cost=False))
    usage = orjson.loads(events[-2])
    assert usage["usage"]["completion_tokens"] == 5
    assert "cost" not in usage


async def test_a_text_completion_streams_text_chunks() -> None:
    async with client_of(fast()) as client:
        response = await client.post(
            "/completions", json={"model": "any-model", "prompt": "a b", "stream": True}
        )
    events = sse_data(response.content)
    chunks = [exact_json(e) for e in events[:-1]]
    assert events[-1] == b"[DONE]"
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == expected_text(5)
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert chunks[-1]["cost"]["amount"] == Decimal("0.0000052")


# --- non-streaming, models, errors ---------------------------------------------------


@pytest.mark.parametrize("stream", [False, None])
async def test_a_non_streaming_request_gets_one_json_completion_after_the_full_latency(
    stream: bool | None, send_log: Path
) -> None:
    config = fast(ttft_ms=20.0, itl_ms=5.0, send_log=str(send_log))
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 4}
    if stream is not None:
        body["stream"] = stream
    async with client_of(config) as client:
        response = await client.post("/chat/completions", json=body)
        (line,) = await read_send_log(send_log)
    assert response.headers["content-type"] == "application/json"
    completion = exact_json(response.content)
    assert completion["object"] == "chat.completion"
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": expected_text(4)},
            "finish_reason": "length",
        }
    ]
    assert completion["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert completion["cost"] == {"amount": Decimal("0.0000043"), "currency": "USD"}
    assert line["end_ns"] - line["received_ns"] >= (20 + 3 * 5) * MS
    assert (line["stream"], line["token_sent_ns"], line["output_tokens"], line["cost"]) == (
        False,
        [],
        4,
        "0.0000043",
    )


async def test_a_non_streaming_text_completion_has_text_and_usage() -> None:
    async with client_of(fast()) as client:
        response = await client.post("/completions", json={"model": "x", "prompt": "one"})
    completion = response.json()
    assert completion["object"] == "text_completion"
    assert completion["choices"][0]["text"] == expected_text(5)
    assert completion["usage"]["total_tokens"] == 6


async def test_models_lists_gpt_4o_mini() -> None:
    async with client_of(fast()) as client:
        response = await client.get("/models")
    listing = response.json()
    assert response.status_code == 200
    assert listing["object"] == "list"
    assert MODEL in [model["id"] for model in listing["data"]]


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "message"),
    [
        ("GET", "/v1/nowhere", None, 404, "No route /v1/nowhere."),
        ("GET", "/v1/chat/completions", None, 405, "/v1/chat/completions accepts POST only."),
        ("POST", "/v1/chat/completions", b"{not json", 400, "the body is not valid JSON"),
        ("POST", "/v1/chat/completions", b'{"messages": []}', 400, "'model' is required"),
        ("POST", "/v1/chat/completions", b'{"model": "m"}', 400, "'messages' is required"),
        ("POST", "/v1/completions", b'{"model": "m"}', 400, "'prompt' is required"),
    ],
)
async def test_bad_requests_get_an_openai_style_json_error(
    method: str, path: str, content: bytes | None, status: int, message: str
) -> None:
    async with client_of(fast()) as client:
        response = await client.request(method, path.removeprefix("/v1"), content=content)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"].startswith(message)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("authorization", [None, "Bearer sk-wrong", "sk-ony-test"])
async def test_with_require_api_key_a_request_without_that_bearer_token_gets_401(
    authorization: str | None,
) -> None:
    headers = {"authorization": authorization} if authorization else {}
    async with client_of(fast(require_api_key="sk-ony-test")) as client:
        for path in ("/chat/completions", "/completions"):
            response = await client.post(path, json=chat_body(), headers=headers)
            assert response.status_code == 401
            assert response.json() == {
                "error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
        assert (await client.get("/models", headers=headers)).status_code == 401


async def test_with_require_api_key_the_right_bearer_token_is_served() -> None:
    headers = {"authorization": "Bearer sk-ony-test"}
    async with client_of(fast(require_api_key="sk-ony-test")) as client:
        response = await client.post("/chat/completions", json=chat_body(), headers=headers)
    assert response.status_code == 200
    assert sse_data(response.content)[-1] == b"[DONE]"


# --- faults -----------------------------------------------------------------------


async def test_http_429_fault_answers_at_once_with_retry_after(send_log: Path) -> None:
    async with client_of(fast(http_429_rate=1.0, send_log=str(send_log))) as client:
        response = await client.post("/chat/completions", json=chat_body())
        (line,) = await read_send_log(send_log)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "error": {
            "message": "Rate limit reached (mock fault).",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
        }
    }
    assert (line["status"], line["fault"], line["token_sent_ns"], line["cost"]) == (
        429,
        "http_429",
        [],
        None,
    )


async def test_http_500_fault_answers_with_a_server_error_even_without_streaming() -> None:
    async with client_of(fast(http_500_rate=1.0)) as client:
        response = await client.post("/chat/completions", json=chat_body(stream=False))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


async def test_malformed_chunk_fault_inserts_one_invalid_json_event_halfway() -> None:
    _, events = await stream_events(fast(malformed_chunk_rate=1.0))
    assert events[-1] == b"[DONE]"
    invalid = []
    for index, event in enumerate(events[:-1]):
        try:
            orjson.loads(event)
        except orjson.JSONDecodeError:
            invalid.append(index)
    # role, tok0, tok1, then the malformed event (before token 5 // 2 = 2)
    assert invalid == [3]
    chunks = [orjson.loads(e) for i, e in enumerate(events[:-1]) if i != 3]
    assert content_text(chunks) == expected_text(5)
    assert chunks[-1]["usage"]["completion_tokens"] == 5


async def test_stream_error_fault_sends_an_error_event_then_ends_cleanly_without_done(
    send_log: Path,
) -> None:
    config = fast(stream_error_rate=1.0, send_log=str(send_log))
    async with client_of(config) as client:
        response = await client.post("/chat/completions", json=chat_body())
        (line,) = await read_send_log(send_log)
    events = sse_data(response.content)  # the body ended cleanly: httpx read it whole
    assert [orjson.loads(e)["choices"][0]["delta"] for e in events[1:-1]] == [
        {"content": "tok0 "},
        {"content": "tok1 "},
    ]
    assert orjson.loads(events[-1]) == {
        "error": {
            "message": "The mock server failed mid-stream.",
            "type": "server_error",
            "code": 500,
        }
    }
    assert (line["fault"], len(line["token_sent_ns"]), line["output_tokens"], line["cost"]) == (
        "stream_error",
        2,
        2,
        None,
    )


async def test_cut_fault_closes_the_connection_mid_body_after_n_content_chunks(
    send_log: Path,
) -> None:
    config = fast(cut_rate=1.0, cut_after_chunks=3, send_log=str(send_log))
    async with client_of(config) as client:
        received = await read_until_cut(client)
        (line,) = await read_send_log(send_log)
    chunks = [orjson.loads(e) for e in sse_data(received)]
    assert len(chunks) == 1 + 3
    assert content_text(chunks) == expected_text(3)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert (line["fault"], len(line["token_sent_ns"]), line["output_tokens"]) == ("cut", 3, 3)


async def test_cut_after_more_chunks_than_the_output_cuts_after_the_last_one() -> None:
    async with client_of(fast(cut_rate=1.0, cut_after_chunks=99)) as client:
        received = await read_until_cut(client)
    chunks = [orjson.loads(e) for e in sse_data(received)]
    assert content_text(chunks) == expected_text(5)
    assert all(c["choices"] and c["choices"][0]["finish_reason"] is None for c in chunks)


async def test_no_done_fault_sends_finish_and_usage_then_ends_without_done() -> None:
    _, events = await stream_events(fast(no_done_rate=1.0))
    chunks = [orjson.loads(e) for e in events]
    assert content_text(chunks) == expected_text(5)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 5


async def test_no_finish_fault_sends_the_content_then_ends_with_no_finish_usage_or_done() -> None:
    _, events = await stream_events(fast(no_finish_rate=1.0))
    chunks = [orjson.loads(e) for e in events]
    assert len(chunks) == 1 + 5
    assert content_text(chunks) == expected_text(5)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


async def test_a_stream_fault_leaves_a_non_streaming_request_whole(send_log: Path) -> None:
    async with client_of(fast(cut_rate=1.0, send_log=str(send_log))) as client:
        response = await client.post("/chat/completions", json=chat_body(stream=False))
        (line,) = await read_send_log(send_log)
    assert response.json()["choices"][0]["message"]["content"] == expected_text(5)
    assert line["fault"] is None


# --- the send log and the clock -------------------------------------------------------


async def test_the_send_log_has_one_line_per_request_with_what_was_sent(send_log: Path) -> None:
    config = fast(tokens_per_chunk=2, send_log=str(send_log))
    async with client_of(config) as client:
        streamed = await client.post("/chat/completions", json=chat_body())
        await client.get("/nowhere")
        await client.post("/chat/completions", json=chat_body(max_tokens=1))
        lines = await read_send_log(send_log)
    assert [(line["path"], line["status"]) for line in lines] == [
        ("/v1/chat/completions", 200),
        ("/v1/nowhere", 404),
        ("/v1/chat/completions", 200),
    ]
    first, missing, short = lines
    assert first["id"] == streamed.headers["x-request-id"]
    assert first == first | {
        "model": MODEL,
        "fault": None,
        "stream": True,
        "output_tokens": 5,
        "prompt_tokens": 3,
        "cost": "0.0000053",
        "currency": "USD",
        "client_disconnected": False,
    }
    starts, sent = first["token_send_start_ns"], first["token_sent_ns"]
    assert len(sent) == 3  # chunks of 2, 2 and 1 tokens
    assert first["received_ns"] < starts[0] <= sent[0] <= starts[1] <= sent[1]
    assert sent[1] <= starts[2] <= sent[2] <= first["end_ns"]
    assert (missing["model"], missing["token_sent_ns"], missing["prompt_tokens"]) == (
        None,
        [],
        None,
    )
    assert (len(short["token_sent_ns"]), short["output_tokens"], short["cost"]) == (
        1,
        1,
        "0.0000013",
    )
    assert missing["received_ns"] > first["end_ns"]


async def test_chunks_go_out_on_absolute_deadlines_from_receipt(send_log: Path) -> None:
    config = MockConfig(ttft_ms=20.0, itl_ms=2.0, output_tokens=30, send_log=str(send_log))
    async with client_of(config) as client:
        await client.post("/chat/completions", json=chat_body())
        (line,) = await read_send_log(send_log)
    received, sent = line["received_ns"], line["token_sent_ns"]
    assert len(sent) == 30
    late_ns = [sent[k] - received - (20 + 2 * k) * MS for k in range(30)]
    # Never early, exactly.
    assert min(late_ns) >= 0
    # And late by an amount that does not grow along the stream: were each
    # wait relative to the previous send, the lateness would add up, to about
    # 30 x 1 ms by the last chunk. The median is the robust measure on a busy
    # machine; the bound is looser than test_server's because here the client
    # shares the server's event loop and runs inside its sends.
    assert statistics.median(late_ns) <= 3 * MS
    assert statistics.median(late_ns[-10:]) <= 3 * MS


async def test_stamp_chunks_adds_the_send_time_to_every_json_chunk(send_log: Path) -> None:
    config = fast(ttft_ms=3.0, itl_ms=2.0, stamp_chunks=True, send_log=str(send_log))
    async with client_of(config) as client:
        response = await client.post("/chat/completions", json=chat_body())
        (line,) = await read_send_log(send_log)
    events = sse_data(response.content)
    assert events[-1] == b"[DONE]"
    stamps = [orjson.loads(e)["x_sent_ns"] for e in events[:-1]]
    role, *content, usage = stamps
    received, sent = line["received_ns"], line["token_sent_ns"]
    assert received < role < content[0]
    # The stamp is the log's start of the send: read after the due time,
    # before the write that token_sent_ns follows.
    assert content == line["token_send_start_ns"]
    for k, stamp in enumerate(content):
        assert received + (3 * MS + k * 2 * MS) <= stamp <= sent[k]
    assert sent[-1] <= usage <= line["end_ns"]


async def test_a_client_that_goes_away_stops_the_stream_and_is_logged(send_log: Path) -> None:
    config = fast(itl_ms=50.0, send_log=str(send_log))
    async with client_of(config) as client:
        async with client.stream("POST", "/chat/completions", json=chat_body()) as response:
            tokens = 0
            async for text in response.aiter_lines():
                tokens += '"content":"tok' in text
                if tokens == 2:
                    break
        # Leaving the block closed the half-read response's connection.
        (line,) = await read_send_log(send_log)
    assert line["client_disconnected"] is True
    assert (len(line["token_sent_ns"]), line["output_tokens"], line["cost"]) == (2, 2, None)
