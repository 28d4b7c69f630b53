"""`MockProcess(config, processes=N)`: N children on one port, one send log."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio

from onybench.errors import MockServerError
from onybench.mock import MockConfig, MockProcess
from onybench.mock.plan import parse_request, plan_response
from onybench.mock.server import process_config

from .conftest import chat_body


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_child_i_runs_with_seed_plus_i_and_nothing_else_changed() -> None:
    config = MockConfig(seed=40, http_429_rate=0.25, output_tokens=7)
    assert process_config(config, 0) is config
    assert process_config(config, 3) == MockConfig(seed=43, http_429_rate=0.25, output_tokens=7)


def test_processes_must_be_a_positive_integer() -> None:
    with pytest.raises(ValueError, match="processes must be an integer >= 1"):
        MockProcess(MockConfig(), processes=0)


def test_two_children_share_one_port_and_log_every_stream_exactly_once(tmp_path: Path) -> None:
    log = tmp_path / "send.jsonl"
    # Long enough a TTFT that all 40 streams are open at once, so each has a
    # connection of its own: 40 source ports for the kernel to spread.
    config = MockConfig(ttft_ms=300.0, itl_ms=1.0, output_tokens=3, send_log=str(log))
    streams = 40

    async def stream_all(base_url: str) -> list[httpx.Response]:
        responses: list[httpx.Response] = []
        async with httpx.AsyncClient(base_url=base_url) as client:

            async def one() -> None:
                responses.append(await client.post("/chat/completions", json=chat_body()))

            async with trio.open_nursery() as nursery:
                for _ in range(streams):
                    nursery.start_soon(one)
        return responses

    with MockProcess(config, processes=2) as mock:
        pids = mock.pids
        responses = trio.run(stream_all, mock.base_url)
    assert len(set(pids)) == 2
    assert all(r.status_code == 200 for r in responses)
    assert all(r.content.endswith(b"data: [DONE]\n\n") for r in responses)
    served_by = Counter(r.headers["x-mock-process"] for r in responses)
    # Each child got some; a split of 40 connections that leaves one child
    # empty has a chance of 2**-39 when the kernel's hash is fair.
    assert set(served_by) == {"0", "1"}
    assert sum(served_by.values()) == streams
    # The children have exited, so the shared log is complete: one whole line
    # per stream, none lost or torn by the concurrent appends.
    lines = read_lines(log)
    logged_ids = sorted(line["id"] for line in lines)
    assert logged_ids == sorted(r.headers["x-request-id"] for r in responses)
    assert all(line["output_tokens"] == 3 and len(line["token_sent_ns"]) == 3 for line in lines)


def test_each_child_draws_faults_from_its_own_seed(tmp_path: Path) -> None:
    log = tmp_path / "send.jsonl"
    config = MockConfig(ttft_ms=0, itl_ms=0, http_429_rate=0.5, seed=11, send_log=str(log))
    body = chat_body(stream=False)
    requests = 16

    async def one_connection_each(base_url: str) -> dict[str, str]:
        child_of: dict[str, str] = {}
        for _ in range(requests):
            # A new client each time: a new connection (and source port).
            async with httpx.AsyncClient(base_url=base_url) as client:
                response = await client.post("/chat/completions", json=body)
            child_of[response.headers["x-request-id"]] = response.headers["x-mock-process"]
        return child_of

    with MockProcess(config, processes=2) as mock:
        child_of = trio.run(one_connection_each, mock.base_url)
    lines = read_lines(log)
    assert len(lines) == requests
    request = parse_request("chat", orjson.dumps(body))
    for child in ("0", "1"):
        # A child numbers the requests it receives from 0, in arrival order.
        served = sorted(
            (line for line in lines if child_of[line["id"]] == child),
            key=lambda line: int(line["received_ns"]),
        )
        assert served, f"child {child} served nothing"
        child_config = process_config(config, int(child))
        expected = [plan_response(child_config, request, n).fault for n in range(len(served))]
        assert [line["fault"] for line in served] == expected


def test_a_multi_process_mock_listens_on_the_port_it_is_given() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with MockProcess(MockConfig(), processes=2, port=port) as mock:
        assert mock.port == port
        assert httpx.get(f"{mock.base_url}/models").status_code == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_port_in_use_is_reported_before_any_child_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mock = MockProcess(MockConfig(), port=port)
        with pytest.raises(MockServerError, match=rf"cannot listen on 127\.0\.0\.1:{port}"):
            mock.__enter__()
        assert mock.pids == ()
