"""A lean HTTP/1.1 transport for httpx: trio sockets + h11, an O(1) keep-alive pool.

Why not httpx's default transport: httpcore's pool rescans every connection whenever a
request starts or finishes, so with thousands of concurrent streams its cost grows with the
square of open connections, and its per-event overhead is several times ours. A load
generator limits its own concurrency, so the pool here does no limiting, no queueing and no
scanning: idle connections wait in a LIFO list per origin.

    client = httpx.AsyncClient(transport=LeanTransport())

What it does not do, on purpose:
- HTTP/2, protocol upgrades (101) and CONNECT tunnels: HTTP/1.1 only.
- Proxies: there is no ``proxy`` argument. (httpx itself ignores ``HTTP(S)_PROXY`` when a
  custom transport is given, so every request goes straight to the target.)
- Retries: a request that fails is reported, never sent twice.

Errors are httpx's own (``httpx.ConnectError``, ``httpx.ReadTimeout``, ...), mapped from
trio, OSError, ssl and h11 errors in one place, ``_raise_mapped``; each carries the
request. The client turns them into onybench's ``TargetError``s.

Extensions on every response:
- ``"http_version"``: ``b"HTTP/1.1"`` (or ``b"HTTP/1.0"`` if the server says so).
- ``"reason_phrase"``: bytes, as sent by the server.
- ``"onybench.connect_ns"``: nanoseconds spent opening the connection (DNS + TCP + TLS) when
  this request opened it, ``None`` when it reused a kept-alive connection.
"""

from __future__ import annotations

import select
import ssl
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Literal, NoReturn

import h11
import httpx
import trio

__all__ = ["LeanTransport"]

# One receive_some asks for up to this much. SSE events are small, so a read normally
# returns whatever one server write put on the wire; the cap only matters for big bodies.
_READ_SIZE = 64 * 1024

_DEFAULT_PORTS = {b"http": 80, b"https": 443}

# (scheme, host, port): an origin, the unit of connection reuse.
_Origin = tuple[bytes, bytes, int]

# Which step of an exchange an error happened in; it decides the httpx exception.
_Phase = Literal["connect", "write", "read"]

# The unbounded "timeout" httpx means by None; trio wants a number.
_NO_DEADLINE = float("inf")


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
        self._ssl_context = _make_ssl_context(verify)
        # Idle connections per origin; the last one released is the first reused, so the
        # warmest connection goes out and the coldest ones age out at the server.
        # No lock: trio runs every task on one thread and nothing below awaits between
        # reading and writing this dict, so no task can see it half-updated.
        self._idle: dict[_Origin, list[_Connection]] = {}
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
                if write_error is not None:
                    _raise_mapped(write_error, "write", request)
                _raise_mapped(exc, "read", request)
        except BaseException:
            # Cancelled too: a half-done exchange leaves the connection unusable.
            conn.close()
            raise

        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            stream=_ResponseBody(self, conn, request, read_timeout),
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

    def _checkout(self, origin: _Origin) -> _Connection | None:
        """An idle connection to `origin` the server has not closed, or None."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            # An idle connection has nothing to say: if its socket is readable, the server
            # closed it (EOF) or sent junk. llama.cpp's server, for one, closes after every
            # response while announcing keep-alive; a request sent there would be lost.
            if _is_readable(conn.socket):
                conn.close()
                continue
            return conn
        return None

    def _release(self, conn: _Connection) -> None:
        """Called once the body was read to its end: pool `conn` if it can be reused."""
        h11_conn = conn.h11
        if (
            not self._closed
            and h11_conn.our_state is h11.DONE
            and h11_conn.their_state is h11.DONE
            # Bytes beyond the response would be read as the next response's start.
            and not h11_conn.trailing_data[0]
        ):
            h11_conn.start_next_cycle()
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            # MUST_CLOSE (``Connection: close``, HTTP/1.0) or a response sent before our
            # request was complete.
            conn.close()

    async def _connect(
        self, request: httpx.Request, origin: _Origin, timeout: float | None
    ) -> tuple[_Connection, int]:
        """Open a connection to `origin`; return it with its set-up time in ns."""
        scheme, raw_host, port = origin
        host = raw_host.decode("ascii")
        started_ns = time.perf_counter_ns()
        deadline = _NO_DEADLINE if timeout is None else trio.current_time() + timeout
        try:
            with trio.CancelScope(deadline=deadline) as scope:
                tcp_stream = await trio.open_tcp_stream(host, port)
                stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = tcp_stream
                if scheme == b"https":
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
        return _Connection(stream, tcp_stream.socket, origin), connect_ns


class _Connection:
    """One socket, its h11 state machine, and the origin it belongs to."""

    __slots__ = ("h11", "origin", "socket", "stream")

    def __init__(
        self,
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream],
        socket: trio.socket.SocketType,
        origin: _Origin,
    ) -> None:
        self.stream = stream
        self.socket = socket
        self.origin = origin
        self.h11 = h11.Connection(our_role=h11.CLIENT)

    def close(self) -> None:
        """Close the socket now.

        Synchronous on purpose: it has no checkpoint, so it cannot be interrupted by a
        cancellation and is safe in any ``except``/``finally``, where an ``await`` could
        raise a fresh ``Cancelled`` and skip the close. For both stream kinds this is what
        ``trio.aclose_forcefully`` comes down to (a TLS close_notify is skipped, as there).
        """
        self.socket.close()


class _ResponseBody(httpx.AsyncByteStream):
    """The response body: one ``bytes`` per socket read, as soon as it is parsed.

    All the body data one read brought (several chunked-encoding frames, i.e.
    several SSE events, when the server's writes were coalesced on the way) is
    handed out together, because the caller stamps each piece with its arrival
    time: events that arrived together must carry the same stamp.

    Iterates by ``__anext__`` rather than an async generator: no generator frame to
    suspend per chunk, and no unfinished generator left for the GC to close in an
    arbitrary context when a caller stops early.
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
            event = await _receive_event(conn, self._read_timeout)
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
        if type(event) is not h11.Data:
            self._finish(conn, event)
            raise StopAsyncIteration
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
                self._finish(conn, event)
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
        self._finish(conn, event)

    def _finish(self, conn: _Connection, event: object) -> None:
        self._conn = None
        if type(event) is h11.EndOfMessage:
            self._transport._release(conn)
        else:
            conn.close()


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
    """The next h11 event, reading from the socket when h11 needs data (httpcore's shape).

    This is the per-chunk hot path: no allocation besides the read buffer, and a cancel
    scope only when there is a read timeout.
    """
    h11_conn = conn.h11
    stream = conn.stream
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
        if read_timeout is None:
            data = await stream.receive_some(_READ_SIZE)
        else:
            # A fresh scope per read: a deadline cannot span the yields between chunks,
            # and it restarts with each read, which is what a read timeout means.
            with trio.CancelScope(deadline=trio.current_time() + read_timeout) as scope:
                data = await stream.receive_some(_READ_SIZE)
            if scope.cancelled_caught:
                raise trio.TooSlowError
        if not data:
            if h11_conn.their_state is h11.SEND_RESPONSE:
                raise h11.RemoteProtocolError("server disconnected without sending a response")
            at_eof = True
        # SSLStream may hand out a bytearray; h11 copies it into its buffer either way,
        # so no bytes() copy here (h11's annotation says bytes, its code takes any buffer).
        h11_conn.receive_data(data)  # type: ignore[arg-type]


def _raise_mapped(exc: Exception, phase: _Phase, request: httpx.Request) -> NoReturn:
    """Raise the httpx exception for `exc`, caught during `phase` of `request`: the one map.

    Most specific first:
        httpx.HTTPError           re-raised as it is
        trio.TooSlowError         ConnectTimeout / WriteTimeout / ReadTimeout
        h11.RemoteProtocolError   RemoteProtocolError (bad HTTP, EOF before or mid-response)
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
    elif isinstance(exc, h11.RemoteProtocolError):
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
