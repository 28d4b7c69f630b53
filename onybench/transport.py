"""A lean HTTP/1.1 transport for httpx: trio sockets + h11, an O(1) keep-alive pool.

Why not httpx's default transport: httpcore's pool rescans every connection whenever a
request starts or finishes, so with thousands of concurrent streams its cost grows with the
square of open connections, and its per-event overhead is several times ours. A load
generator limits its own concurrency, so the pool here does no limiting, no queueing and no
scanning: idle connections wait in a LIFO list per origin.

    client = httpx.AsyncClient(transport=LeanTransport())

A body is an ``httpx.AsyncByteStream``: iterate it as usual, or hand it to `pump` with a
callback for each read. Pumped, a plain-TCP chunked body with no read timeout of its own
(the client's: ``BODY_READ_TIMEOUT`` None) is read by the transport's reactor
(`onybench/reactor.py`, Linux's epoll): its socket stays registered in one epoll set that
one task reads, and the callback runs right after each read, so a read costs no task
wake-up (which is most of what a read costs in trio). Its task sleeps until the body
ends, fails, or is cancelled; what the callback raises ends the body.

What it does not do, on purpose:
- HTTP/2, protocol upgrades (101) and CONNECT tunnels: HTTP/1.1 only.
- Proxies: there is no ``proxy`` argument. (httpx itself ignores ``HTTP(S)_PROXY`` when a
  custom transport is given, so every request goes straight to the target.)
- Retries: a request that fails is reported, never sent twice here (the client resends
  only when asked, `--retries`, and counts it). A server that closes connections after
  every response costs the one request whose reused connection it had closed; the pool
  then stops reusing that origin's connections (see `_checkout`).

Errors are httpx's own (``httpx.ConnectError``, ``httpx.ReadTimeout``, ...), mapped from
trio, OSError, ssl and h11 errors in one place, ``_raise_mapped``; each carries the
request. The client turns them into onybench's ``TargetError``s.

Request extensions: ``BODY_READ_TIMEOUT`` (``"onybench.body_read_timeout"``), the read
timeout for the body alone, for a caller that bounds the body's silences itself.

Extensions on every response:
- ``"http_version"``: ``b"HTTP/1.1"`` (or ``b"HTTP/1.0"`` if the server says so).
- ``"reason_phrase"``: bytes, as sent by the server.
- ``"onybench.connect_ns"``: nanoseconds spent opening the connection (DNS + TCP + TLS) when
  this request opened it, ``None`` when it reused a kept-alive connection.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import select
import socket as stdlib_socket
import ssl
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Literal, NamedTuple, NoReturn, TypeVar

import h11
import httpx
import outcome
import trio

from onybench.arrival import enable_receive_stamps, receive
from onybench.reactor import Reactor, reactor_available
from onybench.wire.chunked_body import ChunkedBodyDecoder, ChunkedBodyError

__all__ = ["BODY_READ_TIMEOUT", "LeanTransport", "pump"]

# A request extension: the read timeout for the body alone (seconds, or None for none),
# for a caller that bounds the body's silences itself; the head keeps the read timeout.
BODY_READ_TIMEOUT = "onybench.body_read_timeout"

# One receive_some asks for up to this much. SSE events are small, so a read normally
# returns whatever one server write put on the wire; the cap only matters for big bodies.
_READ_SIZE = 64 * 1024

_DEFAULT_PORTS = {b"http": 80, b"https": 443}

_T = TypeVar("_T")

# (scheme, host, port): an origin, the unit of connection reuse.
_Origin = tuple[bytes, bytes, int]

# Which step of an exchange an error happened in; it decides the httpx exception.
_Phase = Literal["connect", "write", "read"]

# The unbounded "timeout" httpx means by None; trio wants a number.
_NO_DEADLINE = float("inf")
# A pooled connection found closed sooner than this after its response was not
# timed out by the server's keep-alive (seconds at the least): it was closed on purpose.
_PROMPT_CLOSE_S = 1.0


class LeanTransport(httpx.AsyncBaseTransport):
    """An HTTP/1.1 transport with unlimited connections and O(1) keep-alive reuse.

    Args:
        verify: ``True`` (default) verifies https targets against the system's CAs;
            ``False`` turns verification off (self-signed test servers); an
            ``ssl.SSLContext`` is used as given (set its ALPN to ``["http/1.1"]`` yourself).

    Timeouts come per request from httpx (``request.extensions["timeout"]``, seconds):
    ``connect`` bounds DNS + TCP + TLS, ``read`` bounds each wait for bytes (not the whole
    response: a stream that keeps sending never times out), ``write`` bounds each send.
    ``pool`` is ignored: there is no pool limit to wait for.

    All requests of one transport must run in one trio run (the pool holds trio sockets).
    """

    def __init__(self, *, verify: bool | ssl.SSLContext = True) -> None:
        self._verify = verify
        # Built at the first https connection: loading the system's CAs takes ~10 ms,
        # wasted on the plain-http targets (the mock, local servers) most runs use.
        self._ssl_context: ssl.SSLContext | None = None
        # Idle connections per origin; the last one released is the first reused, so the
        # warmest connection goes out and the coldest ones age out at the server.
        # No lock: trio runs every task on one thread and nothing below awaits between
        # reading and writing this dict, so no task can see it half-updated.
        self._idle: dict[_Origin, list[_Connection]] = {}
        # Origins seen closing a connection right after a response while announcing
        # keep-alive (llama.cpp's server): their connections are never pooled again,
        # since a request sent on one races the close and is lost.
        self._closes_after_response: set[_Origin] = set()
        # Until one reused connection to an origin has been answered, only one request
        # at a time may try reuse (the probe); the others open connections. So a server
        # that closes after every response costs one lost request, not one per stream.
        self._keeps_alive: set[_Origin] = set()
        self._probing: set[_Origin] = set()
        # Reads the plain-TCP chunked bodies that `pump` is asked for (Linux; see reactor.py).
        self._reactor = Reactor() if reactor_available() else None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` and return once the response head has arrived.

        The body streams from ``response.stream``; the connection goes back to the pool
        when the body has been read to its end and both sides can keep it alive.
        """
        if self._closed:
            raise RuntimeError("LeanTransport is closed")
        timeouts = request.extensions.get("timeout") or {}
        read_timeout: float | None = timeouts.get("read")
        body_read_timeout: float | None = request.extensions.get(BODY_READ_TIMEOUT, read_timeout)
        url = request.url
        port = url.port or _DEFAULT_PORTS.get(url.raw_scheme)
        if port is None:
            raise httpx.UnsupportedProtocol(
                f"LeanTransport speaks http and https, not {url.scheme!r}", request=request
            )
        origin: _Origin = (url.raw_scheme, url.raw_host, port)

        connect_ns: int | None = None
        conn = self._checkout(origin)
        if conn is None:
            conn, connect_ns = await self._connect(request, origin, timeouts.get("connect"))

        try:
            write_error: Exception | None = None
            try:
                await _send_request(conn, request, timeouts.get("write"))
            except (OSError, trio.BrokenResourceError) as exc:
                # The server may have answered early and closed (413 to a huge prompt, 401
                # before reading the body). Its answer beats our write error, so read on.
                write_error = exc
            except Exception as exc:
                _raise_mapped(exc, "write", request)
            try:
                head = await _receive_head(conn, read_timeout)
            except Exception as exc:
                if (
                    connect_ns is None
                    and origin not in self._keeps_alive
                    and not isinstance(exc, trio.TooSlowError)
                ):
                    # A reused connection closed before any answer: the server closes
                    # after responses. This request is lost (and classified); the next
                    # ones get connections of their own.
                    self._closes_after_response.add(origin)
                if write_error is not None:
                    _raise_mapped(write_error, "write", request)
                _raise_mapped(exc, "read", request)
        except BaseException:
            # Cancelled too: a half-done exchange leaves the connection unusable.
            conn.close()
            if connect_ns is None:  # only a request on a reused connection can be the probe
                self._probing.discard(origin)
            raise
        if connect_ns is None and origin in self._probing:
            # The first reused connection was answered: this server keeps them.
            self._probing.discard(origin)
            self._keeps_alive.add(origin)

        body: _H11Body | _ChunkedBody
        if _is_chunked(request, head):
            body = _ChunkedBody(self, conn, request, body_read_timeout)
        else:
            body = _H11Body(self, conn, request, body_read_timeout)
        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            stream=body,
            extensions={
                "http_version": b"HTTP/" + head.http_version,
                "reason_phrase": head.reason,
                "onybench.connect_ns": connect_ns,
            },
        )

    async def aclose(self) -> None:
        """Close every idle connection; connections still streaming close when released."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                conn.close()
        if self._reactor is not None:
            self._reactor.close()

    def _checkout(self, origin: _Origin) -> _Connection | None:
        """An idle connection to `origin` the server has not closed, or None."""
        idle = self._idle.get(origin)
        if origin not in self._keeps_alive and origin in self._probing:
            return None
        while idle:
            conn = idle.pop()
            # An idle connection has nothing to say: if its socket is readable, the server
            # closed it (EOF) or sent junk. llama.cpp's server, for one, closes after every
            # response while announcing keep-alive; a request sent there would be lost.
            if _is_readable(conn.socket):
                conn.close()
                if (
                    origin not in self._keeps_alive
                    and trio.current_time() - conn.released_at < _PROMPT_CLOSE_S
                ):
                    self._closes_after_response.add(origin)
                continue
            if origin not in self._keeps_alive:
                self._probing.add(origin)
            return conn
        return None

    def _release(self, conn: _Connection, reusable: bool) -> None:
        """Called once the body was read to its end: pool `conn` if it can be reused."""
        if reusable and _is_readable(conn.socket):
            # EOF already, right behind the response's last byte: closed on purpose, and
            # by a server not yet seen keeping connections, for good.
            reusable = False
            if conn.origin not in self._keeps_alive:
                self._closes_after_response.add(conn.origin)
        if reusable and not self._closed and conn.origin not in self._closes_after_response:
            conn.released_at = trio.current_time()
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            conn.close()

    async def _connect(
        self, request: httpx.Request, origin: _Origin, timeout: float | None
    ) -> tuple[_Connection, int]:
        """Open a connection to `origin`; return it with its set-up time in ns."""
        scheme, raw_host, port = origin
        host = _socket_host(raw_host)
        started_ns = time.perf_counter_ns()
        deadline = _NO_DEADLINE if timeout is None else trio.current_time() + timeout
        try:
            with trio.CancelScope(deadline=deadline) as scope:
                tcp_stream, stamped = await _open_tcp(host, port)
                stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = tcp_stream
                if scheme == b"https":
                    if self._ssl_context is None:
                        self._ssl_context = _make_ssl_context(self._verify)
                    tls_stream = trio.SSLStream(
                        tcp_stream,
                        self._ssl_context,
                        server_hostname=host,
                        # Many servers end a response without TLS close_notify; accept it
                        # like every browser does, so EOF is an ordinary end.
                        https_compatible=True,
                    )
                    try:
                        await tls_stream.do_handshake()
                        alpn = tls_stream.selected_alpn_protocol()
                        if alpn not in (None, "http/1.1"):
                            raise ssl.SSLError(f"server chose ALPN {alpn!r}, not http/1.1")
                    except BaseException:
                        tcp_stream.socket.close()
                        raise
                    stream = tls_stream
            if scope.cancelled_caught:
                raise trio.TooSlowError
        except Exception as exc:
            _raise_mapped(exc, "connect", request)
        connect_ns = time.perf_counter_ns() - started_ns
        if stream is not tcp_stream:
            stamped = None  # TLS: the reactor does not read it
        return _Connection(stream, tcp_stream.socket, origin, stamped), connect_ns


# Called with each read's body bytes and how long (ns) the kernel had held them before
# the read, when it said (see `onybench.arrival`), else None; returns whether it still
# wants that wait (reading for it costs a few µs a read).
OnData = Callable[[bytes, int | None], bool]


async def pump(stream: httpx.AsyncByteStream, on_data: OnData) -> None:
    """Read a response body to its end, calling `on_data` with each read's bytes (and
    how long the kernel had held them, when it stamps what it receives and `on_data`
    last returned True).

    For a consumer with nothing to do between reads but take the bytes (the client
    stamps and splits them): a plain-TCP chunked body of `LeanTransport` is then read by
    the transport's reactor, with no task wake-up per read; any other stream is iterated.
    `on_data` runs synchronously right after the read; what it raises ends the body (the
    connection is closed) and is raised here as it is; so does a cancellation it makes.
    Read and framing errors are httpx's.
    """
    if isinstance(stream, _Body):
        await stream.pump(on_data)
        return
    async for data in stream:
        on_data(data, None)


async def _open_tcp(host: str, port: int) -> tuple[trio.SocketStream, stdlib_socket.socket | None]:
    """A TCP connection to `host`:`port`, and its socket when the kernel stamps what it
    receives (`onybench.arrival`), else None.

    An IP address is connected to directly: trio's `open_tcp_stream` runs happy
    eyeballs in a nursery of its own, which costs more CPU than the connect itself
    when a benchmark opens a thousand streams at once, and has nothing to choose
    between for a single address. A name goes through `open_tcp_stream` (whose
    socket is trio's own: no receive stamps there).
    """
    family = _ip_family(host)
    if family is None:
        return await trio.open_tcp_stream(host, port), None
    sock = stdlib_socket.socket(family, stdlib_socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        stamped = enable_receive_stamps(sock)
        trio_sock = trio.socket.from_stdlib_socket(sock)
        await trio_sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(trio_sock), sock if stamped else None


def _socket_host(raw_host: bytes) -> str:
    """The URL's host as the socket layer takes it: an IPv6 zone is written ``%25`` in a
    URL (RFC 6874, ``http://[fe80::1%25eth0]:8000``) and ``%`` to getaddrinfo."""
    return raw_host.decode("ascii").replace("%25", "%", 1)


@functools.lru_cache(maxsize=64)
def _ip_family(host: str) -> int | None:
    """AF_INET or AF_INET6 when `host` is an IP address literal, else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return trio.socket.AF_INET6 if address.version == 6 else trio.socket.AF_INET


class _Connection:
    """One socket, its h11 state machine, and the origin it belongs to."""

    __slots__ = ("h11", "origin", "plain_fd", "released_at", "socket", "stamped", "stream")

    def __init__(
        self,
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream],
        socket: trio.socket.SocketType,
        origin: _Origin,
        stamped: stdlib_socket.socket | None = None,
    ) -> None:
        self.stream = stream
        self.socket = socket
        # The same socket as the standard library's, when the kernel stamps what it
        # receives: the reactor reads it with recvmsg to learn how long bytes waited.
        self.stamped = stamped
        # Plain TCP's descriptor, for the body's reads (see _ChunkedBody); None for TLS.
        self.plain_fd = socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self.origin = origin
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        self.released_at = 0.0  # trio time it last went back to the pool

    def close(self) -> None:
        """Close the socket now.

        Synchronous on purpose: it has no checkpoint, so it cannot be interrupted by a
        cancellation and is safe in any ``except``/``finally``, where an ``await`` could
        raise a fresh ``Cancelled`` and skip the close. For both stream kinds this is what
        ``trio.aclose_forcefully`` comes down to (a TLS close_notify is skipped, as there).
        """
        self.socket.close()


class _Body(httpx.AsyncByteStream):
    """A response body: one ``bytes`` per socket read, as soon as it is decoded.

    All the body data one read brought (several chunked-encoding frames, i.e.
    several SSE events, when the server's writes were coalesced on the way) is
    handed out together, because the caller stamps each piece with its arrival
    time: events that arrived together must carry the same stamp.

    Iterates by ``__anext__`` rather than an async generator: no generator frame to
    suspend per chunk, and no unfinished generator left for the GC to close in an
    arbitrary context when a caller stops early. Subclasses decode: `_next_data`.
    """

    def __init__(
        self,
        transport: LeanTransport,
        conn: _Connection,
        request: httpx.Request,
        read_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn  # None once released or closed
        self._request = request
        self._read_timeout = read_timeout

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        try:
            data = await self._next_data(conn)
        except Exception as exc:
            self._conn = None
            conn.close()
            _raise_mapped(exc, "read", self._request)
        except BaseException:
            # Cancelled (or KeyboardInterrupt) mid-body: the rest of the response is
            # still on its way, so this connection can never carry another request.
            self._conn = None
            conn.close()
            raise
        if data is None:
            raise StopAsyncIteration
        return data

    async def _next_data(self, conn: _Connection) -> bytes | None:
        """The body bytes of the next read(s), never empty; None at the end (released)."""
        raise NotImplementedError

    async def pump(self, on_data: OnData) -> None:
        """See the module's `pump`: here, by iteration."""
        async for data in self:
            try:
                on_data(data, None)
            except BaseException:
                self._close()
                raise

    def _close(self) -> None:
        """Close the connection of a body that will not be read to its end."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _finish(self, conn: _Connection, reusable: bool) -> None:
        self._conn = None
        self._transport._release(conn, reusable)


class _H11Body(_Body):
    """A body h11 frames: ``Content-Length``, or read until the server closes."""

    async def _next_data(self, conn: _Connection) -> bytes | None:
        event = await _receive_event(conn, self._read_timeout)
        if type(event) is not h11.Data:
            self._finish_h11(conn, event)
            return None
        # h11 hands out a fresh bytearray; bytes() makes it the immutable type every
        # consumer expects, for one small copy per read.
        data = bytes(event.data)
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError:
                break  # raised again, and mapped, by the next read
            if type(event) is h11.Data:
                data += event.data
            elif event is h11.NEED_DATA:
                break
            else:
                self._finish_h11(conn, event)
                break
        return data

    async def aclose(self) -> None:
        """Pool the connection if its response is complete, else close it.

        A body that was not read to its end is not drained (an LLM stream can run for
        minutes): its connection is closed. Only what h11 already holds is looked at.
        """
        conn = self._conn
        if conn is None:
            return
        try:
            event = conn.h11.next_event()
            while type(event) is h11.Data:
                event = conn.h11.next_event()
        except h11.RemoteProtocolError:
            event = h11.NEED_DATA
        self._finish_h11(conn, event)

    def _finish_h11(self, conn: _Connection, event: object) -> None:
        h11_conn = conn.h11
        reusable = (
            type(event) is h11.EndOfMessage
            and h11_conn.our_state is h11.DONE
            and h11_conn.their_state is h11.DONE
            # Bytes beyond the response would be read as the next response's start.
            and not h11_conn.trailing_data[0]
        )
        if reusable:
            h11_conn.start_next_cycle()
        # Else MUST_CLOSE (``Connection: close``, HTTP/1.0), a response sent before our
        # request was complete, or a body not read to its end.
        self._finish(conn, reusable)


class _ChunkedBody(_Body):
    """A chunked body, decoded by `ChunkedBodyDecoder` rather than h11 (the hot path).

    h11 parsed the head and still holds the bytes that came with it; they are the
    body's first bytes. h11 never sees the rest, so a reused connection gets a fresh
    h11 state machine.
    """

    def __init__(
        self,
        transport: LeanTransport,
        conn: _Connection,
        request: httpx.Request,
        read_timeout: float | None,
    ) -> None:
        super().__init__(transport, conn, request, read_timeout)
        self._decoder = ChunkedBodyDecoder()
        self._early, at_eof = conn.h11.trailing_data
        # Whether the connection can carry another request once the body has ended:
        # h11 turns our DONE into MUST_CLOSE when either side's head said
        # ``Connection: close`` (or HTTP/1.0), and leaves it at SEND_BODY when the
        # server answered before our request was complete.
        self._keep_alive = conn.h11.our_state is h11.DONE and not at_eof
        # While the reactor reads this body (`pump`): who reads it, the consumer, and
        # the task that sleeps until the body ends.
        self._watch: _Watch | None = None
        self._on_data: OnData = _ignore
        # Its socket, while the consumer wants the kernel's waits (read with recvmsg).
        self._stamped: stdlib_socket.socket | None = None

    async def _next_data(self, conn: _Connection) -> bytes | None:
        decoder = self._decoder
        decoder.raise_if_failed()  # bad framing after the bytes the last read returned
        while True:
            if self._early:
                data, self._early = self._early, b""
                body = decoder.feed(data)
            else:
                received: bytes | bytearray
                fd = conn.plain_fd
                if fd is not None and self._read_timeout is None:
                    # Wait, then read(2): trio's SocketStream first tries a recv that
                    # mostly fails (one exception, three coroutines), ~8 µs a read here.
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        received = os.read(fd, _READ_SIZE)
                    except BlockingIOError:
                        continue  # woken with nothing to read after all
                else:
                    received = await _receive_some(conn, self._read_timeout)
                body = self._decode(received)
            if decoder.done:
                self._end(conn)
                return body or None
            if body:
                return body

    def _decode(self, received: bytes | bytearray) -> bytes:
        """The body bytes that one socket read completes (b"" at EOF is an error)."""
        if not received:
            raise ChunkedBodyError("incomplete body: server closed the connection mid-response")
        # Every consumer expects bytes; a TLS read may be a bytearray.
        return self._decoder.feed(received if type(received) is bytes else bytes(received))

    async def pump(self, on_data: OnData) -> None:
        """See the module's `pump`: a plain-TCP body with no read timeout is read by the
        transport's reactor, which calls `_readable` when the socket has bytes."""
        conn = self._conn
        reactor = self._transport._reactor
        if (
            conn is None
            or conn.plain_fd is None
            or self._read_timeout is not None
            or reactor is None
            or reactor.closing  # the transport was closed: streams still finish, iterated
        ):
            await super().pump(on_data)
            return
        fd = conn.plain_fd
        decoder = self._decoder
        stamped = conn.stamped
        try:
            if self._early:  # the body's first bytes, read with the head
                data, self._early = self._early, b""
                body = self._mapped(decoder.feed, data)
                if body and not on_data(body, None):
                    stamped = None
            if not decoder.done:
                self._mapped(decoder.raise_if_failed)
                self._watch = _Watch(reactor, fd, trio.lowlevel.current_task())
                self._stamped = stamped
                self._on_data = on_data
                reactor.watch(fd, self._readable)

                def unwatch(_: object) -> trio.lowlevel.Abort:
                    # Cancelled: a timeout, the run ending, or `on_data` itself (then
                    # inside `_readable`, whose `_wake` finds `_watch` gone).
                    self._watch = None
                    self._on_data = _ignore
                    reactor.unwatch(fd)
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(unwatch)
        except BaseException:
            self._close()
            raise
        self._end(conn)

    def _readable(self) -> None:
        """The reactor's callback: read, decode, hand on; wake the body's task at the end.

        Never raises: an error goes to the body's task (read and framing errors as
        httpx's, the consumer's as they are), which closes the connection."""
        watch = self._watch
        if watch is None:
            return
        stamped = self._stamped
        try:
            if stamped is None:
                received, waited_ns = os.read(watch.fd, _READ_SIZE), None
            else:
                received, waited_ns = receive(stamped, _READ_SIZE)
            body = self._decode(received)
        except BlockingIOError:
            return  # reported readable, nothing to read after all
        except (ChunkedBodyError, OSError) as exc:
            self._wake(_mapped_error(exc, "read", self._request))
            return
        try:
            if body and not self._on_data(body, waited_ns):
                self._stamped = None  # the wait is no longer wanted: plain reads
            if self._decoder.done:
                self._wake(None)
            else:
                self._mapped(self._decoder.raise_if_failed)  # bad framing after the bytes
        except Exception as exc:
            self._wake(exc)

    def _wake(self, error: Exception | None) -> None:
        """Stop watching and wake the body's task, unless it was cancelled meanwhile
        (by `on_data` too: its error, if it raised one as well, gives way)."""
        watch, self._watch = self._watch, None
        if watch is None:
            return
        reactor, fd, task = watch
        reactor.unwatch(fd)
        self._on_data = _ignore  # the consumer's closure, no longer needed here
        trio.lowlevel.reschedule(
            task, outcome.Value(None) if error is None else outcome.Error(error)
        )

    def _mapped(self, step: Callable[..., _T], *args: object) -> _T:
        """`step(*args)`, its framing errors raised as httpx's."""
        try:
            return step(*args)
        except ChunkedBodyError as exc:
            _raise_mapped(exc, "read", self._request)

    async def aclose(self) -> None:
        """Pool the connection if the whole body came with the head, else close it."""
        conn = self._conn
        if conn is None:
            return
        try:
            if self._early:
                self._decoder.feed(self._early)
        except ChunkedBodyError:
            pass
        if self._decoder.done:
            self._end(conn)
        else:
            self._finish(conn, False)

    def _end(self, conn: _Connection) -> None:
        # Bytes beyond the body would be read as the next response's start.
        reusable = self._keep_alive and not self._decoder.unused
        if reusable:
            conn.h11 = h11.Connection(our_role=h11.CLIENT)
        self._finish(conn, reusable)


def _ignore(data: bytes, waited_ns: int | None) -> bool:
    """No consumer (yet, or any more)."""
    return False


class _Watch(NamedTuple):
    """A body the reactor reads: for whom, which socket, and the task to wake."""

    reactor: Reactor
    fd: int
    task: trio.lowlevel.Task


def _is_chunked(request: httpx.Request, head: h11.Response) -> bool:
    """Whether the response has a chunked body (h11's framing rules, RFC 9112 §6.3)."""
    if request.method == "HEAD" or head.status_code in (204, 304):
        return False
    # h11 accepts no transfer coding but chunked, so any Transfer-Encoding means chunked.
    return any(name == b"transfer-encoding" for name, _ in head.headers)


async def _send_request(conn: _Connection, request: httpx.Request, timeout: float | None) -> None:
    """Send the request head and body through h11."""
    h11_conn = conn.h11
    headers = request.headers.raw
    if "host" not in request.headers:
        headers = [(b"Host", request.url.netloc), *headers]
    if not isinstance(request.stream, AsyncIterable):
        raise TypeError("LeanTransport needs an async request body (use httpx.AsyncClient)")
    body = aiter(request.stream)
    try:
        first_chunk = b""
        if "content-length" not in request.headers and "transfer-encoding" not in request.headers:
            # Without either header h11 frames the request as having no body. httpx always
            # frames the bodies it builds, so this is a hand-made request: peek at the body
            # and frame it as chunked if it has one.
            async for chunk in body:
                if chunk:
                    first_chunk = chunk
                    headers = [*headers, (b"Transfer-Encoding", b"chunked")]
                    break
        # The head and the first part of the body go out in one write, so a JSON request is
        # a single send (one segment for small prompts).
        pending = h11_conn.send(
            h11.Request(method=request.method, target=request.url.raw_path, headers=headers)
        )
        assert pending is not None  # h11 only returns None for ConnectionClosed
        if first_chunk:
            pending += h11_conn.send(h11.Data(data=first_chunk)) or b""
        async for chunk in body:
            if chunk:
                pending += h11_conn.send(h11.Data(data=chunk)) or b""
                await _send_all(conn, pending, timeout)
                pending = b""
        pending += h11_conn.send(h11.EndOfMessage()) or b""
        if pending:
            await _send_all(conn, pending, timeout)
    finally:
        # A body left unfinished (the send failed) would otherwise be finalized by the GC,
        # at an arbitrary time and with a warning from trio.
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


async def _send_all(conn: _Connection, data: bytes, timeout: float | None) -> None:
    if timeout is None:
        await conn.stream.send_all(data)
        return
    with trio.move_on_after(timeout) as scope:
        await conn.stream.send_all(data)
    if scope.cancelled_caught:
        raise trio.TooSlowError


async def _receive_head(conn: _Connection, read_timeout: float | None) -> h11.Response:
    """Read up to the final response head, skipping 1xx interim responses."""
    while True:
        event = await _receive_event(conn, read_timeout)
        if type(event) is h11.Response:
            return event
        if type(event) is not h11.InformationalResponse:
            raise h11.RemoteProtocolError(f"expected a response head, got {event!r}")
        if event.status_code == 101:
            raise h11.RemoteProtocolError("protocol upgrades (101) are not supported")


async def _receive_event(conn: _Connection, read_timeout: float | None) -> object:
    """The next h11 event, reading from the socket when h11 needs data (httpcore's shape)."""
    h11_conn = conn.h11
    at_eof = False
    while True:
        try:
            event = h11_conn.next_event()
        except h11.RemoteProtocolError as exc:
            if at_eof:
                raise h11.RemoteProtocolError(
                    f"incomplete body: server closed the connection mid-response ({exc})"
                ) from exc
            raise
        if event is not h11.NEED_DATA:
            return event
        data = await _receive_some(conn, read_timeout)
        if not data:
            if h11_conn.their_state is h11.SEND_RESPONSE:
                raise h11.RemoteProtocolError("server disconnected without sending a response")
            at_eof = True
        # SSLStream may hand out a bytearray; h11 copies it into its buffer either way,
        # so no bytes() copy here (h11's annotation says bytes, its code takes any buffer).
        h11_conn.receive_data(data)  # type: ignore[arg-type]


async def _receive_some(conn: _Connection, read_timeout: float | None) -> bytes | bytearray:
    """One socket read: whatever has arrived, up to _READ_SIZE; b"" at EOF.

    The per-chunk hot path: no allocation besides the read buffer, and a cancel scope
    only when there is a read timeout. (SSLStream may hand out a bytearray.)
    """
    if read_timeout is None:
        return await conn.stream.receive_some(_READ_SIZE)
    # A fresh scope per read: a deadline cannot span the yields between chunks,
    # and it restarts with each read, which is what a read timeout means.
    with trio.CancelScope(deadline=trio.current_time() + read_timeout) as scope:
        data = await conn.stream.receive_some(_READ_SIZE)
    if scope.cancelled_caught:
        raise trio.TooSlowError
    return data


def _raise_mapped(exc: Exception, phase: _Phase, request: httpx.Request) -> NoReturn:
    """Raise the httpx exception for `exc`, caught during `phase` of `request`: the one map.

    Most specific first:
        httpx.HTTPError           re-raised as it is
        trio.TooSlowError         ConnectTimeout / WriteTimeout / ReadTimeout
        h11.RemoteProtocolError,
        ChunkedBodyError          RemoteProtocolError (bad HTTP, EOF before or mid-response)
        h11.LocalProtocolError    LocalProtocolError (a request h11 cannot send)
        OSError (ssl.SSLError, refused, reset, DNS), trio.BrokenResourceError,
        trio.ClosedResourceError  ConnectError / WriteError / ReadError
        anything else             re-raised as it is (a bug, not a network condition)
    """
    mapped: httpx.TransportError
    if isinstance(exc, httpx.HTTPError):
        raise exc
    if isinstance(exc, trio.TooSlowError):
        timeout_error = {
            "connect": httpx.ConnectTimeout,
            "write": httpx.WriteTimeout,
            "read": httpx.ReadTimeout,
        }[phase]
        mapped = timeout_error(f"{phase} timed out", request=request)
    elif isinstance(exc, (h11.RemoteProtocolError, ChunkedBodyError)):
        mapped = httpx.RemoteProtocolError(str(exc), request=request)
    elif isinstance(exc, h11.LocalProtocolError):
        mapped = httpx.LocalProtocolError(str(exc), request=request)
    elif isinstance(exc, (OSError, trio.BrokenResourceError, trio.ClosedResourceError)):
        network_error = {
            "connect": httpx.ConnectError,
            "write": httpx.WriteError,
            "read": httpx.ReadError,
        }[phase]
        mapped = network_error(f"{phase} failed: {_root_causes(exc)}", request=request)
    else:
        raise exc
    raise mapped from exc


def _mapped_error(exc: Exception, phase: _Phase, request: httpx.Request) -> Exception:
    """The exception `_raise_mapped` raises, to hand on (to another task) rather than raise."""
    try:
        _raise_mapped(exc, phase, request)
    except Exception as mapped:
        return mapped


def _root_causes(exc: BaseException) -> str:
    """What actually failed: trio wraps socket and TLS errors in BrokenResourceError, and
    open_tcp_stream one error per address tried in an ExceptionGroup."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, BaseExceptionGroup):
        return "; ".join(_root_causes(leaf) for leaf in cause.exceptions)
    return f"{type(cause).__name__}: {cause}"


def _make_ssl_context(verify: bool | ssl.SSLContext) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def _is_readable(sock: trio.socket.SocketType) -> bool:
    """Whether `sock` has something to read right now (for an idle one: EOF), no waiting.

    poll, not select: select() fails on descriptors above 1024, and a load test holds
    thousands. (httpcore's ``is_socket_readable`` does the same.)
    """
    fd = sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32":  # pragma: no cover - no poll() on Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
