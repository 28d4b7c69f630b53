"""One SSE `data` payload of an OpenAI-compatible stream -> typed events.

Sans-I/O like `sse.py`. A table keyed by the chunk's `object` picks the
interpreter (chat chunks, text completions); a payload may carry several events
at once (content plus a finish_reason plus usage), so interpreters return a tuple.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson


@dataclass(frozen=True, slots=True)
class ContentDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    count: int


@dataclass(frozen=True, slots=True)
class FinishReason:
    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    # usage.prompt_tokens_details.cached_tokens: prompt tokens served from a cache.
    cached_tokens: int | None = None
    # usage.completion_tokens_details.reasoning_tokens: part of completion_tokens.
    reasoning_tokens: int | None = None


# Where a cost came from: the API's own top-level `cost` object (Onysoft), or a
# proxy's `usage.cost` (LiteLLM: a bare float in USD, from its own price map).
CostSource = Literal["server", "usage_cost"]


@dataclass(frozen=True, slots=True)
class Cost:
    amount: Decimal
    currency: str
    source: CostSource = "server"


@dataclass(frozen=True, slots=True)
class ServerTimings:
    """A server-side `timings` object (llama.cpp's llama-server sends one at the end)."""


@dataclass(frozen=True, slots=True)
class StreamError:
    """An `{"error": ...}` object sent inside the stream."""

    message: str


@dataclass(frozen=True, slots=True)
class Done:
    """The `data: [DONE]` sentinel."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """A payload that is not the JSON object a chunk must be; `reason` says why."""

    reason: str


ChunkEvent = (
    ContentDelta
    | ReasoningDelta
    | ToolCallDelta
    | FinishReason
    | Usage
    | Cost
    | ServerTimings
    | StreamError
    | Done
    | Malformed
)

DONE_EVENTS: tuple[ChunkEvent, ...] = (Done(),)


def interpret(data: str) -> tuple[ChunkEvent, ...]:
    """Turn one SSE `data` payload into the events it carries (possibly none)."""
    if data == "[DONE]":
        return DONE_EVENTS
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return (Malformed(f"invalid JSON in chunk: {exc}"),)
    if not isinstance(chunk, dict):
        return (Malformed(f"chunk is a JSON {type(chunk).__name__}, expected an object"),)
    if "error" in chunk:
        return (StreamError(_error_message(chunk["error"])),)
    kind = chunk.get("object")
    # An `object` that is no string (unhashable, perhaps) names no shape: the chat reader.
    reader = _READERS.get(kind, _chat_choices) if isinstance(kind, str) else _chat_choices
    events = reader(chunk.get("choices"))
    return events + _usage_and_cost(chunk)


def plain_content(data: str) -> str | None:
    """The text of a chunk that carries one content delta and nothing else, or None.

    The shortcut for the common chunk (one chat choice, a content-only delta, no
    finish_reason, usage, cost or error), where `interpret` would return exactly
    `(ContentDelta(text),)` but build its events to say so. None means "not that
    shape": ask `interpret`, which stays the definition (tests hold the two equal).
    """
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:  # `[DONE]` too: one raise a stream
        return None
    # A non-dict, an error, usage, cost or timings all add or change events.
    if (
        type(chunk) is not dict
        or chunk.get("object", _CHAT_CHUNK) != _CHAT_CHUNK
        or "error" in chunk
        or chunk.get("usage") is not None
        or chunk.get("cost") is not None
        or chunk.get("timings") is not None
    ):
        return None
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") is not None:
        return None
    delta = choice.get("delta")
    if (
        type(delta) is not dict
        or delta.get("reasoning_content") is not None
        or delta.get("reasoning") is not None
        or delta.get("tool_calls") is not None
    ):
        return None
    content = delta.get("content")
    return content if type(content) is str and content else None


class ContentTemplate:
    """Reads `plain_content` from chunks of one known shape by slicing, without JSON.

    A stream's content chunks, as a rule, differ only in their text: the same id, model
    and envelope around ``"content":"<text>"``. Learnt from one chunk that `plain_content`
    read, the template is the text before and after that string's value. A later chunk
    that starts and ends with them and has between them a text that needs no JSON escape
    (no quote, backslash or control character) is the same JSON object with another
    text, so `plain_content` would return that text; any other chunk gets None, and the
    caller asks `plain_content`. Learning proves the cut is right: the template around a
    probe text must read back as the probe (tests hold `content` to `plain_content`).
    """

    __slots__ = ("_prefix", "_shortest", "_suffix")

    def __init__(self, prefix: str, suffix: str) -> None:
        self._prefix = prefix
        self._suffix = suffix
        self._shortest = len(prefix) + len(suffix) + 1

    @classmethod
    def learn(cls, data: str, content: str) -> ContentTemplate | None:
        """The template of `data`, whose `plain_content` is `content`; None when the text
        is escaped in the JSON (so cannot be found as it is) or the cut does not prove out."""
        # The probe proves nothing where it is the text already.
        if content == _PROBE or not _unescaped_in_json(content):
            return None
        quoted = f'"{content}"'
        at = data.rfind(quoted)
        if at < 0:
            return None
        prefix, suffix = data[: at + 1], data[at + len(quoted) - 1 :]
        if (
            _PROBE in prefix
            or _PROBE in suffix
            or plain_content(prefix + _PROBE + suffix) != _PROBE
        ):
            return None
        return cls(prefix, suffix)

    def content(self, data: str) -> str | None:
        """`plain_content(data)` when `data` has this shape; None when it has not."""
        prefix, suffix = self._prefix, self._suffix
        if len(data) < self._shortest or not data.startswith(prefix) or not data.endswith(suffix):
            return None
        text = data[len(prefix) : len(data) - len(suffix)]
        return text if _unescaped_in_json(text) else None


def _unescaped_in_json(text: str) -> bool:
    """Whether `text` is written as it is inside a JSON string: no quote, no backslash,
    and printable, which leaves out control characters and lone surrogates (and a few
    more characters, which only cost the slow path)."""
    return '"' not in text and "\\" not in text and text.isprintable()


# A text that no real chunk holds: it proves a template's cut (see ContentTemplate.learn).
_PROBE = "onybench template probe 7f3a"


def carries_token(data: str) -> bool:
    """Whether the payload holds a content, reasoning or tool-call delta: a token."""
    return any(
        isinstance(e, ContentDelta | ReasoningDelta | ToolCallDelta) for e in interpret(data)
    )


def response_id(data: str) -> str | None:
    """The `id` a chunk carries (the server's request id), if any."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    value = chunk.get("id") if isinstance(chunk, dict) else None
    return value if isinstance(value, str) else None


def _chat_choices(choices: Any) -> tuple[ChunkEvent, ...]:
    events: list[ChunkEvent] = []
    for choice in _as_list(choices):
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(ContentDelta(content))
            tool_calls = delta.get("tool_calls")
            if isinstance(tool_calls, list) and tool_calls:
                events.append(ToolCallDelta(len(tool_calls)))
        _append_finish(choice, events)
    return tuple(events)


def _text_choices(choices: Any) -> tuple[ChunkEvent, ...]:
    events: list[ChunkEvent] = []
    for choice in _as_list(choices):
        text = choice.get("text")
        if isinstance(text, str) and text:
            events.append(ContentDelta(text))
        _append_finish(choice, events)
    return tuple(events)


_CHAT_CHUNK = "chat.completion.chunk"

# Like h11's table of readers keyed by state: the chunk's `object` names its shape.
# Servers that omit `object` get the chat reader, the common case.
_READERS: dict[Any, Callable[[Any], tuple[ChunkEvent, ...]]] = {
    _CHAT_CHUNK: _chat_choices,
    "text_completion": _text_choices,
}


def _as_list(choices: Any) -> list[dict[str, Any]]:
    if not isinstance(choices, list):
        return []
    return [c for c in choices if isinstance(c, dict)]


def _append_finish(choice: dict[str, Any], events: list[ChunkEvent]) -> None:
    reason = choice.get("finish_reason")
    if isinstance(reason, str) and reason:
        events.append(FinishReason(reason))


def _usage_and_cost(chunk: dict[str, Any]) -> tuple[ChunkEvent, ...]:
    events: list[ChunkEvent] = []
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        events.append(
            Usage(
                _int_or_none(usage.get("prompt_tokens")),
                _int_or_none(usage.get("completion_tokens")),
                _detail(usage, "prompt_tokens_details", "cached_tokens"),
                _detail(usage, "completion_tokens_details", "reasoning_tokens"),
            )
        )
        # LiteLLM's proxy drops the upstream's cost object and reports its own
        # estimate here, as a float in USD.
        usage_cost = _decimal_or_none(usage.get("cost"))
        if usage_cost is not None:
            events.append(Cost(usage_cost, "USD", "usage_cost"))
    cost = chunk.get("cost")
    if isinstance(cost, dict):
        amount = _decimal_or_none(cost.get("amount"))
        currency = cost.get("currency")
        if amount is not None:
            events.append(Cost(amount, currency if isinstance(currency, str) else "USD"))
    if isinstance(chunk.get("timings"), dict):
        events.append(ServerTimings())
    return tuple(events)


def _detail(usage: dict[str, Any], section: str, key: str) -> int | None:
    details = usage.get(section)
    return _int_or_none(details.get(key)) if isinstance(details, dict) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _decimal_or_none(value: Any) -> Decimal | None:
    # orjson gives floats; repr() is the shortest string that round-trips, so an
    # amount written as a decimal literal of up to 15 digits comes back exactly.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        parts = [str(message) if message is not None else "in-stream error"]
        for key in ("type", "code"):
            if error.get(key) is not None:
                parts.append(f"{key}={error[key]}")
        return " ".join(parts)
    return str(error)
