"""The only module that talks HTTP to the target: httpx on trio, timestamps.

Per chunk the hot path does three things: stamp the arrival with the clock, feed
the bytes to the SSE decoder, keep `(arrival_ns, data)`. It runs right after each
socket read, in the transport's reader (`transport.pump`). Everything else (JSON,
token accounting, classification) happens once, when the stream has ended.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, NamedTuple

import httpx
import orjson
import trio

from onybench.errors import ScenarioError
from onybench.metrics.record import RequestRecord
from onybench.secrets import redact
from onybench.transport import BODY_READ_TIMEOUT, LeanTransport, pump
from onybench.wire.chunks import carries_token
from onybench.wire.sse import SseDecoder, SseLineTooLong
from onybench.wire.stream import assemble

Clock = Callable[[], int]
RecordSink = Callable[[RequestRecord], None]
# A finished request whose record is not built yet: calling it decodes the whole stream
# (~1 ms for 128 tokens), which the caller may do away from the moment of arrival.
PendingRecord = Callable[[], RequestRecord]
PendingSink = Callable[[PendingRecord], None]

# Sent again with Target.retries > 0 (never otherwise): the errors after which the
# same request may well succeed. A stream that failed midway is not among them.
RETRIED_ERRORS = frozenset(
    {"http_429", "http_502", "http_503", "http_504", "connection_closed", "connect_error"}
)
RETRY_BACKOFF_S = 0.5  # the first wait without Retry-After; doubled at each retry
MAX_RETRY_WAIT_S = 60.0

# Fields of an error object that size a context overflow (llama.cpp's server).
_ERROR_SIZES = ("n_prompt_tokens", "n_ctx")

# An error body is read for its message only; cap it so a huge one costs nothing.
_ERROR_BODY_LIMIT = 64 * 1024
# How often at most the body's idle deadline is moved on, and so how late it may fire.
_IDLE_SLACK_S = 0.1


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
    # Attempts after a failure in RETRIED_ERRORS (0: none, every failure recorded as is).
    retries: int = 0
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

    Requests go straight to the transport (httpx's `Request`, `Response` and transport
    interface, without `AsyncClient.send`): its auth, redirect and cookie handling cost
    ~150 µs a request and an async-generator layer per read, and a load test wants none
    of them. So no cookie jar: every request carries the same headers.
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
        headers = {
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
            "Content-Type": "application/json",
        }
        headers.update(dict(target.headers))
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        # Parsed once: every request goes to this URL with these headers.
        self._url = httpx.URL(target.base_url.rstrip("/") + "/chat/completions")
        self._headers = httpx.Headers(headers)
        self._timeouts = httpx.Timeout(
            connect=target.connect_timeout_s,
            read=target.read_timeout_s,
            write=target.connect_timeout_s,
            pool=None,
        ).as_dict()
        self._transport = transport or _default_transport(target)

    async def __aenter__(self) -> StreamingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._transport.aclose()

    async def run_request(
        self, spec: RequestSpec, sink: RecordSink, context: RecordContext | None = None
    ) -> None:
        """Send one request, measure it, and hand its record to `sink` exactly once.

        The record reaches `sink` even when the request is cancelled (as
        `cancelled`, with what it measured so far); target errors never raise.
        `context` is copied into the record (its place in the run).
        """
        await self.measure(spec, lambda pending: sink(pending()), context)

    async def measure(
        self, spec: RequestSpec, sink: PendingSink, context: RecordContext | None = None
    ) -> None:
        """`run_request`, but `sink` gets the record unbuilt, as a `PendingRecord`.

        Everything time-dependent is read before the hand-over, so the record is
        the same whenever it is built; building it is left to the caller.
        """
        retries = 0
        retry_after_s: float | None = None
        while True:
            outcome = await self._measure_once(spec, sink, context, retries, retry_after_s)
            retry_after_s = outcome.retry_after_s or retry_after_s
            delay = self._retry_delay(outcome, retries)
            if delay is None:
                sink(outcome.pending)
                return
            # Never silent: the record that goes on counts every attempt before it.
            retries += 1
            try:
                await trio.sleep(delay)
            except trio.Cancelled:
                sink(outcome.pending)  # cancelled while waiting: the failure it waited after
                raise

    def _retry_delay(self, outcome: _Outcome, retries: int) -> float | None:
        """Seconds to wait before sending again, or None: no retry (only with --retries).

        The server's Retry-After when it gave one, else 0.5 s doubling; at most 60 s."""
        if outcome.error_class not in RETRIED_ERRORS or retries >= self._target.retries:
            return None
        if outcome.retry_after_s is not None:
            return min(outcome.retry_after_s, MAX_RETRY_WAIT_S)
        return min(RETRY_BACKOFF_S * 2.0**retries, MAX_RETRY_WAIT_S)

    async def _measure_once(
        self,
        spec: RequestSpec,
        sink: PendingSink,
        context: RecordContext | None,
        retries: int,
        retry_after_s: float | None,
    ) -> _Outcome:
        """One attempt: its pending record, and its error class when known before the
        record is built (HTTP status and transport errors; a stream's own verdict is not
        retried). A cancelled attempt goes to `sink` at once. `retries` and
        `retry_after_s` carry what the attempts before it met."""
        attempt = _Attempt(
            model=spec.model,
            start_ns=self._clock(),
            context=context or RecordContext(),
            max_tokens=spec.max_tokens,
            retries=retries,
            retry_after_s=retry_after_s,
        )
        target = self._target
        try:
            with trio.move_on_after(target.total_timeout_s or math.inf) as total:
                await self._stream(spec, attempt)
            if total.cancelled_caught:
                message = (
                    f"the request took longer than the total timeout ({target.total_timeout_s} s)"
                )
                return _Outcome(partial(attempt.record, self._clock(), "total_timeout", message))
        except trio.Cancelled:
            message = "cancelled before the stream ended"
            sink(partial(attempt.record, self._clock(), "cancelled", message))
            raise
        except httpx.HTTPError as exc:
            error_class, message = _classify(exc, attempt)
            message = redact(message, self._target.api_key)
            return _Outcome(
                partial(attempt.record, self._clock(), error_class, message), error_class
            )
        except SseLineTooLong as exc:
            return _Outcome(partial(attempt.record, self._clock(), "protocol_error", str(exc)))
        http_error = f"http_{attempt.status}" if attempt.error_body is not None else None
        return _Outcome(
            partial(attempt.finish, self._clock(), self._target.api_key),
            http_error,
            attempt.retry_after_s,
        )

    async def _stream(self, spec: RequestSpec, attempt: _Attempt) -> None:
        clock = self._clock
        request = httpx.Request(
            "POST",
            self._url,
            content=spec.body(),
            headers=self._headers,
            # The body's silences are bounded below, by one deadline per stream.
            extensions={"timeout": self._timeouts, BODY_READ_TIMEOUT: None},
        )
        response = await self._transport.handle_async_request(request)
        # The transport's stream itself, not aiter_raw(): its async-generator layer
        # costs ~4 µs per read; and read with `pump`, which spares the lean transport's
        # bodies a task wake-up per read.
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        # The read timeout on the body: a deadline moved on as bytes arrive, at most
        # every _IDLE_SLACK_S (a cancel scope per read costs ~15 µs on a small VM). It
        # fires after between read_s and read_s + _IDLE_SLACK_S of silence.
        read_s = self._target.read_timeout_s
        moved_at = trio.current_time()
        idle = trio.CancelScope(deadline=moved_at + read_s + _IDLE_SLACK_S)
        try:
            attempt.headers_ns = clock()
            attempt.status = response.status_code
            attempt.connect_ns = response.extensions.get("onybench.connect_ns")
            if response.status_code != 200:
                retry_after_s = _retry_after_s(response.headers.get("retry-after"))
                if retry_after_s is not None:
                    attempt.retry_after_s = retry_after_s
                with idle:  # an error body is small: all of it within the read timeout
                    attempt.error_body = await _read_capped(stream)
                if idle.cancelled_caught:
                    raise httpx.ReadTimeout("the error body timed out", request=request)
                return
            decoder = SseDecoder()
            timed = attempt.timed_data
            first_wait_s = self._target.first_token_timeout_s
            # Until the first token a deadline of its own; after it, the idle timeout alone.
            # And how long the kernel held the first token (the transport says while
            # asked). Only the few events up to the first token are decoded on arrival.
            waiting = True
            first = trio.CancelScope(
                deadline=trio.current_time() + first_wait_s
                if first_wait_s is not None
                else math.inf
            )

            def on_data(raw: bytes, waited_ns: int | None) -> bool:
                """Each read's bytes, right after the read: stamp, split, keep. Whether
                the kernel's wait is still wanted: until the first token."""
                nonlocal moved_at, waiting
                now = clock()
                at = trio.current_time()
                if at - moved_at > _IDLE_SLACK_S:
                    moved_at = at
                    idle.deadline = at + read_s + _IDLE_SLACK_S
                attempt.bytes_received += len(raw)
                for event in decoder.feed(raw):
                    timed.append((now, event.data))
                    if waiting and carries_token(event.data):
                        first.deadline = math.inf
                        waiting = False
                        attempt.first_token_wait_ns = waited_ns
                return waiting

            with idle, first:
                await pump(stream, on_data)
            if first.cancelled_caught:
                attempt.first_token_timed_out = True
                return
            if idle.cancelled_caught:
                raise httpx.ReadTimeout(f"no data for {read_s:g} s", request=request)
            decoder.feed(b"")
            attempt.closed_cleanly = True
        finally:
            await response.aclose()


class _Outcome(NamedTuple):
    pending: PendingRecord
    error_class: str | None = None
    retry_after_s: float | None = None


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
    retry_after_s: float | None = None
    retries: int = 0
    timed_data: list[tuple[int, str]] = field(default_factory=list)
    # How long the kernel had held the read that brought the first token (where it says).
    first_token_wait_ns: int | None = None

    def finish(self, end_ns: int, api_key: str | None) -> RequestRecord:
        if self.error_body is not None:
            message = redact(_error_message(self.error_body), api_key)
            if self.retry_after_s is not None:
                message = f"{message} (Retry-After: {self.retry_after_s:g} s)"
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
            events=stream.events,
            done=stream.done,
            role_first=stream.role_first,
            server_timings=stream.server_timings,
            chunk_tokens=stream.chunk_tokens,
            cached_tokens=stream.cached_tokens,
            reasoning_tokens=stream.reasoning_tokens,
            cost_source=stream.cost.source if stream.cost else None,
            retry_after_s=self.retry_after_s,
            retries=self.retries,
            first_token_wait_ns=self.first_token_wait_ns if stream.token_times_ns else None,
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


def _retry_after_s(value: str | None) -> float | None:
    """A Retry-After header in seconds; None when absent or an HTTP date (rare on APIs)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


async def _read_capped(stream: httpx.AsyncByteStream) -> bytes:
    body = bytearray()
    async for raw in stream:
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
            # llama.cpp's context overflow says how far over: keep that.
            sizes = [f"{key}={error[key]}" for key in _ERROR_SIZES if key in error]
            return str(error["message"]) + (f" ({', '.join(sizes)})" if sizes else "")
        if isinstance(error, str):
            return error
    return body[:500].decode("utf-8", "replace")
