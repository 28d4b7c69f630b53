"""The lean engine: the same answers as the hypercorn app, on schedule, stamped at the write."""

from __future__ import annotations

import dataclasses
import itertools
import socket
import statistics
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from onybench.errors import ScenarioError
from onybench.mock import MockConfig, MockProcess
from onybench.mock.dialects import DIALECTS
from tests.mock.conftest import (
    MESSAGES,
    MODEL,
    chat_body,
    content_text,
    expected_text,
    sse_data,
)

MS = 1_000_000
# Every dialect the lean engine serves (llamacpp closes after each response).
LEAN_DIALECTS = [name for name in DIALECTS if not MockConfig(dialect=name).lean_conflicts()]


def _normalised(body: bytes) -> list[Any]:
    """The events (or the JSON body) with the per-response id and time taken out."""
    if not body.startswith(b"data: "):
        whole = orjson.loads(body)
        if isinstance(whole, dict):
            whole.pop("id", None)
            whole.pop("created", None)
        return [whole]
    events = []
    for event in body[:-2].split(b"\n\n"):
        data = event.removeprefix(b"data: ")
        if data == b"[DONE]":
            events.append("[DONE]")
            continue
        chunk = orjson.loads(data)
        for key in ("id", "created", "x_sent_ns"):
            chunk.pop(key, None)
        events.append(chunk)
    return events


# Headers that differ by design: hypercorn adds date and server; ids are per response.
_OWN_HEADERS = {"date", "server", "x-request-id", "x-mock-process"}
# Send-log fields that are neither times, ids nor ports.
_LOG_FIELDS = (
    "model",
    "path",
    "status",
    "fault",
    "stream",
    "output_tokens",
    "prompt_tokens",
    "cost",
    "currency",
    "client_disconnected",
)


def _answers(config: MockConfig, send_log: Path) -> tuple[list[Any], list[Any]]:
    """Each request's (status, headers, normalised body), and the send log's lines."""
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/chat/completions", chat_body(max_tokens=5)),
        *[("POST", "/chat/completions", chat_body(max_tokens=4)) for _ in range(6)],
        ("POST", "/chat/completions", chat_body(stream_options={"include_usage": True})),
        (
            "POST",
            "/chat/completions",
            chat_body(stream_options={"include_usage": True, "continuous_usage_stats": True}),
        ),
        ("POST", "/chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": 4}),
        ("POST", "/completions", {"model": MODEL, "prompt": "a b", "stream": True}),
        ("POST", "/chat/completions", chat_body(top_k=3)),
        ("POST", "/chat/completions", {"model": MODEL}),
        ("GET", "/models", None),
        ("GET", "/chat/completions", None),
        ("POST", "/nowhere", {}),
    ]
    answers = []
    config = dataclasses.replace(config, send_log=str(send_log))
    with MockProcess(config) as mock, httpx.Client(base_url=mock.base_url) as client:
        for method, path, body in requests:
            response = client.request(method, path, json=body)
            headers = {
                name: value for name, value in response.headers.items() if name not in _OWN_HEADERS
            }
            answers.append((response.status_code, headers, _normalised(response.content)))
    lines = [orjson.loads(line) for line in send_log.read_bytes().splitlines()]
    logged = [
        {name: line[name] for name in _LOG_FIELDS} | {"chunks": len(line["token_sent_ns"])}
        for line in lines
    ]
    return answers, logged


@pytest.mark.parametrize("dialect", LEAN_DIALECTS)
def test_the_lean_engine_answers_and_logs_every_request_as_the_hypercorn_app_does(
    dialect: str, tmp_path: Path
) -> None:
    settings: dict[str, Any] = {
        "dialect": dialect,
        "ttft_ms": 1.0,
        "itl_ms": 0.5,
        "output_tokens": 6,
        "stamp_chunks": True,
        "seed": 7,
        "no_done_rate": 0.25,
        "no_finish_rate": 0.25,
    }
    hypercorn = _answers(MockConfig(**settings), tmp_path / "hypercorn.jsonl")
    lean = _answers(MockConfig(engine="lean", **settings), tmp_path / "lean.jsonl")
    assert lean == hypercorn
    # The comparison saw whole streams and both faults, not two empty answers.
    answers, logged = hypercorn
    assert answers[0][0] == 200
    assert len(answers[0][2]) >= 3
    assert {"no_done", "no_finish", None} <= {line["fault"] for line in logged}


def test_the_lean_engine_keeps_its_schedule_and_stamps_each_chunk_at_its_write(
    tmp_path: Path,
) -> None:
    send_log = tmp_path / "send.jsonl"
    config = MockConfig(
        engine="lean",
        ttft_ms=30.0,
        itl_ms=5.0,
        output_tokens=8,
        stamp_chunks=True,
        send_log=str(send_log),
    )
    with MockProcess(config) as mock, httpx.Client(base_url=mock.base_url) as client:
        bodies = [client.post("/chat/completions", json=chat_body()).content for _ in range(6)]
    lines = [orjson.loads(line) for line in send_log.read_bytes().splitlines()]
    assert len(lines) == 6
    # One keep-alive connection served them all.
    assert len({line["client_port"] for line in lines}) == 1
    lateness, write_paths = [], []
    for body, line in zip(bodies, lines, strict=True):
        stamps = [
            orjson.loads(event.removeprefix(b"data: "))
            for event in body[:-2].split(b"\n\n")
            if b'"content":"tok' in event
        ]
        starts, sent = line["token_send_start_ns"], line["token_sent_ns"]
        assert [chunk["x_sent_ns"] for chunk in stamps] == starts
        assert "".join(c["choices"][0]["delta"]["content"] for c in stamps) == expected_text(8)
        assert line["output_tokens"] == 8
        assert not line["client_disconnected"]
        assert all(a <= b for a, b in zip(starts, sent, strict=True))
        lateness += [s - line["received_ns"] - (30 + 5 * k) * MS for k, s in enumerate(starts)]
        write_paths += [b - a for a, b in zip(starts, sent, strict=True)]
    # Never early; epoll's millisecond timeouts make it up to ~1 ms late.
    assert min(lateness) >= 0
    assert statistics.median(lateness) <= 2 * MS
    # Stamped by the write itself: no scheduler round between it and the reading.
    assert statistics.median(write_paths) <= 1 * MS


def test_a_client_that_leaves_mid_stream_is_logged_and_others_are_still_served(
    tmp_path: Path,
) -> None:
    send_log = tmp_path / "send.jsonl"
    config = MockConfig(
        engine="lean", ttft_ms=5.0, itl_ms=20.0, output_tokens=50, send_log=str(send_log)
    )
    with MockProcess(config) as mock:
        with (
            httpx.Client(base_url=mock.base_url) as client,
            client.stream("POST", "/chat/completions", json=chat_body()) as response,
        ):
            for _ in itertools.islice(response.iter_lines(), 6):
                pass
        # The client has closed its connection after three content chunks or so.
        with httpx.Client(base_url=mock.base_url) as client:
            body = client.post("/chat/completions", json=chat_body(max_tokens=3)).content
    assert body.endswith(b"data: [DONE]\n\n")
    left, served = [orjson.loads(line) for line in send_log.read_bytes().splitlines()]
    assert left["client_disconnected"] is True
    assert 0 < left["output_tokens"] < 50
    assert len(left["token_sent_ns"]) == left["output_tokens"]
    assert left["cost"] is None
    assert served["client_disconnected"] is False
    assert served["output_tokens"] == 3


def _stalled_stream(port: int, *, close: bool = False) -> socket.socket:
    """A raw connection that asked for a stream and is not reading yet, with a small
    receive window (set before connecting, so that it holds)."""
    body = orjson.dumps({"model": MODEL, "messages": MESSAGES, "stream": True})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n%b\r\n%b"
        % (len(body), b"connection: close\r\n" if close else b"", body)
    )
    return sock


def test_a_client_that_stops_reading_gets_every_byte_and_late_stamps(tmp_path: Path) -> None:
    send_log = tmp_path / "send.jsonl"
    # 20,000 chunks at once: far more than the socket buffers hold.
    tokens = 20_000
    config = MockConfig(
        engine="lean", ttft_ms=0.0, itl_ms=0.0, output_tokens=tokens, send_log=str(send_log)
    )
    with MockProcess(config) as mock, _stalled_stream(mock.port, close=True) as sock:
        time.sleep(0.5)  # not reading: the mock's writes back up
        stalled_until = time.perf_counter_ns()
        received = bytearray()
        while data := sock.recv(65536):
            received += data
    assert received.endswith(b"0\r\n\r\n")
    assert received.count(b'"content":"tok') == tokens
    (line,) = [orjson.loads(line) for line in send_log.read_bytes().splitlines()]
    sent = line["token_sent_ns"]
    assert len(sent) == tokens == line["output_tokens"]
    assert sent == sorted(sent)
    # Chunks that waited in the mock's buffer are stamped as the kernel takes them:
    # the ones that fit before the stall went at once, the last only once read.
    assert sent[0] < stalled_until <= sent[-1]
    assert line["end_ns"] >= sent[-1]


def test_a_client_that_resets_while_the_mock_waits_to_write_counts_only_what_went(
    tmp_path: Path,
) -> None:
    send_log = tmp_path / "send.jsonl"
    tokens = 20_000
    config = MockConfig(
        engine="lean", ttft_ms=0.0, itl_ms=0.0, output_tokens=tokens, send_log=str(send_log)
    )
    with MockProcess(config) as mock:
        sock = _stalled_stream(mock.port)
        time.sleep(0.3)  # the mock's writes back up
        # A reset, not a FIN: the chunks still in the mock's buffer never go.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        with httpx.Client(base_url=mock.base_url) as client:  # the server lives on
            assert client.post("/chat/completions", json=chat_body(max_tokens=2)).status_code == 200
    left, _ = [orjson.loads(line) for line in send_log.read_bytes().splitlines()]
    assert left["client_disconnected"] is True
    assert 0 < left["output_tokens"] < tokens
    assert len(left["token_sent_ns"]) == left["output_tokens"]
    assert len(left["token_send_start_ns"]) == left["output_tokens"]
    # Its end is its last write, not the moment the reset was noticed.
    assert left["end_ns"] == left["token_sent_ns"][-1]


def test_pipelined_requests_are_answered_in_order_without_exhausting_the_stack() -> None:
    config = MockConfig(engine="lean")
    requests = 2_000
    with MockProcess(config) as mock:
        with socket.create_connection(("127.0.0.1", mock.port)) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n" * requests)
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            received = bytearray()
            while data := sock.recv(65536):
                received += data
        with httpx.Client(base_url=mock.base_url) as client:
            assert client.get("/models").status_code == 200
    assert received.count(b"HTTP/1.1 200 OK\r\n") == requests + 1
    assert received.count(b'"openai/gpt-4o-mini"') == requests + 1


def test_an_http_1_0_stream_is_sent_unframed_and_then_closed() -> None:
    config = MockConfig(engine="lean", ttft_ms=0.0, itl_ms=0.0, output_tokens=3)
    body = orjson.dumps(chat_body())
    with (
        MockProcess(config) as mock,
        socket.create_connection(("127.0.0.1", mock.port)) as sock,
    ):
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.0\r\ncontent-length: %d\r\n\r\n%b"
            % (len(body), body)
        )
        received = bytearray()
        while data := sock.recv(65536):  # ends: the mock closes after the body
            received += data
    head, _, stream = bytes(received).partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    events = sse_data(stream)
    assert events[-1] == b"[DONE]"
    assert content_text([orjson.loads(e) for e in events[:-1]]) == expected_text(3)


def test_bad_requests_get_http_errors_without_stopping_the_server(tmp_path: Path) -> None:
    send_log = tmp_path / "send.jsonl"
    config = MockConfig(
        engine="lean",
        ttft_ms=0.0,
        itl_ms=0.0,
        require_api_key="sk-test",
        send_log=str(send_log),
    )
    with MockProcess(config) as mock:
        with httpx.Client(base_url=mock.base_url) as client:
            assert client.post("/chat/completions", json=chat_body()).status_code == 401
            authorized = {"authorization": "Bearer sk-test"}
            bad = client.post("/chat/completions", content=b"{", headers=authorized)
            assert bad.status_code == 400
            assert "not valid JSON" in bad.json()["error"]["message"]
            chunked = client.post("/chat/completions", content=iter([b"{}"]), headers=authorized)
            assert chunked.status_code == 411
        with socket.create_connection(("127.0.0.1", mock.port)) as sock:
            sock.sendall(b"NONSENSE\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
            assert sock.recv(100) == b""  # and closed
        with httpx.Client(base_url=mock.base_url) as client:
            good = client.post(
                "/chat/completions", json=chat_body(max_tokens=2), headers=authorized
            )
    assert good.status_code == 200
    assert good.content.endswith(b"data: [DONE]\n\n")
    # Every request the application answered has its line; those refused before it
    # (the chunked body, the nonsense) have none, as with hypercorn's h11.
    statuses = [orjson.loads(line)["status"] for line in send_log.read_bytes().splitlines()]
    assert sorted(statuses) == [200, 400, 401]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"cut_rate": 0.1}, "cut_rate"),
        ({"batch_slots": 4, "ping_every": 2}, "batch_slots, ping_every"),
        ({"dialect": "llamacpp"}, "closes after each response"),
    ],
)
def test_settings_only_the_hypercorn_app_serves_are_refused_by_name(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(ScenarioError, match=named) as caught:
        MockConfig(engine="lean", **settings)
    assert "mock.engine" in str(caught.value)
    assert MockConfig(**settings).engine == "hypercorn"


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ScenarioError, match="hypercorn, lean"):
        MockConfig.from_json({"engine": "nginx"})
