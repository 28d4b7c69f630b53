"""The issue's "trio's floor": the cheapest SSE load client on onybench's own stack.

    python benchmarks/trio_floor_client.py '{"mode": "stream", ...}'

trio sockets and hand-written HTTP/1.1, no httpx, no h11: the figure onybench's hot
path aims at. A closed loop of `concurrency` workers, each with one keep-alive
connection (opened again only after an error or a ``Connection: close``): the
request bytes are written by hand, the response head is read up to its blank line,
and every read of the body is fed to onybench's own chunked decoder
(`onybench.wire.chunked_body`), whose terminating chunk ends the response. A read is
a wait until the socket is readable, then one ``read(2)`` stamped with
``perf_counter_ns`` (as onybench's plain-TCP body reads do); only ``(arrival_ns,
body bytes)`` is kept while the stream runs, and the record is built after it as
the reference client builds its own (`simple_client.py`). Modes, arguments, the CPU
window and the line on stdout are those of `reference_client.py`; in stream mode
the run also stops starting requests after ``duration_s`` and is cut off
``grace_s`` later, its unfinished streams recorded as ``Cancelled``.
"""

from __future__ import annotations

import gc
import math
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_sampler import cpu_s
from simple_client import (
    BODY,
    HEADERS,
    client_main,
    finish_stream,
    held_open_figures,
    rss_bytes,
    run_mode,
    stream_record,
)

from onybench.wire.chunked_body import ChunkedBodyDecoder

READ_SIZE = 65536
MAX_HEAD_BYTES = 64 * 1024
# What a failed request is recorded with (and closes its connection).
ERRORS = (OSError, ValueError)  # ValueError: a malformed head or ChunkedBodyError


def target(base_url: str) -> tuple[tuple[str, int], bytes]:
    """The address to connect to and the request's bytes."""
    url = urlsplit(base_url)
    lines = [
        f"POST {url.path.rstrip('/')}/chat/completions HTTP/1.1",
        f"Host: {url.netloc}",
        *(f"{name}: {value}" for name, value in HEADERS.items()),
        f"Content-Length: {len(BODY)}",
    ]
    return (url.hostname or "127.0.0.1", url.port or 80), "\r\n".join(
        [*lines, "", ""]
    ).encode() + BODY


class Connection:
    """One keep-alive connection, opened when a request finds none."""

    __slots__ = ("address", "fd", "sock")

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock: trio.socket.SocketType | None = None
        self.fd = -1

    async def open(self) -> int:
        if self.sock is None:
            sock = trio.socket.socket()
            try:
                sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
                await sock.connect(self.address)
            except BaseException:
                sock.close()
                raise
            self.sock, self.fd = sock, sock.fileno()
        return self.fd

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock, self.fd = None, -1


async def send_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)


async def receive(fd: int) -> bytes:
    """The next bytes from the socket (b"" at end of file)."""
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            return os.read(fd, READ_SIZE)
        except BlockingIOError:
            continue  # woken with nothing to read after all


async def read_head(fd: int) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """The status, the header fields (names and values lowercased), the bytes that came
    after the head, and when the read that completed the head returned."""
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > MAX_HEAD_BYTES:
            raise ValueError(f"no end of the response head in {len(data)} bytes")
        received = await receive(fd)
        arrival_ns = time.perf_counter_ns()
        if not received:
            raise ConnectionError("closed before the end of the response head")
        data += received
    status_line, *lines = data[:end].split(b"\r\n")
    if not status_line.startswith(b"HTTP/1.1 "):
        raise ValueError(f"not an HTTP/1.1 status line: {status_line[:60]!r}")
    fields = {}
    for line in lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    return int(status_line[9:12]), fields, data[end + 4 :], arrival_ns


async def one_request(conn: Connection, request: bytes, records: list[dict[str, Any]]) -> None:
    """One request on `conn`; its record goes to `records`, even when cancelled."""
    clock = time.perf_counter_ns
    wait_readable, read = trio.lowlevel.wait_readable, os.read
    start_ns = clock()
    reads: list[tuple[int, bytes]] = []
    error: str | None = None
    try:
        fd = await conn.open()
        await send_all(fd, request)
        status, fields, rest, arrival_ns = await read_head(fd)
        # The body of an error response is read (to reuse the connection) but not kept.
        kept = reads
        if status != 200:
            error, kept = f"http_{status}", []
        reusable = fields.get(b"connection") != b"close"
        if fields.get(b"transfer-encoding", b"").endswith(b"chunked"):
            decoder = ChunkedBodyDecoder()
            feed = decoder.feed
            if body := feed(rest):
                kept.append((arrival_ns, body))
            while not decoder.done:
                await wait_readable(fd)
                try:
                    data = read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                arrival_ns = clock()
                if not data:
                    raise ConnectionError("closed before the end of the chunked body")
                if body := feed(data):
                    kept.append((arrival_ns, body))
            reusable = reusable and not decoder.unused
        elif b"content-length" in fields:  # an error's body, not an SSE stream
            remaining = int(fields[b"content-length"]) - len(rest)
            while remaining > 0:
                data = await receive(fd)
                if not data:
                    raise ConnectionError("closed before the end of the body")
                remaining -= len(data)
            reusable = reusable and remaining == 0
        else:
            reusable = False  # a body read until close: nothing to reuse
        if not reusable:
            conn.close()
    except ERRORS as exc:
        error = type(exc).__name__
        conn.close()
    except trio.Cancelled:
        conn.close()
        records.append(stream_record(start_ns, reads, "Cancelled"))
        raise
    records.append(stream_record(start_ns, reads, error))


async def stream(args: dict[str, Any]) -> dict[str, Any]:
    address, request = target(args["base_url"])
    budget = args["requests"]
    cpu_before, wall_before = cpu_s(), time.perf_counter_ns()
    records: list[dict[str, Any]] = []
    duration_s = args.get("duration_s", math.inf)
    stop_at = trio.current_time() + duration_s

    async def worker() -> None:
        nonlocal budget
        conn = Connection(address)
        try:
            while budget > 0 and trio.current_time() < stop_at:
                budget -= 1
                await one_request(conn, request, records)
        finally:
            conn.close()

    with trio.move_on_after(duration_s + args.get("grace_s", 0.0)):
        async with trio.open_nursery() as nursery:
            for _ in range(args["concurrency"]):
                nursery.start_soon(worker)
    return finish_stream(args, records, cpu_before, wall_before)


async def hold_open(args: dict[str, Any], streams: int, settle_s: float) -> dict[str, Any]:
    address, request = target(args["base_url"])
    all_open = trio.Event()
    opened = 0

    async def hold() -> None:
        nonlocal opened
        conn = Connection(address)
        try:
            fd = await conn.open()
            await send_all(fd, request)
            await read_head(fd)
            opened += 1
            if opened == streams:
                all_open.set()
            while await receive(fd):
                pass
        except ERRORS:
            pass
        finally:
            conn.close()

    gc.collect()
    before = rss_bytes(), cpu_s(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(hold)
        with trio.move_on_after(args["timeout_s"]):
            await all_open.wait()
        at_open = cpu_s(), time.perf_counter()
        await trio.sleep(settle_s)
        settled = rss_bytes(), cpu_s()
        nursery.cancel_scope.cancel()
    return held_open_figures(streams, opened, before, at_open, settled)


def main(argv: list[str]) -> int:
    return client_main(argv, lambda args: trio.run(run_mode, args, stream, hold_open))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
