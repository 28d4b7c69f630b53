from __future__ import annotations

import itertools
import socket
import statistics
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
import trio
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from onybench.errors import MockServerError
from onybench.mock import MockConfig, MockEndpoint, MockProcess, running_mock, serve

from .conftest import MODEL, chat_body, expected_text

MS = 1_000_000  # nanoseconds


async def test_serve_reports_the_port_it_bound_and_serves_there() -> None:
    async with trio.open_nursery() as nursery:
        first: int = await nursery.start(serve, MockConfig())
        second: int = await nursery.start(serve, MockConfig())
        assert first > 0
        assert second not in (0, first)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{first}/v1/models")
        assert response.status_code == 200
        nursery.cancel_scope.cancel()


def test_an_endpoint_base_url_ends_in_v1_and_brackets_an_ipv6_host() -> None:
    assert MockEndpoint("127.0.0.1", 8123).base_url == "http://127.0.0.1:8123/v1"
    assert MockEndpoint("::1", 8123).base_url == "http://[::1]:8123/v1"


async def test_the_official_openai_sdk_streams_from_the_mock() -> None:
    config = MockConfig(ttft_ms=1.0, itl_ms=0.5, output_tokens=6, always_usage=False)
    async with running_mock(config) as endpoint:
        client = AsyncOpenAI(base_url=endpoint.base_url, api_key="sk-ony-test")
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "one two three"}]
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=4,
        )
        text, finish_reasons, usage = "", [], None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish_reasons.append(chunk.choices[0].finish_reason)
            if chunk.usage is not None:
                usage = chunk.usage
        whole = await client.chat.completions.create(model=MODEL, messages=messages)
        await client.close()
    assert text == expected_text(4)
    assert finish_reasons[-1] == "length"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 4, 7)
    assert whole.choices[0].message.content == expected_text(6)
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None
    assert whole.usage.total_tokens == 9


def test_mock_process_serves_from_a_child_on_schedule_and_stops_on_exit(tmp_path: Path) -> None:
    send_log = tmp_path / "send.jsonl"
    config = MockConfig(ttft_ms=100.0, itl_ms=10.0, output_tokens=6, send_log=str(send_log))

    async def stream(base_url: str) -> list[bytes]:
        async with httpx.AsyncClient(base_url=base_url) as client:
            # The first request warms up the child's code paths; seven are measured.
            return [
                (await client.post("/chat/completions", json=chat_body())).content for _ in range(8)
            ]

    with MockProcess(config) as mock:
        assert mock.base_url == f"http://127.0.0.1:{mock.port}/v1"
        bodies = trio.run(stream, mock.base_url)
        port = mock.port
    assert all(body.endswith(b"data: [DONE]\n\n") for body in bodies)
    # The child has exited, so its log is complete, and its port is closed.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    lines = [orjson.loads(line) for line in send_log.read_bytes().splitlines()]
    assert len(lines) == 8
    assert {line["cost"] for line in lines} == {str(Decimal("0.0000063"))}
    ttfts, gaps, lateness, send_paths = [], [], [], []
    for line in lines[1:]:
        received, starts, sent = (
            line["received_ns"],
            line["token_send_start_ns"],
            line["token_sent_ns"],
        )
        assert len(sent) == 6
        # When the first chunk's send began: the schedule itself. (The write
        # lies between that and token_sent_ns; the path in between is checked
        # on its own below.)
        ttfts.append(starts[0] - received)
        gaps += [b - a for a, b in itertools.pairwise(sent)]
        lateness += [starts[k] - received - (100 + 10 * k) * MS for k in range(6)]
        send_paths += [b - a for a, b in zip(starts, sent, strict=True)]
    # Exact: no chunk is ever sent before it is due.
    assert min(lateness) >= 0
    # Within 2 ms of the schedule, typically: medians, because a busy machine
    # can deschedule the child for a few milliseconds now and then. Drift
    # (waits relative to the previous send) would push the lateness out.
    assert 100 * MS <= statistics.median(ttfts) <= 102 * MS
    assert statistics.median(lateness) <= 2 * MS
    assert abs(statistics.median(gaps) - 10 * MS) <= 2 * MS
    assert statistics.median(send_paths) <= 1 * MS


def test_mock_process_reports_a_child_that_dies_with_its_stderr(tmp_path: Path) -> None:
    config = MockConfig(send_log=str(tmp_path / "missing-dir" / "send.jsonl"))
    with (
        pytest.raises(MockServerError, match=r"exited \(code 1\)[\s\S]*cannot open the send log"),
        MockProcess(config),
    ):
        pass


def test_mock_process_gives_up_on_a_child_that_does_not_start_in_time() -> None:
    with (
        pytest.raises(MockServerError, match="did not start within"),
        MockProcess(MockConfig(), start_timeout_s=0.001),
    ):
        pass


def test_mock_process_has_no_port_before_it_starts() -> None:
    with pytest.raises(MockServerError, match="not running"):
        _ = MockProcess(MockConfig()).port


async def test_running_mock_lets_an_error_of_its_body_out_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with running_mock(MockConfig()):
            raise KeyError("from the body")


async def test_serve_reports_a_send_log_it_cannot_open(tmp_path: Path) -> None:
    config = MockConfig(send_log=str(tmp_path / "missing-dir" / "send.jsonl"))
    with pytest.raises(MockServerError, match="cannot open the send log"):
        await serve(config)
