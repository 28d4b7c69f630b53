"""Tests for onybench.transport.LeanTransport against a scripted loopback server.

Each test starts a tiny HTTP/1.1 server on 127.0.0.1 (port 0, read back) built from
trio.serve_tcp and h11, and gives it a script: what to answer on each connection, in which
writes, and when to stall or hang up. Bytes cross real sockets, so these tests run on real
time (no autojump clock: it could jump while bytes are in flight); where a test must wait
for the other side it waits on a trio.Event, never on a sleep.

Which error a failure becomes (asserted below):
    refused connection                 httpx.ConnectError
    TLS handshake stalls / fails       httpx.ConnectTimeout / httpx.ConnectError
    server closes before answering     httpx.RemoteProtocolError "server disconnected ..."
    server closes mid-body (FIN)       httpx.RemoteProtocolError "incomplete body ..."
                                       (a reset, RST, would be httpx.ReadError)
    bytes that are not HTTP            httpx.RemoteProtocolError
    no bytes for the read timeout      httpx.ReadTimeout
    send blocked for the write timeout httpx.WriteTimeout
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from functools import partial
from pathlib import Path

import h11
import httpx
import pytest
import trio

from onybench import arrival
from onybench.transport import (
    BODY_READ_TIMEOUT,
    LeanTransport,
    OnData,
    _ip_family,
    _socket_host,
    pump,
)

# A self-signed certificate for IP 127.0.0.1, valid 2000-2100, so https tests need no
# network and no certificate tooling.
CERT_PEM = """-----BEGIN CERTIFICATE-----
MIIBZTCCAQqgAwIBAgIBATAKBggqhkjOPQQDAjAYMRYwFAYDVQQDDA1vbnliZW5j
aC10ZXN0MCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAwMTAxMDAwMDAwWjAYMRYwFAYD
VQQDDA1vbnliZW5jaC10ZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEDrW9
ftyVekG75xxjVWXn6XMb/HETNyFU1qzYtu97Gyt0g6BIJKaD19fqm78RWNJ/kC4N
6PlT6FGBROO2gLrD96NDMEEwDwYDVR0RBAgwBocEfwAAATAPBgNVHRMBAf8EBTAD
AQH/MB0GA1UdDgQWBBS3ruf323LLO9SlowkkmToTe41B8zAKBggqhkjOPQQDAgNJ
ADBGAiEA6FZW/ollqg9tPql97npxbGnVGhg2KCJbAPFhk1qV3lMCIQDA0Pb77NXi
8yR9wTZv/92QJuE9ulfv0w+iEcnWENDJeA==
-----END CERTIFICATE-----
"""
KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgpIkXPMitTzsOMRqT
Tkj/TdPM6lCOg+MHSV9F/0Z7Wt+hRANCAAQOtb1+3JV6QbvnHGNVZefpcxv8cRM3
IVTWrNi273sbK3SDoEgkpoPX1+qbvxFY0n+QLg3o+VPoUYFE47aAusP3
-----END PRIVATE KEY-----
"""

# Every warning fails a test: a socket the transport forgot to close shows up as
# ResourceWarning("unclosed socket") when the garbage collector finds it.
pytestmark = pytest.mark.filterwarnings("error")

SSE_EVENTS = [b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n', b"data: [DONE]\n\n"]
SHORT_TIMEOUT_S = 0.2


# --- the scripted loopback server ---------------------------------------------------------


class ServerSide:
    """One accepted connection, as the server script sees it."""

    def __init__(self, stream: trio.abc.Stream, index: int) -> None:
        self.stream = stream
        self.index = index  # 0 for the server's first connection, 1 for the next, ...
        self.h11 = h11.Connection(our_role=h11.SERVER)
        self.closed_by_client = trio.Event()

    async def read_request(self) -> tuple[h11.Request, bytes] | None:
        """The next request with its whole body, or None if the client closed."""
        request = await self.read_head()
        if request is None:
            return None
        body = b""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body

    async def read_head(self) -> h11.Request | None:
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            self.closed_by_client.set()
            return None
        assert isinstance(event, h11.Request)
        return event

    async def send(self, *events: h11.Event) -> None:
        """Send `events` in one write."""
        await self.send_raw(b"".join(self.h11.send(event) or b"" for event in events))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def respond(self, body: bytes = b"ok", headers: tuple[tuple[str, str], ...] = ()) -> None:
        """A complete response, head and body in one write, then ready for the next."""
        head = h11.Response(status_code=200, headers=[("content-length", str(len(body))), *headers])
        await self.send(head, h11.Data(data=body), h11.EndOfMessage())
        if self.h11.our_state is h11.DONE:
            self.h11.start_next_cycle()

    async def wait_until_client_closes(self) -> None:
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self.closed_by_client.set()
                return

    async def _next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                assert isinstance(event, h11.Event)
                return event
            self.h11.receive_data(bytes(await self.stream.receive_some(65536)))


Script = Callable[[ServerSide], Awaitable[None]]


class LoopbackServer:
    def __init__(self, script: Script, scheme: str) -> None:
        self.script = script
        self.scheme = scheme
        self.port = 0
        self.connections: list[ServerSide] = []

    def url(self, path: str = "/v1/chat/completions") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    async def handle(self, stream: trio.abc.Stream) -> None:
        side = ServerSide(stream, len(self.connections))
        self.connections.append(side)
        try:
            await self.script(side)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; the test decides whether that was expected
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def serving(
    script: Script, tls: ssl.SSLContext | None = None
) -> AsyncIterator[LoopbackServer]:
    server = LoopbackServer(script, "http" if tls is None else "https")
    async with trio.open_nursery() as nursery:
        serve: Callable[..., Awaitable[object]]
        if tls is None:
            serve = partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        else:
            serve = partial(
                trio.serve_ssl_over_tcp,
                server.handle,
                0,
                tls,
                host="127.0.0.1",
                https_compatible=True,
            )
        listeners = await nursery.start(serve)
        listener = listeners[0]
        if isinstance(listener, trio.SSLListener):
            listener = listener.transport_listener
        server.port = listener.socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


async def serve_ok_until_client_closes(side: ServerSide) -> None:
    while await side.read_request() is not None:
        await side.respond()


# --- helpers ------------------------------------------------------------------------------


def make_request(
    url: str, *, read_s: float | None = None, connect_s: float | None = None, **kwargs: object
) -> httpx.Request:
    request = httpx.Request("POST", url, **kwargs)  # type: ignore[arg-type]
    request.extensions["timeout"] = {
        "connect": connect_s,
        "read": read_s,
        "write": None,
        "pool": None,
    }
    return request


async def read_body(response: httpx.Response) -> list[bytes]:
    """The chunks the transport yields, each as it came."""
    assert isinstance(response.stream, httpx.AsyncByteStream)
    chunks = [chunk async for chunk in response.stream]
    await response.stream.aclose()
    return chunks


async def fetch(transport: LeanTransport, url: str) -> tuple[httpx.Response, list[bytes]]:
    return await fetch_with(transport, make_request(url, json={"n": 1}))


async def fetch_with(
    transport: LeanTransport, request: httpx.Request
) -> tuple[httpx.Response, list[bytes]]:
    response = await transport.handle_async_request(request)
    return response, await read_body(response)


def sse_head() -> h11.Response:
    return h11.Response(
        status_code=200,
        headers=[("content-type", "text/event-stream"), ("transfer-encoding", "chunked")],
    )


async def endless_body() -> AsyncGenerator[bytes]:
    """A request body that never ends (64 KiB at a time)."""
    while True:
        yield b"x" * 65536


async def unused_port() -> int:
    """A loopback port nobody listens on: bound, read back, closed."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


# --- (a) the transport against scripted servers -------------------------------------------


async def test_each_server_write_of_an_sse_body_arrives_as_its_own_chunk() -> None:
    consumed = trio.Semaphore(0)  # released by the client per chunk read

    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head())
        for event_bytes in SSE_EVENTS:
            await side.send(h11.Data(data=event_bytes))
            await consumed.acquire()  # the next write goes out once this one was read
        await side.send(h11.EndOfMessage())

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url(), json={}))
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert isinstance(response.stream, httpx.AsyncByteStream)
        received = []
        async for chunk in response.stream:
            assert type(chunk) is bytes
            received.append(chunk)
            consumed.release()
        await response.stream.aclose()
        await transport.aclose()

    assert received == SSE_EVENTS


async def test_http_chunks_that_arrive_in_one_read_are_yielded_together_for_one_stamp() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head(), *(h11.Data(data=e) for e in SSE_EVENTS), h11.EndOfMessage())

    async with serving(script) as server:
        transport = LeanTransport()
        _, chunks = await fetch(transport, server.url())
        await transport.aclose()

    assert chunks == [b"".join(SSE_EVENTS)]


async def test_second_request_reuses_the_kept_alive_connection() -> None:
    async with serving(serve_ok_until_client_closes) as server:
        transport = LeanTransport()
        first, first_body = await fetch(transport, server.url())
        second, second_body = await fetch(transport, server.url())
        await transport.aclose()

    assert first_body == second_body == [b"ok"]
    connect_ns = first.extensions["onybench.connect_ns"]
    assert isinstance(connect_ns, int)
    assert 0 < connect_ns < 1_000_000_000
    assert second.extensions["onybench.connect_ns"] is None
    assert first.extensions["http_version"] == second.extensions["http_version"] == b"HTTP/1.1"
    assert len(server.connections) == 1


async def test_response_with_connection_close_is_not_reused() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.respond(headers=(("connection", "close"),))

    async with serving(script) as server:
        transport = LeanTransport()
        first, _ = await fetch(transport, server.url())
        second, second_body = await fetch(transport, server.url())
        await transport.aclose()

    assert second_body == [b"ok"]
    assert first.extensions["onybench.connect_ns"] is not None
    assert second.extensions["onybench.connect_ns"] is not None
    assert len(server.connections) == 2


async def test_idle_connection_the_server_closed_silently_is_replaced_not_reused() -> None:
    # llama.cpp's way: announce nothing, answer, hang up.
    hung_up = trio.Event()

    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.respond()
        await side.stream.aclose()
        hung_up.set()

    async with serving(script) as server:
        transport = LeanTransport()
        await fetch(transport, server.url())
        await hung_up.wait()
        second, second_body = await fetch(transport, server.url())
        await transport.aclose()

    assert second.status_code == 200
    assert second_body == [b"ok"]
    assert second.extensions["onybench.connect_ns"] is not None
    assert len(server.connections) == 2


async def test_bytes_after_the_response_keep_the_connection_out_of_the_pool() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send_raw(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokJUNK")
        await side.wait_until_client_closes()

    async with serving(script) as server:
        transport = LeanTransport()
        _, first_body = await fetch(transport, server.url())
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await transport.aclose()

    assert first_body == [b"ok"]


async def test_chunked_body_with_extensions_and_trailers_is_decoded_and_the_connection_reused() -> (
    None
):
    async def script(side: ServerSide) -> None:
        while await side.read_request() is not None:
            await side.send_raw(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
            )
            side.h11 = h11.Connection(our_role=h11.SERVER)  # it did not see the raw answer

    async with serving(script) as server:
        transport = LeanTransport()
        _, first_body = await fetch(transport, server.url())
        second, second_body = await fetch(transport, server.url())
        await transport.aclose()

    assert b"".join(first_body) == b"".join(second_body) == b"hello world"
    assert second.extensions["onybench.connect_ns"] is None
    assert len(server.connections) == 1


async def test_chunked_body_with_connection_close_is_not_reused() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send_raw(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n"
        )

    async with serving(script) as server:
        transport = LeanTransport()
        _, first_body = await fetch(transport, server.url())
        second, second_body = await fetch(transport, server.url())
        await transport.aclose()

    assert first_body == second_body == [b"ok"]
    assert second.extensions["onybench.connect_ns"] is not None
    assert len(server.connections) == 2


async def test_bytes_after_a_chunked_body_keep_the_connection_out_of_the_pool() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send_raw(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nJUNK"
        )
        await side.wait_until_client_closes()

    async with serving(script) as server:
        transport = LeanTransport()
        _, body = await fetch(transport, server.url())
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await transport.aclose()

    assert body == [b"ok"]


async def test_malformed_chunk_size_raises_remote_protocol_error_and_closes() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head(), h11.Data(data=SSE_EVENTS[0]))
        await side.send_raw(b"zz\r\n")
        await side.wait_until_client_closes()

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url()))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        stream = aiter(response.stream)
        assert await anext(stream) == SSE_EVENTS[0]
        with pytest.raises(httpx.RemoteProtocolError, match="malformed chunk size line b'zz"):
            await anext(stream)
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await transport.aclose()


async def test_body_read_timeout_extension_none_leaves_the_body_without_one() -> None:
    # The head keeps the read timeout; the body's silences are the caller's to bound.
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head(), h11.Data(data=SSE_EVENTS[0]))
        await trio.sleep(3 * SHORT_TIMEOUT_S)
        await side.send(h11.Data(data=SSE_EVENTS[2]), h11.EndOfMessage())

    async with serving(script) as server:
        transport = LeanTransport()
        request = make_request(server.url(), read_s=SHORT_TIMEOUT_S)
        request.extensions[BODY_READ_TIMEOUT] = None
        _, body = await fetch_with(transport, request)
        await transport.aclose()

    assert body == [SSE_EVENTS[0], SSE_EVENTS[2]]


async def test_interim_100_continue_is_skipped_for_the_final_response() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(h11.InformationalResponse(status_code=100, headers=[]))
        await side.respond(b"final")

    async with serving(script) as server:
        transport = LeanTransport()
        response, body = await fetch(transport, server.url())
        await transport.aclose()

    assert response.status_code == 200
    assert body == [b"final"]


async def test_http_1_0_body_read_until_close_ends_cleanly() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send_raw(b"HTTP/1.0 200 OK\r\n\r\nhello")

    async with serving(script) as server:
        transport = LeanTransport()
        response, body = await fetch(transport, server.url())
        await transport.aclose()

    assert body == [b"hello"]
    assert response.extensions["http_version"] == b"HTTP/1.0"


async def test_concurrent_requests_open_a_connection_each_and_later_waves_reuse_them() -> None:
    """Reuse starts with one probe: until a reused connection has been answered, the
    others open connections of their own (a server that closes after every response
    then costs one request, not one per stream); after it, every request reuses."""
    wave_size = 10
    waves = (wave_size, 1, wave_size)  # concurrent requests; the middle one is the probe
    arrived = [0] * len(waves)
    all_arrived = [trio.Event() for _ in waves]

    # The wave a request belongs to, by its number among all requests on all connections.
    wave_of = [wave for wave, size in enumerate(waves) for _ in range(size)]
    requests_seen = [0]

    async def script(side: ServerSide) -> None:
        while await side.read_request() is not None:
            wave = wave_of[requests_seen[0]]
            requests_seen[0] += 1
            arrived[wave] += 1
            if arrived[wave] == waves[wave]:
                all_arrived[wave].set()
            await all_arrived[wave].wait()  # answer only once the whole wave is in flight
            await side.respond()

    connect_ns: list[list[int | None]] = [[] for _ in waves]

    async with serving(script) as server:
        transport = LeanTransport()

        async def one_request(wave: int) -> None:
            response, body = await fetch(transport, server.url())
            assert body == [b"ok"]
            connect_ns[wave].append(response.extensions["onybench.connect_ns"])

        for wave, size in enumerate(waves):
            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:
                    for _ in range(size):
                        nursery.start_soon(one_request, wave)
        await transport.aclose()

    assert all(isinstance(ns, int) for ns in connect_ns[0])
    assert connect_ns[1] == [None]
    assert connect_ns[2] == [None] * wave_size
    assert len(server.connections) == wave_size


@pytest.mark.parametrize(
    "cut_response",
    [
        pytest.param(b"content-length: 100\r\n\r\n" + b"x" * 10, id="content-length"),
        pytest.param(b"transfer-encoding: chunked\r\n\r\na\r\nxxxxxxxxxx\r\n", id="chunked"),
    ],
)
async def test_body_cut_midway_raises_remote_protocol_error_after_the_bytes_that_came(
    cut_response: bytes,
) -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send_raw(b"HTTP/1.1 200 OK\r\n" + cut_response)
        # returning closes the socket: FIN, an orderly close mid-body

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url()))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        stream = aiter(response.stream)
        assert await anext(stream) == b"x" * 10
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete body"):
            await anext(stream)
        # The stream is finished and its connection gone: nothing more, no error.
        assert [chunk async for chunk in response.stream] == []
        await response.stream.aclose()
        await transport.aclose()


async def test_server_closing_before_answering_raises_server_disconnected() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()  # the request is read, then the socket closed unanswered

    async with serving(script) as server:
        transport = LeanTransport()
        with pytest.raises(
            httpx.RemoteProtocolError, match="server disconnected without sending a response"
        ) as caught:
            await transport.handle_async_request(make_request(server.url()))
        await transport.aclose()

    assert caught.value.request.url == server.url()


async def test_invalid_http_from_the_server_raises_remote_protocol_error() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send_raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await side.wait_until_client_closes()

    async with serving(script) as server:
        transport = LeanTransport()
        with pytest.raises(httpx.RemoteProtocolError):
            await transport.handle_async_request(make_request(server.url()))
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await transport.aclose()


async def test_server_stalling_after_the_head_raises_read_timeout_on_the_body() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head(), h11.Data(data=SSE_EVENTS[0]))
        await side.wait_until_client_closes()

    async with serving(script) as server:
        transport = LeanTransport()
        request = make_request(server.url(), read_s=SHORT_TIMEOUT_S)
        response = await transport.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        stream = aiter(response.stream)
        assert await anext(stream) == SSE_EVENTS[0]
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout) as caught:
            await anext(stream)
        waited_s = time.perf_counter() - started
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()  # timed out = closed
        await transport.aclose()

    assert SHORT_TIMEOUT_S <= waited_s < SHORT_TIMEOUT_S + 1
    assert caught.value.request is request


async def test_server_silent_after_the_request_raises_read_timeout_on_the_head() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.wait_until_client_closes()

    async with serving(script) as server:
        transport = LeanTransport()
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(make_request(server.url(), read_s=SHORT_TIMEOUT_S))
        await transport.aclose()


async def test_refused_connection_raises_connect_error() -> None:
    port = await unused_port()
    transport = LeanTransport()
    with pytest.raises(httpx.ConnectError, match="Connection refused") as caught:
        await transport.handle_async_request(make_request(f"http://127.0.0.1:{port}/"))
    await transport.aclose()

    assert str(caught.value).startswith("connect failed: ConnectionRefusedError:")


async def test_a_scheme_other_than_http_or_https_is_refused_before_connecting() -> None:
    transport = LeanTransport()
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))
    await transport.aclose()


async def test_tls_handshake_that_never_completes_raises_connect_timeout() -> None:
    async def script(side: ServerSide) -> None:
        await side.wait_until_client_closes()  # a TCP server that never speaks TLS

    async with serving(script) as server:
        transport = LeanTransport()
        url = f"https://127.0.0.1:{server.port}/"
        with pytest.raises(httpx.ConnectTimeout):
            await transport.handle_async_request(make_request(url, connect_s=SHORT_TIMEOUT_S))
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await transport.aclose()


async def test_send_blocked_by_a_server_that_never_reads_raises_write_timeout() -> None:
    async def script(side: ServerSide) -> None:
        await trio.sleep_forever()  # read nothing, so the client's send buffer fills

    async with serving(script) as server, aclosing(endless_body()) as body:
        transport = LeanTransport()
        request = make_request(server.url(), content=body)
        request.extensions["timeout"]["write"] = SHORT_TIMEOUT_S
        with pytest.raises(httpx.WriteTimeout):
            await transport.handle_async_request(request)
        await transport.aclose()


async def test_early_answer_while_the_body_is_still_being_sent_is_returned() -> None:
    # A server refusing a huge prompt answers 413 before reading it all and hangs up; our
    # send then fails, and the answer must still win over the write error.
    async def script(side: ServerSide) -> None:
        await side.read_head()
        await side.send_raw(
            b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbig"
        )

    async with serving(script) as server, aclosing(endless_body()) as request_body:
        transport = LeanTransport()
        response, body = await fetch_with(
            transport, make_request(server.url(), content=request_body)
        )
        await transport.aclose()

    assert response.status_code == 413
    assert body == [b"big"]


@pytest.mark.parametrize("reading", ["iterated", "pumped"])
async def test_cancelling_the_reader_mid_body_closes_the_connection(reading: str) -> None:
    async def script(side: ServerSide) -> None:
        if side.index == 0:
            await side.read_request()
            await side.send(sse_head())
            await trio.sleep(0.01)  # the event in a read of its own (pumped: the reactor's)
            await side.send(h11.Data(data=SSE_EVENTS[0]))
            await side.wait_until_client_closes()
        else:
            await serve_ok_until_client_closes(side)

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url()))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        received = []
        with trio.CancelScope() as scope:
            if reading == "iterated":
                async for chunk in response.stream:
                    received.append(chunk)
                    scope.cancel()  # the next read is cancelled mid-response
            else:

                def on_data(data: bytes, waited_ns: int | None) -> bool:
                    received.append(data)
                    scope.cancel()  # from the reactor's task: the wait is aborted at once
                    return True

                await pump(response.stream, on_data)
        assert watched(transport) == 0
        # Closed by the cancellation itself, before anyone closes the response.
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await response.stream.aclose()
        after, after_body = await fetch(transport, server.url())
        await transport.aclose()

    assert scope.cancelled_caught
    assert received == [SSE_EVENTS[0]]
    assert after_body == [b"ok"]
    assert after.extensions["onybench.connect_ns"] is not None
    assert len(server.connections) == 2


async def test_cancelling_a_request_that_awaits_its_head_closes_the_connection() -> None:
    request_arrived = trio.Event()

    async def script(side: ServerSide) -> None:
        await side.read_request()
        request_arrived.set()
        await side.wait_until_client_closes()

    async with serving(script) as server:
        transport = LeanTransport()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.handle_async_request, make_request(server.url()))
            await request_arrived.wait()
            nursery.cancel_scope.cancel()
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await transport.aclose()


async def test_closing_a_response_before_its_end_closes_the_connection() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head(), h11.Data(data=SSE_EVENTS[0]))
        await side.wait_until_client_closes()

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url()))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        assert await anext(aiter(response.stream)) == SSE_EVENTS[0]
        await response.stream.aclose()
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await transport.aclose()


async def test_closing_an_unread_response_whose_body_already_arrived_keeps_the_connection() -> None:
    async with serving(serve_ok_until_client_closes) as server:
        transport = LeanTransport()
        first = await transport.handle_async_request(make_request(server.url()))
        assert isinstance(first.stream, httpx.AsyncByteStream)
        await first.stream.aclose()  # head and body came in one write: nothing left to read
        second, second_body = await fetch(transport, server.url())
        await transport.aclose()

    assert second_body == [b"ok"]
    assert second.extensions["onybench.connect_ns"] is None
    assert len(server.connections) == 1


async def test_aclose_closes_idle_connections_and_refuses_new_requests() -> None:
    async with serving(serve_ok_until_client_closes) as server:
        transport = LeanTransport()
        await fetch(transport, server.url())
        await transport.aclose()
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        with pytest.raises(RuntimeError, match="closed"):
            await transport.handle_async_request(make_request(server.url()))


async def test_request_without_host_or_length_gets_host_and_chunked_framing() -> None:
    received: list[tuple[h11.Request, bytes]] = []

    async def script(side: ServerSide) -> None:
        exchange = await side.read_request()
        assert exchange is not None
        received.append(exchange)
        await side.respond()

    async def body() -> AsyncIterator[bytes]:
        yield b""
        yield b'{"prompt": '
        yield b'"hi"}'

    async with serving(script) as server:
        request = make_request(server.url(), content=body())
        del request.headers["host"]
        del request.headers["transfer-encoding"]
        transport = LeanTransport()
        _, response_body = await fetch_with(transport, request)
        await transport.aclose()

    assert response_body == [b"ok"]
    [(head, request_body)] = received
    headers = dict(head.headers)
    assert headers[b"host"] == f"127.0.0.1:{server.port}".encode()
    assert headers[b"transfer-encoding"] == b"chunked"
    assert request_body == b'{"prompt": "hi"}'


def tls_server_context(tmp_path: Path) -> ssl.SSLContext:
    (tmp_path / "cert.pem").write_text(CERT_PEM)
    (tmp_path / "key.pem").write_text(KEY_PEM)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    context.set_alpn_protocols(["http/1.1"])
    return context


async def test_https_negotiates_http_1_1_times_the_handshake_and_reuses_the_connection(
    tmp_path: Path,
) -> None:
    alpn_seen: list[str | None] = []

    async def script(side: ServerSide) -> None:
        assert isinstance(side.stream, trio.SSLStream)
        await side.stream.do_handshake()
        alpn_seen.append(side.stream.selected_alpn_protocol())
        await serve_ok_until_client_closes(side)

    client_context = ssl.create_default_context(cadata=CERT_PEM)
    client_context.set_alpn_protocols(["http/1.1"])
    async with serving(script, tls=tls_server_context(tmp_path)) as server:
        transport = LeanTransport(verify=client_context)
        first, first_body = await fetch(transport, server.url())
        second, second_body = await fetch(transport, server.url())
        await transport.aclose()

    assert first_body == second_body == [b"ok"]
    assert isinstance(first.extensions["onybench.connect_ns"], int)
    assert second.extensions["onybench.connect_ns"] is None
    assert alpn_seen == ["http/1.1"]
    assert len(server.connections) == 1


async def test_https_to_an_untrusted_certificate_raises_connect_error(tmp_path: Path) -> None:
    async with serving(serve_ok_until_client_closes, tls=tls_server_context(tmp_path)) as server:
        transport = LeanTransport()  # system CAs: the test certificate is not among them
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await transport.handle_async_request(make_request(server.url()))
        await transport.aclose()


# --- (b) through httpx's own API ----------------------------------------------------------


async def test_httpx_client_streams_a_json_post_end_to_end() -> None:
    received: list[tuple[h11.Request, bytes]] = []
    consumed = trio.Semaphore(0)  # released by the client per chunk read

    async def script(side: ServerSide) -> None:
        while (exchange := await side.read_request()) is not None:
            received.append(exchange)
            await side.send(sse_head())
            for event_bytes in SSE_EVENTS:
                await side.send(h11.Data(data=event_bytes))
                await consumed.acquire()  # the next write goes out once this one was read
            await side.send(h11.EndOfMessage())
            side.h11.start_next_cycle()

    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with (
        serving(script) as server,
        httpx.AsyncClient(transport=LeanTransport(), timeout=5.0) as client,
    ):
        extensions = []
        for _ in range(2):
            async with client.stream("POST", server.url(), json=payload) as response:
                assert response.status_code == 200
                extensions.append(response.extensions)
                chunks = []
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
                    consumed.release()
            assert chunks == SSE_EVENTS

    assert isinstance(extensions[0]["onybench.connect_ns"], int)
    assert extensions[1]["onybench.connect_ns"] is None
    assert extensions[0]["http_version"] == b"HTTP/1.1"
    assert len(server.connections) == 1
    for head, body in received:
        headers = dict(head.headers)
        assert head.method == b"POST"
        assert head.target == b"/v1/chat/completions"
        assert headers[b"host"] == f"127.0.0.1:{server.port}".encode()
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"content-length"] == str(len(body)).encode()
        assert json.loads(body) == payload


async def test_httpx_client_maps_a_refused_connection_to_connect_error() -> None:
    port = await unused_port()
    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/v1/models")


async def test_a_server_that_closes_after_each_response_is_not_reused_after_the_first_sign() -> (
    None
):
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.respond()
        # returning closes the connection right behind the response, keep-alive announced

    async with serving(script) as server:
        transport = LeanTransport()
        outcomes: list[httpx.Response | httpx.TransportError] = []
        for _ in range(6):
            try:
                outcomes.append((await fetch(transport, server.url()))[0])
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                outcomes.append(exc)
        await transport.aclose()

    # At most the one request that reused a connection before the close showed is lost;
    # from the first sign on, every request gets a connection of its own.
    lost = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
    assert lost in ([], [1])
    later = [o for o in outcomes[2:] if isinstance(o, httpx.Response)]
    assert len(later) == 4
    assert all(isinstance(o.extensions["onybench.connect_ns"], int) for o in later)


async def test_an_origin_seen_keeping_connections_is_not_given_up_for_one_close() -> None:
    requests_seen = [0]

    async def script(side: ServerSide) -> None:
        while await side.read_request() is not None:
            requests_seen[0] += 1
            await side.respond()
            if requests_seen[0] == 2:
                return  # the server closes this (proven) connection once, e.g. a restart

    async with serving(script) as server:
        transport = LeanTransport()
        connect = []
        for _ in range(4):
            response, _ = await fetch(transport, server.url())
            connect.append(response.extensions["onybench.connect_ns"])
            await trio.sleep(0.01)  # the close reaches the client before it reuses
        await transport.aclose()

    assert connect[1] is None  # the second request proved reuse
    assert isinstance(connect[2], int)  # the closed connection was replaced ...
    assert connect[3] is None  # ... and reuse went on


async def test_an_ip_address_is_connected_directly_and_a_name_through_trio() -> None:
    async with serving(serve_ok_until_client_closes) as server:
        transport = LeanTransport()
        by_address, address_body = await fetch(transport, server.url())
        by_name, name_body = await fetch(transport, server.url().replace("127.0.0.1", "localhost"))
        await transport.aclose()
    assert address_body == name_body == [b"ok"]
    # Two origins, so two connections, each timed.
    assert by_address.extensions["onybench.connect_ns"] > 0
    assert by_name.extensions["onybench.connect_ns"] > 0
    assert len(server.connections) == 2


@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("127.0.0.1", trio.socket.AF_INET),
        ("::1", trio.socket.AF_INET6),
        ("fe80::1%lo", trio.socket.AF_INET6),
        ("localhost", None),
        ("api.onysoft.com", None),
    ],
)
def test_only_ip_literals_skip_the_name_lookup(host: str, family: int | None) -> None:
    assert _ip_family(host) == family


def test_an_ipv6_zone_written_as_in_a_url_reaches_the_socket_layer_as_getaddrinfo_wants() -> None:
    raw_host = httpx.URL("http://[fe80::1%25eth0]:8000/v1").raw_host
    assert _socket_host(raw_host) == "fe80::1%eth0"
    assert _ip_family(_socket_host(raw_host)) == trio.socket.AF_INET6
    assert _socket_host(b"127.0.0.1") == "127.0.0.1"
    assert _socket_host(b"api.onysoft.com") == "api.onysoft.com"


# --- (c) pump: bodies read by the transport's reactor, without a task wake-up per read ----


def watched(transport: LeanTransport) -> int:
    """How many sockets the transport's reactor watches right now."""
    assert transport._reactor is not None
    return len(transport._reactor._watchers)


async def pumped(transport: LeanTransport, response: httpx.Response) -> list[bytes]:
    """What `pump` hands on, noting that the reactor was watching the socket meanwhile."""
    assert isinstance(response.stream, httpx.AsyncByteStream)
    received: list[bytes] = []

    def on_data(data: bytes, waited_ns: int | None) -> bool:
        assert watched(transport) == 1
        received.append(data)
        return True

    await pump(response.stream, on_data)
    return received


async def test_pump_hands_on_each_server_write_through_the_reactor_and_reuses_the_connection() -> (
    None
):
    async def script(side: ServerSide) -> None:
        while await side.read_request() is not None:
            await side.send(sse_head())
            await trio.sleep(0.01)  # the head alone: every event comes in its own read
            for event_bytes in SSE_EVENTS:
                await side.send(h11.Data(data=event_bytes))
                await trio.sleep(0.01)
            await side.send(h11.EndOfMessage())
            side.h11.start_next_cycle()

    async with serving(script) as server:
        transport = LeanTransport()
        first = await transport.handle_async_request(make_request(server.url(), json={}))
        first_body = await pumped(transport, first)
        second = await transport.handle_async_request(make_request(server.url(), json={}))
        second_body = await pumped(transport, second)
        await transport.aclose()

    assert first_body == second_body == SSE_EVENTS
    assert second.extensions["onybench.connect_ns"] is None  # reused after the pumped body
    assert watched(transport) == 0
    assert len(server.connections) == 1


async def test_pumped_bodies_of_concurrent_streams_each_get_their_own_bytes() -> None:
    async def script(side: ServerSide) -> None:
        request = await side.read_request()
        assert request is not None
        tag = json.loads(request[1])["tag"].encode()
        await side.send(sse_head())
        for n in range(5):
            await side.send(h11.Data(data=b"data: %s-%d\n\n" % (tag, n)))
            await trio.sleep(0.002)
        await side.send(h11.EndOfMessage())

    results: dict[str, list[bytes]] = {}
    async with serving(script) as server:
        transport = LeanTransport()

        async def one(tag: str) -> None:
            response = await transport.handle_async_request(
                make_request(server.url(), json={"tag": tag})
            )
            results[tag] = await pumped_any(response)

        async with trio.open_nursery() as nursery:
            for tag in ("a", "b", "c", "d"):
                nursery.start_soon(one, tag)
        await transport.aclose()

    for tag, chunks in results.items():
        assert b"".join(chunks) == b"".join(
            b"data: %s-%d\n\n" % (tag.encode(), n) for n in range(5)
        )
    assert watched(transport) == 0


async def pumped_any(response: httpx.Response) -> list[bytes]:
    assert isinstance(response.stream, httpx.AsyncByteStream)
    received: list[bytes] = []
    await pump(response.stream, collect(received))
    return received


def collect(into: list[bytes]) -> OnData:
    """An `on_data` that keeps what it is given (and wants no kernel waits)."""

    def on_data(data: bytes, waited_ns: int | None) -> bool:
        into.append(data)
        return False

    return on_data


@pytest.mark.parametrize(
    ("bad_bytes", "message"),
    [
        pytest.param(b"", "incomplete body", id="closed-midway"),
        pytest.param(b"zz\r\n", "malformed chunk size line b'zz", id="malformed"),
    ],
)
async def test_a_bad_pumped_body_raises_remote_protocol_error_after_what_came(
    bad_bytes: bytes, message: str
) -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head(), h11.Data(data=SSE_EVENTS[0]))
        await trio.sleep(0.01)
        await side.send_raw(bad_bytes)
        if bad_bytes:
            await side.wait_until_client_closes()
        # else: returning closes the socket mid-body

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url()))
        received: list[bytes] = []
        assert isinstance(response.stream, httpx.AsyncByteStream)
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            await pump(response.stream, collect(received))
        if bad_bytes:  # the server still listens: it sees the client close
            with trio.fail_after(5):
                await server.connections[0].closed_by_client.wait()
        assert not any(transport._idle.values())
        await response.stream.aclose()
        await transport.aclose()

    assert received == [SSE_EVENTS[0]]
    assert watched(transport) == 0


async def test_an_error_raised_by_the_pump_consumer_ends_the_body_as_it_is() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head())
        await side.send(h11.Data(data=SSE_EVENTS[0]))
        await side.wait_until_client_closes()

    class Refused(Exception):
        pass

    def refuse(data: bytes, waited_ns: int | None) -> bool:
        raise Refused(data)

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url()))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        with pytest.raises(Refused):
            await pump(response.stream, refuse)
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await transport.aclose()

    assert watched(transport) == 0


async def test_pump_iterates_where_there_is_no_epoll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("onybench.transport.reactor_available", lambda: False)

    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head(), *(h11.Data(data=e) for e in SSE_EVENTS), h11.EndOfMessage())

    async with serving(script) as server:
        transport = LeanTransport()
        assert transport._reactor is None
        response = await transport.handle_async_request(make_request(server.url()))
        body = await pumped_any(response)
        await transport.aclose()

    assert body == [b"".join(SSE_EVENTS)]


async def test_a_pump_consumer_cancelling_on_the_read_that_ends_the_body_is_cancelled() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head())
        await trio.sleep(0.01)  # the rest comes in one read of its own: last event and end
        await side.send(h11.Data(data=SSE_EVENTS[2]), h11.EndOfMessage())
        await side.wait_until_client_closes()

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url()))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        with trio.CancelScope() as scope:

            def on_data(data: bytes, waited_ns: int | None) -> bool:
                scope.cancel()
                return True

            await pump(response.stream, on_data)
        await trio.sleep(0.01)  # a crash in the reactor's task would end the run here
        with trio.fail_after(5):
            await server.connections[0].closed_by_client.wait()
        await transport.aclose()

    assert scope.cancelled_caught
    assert watched(transport) == 0


async def test_a_body_pumped_after_the_transport_closed_is_still_read() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head())
        await trio.sleep(0.01)
        await side.send(h11.Data(data=SSE_EVENTS[0]), h11.EndOfMessage())

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url()))
        await transport.aclose()
        body = await pumped_any(response)

    assert body == [SSE_EVENTS[0]]


@pytest.mark.skipif(not arrival._KNOWN, reason="receive stamps: Linux x86_64/aarch64")
async def test_pumped_reads_say_how_long_the_kernel_held_their_bytes() -> None:
    async def script(side: ServerSide) -> None:
        await side.read_request()
        await side.send(sse_head(), h11.Data(data=SSE_EVENTS[0]))  # comes with the head
        await trio.sleep(0.01)
        await side.send(h11.Data(data=SSE_EVENTS[1]))
        await trio.sleep(0.01)
        await side.send(h11.Data(data=SSE_EVENTS[2]), h11.EndOfMessage())

    waits: list[int | None] = []

    def on_data(data: bytes, waited_ns: int | None) -> bool:
        waits.append(waited_ns)
        return len(waits) < 2  # wanted for the first two reads only

    async with serving(script) as server:
        transport = LeanTransport()
        response = await transport.handle_async_request(make_request(server.url()))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        await pump(response.stream, on_data)
        await transport.aclose()

    # The bytes read with the head were read by trio, not the reactor: no stamp there.
    assert waits[0] is None
    assert len(waits) == 3
    assert waits[1] is not None
    assert 0 <= waits[1] < 1_000_000_000
    assert waits[2] is None  # no longer wanted: a plain read
