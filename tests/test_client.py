"""StreamingClient against a scripted loopback server: the body's idle timeout, one per stream."""

from __future__ import annotations

import os
import time

import h11
import orjson
import pytest
import trio

from onybench import arrival
from onybench.client import RequestSpec, StreamingClient, Target
from onybench.metrics.record import RequestRecord
from tests.test_transport import Script, ServerSide, serving, sse_head

READ_TIMEOUT_S = 0.2
SPEC = RequestSpec(model="m", messages=({"role": "user", "content": "hi"},))


def event(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def run_one(script: Script) -> tuple[RequestRecord, float]:
    records: list[RequestRecord] = []
    async with serving(script) as server:
        target = Target(base_url=server.url("/v1"), read_timeout_s=READ_TIMEOUT_S)
        async with StreamingClient(target) as client:
            started = time.perf_counter()
            await client.run_request(SPEC, records.append)
            elapsed = time.perf_counter() - started
    [record] = records
    return record, elapsed


async def test_a_stream_silent_for_the_read_timeout_is_a_read_timeout_error() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head(), h11.Data(data=event("one")))
        await side.wait_until_client_closes()

    record, elapsed = await run_one(script)
    assert record.error_class == "read_timeout"
    assert record.error_message is not None
    assert "no data for 0.2 s" in record.error_message
    assert len(record.token_times_ns) == 1  # what came before the silence is kept
    # The deadline is moved on at most every 0.1 s: it fires within that of the timeout.
    assert READ_TIMEOUT_S <= elapsed < READ_TIMEOUT_S + 0.1 + 0.5


async def test_a_stream_longer_than_the_read_timeout_whose_gaps_are_shorter_completes() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head())
        for n in range(8):  # 8 x 70 ms: 0.56 s in all, no gap near 0.2 s
            await trio.sleep(0.07)
            await side.send(h11.Data(data=event(f"t{n}")))
        await side.send(h11.Data(data=event(None, "stop") + b"data: [DONE]\n\n"))
        await side.send(h11.EndOfMessage())

    record, elapsed = await run_one(script)
    assert record.error_class is None, record.error_message
    assert len(record.token_times_ns) == 8
    assert elapsed > 2 * READ_TIMEOUT_S


async def test_an_error_body_that_never_comes_is_a_read_timeout_error() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        head = h11.Response(status_code=503, headers=[("content-length", "100")])
        await side.send(head, h11.Data(data=b'{"error": '))
        await side.wait_until_client_closes()

    record, _ = await run_one(script)
    assert record.error_class == "read_timeout"
    assert record.status == 503


@pytest.mark.skipif(not arrival._KNOWN, reason="receive stamps: Linux x86_64/aarch64")
async def test_a_first_token_read_late_records_how_long_the_kernel_held_it() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head())
        await trio.sleep(0.02)  # the head alone: the token comes in a read of its own
        # Written without a checkpoint, then the whole process stalls (a client too busy
        # to read): the token waits in the client's socket.
        assert isinstance(side.stream, trio.SocketStream)
        os.write(side.stream.socket.fileno(), side.h11.send(h11.Data(data=event("one"))) or b"")
        time.sleep(0.05)
        # The rest in a read of its own: a read stamps the wait of its last bytes only.
        await trio.sleep(0.02)
        await side.send(h11.Data(data=event(None, "stop") + b"data: [DONE]\n\n"))
        await side.send(h11.EndOfMessage())

    record, _ = await run_one(script)
    assert record.error_class is None, record.error_message
    assert record.first_token_wait_ns is not None
    assert 50_000_000 <= record.first_token_wait_ns < 5_000_000_000
