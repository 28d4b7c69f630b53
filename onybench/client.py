"""The only module that talks HTTP to the target: httpx on trio, timestamps.

Per chunk the hot path does three things: stamp the arrival with the clock, feed
the bytes to the SSE decoder, keep `(arrival_ns, data)`. Everything else (JSON,
token accounting, classification) happens once, when the stream has ended.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import orjson
import trio

from onybench.errors import ScenarioError
from onybench.metrics.record import RequestRecord
from onybench.secrets import redact
from onybench.transport import LeanTransport
from onybench.wire.chunks import carries_token
from onybench.wire.sse import SseDecoder, SseLineTooLong
from onybench.wire.stream import assemble

Clock = Callable[[], int]
RecordSink = Callable[[RequestRecord], None]

# An error body is read for its message only; cap it so a huge one costs nothing.
_ERROR_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go and how: the endpoint, credentials and timeouts (seconds)."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0  # longest silence allowed between two reads
    first_token_timeout_s: float | None = None  # until the first streamed event
    total_timeout_s: float | None = None
    # HTTP/2 goes through httpx's own transport (the h2 extra): not the lean path.
    http2: bool = False


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request's body parameters."""

    model: str
    messages: tuple[Mapping[str, str], ...]
    max_tokens: int | None = None
    include_usage: bool = True  # `stream_options.include_usage`; some servers reject it
    temperature: float | None = None
    # Output length under control where the server supports it (vLLM, llama.cpp).
    ignore_eos: bool = False
    min_tokens: int | None = None
    extra_body: tuple[tuple[str, Any], ...] = ()

    def body(self) -> bytes:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": list(self.messages),
            "stream": True,
        }
        if self.max_tokens is not None:
            payload["max_tokens"] = self.max_tokens
        if self.include_usage:
            payload["stream_options"] = {"include_usage": True}
        if self.temperature is not None:
            payload["temperature"] = self.temperature
        if self.ignore_eos:
            payload["ignore_eos"] = True
        if self.min_tokens is not None:
            payload["min_tokens"] = self.min_tokens
        payload.update(self.extra_body)
        return orjson.dumps(payload)


class StreamingClient:
    """Sends streaming chat-completion requests and measures each one.

    Use as an async context manager. `transport` defaults to the lean trio + h11
    transport; tests pass `httpx.MockTransport`.
    """

    def __init__(
        self,
        target: Target,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.perf_counter_ns,
    ) -> None:
        self._target = target
        self._clock = clock
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        headers.update(dict(target.headers))
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        self._url = target.base_url.rstrip("/") + "/chat/completions"
        self._http = httpx.AsyncClient(
            transport=transport or _default_transport(target),
            headers=headers,
            timeout=httpx.Timeout(
                connect=target.connect_timeout_s,
                read=target.read_timeout_s,
                write=target.connect_timeout_s,
                pool=None,
            ),
        )

    async def __aenter__(self) -> StreamingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def run_request(
        self, spec: RequestSpec, sink: RecordSink, context: RecordContext | None = None
    ) -> None:
        """Send one request, measure it, and hand its record to `sink` exactly once.

        The record reaches `sink` even when the request is cancelled (as
        `cancelled`, with what it measured so far); target errors never raise.
        `context` is copied into the record (its place in the run).
        """
        attempt = _Attempt(
            model=spec.model,
            start_ns=self._clock(),
            context=context or RecordContext(),
            max_tokens=spec.max_tokens,
        )
        target = self._target
        try:
            with trio.move_on_after(target.total_timeout_s or math.inf) as total:
                await self._stream(spec, attempt)
            if total.cancelled_caught:
                message = (
                    f"the request took longer than the total timeout ({target.total_timeout_s} s)"
                )
                sink(attempt.record(self._clock(), "total_timeout", message))
                return
        except trio.Cancelled:
            sink(attempt.record(self._clock(), "cancelled", "cancelled before the stream ended"))
            raise
        except httpx.HTTPError as exc:
            error_class, message = _classify(exc, attempt)
            sink(attempt.record(self._clock(), error_class, redact(message, self._target.api_key)))
        except SseLineTooLong as exc:
            sink(attempt.record(self._clock(), "protocol_error", str(exc)))
        else:
            sink(attempt.finish(self._clock(), self._target.api_key))

    async def _stream(self, spec: RequestSpec, attempt: _Attempt) -> None:
        clock = self._clock
        request = self._http.build_request(
            "POST", self._url, content=spec.body(), headers={"Content-Type": "application/json"}
        )
        response = await self._http.send(request, stream=True)
        try:
            attempt.headers_ns = clock()
            attempt.status = response.status_code
            attempt.connect_ns = response.extensions.get("onybench.connect_ns")
            if response.status_code != 200:
                attempt.error_body = await _read_capped(response)
                return
            decoder = SseDecoder()
            timed = attempt.timed_data
            first_wait_s = self._target.first_token_timeout_s
            # Until the first token a deadline of its own; after it, the idle timeout alone.
            # Only the few events before the first token are decoded here, on arrival.
            waiting = first_wait_s is not None
            with trio.move_on_after(
                first_wait_s if first_wait_s is not None else math.inf
            ) as first:
                async for raw in response.aiter_raw():
                    now = clock()
                    attempt.bytes_received += len(raw)
                    for event in decoder.feed(raw):
                        timed.append((now, event.data))
                        if waiting and carries_token(event.data):
                            first.deadline = math.inf
                            waiting = False
            if first.cancelled_caught:
                attempt.first_token_timed_out = True
                return
            decoder.feed(b"")
            attempt.closed_cleanly = True
        finally:
            await response.aclose()


@dataclass(frozen=True, slots=True)
class RecordContext:
    """The request's place in the run, copied into its record."""

    index: int = 0
    intended_start_ns: int | None = None
    stage: str | None = None
    prompt_tokens_requested: int | None = None


@dataclass(slots=True)
class _Attempt:
    """What one request has measured so far (mutable while it runs)."""

    model: str
    start_ns: int
    context: RecordContext
    max_tokens: int | None
    headers_ns: int | None = None
    status: int | None = None
    connect_ns: int | None = None
    bytes_received: int = 0
    closed_cleanly: bool = False
    first_token_timed_out: bool = False
    error_body: bytes | None = None
    timed_data: list[tuple[int, str]] = field(default_factory=list)

    def finish(self, end_ns: int, api_key: str | None) -> RequestRecord:
        if self.error_body is not None:
            message = redact(_error_message(self.error_body), api_key)
            return self.record(end_ns, f"http_{self.status}", message)
        if self.first_token_timed_out:
            return self.record(
                end_ns, "first_token_timeout", "no token before the first-token timeout"
            )
        return self.record(end_ns, None, None)

    def record(self, end_ns: int, error_class: str | None, message: str | None) -> RequestRecord:
        """The record of this attempt; a transport or HTTP error overrides the stream's verdict."""
        stream = assemble(self.timed_data, closed_cleanly=self.closed_cleanly)
        if error_class is None:
            error_class, message = stream.error_class, stream.error_message
        # The last byte that arrived ends a stream; a failure before any ends it now.
        last_ns = self.timed_data[-1][0] if self.timed_data and error_class is None else end_ns
        context = self.context
        return RequestRecord(
            index=context.index,
            model=self.model,
            start_ns=self.start_ns,
            end_ns=last_ns,
            error_class=error_class,
            error_message=message,
            status=self.status,
            connect_ns=self.connect_ns,
            headers_ns=self.headers_ns,
            token_times_ns=stream.token_times_ns,
            first_content_ns=stream.first_content_ns,
            prompt_tokens=stream.prompt_tokens,
            output_tokens=stream.output_tokens,
            cost_amount=stream.cost.amount if stream.cost else None,
            cost_currency=stream.cost.currency if stream.cost else None,
            finish_reason=stream.finish_reason,
            response_id=stream.response_id,
            bytes_received=self.bytes_received,
            output_text=stream.text,
            intended_start_ns=context.intended_start_ns,
            stage=context.stage,
            prompt_tokens_requested=context.prompt_tokens_requested,
            max_tokens_requested=self.max_tokens,
        )


def _default_transport(target: Target) -> httpx.AsyncBaseTransport:
    if not target.http2:
        return LeanTransport()
    try:
        import h2  # noqa: F401  (httpx needs it for HTTP/2)
    except ImportError:
        raise ScenarioError(
            "HTTP/2 needs the h2 package: pip install 'onybench[http2]'", "target.http2"
        ) from None
    unlimited = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncHTTPTransport(http2=True, limits=unlimited)


def _classify(exc: httpx.HTTPError, attempt: _Attempt) -> tuple[str, str]:
    """Map an httpx error to a record's error class, most specific first."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout", f"connecting timed out: {detail}"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error", f"cannot connect: {detail}"
    if isinstance(exc, httpx.ReadTimeout):
        return "read_timeout", f"no data for longer than the read timeout: {detail}"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        if attempt.headers_ns is None:
            return "connection_closed", f"server disconnected without a response: {detail}"
        return "truncated", f"connection dropped mid-stream: {detail}"
    return "transport_error", f"{type(exc).__name__}: {detail}"


async def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for raw in response.aiter_raw():
        body += raw
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    return bytes(body[:_ERROR_BODY_LIMIT])


def _error_message(body: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the body's start."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return body[:500].decode("utf-8", "replace")
