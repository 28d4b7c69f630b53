"""The mock's ASGI application: routes, faults, and every send on an absolute deadline.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``.
Content chunk j of a response is sent at ``received + plan.chunk_offsets_ns[j]``
(with the server model on, when `slots.ChunkSchedule` says, computed at send time),
awaited with `trio.sleep_until` so that a late wake-up never delays the later
chunks; the role chunk goes out on receipt, usage and ``[DONE]`` right after the
last content chunk.

About the timestamps (read from hypercorn 0.18's trio worker): the ``send``
callable hypercorn gives the app runs, in the app's own task,
HTTPStream.app_send → H11Protocol.stream_send (h11 frames the chunk) →
TCPServer.protocol_send → ``SocketStream.send_all``, which returns only once
every byte has been accepted by the kernel socket (it waits for writability
when the buffer is full). So when ``await send(...)`` returns, the chunk has
been written to the socket. Two scheduler checkpoints surround that write:
hypercorn's per-connection send lock before it and trio's post-``send(2)``
checkpoint after it. Other ready tasks (other streams; in-process, the client
too) may run at those points, so ``x_sent_ns`` (read before ``send``) can
precede the write and ``token_sent_ns`` (read after) follow it by their run
time. Even alone, the whole path (h11 framing, the lock, the syscall, two
scheduler rounds) took about 0.2 ms per chunk on a small 2-vCPU VM.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson
import trio

from onybench.mock.config import MockConfig
from onybench.mock.encode import ResponseEncoder, error_body, models_body, sse
from onybench.mock.plan import (
    BadRequest,
    Kind,
    ResponsePlan,
    parse_request,
    plan_response,
)
from onybench.mock.routes import Refusal, invalid_request, refused_fields, route
from onybench.mock.sendlog import SendLog, SendRecord
from onybench.mock.slots import BatchSlots, ChunkSchedule

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_SSE_HEADERS: Final[Headers] = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]


class MockApp:
    """An ASGI 3 application serving `config`; logs every request to `send_log` if given."""

    def __init__(self, config: MockConfig, send_log: SendLog | None = None) -> None:
        self._config = config
        self._send_log = send_log
        # Completion requests numbered in arrival order: the seed of each one's RNG.
        self._arrivals = itertools.count()
        # Digests of the prompts seen so far (config.prompt_cache).
        self._prompt_cache: set[bytes] = set()
        self._slots = BatchSlots(config.batch_slots, config.itl_load_factor)

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            # Read both clocks back to back: perf_counter_ns for the log,
            # trio's clock for the deadlines (the same clock plus an offset).
            received_ns = time.perf_counter_ns()
            received = trio.current_time()
            exchange = _Exchange(scope["path"], received_ns, send)
            exchange.client_port = (scope.get("client") or (None, None))[1]
            try:
                await self._answer(scope, receive, exchange, received)
            finally:
                # Also on cancellation (server shutdown): every request gets its line.
                if self._send_log is not None:
                    self._send_log.write(exchange.record(self._config.currency))
        # Any other scope (websocket) is refused by returning; hypercorn closes it.

    async def _answer(
        self, scope: Message, receive: Receive, exchange: _Exchange, received: float
    ) -> None:
        answer = route(
            scope["path"],
            scope["method"],
            (value for name, value in scope["headers"] if name == b"authorization"),
            self._config.require_api_key,
        )
        if isinstance(answer, Refusal):
            await exchange.refuse(answer)
        elif answer is None:
            await exchange.json(200, models_body())
        else:
            await self._complete(answer, receive, exchange, received)

    async def _complete(
        self, kind: Kind, receive: Receive, exchange: _Exchange, received: float
    ) -> None:
        body = await _read_body(receive)
        if body is None:
            exchange.client_disconnected = True
            return
        try:
            request = parse_request(kind, body)
        except BadRequest as error:
            await exchange.refuse(invalid_request(400, str(error)))
            return
        dialect = self._config.profile
        unknown = refused_fields(request, dialect)
        if unknown is not None:
            await exchange.refuse(unknown)
            return
        cache_hit = self._config.prompt_cache and request.prompt_key in self._prompt_cache
        plan = plan_response(self._config, request, next(self._arrivals), cache_hit=cache_hit)
        exchange.model = request.model
        exchange.stream = request.stream
        exchange.fault = plan.fault
        exchange.prompt_tokens = plan.prompt_tokens
        if plan.fault == "http_429":
            await exchange.error(
                429,
                "Rate limit reached (mock fault).",
                "rate_limit_error",
                "rate_limit_exceeded",
                [(b"retry-after", b"1")],
            )
            return
        if plan.fault == "http_500":
            await exchange.error(500, "The server had an error (mock fault).", "server_error", 500)
            return
        if plan.context_overflow:
            await self._refuse_overflow(exchange, plan)
            return
        if self._config.prompt_cache:  # only a prompt that was answered is in the cache
            self._prompt_cache.add(request.prompt_key)
        encoder = ResponseEncoder(
            request, plan, exchange.id, int(time.time()), self._config.currency, dialect
        )
        respond = self._stream if request.stream else self._whole
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope, exchange)
            # Waits for a batch slot (queued, when the server model has them).
            async with self._slots.serve(received, plan.chunk_offsets_ns) as schedule:
                await respond(exchange, encoder, plan, schedule)
            nursery.cancel_scope.cancel()

    async def _refuse_overflow(self, exchange: _Exchange, plan: ResponsePlan) -> None:
        """A prompt too long for the context window, refused the dialect's way."""
        window = self._config.context_tokens
        style = self._config.profile.context_error
        if style == "empty_body":
            # llama-cpp-python: 200, an event-stream with no event at all, then the end.
            await exchange.start(200, _SSE_HEADERS)
            await exchange.end()
        elif style == "llamacpp":
            body = orjson.dumps(
                {
                    "error": {
                        "code": 400,
                        "message": "the request exceeds the available context size, "
                        "try increasing it",
                        "type": "exceed_context_size_error",
                        "n_prompt_tokens": plan.prompt_tokens,
                        "n_ctx": window,
                    }
                }
            )
            await exchange.json(400, body)
        else:
            await exchange.error(
                400,
                f"This model's maximum context length is {window} tokens; the prompt has "
                f"{plan.prompt_tokens} and max_tokens asks for more than the rest.",
                "invalid_request_error",
                "context_length_exceeded",
            )

    async def _stream(
        self,
        exchange: _Exchange,
        encoder: ResponseEncoder,
        plan: ResponsePlan,
        schedule: ChunkSchedule,
    ) -> None:
        config = self._config
        stamp = config.stamp_chunks
        fault = plan.fault
        await exchange.start(200, _SSE_HEADERS)
        for event in encoder.opening_events(config.role_chunk, _stamp(stamp)):
            await exchange.body(event)
        # Encoded during the wait for the first token, not before the role chunk.
        chunks = encoder.stream_chunks()
        # The content chunk the fault comes at (at that chunk's due time): a
        # malformed event goes before it, an error event or the cut instead of it.
        fault_at = {
            "malformed_chunk": len(chunks) // 2,
            "stream_error": len(chunks) // 2,
            "cut": config.cut_after_chunks,
        }.get(fault or "")
        ping_every = config.ping_every
        for j, chunk in enumerate(chunks):
            await trio.sleep_until(schedule.due(j))
            if ping_every and j and j % ping_every == 0:
                await exchange.body(b": ping\n\n")
            if j == fault_at:
                if fault == "malformed_chunk":
                    await exchange.body(sse(encoder.malformed_chunk()))
                elif fault == "stream_error":
                    await exchange.body(sse(encoder.stream_error(), _stamp(stamp)))
                    await exchange.end()
                    return
                else:  # cut: return without ending the body; hypercorn closes the connection
                    return
            # One reading serves as the log's start of the send and the chunk's stamp.
            start_ns = time.perf_counter_ns()
            exchange.token_send_start_ns.append(start_ns)
            sent_ns = await exchange.body(sse(chunk, start_ns if stamp else None))
            exchange.token_sent_ns.append(sent_ns)
            exchange.output_tokens += plan.chunk_tokens[j]
        if fault == "cut":  # cut_after_chunks >= the number of chunks: cut after the last
            return
        for event in encoder.closing_events(_stamp(stamp)):
            await exchange.body(event)
        exchange.cost = plan.cost_text
        await exchange.end()

    async def _whole(
        self,
        exchange: _Exchange,
        encoder: ResponseEncoder,
        plan: ResponsePlan,
        schedule: ChunkSchedule,
    ) -> None:
        # The same latency as a stream: the body is due with the last chunk.
        await trio.sleep_until(schedule.last_due())
        # Noted before the send: the write happens inside it, but so do
        # hypercorn's keep-alive steps, where a server shutdown may cancel us.
        exchange.output_tokens = plan.output_tokens
        exchange.cost = plan.cost_text
        await exchange.json(200, encoder.body())


class _Exchange:
    """One request while it is served: sends through hypercorn, notes what went out."""

    __slots__ = (
        "_send",
        "client_disconnected",
        "client_port",
        "cost",
        "end_ns",
        "fault",
        "finished",
        "id",
        "model",
        "output_tokens",
        "path",
        "prompt_tokens",
        "received_ns",
        "status",
        "stream",
        "token_send_start_ns",
        "token_sent_ns",
    )

    def __init__(self, path: str, received_ns: int, send: Send) -> None:
        self._send = send
        self.id = "req_" + os.urandom(12).hex()
        self.path = path
        self.received_ns = received_ns
        self.model: str | None = None
        self.status: int | None = None
        self.fault: str | None = None
        self.stream: bool | None = None
        self.token_send_start_ns: list[int] = []
        self.token_sent_ns: list[int] = []
        self.end_ns: int | None = None
        self.output_tokens = 0
        self.prompt_tokens: int | None = None
        self.cost: str | None = None
        # True once the message that ends the response is on its way.
        self.finished = False
        self.client_disconnected = False
        self.client_port: int | None = None

    async def start(self, status: int, headers: Headers) -> None:
        """Send the status line and headers (hypercorn writes them at once)."""
        self.status = status
        await self._send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"x-request-id", self.id.encode())],
            }
        )

    async def body(self, data: bytes) -> int:
        """Write `data` as part of the body; returns `perf_counter_ns()` read once it is written."""
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        self.end_ns = time.perf_counter_ns()
        return self.end_ns

    async def end(self) -> None:
        """End the body cleanly (the last chunk of the chunked encoding)."""
        self.finished = True
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        self.end_ns = time.perf_counter_ns()

    async def json(self, status: int, body: bytes, headers: Headers | None = None) -> None:
        """A whole JSON response: headers with its length, then the body."""
        await self.start(
            status,
            [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                *(headers or []),
            ],
        )
        self.finished = True
        await self._send({"type": "http.response.body", "body": body, "more_body": False})
        self.end_ns = time.perf_counter_ns()

    async def refuse(self, refusal: Refusal) -> None:
        await self.json(refusal.status, refusal.body, list(refusal.headers))

    async def error(
        self,
        status: int,
        message: str,
        error_type: str,
        code: int | str | None,
        headers: Headers | None = None,
    ) -> None:
        """An OpenAI-style JSON error response."""
        await self.json(status, error_body(message, error_type, code), headers)

    def record(self, currency: str) -> SendRecord:
        return SendRecord(
            id=self.id,
            model=self.model,
            path=self.path,
            status=self.status,
            fault=self.fault,
            stream=self.stream,
            received_ns=self.received_ns,
            token_send_start_ns=tuple(self.token_send_start_ns),
            token_sent_ns=tuple(self.token_sent_ns),
            end_ns=self.end_ns if self.end_ns is not None else time.perf_counter_ns(),
            output_tokens=self.output_tokens,
            prompt_tokens=self.prompt_tokens,
            cost=self.cost,
            currency=currency,
            client_disconnected=self.client_disconnected,
            client_port=self.client_port,
        )


def _stamp(enabled: bool) -> int | None:
    return time.perf_counter_ns() if enabled else None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _cancel_on_disconnect(
    receive: Receive, scope: trio.CancelScope, exchange: _Exchange
) -> None:
    # hypercorn swallows write errors once the client has gone (send() keeps
    # returning), so a stream would go on "sending" to nobody; the
    # http.disconnect message is the only sign, and it stops the response.
    while (await receive())["type"] != "http.disconnect":
        pass
    # hypercorn also reports a disconnect when a response ends normally, from
    # inside the app's final send() (whose later steps, the connection's
    # keep-alive bookkeeping, must not be cancelled): once the final message
    # is on its way, the disconnect is no news.
    if not exchange.finished:
        exchange.client_disconnected = True
        scope.cancel()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
