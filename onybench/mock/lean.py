"""The mock's lean engine: one ``selectors`` loop per process, for benchmarking clients.

hypercorn costs about 0.25 ms of CPU per chunk on a small VM, so on a 2-core
machine a hypercorn mock serving 100+ streams at ITL 10 ms falls hundreds of
milliseconds behind its own schedule while the client under test competes for
the same cores. This engine answers from the same `plan` and `encode` code (so
the same status codes, content types and bodies; the heads carry no ``date``
or ``server`` header) from a plain epoll loop: due chunks come off one heap,
each is written with one ``send(2)``, and its ``token_sent_ns`` is read right
after that call returns, before anything else runs, so the send log's "sent"
time is the write itself, not the write plus a scheduler round. When the
socket buffer is full, the rest of a chunk waits for writability, and the
chunk is stamped (and its tokens counted) once the kernel has taken its last
byte.

It serves ``POST /v1/chat/completions`` and ``/v1/completions`` (streamed or
whole, every dialect's shapes and stamps, the no_done and no_finish faults),
``GET /v1/models``, the 400, 401, 404 and 405 errors, HTTP/1.1 keep-alive
(``Content-Length`` request bodies; ``Expect: 100-continue`` honoured),
HTTP/1.0 (the body sent unframed, then the connection closed) and the send
log. What needs the trio app's machinery (the other faults, the server model,
pings, the prompt cache, context windows, closing after each response) is
refused when the configuration is made (`MockConfig.lean_conflicts`). A
connection stays open until its client closes it (no idle timeout). Deadlines
are read with epoll's millisecond resolution, so a chunk may go out up to 1 ms
after it is due; its log entry says when it really went.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Final

from onybench.mock.config import MockConfig
from onybench.mock.encode import ResponseEncoder, models_body, sse
from onybench.mock.plan import BadRequest, Kind, parse_request, plan_response
from onybench.mock.routes import Refusal, invalid_request, refused_fields, route
from onybench.mock.sendlog import SendLog, SendRecord

_REASONS: Final[dict[int, bytes]] = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    431: b"Request Header Fields Too Large",
}
_SSE_HEADERS: Final = b"content-type: text/event-stream\r\ncache-control: no-cache\r\n"
# A request head larger than this is refused (431) and the connection closed.
_MAX_HEAD_BYTES: Final = 64 * 1024
_RECV_BYTES: Final = 65536
# Out of descriptors: stop accepting for this long rather than spin on a listener
# that stays readable.
_ACCEPT_PAUSE_NS: Final = 100_000_000
_OUT_OF_RESOURCES: Final = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_READ: Final = selectors.EVENT_READ
_READ_WRITE: Final = selectors.EVENT_READ | selectors.EVENT_WRITE
# Selector keys that are not connections.
_LISTENER, _WAKEUP, _PARENT = "listener", "wakeup", "parent"


@dataclass(slots=True, eq=False)
class _Response:
    """One request being answered: what it still has to send, and its send-log fields."""

    id: str
    path: str
    received_ns: int
    model: str | None = None
    status: int | None = None
    fault: str | None = None
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
    # Content chunks handed over while the socket was full, oldest first: (the
    # connection's byte count their last byte ends at, their tokens).
    in_outbox: deque[tuple[int, int]] = field(default_factory=deque)
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
    # HTTP/1.1 chunked framing; an HTTP/1.0 response body runs until the close.
    chunked: bool = True
    # When the head of the request being read was complete (its received_ns).
    head_ns: int | None = None
    continued: bool = False
    # Bytes handed to `_write` and bytes the kernel has taken, since the connection opened.
    handed: int = 0
    taken: int = 0


def _framed(connection: _Connection, data: bytes) -> bytes:
    """`data` as a piece of the response body: one chunk, or as is for HTTP/1.0."""
    return b"%x\r\n%b\r\n" % (len(data), data) if connection.chunked else data


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
        # Connections whose inbox may hold the next request (pipelined), served from
        # the loop rather than from the end of the previous response: no recursion.
        self._inbox_ready: list[_Connection] = []
        self._selector = selectors.DefaultSelector()
        self._stopping = False
        self._accept_resume_ns: int | None = None

    def serve_forever(self) -> None:
        """Serve until stopped; every request still open is logged before returning."""
        wakeup, wakeup_writer = socket.socketpair()
        wakeup.setblocking(False)
        wakeup_writer.setblocking(False)
        stops = (signal.SIGTERM, signal.SIGINT)
        # The handler only sets a flag, checked between two steps of the loop; the
        # wake-up descriptor ends the select() the signal came in.
        previous_fd = signal.set_wakeup_fd(wakeup_writer.fileno())
        previous = {sig: signal.signal(sig, self._on_signal) for sig in stops}
        try:
            self._listener.setblocking(False)
            self._selector.register(self._listener, _READ, _LISTENER)
            self._selector.register(wakeup, _READ, _WAKEUP)
            if self._stop_fd is not None:
                self._selector.register(self._stop_fd, _READ, _PARENT)
            self._loop()
        finally:
            self._shut_down()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            wakeup.close()
            wakeup_writer.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _loop(self) -> None:
        clock = time.perf_counter_ns
        due = self._due
        select = self._selector.select
        guarded = self._guarded
        while not self._stopping:
            wake_ns = due[0][0] if due else None
            if self._accept_resume_ns is not None:
                wake_ns = min(wake_ns or self._accept_resume_ns, self._accept_resume_ns)
            timeout = None if wake_ns is None else max(wake_ns - clock(), 0) / 1e9
            for key, events in select(timeout):
                data = key.data
                if isinstance(data, _Connection):
                    guarded(data, self._on_ready, data, events)
                elif data == _LISTENER:
                    self._accept()
                elif data == _WAKEUP:
                    key.fileobj.recv(4096)  # type: ignore[union-attr]
                elif not os.read(key.fd, 4096):  # the parent's pipe closed
                    self._stopping = True
            now = clock()
            if self._accept_resume_ns is not None and now >= self._accept_resume_ns:
                self._accept_resume_ns = None
                self._selector.register(self._listener, _READ, _LISTENER)
            while due and due[0][0] <= now:
                _, _, connection, response = heapq.heappop(due)
                if connection.response is response:
                    guarded(connection, self._send_due, connection, response)
                now = clock()
            ready, self._inbox_ready = self._inbox_ready, []
            while ready:
                connection = ready.pop()
                if connection.response is None and not connection.closed:
                    guarded(connection, self._next_request, connection)
                ready += self._inbox_ready
                self._inbox_ready.clear()

    def _guarded(self, connection: _Connection, step: Callable[..., None], *args: object) -> None:
        """Run `step`; a bug it hits costs its own connection, never the whole server."""
        try:
            step(*args)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._close(connection, client_gone=False)

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    self._selector.unregister(self._listener)
                    self._accept_resume_ns = time.perf_counter_ns() + _ACCEPT_PAUSE_NS
                    return
                continue  # e.g. aborted by the client before it was accepted
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
            self._close(connection, client_gone=True)
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
                self._refuse(connection, 431)
            return
        if connection.head_ns is None:
            connection.head_ns = time.perf_counter_ns()
        lines = bytes(inbox[:head_end]).split(b"\r\n")
        request_line = lines[0].split(b" ")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if len(request_line) != 3 or request_line[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            self._refuse(connection, 400)
            return
        if b"transfer-encoding" in headers:
            self._refuse(connection, 411)
            return
        length = headers.get(b"content-length", b"0")
        if not length.isdigit():
            self._refuse(connection, 400)
            return
        body_start = head_end + 4
        body_end = body_start + int(length)
        if len(inbox) < body_end:
            if headers.get(b"expect", b"").lower() == b"100-continue" and not connection.continued:
                connection.continued = True
                self._write(connection, b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        received_ns = connection.head_ns or time.perf_counter_ns()
        connection.head_ns, connection.continued = None, False
        body = bytes(inbox[body_start:body_end])
        del inbox[:body_end]
        method, target, version = request_line
        connection.chunked = version == b"HTTP/1.1"
        connection.close_when_done = (
            not connection.chunked or headers.get(b"connection", b"").lower() == b"close"
        )
        path = target.partition(b"?")[0]
        response = _Response("req_" + os.urandom(12).hex(), path.decode("latin-1"), received_ns)
        connection.response = response
        authorization = headers.get(b"authorization")
        answer = route(
            response.path,
            method.decode("latin-1"),
            () if authorization is None else (authorization,),
            self._config.require_api_key,
        )
        if isinstance(answer, Refusal):
            self._send_refusal(connection, answer)
        elif answer is None:
            self._send_whole(connection, 200, models_body())
        else:
            self._complete(connection, response, answer, body)

    def _complete(
        self, connection: _Connection, response: _Response, kind: Kind, body: bytes
    ) -> None:
        config = self._config
        try:
            request = parse_request(kind, body)
        except BadRequest as error:
            self._send_refusal(connection, invalid_request(400, str(error)))
            return
        dialect = config.profile
        refusal = refused_fields(request, dialect)
        if refusal is not None:
            self._send_refusal(connection, refusal)
            return
        plan = plan_response(config, request, next(self._arrivals))
        response.model = request.model
        response.stream = request.stream
        response.fault = plan.fault
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
        framing = b"transfer-encoding: chunked\r\n" if connection.chunked else b""
        self._write(
            connection,
            self._head(200, response, _SSE_HEADERS + framing, connection)
            + b"".join(_framed(connection, event) for event in opening),
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
        tokens = plan.chunk_tokens[j]
        if self._write(connection, _framed(connection, data)):
            response.end_ns = sent_ns = clock()
            response.token_sent_ns.append(sent_ns)
            response.output_tokens += tokens
        elif not connection.closed:
            response.in_outbox.append((connection.handed, tokens))
        if connection.closed:
            return
        response.next_chunk = j = j + 1
        if j < len(response.chunks):
            self._schedule(connection, response, plan.chunk_offsets_ns[j])
            return
        stamp = clock() if self._config.stamp_chunks else None
        closing = b"".join(_framed(connection, event) for event in encoder.closing_events(stamp))
        response.cost = plan.cost_text
        self._write(connection, closing + (b"0\r\n\r\n" if connection.chunked else b""))
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

    def _send_refusal(self, connection: _Connection, refusal: Refusal) -> None:
        headers = b"".join(b"%b: %b\r\n" % header for header in refusal.headers)
        self._send_whole(connection, refusal.status, refusal.body, headers)

    def _refuse(self, connection: _Connection, status: int) -> None:
        """A request that cannot even be read: a bare error, then the close (as h11
        answers one, before any application sees it, so no send-log line)."""
        connection.inbox.clear()
        connection.close_when_done = True
        self._write(
            connection,
            b"HTTP/1.1 %d %b\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            % (status, _REASONS[status]),
        )
        if not connection.outbox:
            self._close(connection, client_gone=False)

    def _write(self, connection: _Connection, data: bytes) -> bool:
        """Hand `data` to the socket; True when the kernel took all of it at once."""
        if connection.closed:
            return False
        connection.handed += len(data)
        if connection.outbox:
            connection.outbox += data
            return False
        try:
            sent = connection.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(connection, client_gone=True)
            return False
        connection.taken += sent
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
            self._close(connection, client_gone=True)
            return
        del connection.outbox[:sent]
        connection.taken += sent
        response = connection.response
        if response is not None and response.in_outbox:
            now = time.perf_counter_ns()
            waiting = response.in_outbox
            while waiting and waiting[0][0] <= connection.taken:
                response.output_tokens += waiting.popleft()[1]
                response.token_sent_ns.append(now)
                response.end_ns = now
        if connection.outbox:
            return
        self._selector.modify(connection.sock, _READ, connection)
        if response is None:
            if connection.close_when_done:  # a refused request's answer is out
                self._close(connection, client_gone=False)
        elif response.written:
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
            self._close(connection, client_gone=False)
        elif connection.inbox:
            self._inbox_ready.append(connection)

    def _close(self, connection: _Connection, *, client_gone: bool) -> None:
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
                fault=response.fault,
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
