"""The mock's lean engine: one ``selectors`` loop per process, for benchmarking clients.

hypercorn costs about 0.25 ms of CPU per chunk on a small VM, so on a 2-core
machine a hypercorn mock serving 100+ streams at ITL 10 ms falls hundreds of
milliseconds behind its own schedule while the client under test competes for
the same cores. This engine sends the same bytes (the shared `plan` and
`encode` code decides them) from a plain epoll loop: due chunks come off one
heap, each is written with one ``send(2)``, and its ``token_sent_ns`` is read
right after that call returns, before anything else runs, so the send log's
"sent" time is the write itself, not the write plus a scheduler round. (When
the socket buffer is full, the rest waits for writability and the chunk's
``token_sent_ns`` is read once the kernel has taken its last byte.)

It serves ``POST /v1/chat/completions`` and ``/v1/completions`` (streamed or
whole, every dialect's shapes and stamps), ``GET /v1/models``, the 400, 401,
404 and 405 errors, HTTP/1.1 keep-alive with ``Content-Length`` request
bodies, and the send log. What needs the trio app's machinery (faults, the
server model, pings, the prompt cache, context windows, closing after each
response) is refused when the configuration is made
(`MockConfig.lean_conflicts`). Deadlines are read with epoll's millisecond
resolution, so a chunk may go out up to 1 ms after it is due; its log entry
says when it really went.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Final

from onybench.mock.config import MockConfig
from onybench.mock.encode import ResponseEncoder, error_body, models_body, sse
from onybench.mock.plan import BadRequest, Kind, parse_request, plan_response
from onybench.mock.sendlog import SendLog, SendRecord

_ROUTES: Final[dict[bytes, tuple[bytes, Kind | None]]] = {
    b"/v1/chat/completions": (b"POST", "chat"),
    b"/v1/completions": (b"POST", "text"),
    b"/v1/models": (b"GET", None),
}
_REASONS: Final[dict[int, bytes]] = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    431: b"Request Header Fields Too Large",
}
_SSE_HEADERS: Final = (
    b"content-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
)
# A request head larger than this is refused (431) and the connection closed.
_MAX_HEAD_BYTES: Final = 64 * 1024
_RECV_BYTES: Final = 65536
_END_OF_BODY: Final = b"0\r\n\r\n"
_READ: Final = selectors.EVENT_READ
_READ_WRITE: Final = selectors.EVENT_READ | selectors.EVENT_WRITE


class _Stop(Exception):
    """SIGTERM or SIGINT, or the parent gone: leave the loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _chunk(data: bytes) -> bytes:
    """`data` framed as one chunk of a chunked HTTP/1.1 body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


@dataclass(slots=True, eq=False)
class _Response:
    """One request being answered: what it still has to send, and its send-log fields."""

    id: str
    path: str
    received_ns: int
    model: str | None = None
    status: int | None = None
    stream: bool | None = None
    prompt_tokens: int | None = None
    output_tokens: int = 0
    cost: str | None = None
    token_send_start_ns: list[int] = field(default_factory=list)
    token_sent_ns: list[int] = field(default_factory=list)
    end_ns: int | None = None
    encoder: ResponseEncoder | None = None
    chunks: list[bytes] = field(default_factory=list)
    next_chunk: int = 0
    # Chunks handed over while the socket was full: stamped when the outbox drains.
    unstamped: int = 0
    # Everything is written (maybe still in the outbox); logged once it drains.
    written: bool = False


@dataclass(slots=True, eq=False)
class _Connection:
    sock: socket.socket
    port: int | None
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    response: _Response | None = None
    close_when_done: bool = False
    closed: bool = False


class LeanServer:
    """Serves `config` on the listening socket `listener` until `serve_forever` is stopped
    by SIGTERM/SIGINT or by end of file on `stop_fd` (the parent's pipe)."""

    def __init__(
        self,
        config: MockConfig,
        listener: socket.socket,
        *,
        process_tag: str | None = None,
        stop_fd: int | None = None,
    ) -> None:
        if config.engine != "lean":
            raise ValueError(f"the configuration asks for the {config.engine!r} engine")
        self._config = config
        self._listener = listener
        self._stop_fd = stop_fd
        self._tag_header = (
            b"x-mock-process: %b\r\n" % process_tag.encode() if process_tag is not None else b""
        )
        self._send_log = SendLog(config.send_log) if config.send_log is not None else None
        # Completion requests numbered in arrival order: the seed of each one's RNG.
        self._arrivals = itertools.count()
        self._ties = itertools.count()
        # (due perf_counter_ns, tie-breaker, connection, its response at the time)
        self._due: list[tuple[int, int, _Connection, _Response]] = []
        self._connections: set[_Connection] = set()
        self._selector = selectors.DefaultSelector()

    def serve_forever(self) -> None:
        stops = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, _raise_stop) for sig in stops}
        try:
            self._listener.setblocking(False)
            self._selector.register(self._listener, _READ, None)
            if self._stop_fd is not None:
                self._selector.register(self._stop_fd, _READ, None)
            self._loop()
        except _Stop:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._shut_down()

    def _loop(self) -> None:
        clock = time.perf_counter_ns
        due = self._due
        select = self._selector.select
        while True:
            timeout = max(due[0][0] - clock(), 0) / 1e9 if due else None
            for key, events in select(timeout):
                connection = key.data
                if connection is not None:
                    self._on_ready(connection, events)
                elif key.fileobj is self._listener:
                    self._accept()
                elif not os.read(key.fd, 4096):  # the parent's pipe closed
                    raise _Stop
            now = clock()
            while due and due[0][0] <= now:
                _, _, connection, response = heapq.heappop(due)
                if connection.response is response:
                    self._send_due(connection, response)
                now = clock()

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self._listener.accept()
            except OSError:  # none left to accept (or out of descriptors: they wait)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(sock, address[1] if isinstance(address, tuple) else None)
            self._connections.add(connection)
            self._selector.register(sock, _READ, connection)

    def _on_ready(self, connection: _Connection, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush(connection)
        if not events & _READ or connection.closed:
            return
        try:
            data = connection.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return
        connection.inbox += data
        if connection.response is None:
            self._next_request(connection)

    def _next_request(self, connection: _Connection) -> None:
        """Answer the request at the head of the inbox once it has all arrived."""
        inbox = connection.inbox
        head_end = inbox.find(b"\r\n\r\n")
        if head_end < 0:
            if len(inbox) > _MAX_HEAD_BYTES:
                self._refuse(connection, 431, "The request head is too large.")
            return
        lines = bytes(inbox[:head_end]).split(b"\r\n")
        request_line = lines[0].split(b" ")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/1."):
            self._refuse(connection, 400, "Malformed request line.")
            return
        if b"transfer-encoding" in headers:
            self._refuse(connection, 411, "Send the request body with a Content-Length.")
            return
        length = headers.get(b"content-length", b"0")
        if not length.isdigit():
            self._refuse(connection, 400, "Bad Content-Length.")
            return
        body_start = head_end + 4
        body_end = body_start + int(length)
        if len(inbox) < body_end:
            return
        received_ns = time.perf_counter_ns()
        body = bytes(inbox[body_start:body_end])
        del inbox[:body_end]
        method, target, version = request_line
        connection.close_when_done = (
            version == b"HTTP/1.0" or headers.get(b"connection", b"").lower() == b"close"
        )
        path = target.partition(b"?")[0]
        response = _Response("req_" + os.urandom(12).hex(), path.decode("latin-1"), received_ns)
        connection.response = response
        route = _ROUTES.get(path)
        key = self._config.require_api_key
        if route is None:
            self._error(connection, 404, f"No route {response.path}.")
        elif method != route[0]:
            allowed = route[0].decode()
            self._error(
                connection,
                405,
                f"{response.path} accepts {allowed} only.",
                extra_headers=b"allow: %b\r\n" % route[0],
            )
        elif key is not None and headers.get(b"authorization") != b"Bearer " + key.encode():
            self._error(connection, 401, "Incorrect API key provided.", code="invalid_api_key")
        elif route[1] is None:
            self._send_whole(connection, 200, models_body())
        else:
            self._complete(connection, response, route[1], body)

    def _complete(
        self, connection: _Connection, response: _Response, kind: Kind, body: bytes
    ) -> None:
        config = self._config
        try:
            request = parse_request(kind, body)
        except BadRequest as error:
            self._error(connection, 400, str(error))
            return
        dialect = config.profile
        if dialect.strict_fields and request.unknown_fields:
            fields = ", ".join(request.unknown_fields)
            self._error(connection, 400, f"Unrecognized request argument supplied: {fields}")
            return
        plan = plan_response(config, request, next(self._arrivals))
        response.model = request.model
        response.stream = request.stream
        response.prompt_tokens = plan.prompt_tokens
        encoder = ResponseEncoder(
            request, plan, response.id, int(time.time()), config.currency, dialect
        )
        response.encoder = encoder
        if not request.stream:
            # The same latency as a stream: the body is due with the last chunk.
            self._schedule(connection, response, plan.chunk_offsets_ns[-1])
            return
        response.status = 200
        response.chunks = encoder.stream_chunks()
        stamp = time.perf_counter_ns() if config.stamp_chunks else None
        opening = encoder.opening_events(config.role_chunk, stamp)
        self._write(
            connection,
            self._head(200, response, _SSE_HEADERS, connection)
            + b"".join(_chunk(event) for event in opening),
        )
        self._schedule(connection, response, plan.chunk_offsets_ns[0])

    def _schedule(self, connection: _Connection, response: _Response, offset_ns: int) -> None:
        entry = (response.received_ns + offset_ns, next(self._ties), connection, response)
        heapq.heappush(self._due, entry)

    def _send_due(self, connection: _Connection, response: _Response) -> None:
        encoder = response.encoder
        assert encoder is not None
        plan = encoder.plan
        if not response.stream:
            response.output_tokens = plan.output_tokens
            response.cost = plan.cost_text
            self._send_whole(connection, 200, encoder.body())
            return
        j = response.next_chunk
        clock = time.perf_counter_ns
        start_ns = clock()
        data = sse(response.chunks[j], start_ns if self._config.stamp_chunks else None)
        response.token_send_start_ns.append(start_ns)
        if self._write(connection, _chunk(data)):
            response.token_sent_ns.append(clock())
        else:
            response.unstamped += 1
        response.output_tokens += plan.chunk_tokens[j]
        response.next_chunk = j = j + 1
        if connection.closed:
            return
        if j < len(response.chunks):
            self._schedule(connection, response, plan.chunk_offsets_ns[j])
            return
        stamp = clock() if self._config.stamp_chunks else None
        closing = b"".join(_chunk(event) for event in encoder.closing_events(stamp))
        response.cost = plan.cost_text
        self._write(connection, closing + _END_OF_BODY)
        self._written(connection, response)

    def _head(
        self, status: int, response: _Response, headers: bytes, connection: _Connection
    ) -> bytes:
        return b"HTTP/1.1 %d %b\r\n%bx-request-id: %b\r\n%b%b\r\n" % (
            status,
            _REASONS[status],
            headers,
            response.id.encode(),
            self._tag_header,
            b"connection: close\r\n" if connection.close_when_done else b"",
        )

    def _send_whole(
        self, connection: _Connection, status: int, body: bytes, extra_headers: bytes = b""
    ) -> None:
        response = connection.response
        assert response is not None
        response.status = status
        headers = b"content-type: application/json\r\ncontent-length: %d\r\n%b" % (
            len(body),
            extra_headers,
        )
        self._write(connection, self._head(status, response, headers, connection) + body)
        self._written(connection, response)

    def _error(
        self,
        connection: _Connection,
        status: int,
        message: str,
        *,
        code: str | None = None,
        extra_headers: bytes = b"",
    ) -> None:
        error_type = "invalid_request_error"
        self._send_whole(connection, status, error_body(message, error_type, code), extra_headers)

    def _refuse(self, connection: _Connection, status: int, message: str) -> None:
        """Answer a request that cannot be read, then close: the rest of the inbox is unreadable."""
        connection.inbox.clear()
        connection.close_when_done = True
        connection.response = _Response("req_" + os.urandom(12).hex(), "", time.perf_counter_ns())
        self._error(connection, status, message)

    def _write(self, connection: _Connection, data: bytes) -> bool:
        """Hand `data` to the socket; True when the kernel took all of it at once."""
        if connection.closed:
            return False
        if connection.outbox:
            connection.outbox += data
            return False
        try:
            sent = connection.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(connection)
            return False
        if sent == len(data):
            return True
        connection.outbox += memoryview(data)[sent:]
        self._selector.modify(connection.sock, _READ_WRITE, connection)
        return False

    def _flush(self, connection: _Connection) -> None:
        try:
            sent = connection.sock.send(connection.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(connection)
            return
        del connection.outbox[:sent]
        if connection.outbox:
            return
        self._selector.modify(connection.sock, _READ, connection)
        response = connection.response
        if response is None:
            return
        now = time.perf_counter_ns()
        response.token_sent_ns.extend([now] * response.unstamped)
        response.unstamped = 0
        if response.written:
            self._written(connection, response)

    def _written(self, connection: _Connection, response: _Response) -> None:
        """The response is written: once the kernel has all of it, log it and read on."""
        response.written = True
        if connection.outbox or connection.closed:
            return
        response.end_ns = time.perf_counter_ns()
        self._log(connection, response, client_disconnected=False)
        connection.response = None
        if connection.close_when_done:
            self._close(connection)
        elif connection.inbox:
            self._next_request(connection)

    def _close(self, connection: _Connection, *, client_gone: bool = True) -> None:
        """Close the connection; a response not yet all sent is logged as it stands."""
        if connection.closed:
            return
        connection.closed = True
        self._connections.discard(connection)
        self._selector.unregister(connection.sock)
        connection.sock.close()
        response, connection.response = connection.response, None
        if response is not None:
            self._log(connection, response, client_disconnected=client_gone)

    def _log(
        self, connection: _Connection, response: _Response, *, client_disconnected: bool
    ) -> None:
        if self._send_log is None:
            return
        sent = response.token_sent_ns
        self._send_log.write(
            SendRecord(
                id=response.id,
                model=response.model,
                path=response.path,
                status=response.status,
                fault=None,
                stream=response.stream,
                received_ns=response.received_ns,
                token_send_start_ns=tuple(response.token_send_start_ns[: len(sent)]),
                token_sent_ns=tuple(sent),
                end_ns=response.end_ns or time.perf_counter_ns(),
                output_tokens=response.output_tokens,
                prompt_tokens=response.prompt_tokens,
                cost=response.cost,
                currency=self._config.currency,
                client_disconnected=client_disconnected,
                client_port=connection.port,
            )
        )

    def _shut_down(self) -> None:
        for connection in list(self._connections):
            self._close(connection, client_gone=False)
        self._selector.close()
        if self._send_log is not None:
            self._send_log.close()
