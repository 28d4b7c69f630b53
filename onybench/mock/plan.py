"""What the mock will answer to one completion request, decided before any byte is sent.

Pure code: parse the request body, count the prompt tokens, draw the fault and
the send schedule from the request's seeded RNG, and compute the exact cost.
The app then only has to wait for each due time and send.

Definitions the tests and the send log rely on:

- prompt tokens: the number of whitespace-separated words in the request's
  text (every message's ``content``, string or text parts, or the completion
  ``prompt``), at least 1;
- output token k (from 0) is the text ``"tok<k> "``; content chunk j carries
  tokens ``j*tokens_per_chunk`` onwards, the last chunk possibly fewer (in a
  dialect that cuts at word boundaries, 1 or 2 tokens each, seeded);
- cost = prompt_tokens * cost_per_prompt_token + output_tokens * cost_per_output_token,
  in Decimal, exact.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import orjson

from onybench.decimals import decimal_text
from onybench.mock.config import FAULTS, MockConfig
from onybench.mock.dialects import OPENAI_FIELDS

Kind = Literal["chat", "text"]
FinishReason = Literal["stop", "length"]


class BadRequest(Exception):
    """The request body cannot be answered; the message goes into the 400 body."""


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """The parts of a completion request body that shape the answer."""

    kind: Kind
    model: str
    stream: bool
    # max_tokens, or max_completion_tokens; None when the request sets neither.
    max_tokens: int | None
    include_usage: bool
    prompt_tokens: int
    # stream_options.continuous_usage_stats (vLLM): usage in every chunk.
    continuous_usage: bool = False
    # Top-level fields outside OpenAI's request schema, sorted (strict dialects refuse them).
    unknown_fields: tuple[str, ...] = ()
    # A digest of the prompt text: what a prompt cache is keyed by.
    prompt_key: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """Everything the app sends for one request, and when.

    `chunk_offsets_ns[j]` is when content chunk j is due, in nanoseconds after
    the request was received. `fault` is one of `config.FAULTS` or None.
    `usage` says whether usage is reported; `cost` is None when it is not.
    """

    prompt_tokens: int
    output_tokens: int
    finish_reason: FinishReason
    chunk_texts: tuple[str, ...]
    chunk_offsets_ns: tuple[int, ...]
    fault: str | None
    usage: bool
    cost: Decimal | None
    # Tokens each content chunk carries.
    chunk_tokens: tuple[int, ...] = ()
    # Prompt tokens served from the prompt cache; None when the mock has no cache.
    cached_tokens: int | None = None
    # Prompt plus max_tokens exceed the context window: refused, nothing generated.
    context_overflow: bool = False

    @property
    def cost_text(self) -> str | None:
        """The cost the response reports, as its exact decimal text (None when none)."""
        return None if self.cost is None else decimal_text(self.cost)


def parse_request(kind: Kind, body: bytes) -> CompletionRequest:
    """Read a chat (``messages``) or text (``prompt``) completion body; `BadRequest` if unusable."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string")
    if kind == "chat":
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' is required and must be a non-empty array")
        texts = [_message_text(message) for message in messages]
    else:
        prompt = data.get("prompt")
        if isinstance(prompt, str):
            texts = [prompt]
        elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            texts = prompt
        else:
            raise BadRequest("'prompt' is required and must be a string or an array of strings")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean")
    stream_options = data.get("stream_options")
    if stream_options is None:
        stream_options = {}
    elif not isinstance(stream_options, dict):
        raise BadRequest("'stream_options' must be an object")
    return CompletionRequest(
        kind=kind,
        model=model,
        stream=stream,
        max_tokens=_max_tokens(data),
        include_usage=stream_options.get("include_usage") is True,
        prompt_tokens=max(1, sum(len(text.split()) for text in texts)),
        continuous_usage=stream_options.get("continuous_usage_stats") is True,
        unknown_fields=tuple(sorted(set(data) - OPENAI_FIELDS)),
        prompt_key=hashlib.blake2b("\x00".join(texts).encode(), digest_size=16).digest(),
    )


def plan_response(
    config: MockConfig, request: CompletionRequest, arrival: int, *, cache_hit: bool = False
) -> ResponsePlan:
    """The answer to the `arrival`-th completion request (0-based) the server received.

    The RNG is seeded from ``(config.seed, arrival)``, so the same request
    number gets the same fault and schedule in every run, whatever the
    interleaving of concurrent requests. `cache_hit` says the prompt was seen
    before (with `config.prompt_cache`).
    """
    rng = random.Random(f"{config.seed}:{arrival}")
    fault = _draw_fault(config, rng.random(), stream=request.stream)
    dialect = config.profile
    limit = request.max_tokens
    output_tokens = config.output_tokens if limit is None else min(config.output_tokens, limit)
    finish_reason: FinishReason = (
        "length" if limit is not None and limit < config.output_tokens else "stop"
    )
    factor = config.latency_factors.get(request.model, 1.0)
    sizes = _chunk_sizes(
        output_tokens, config.tokens_per_chunk, rng if dialect.word_chunks else None
    )
    starts = list(itertools.accumulate(sizes, initial=0))
    chunk_texts = tuple(
        "".join(f"tok{k} " for k in range(start, start + size))
        for start, size in zip(starts, sizes, strict=False)
    )
    offsets: list[int] = []
    due_ns = 0
    for j in range(len(chunk_texts)):
        due_ns += _draw_gap_ns(config, (config.ttft_ms if j == 0 else config.itl_ms) * factor, rng)
        offsets.append(due_ns)
    usage = fault not in ("stream_error", "cut", "no_finish") and (
        not request.stream or _usage_in_stream(config, request)
    )
    cost = (
        request.prompt_tokens * config.cost_per_prompt_token
        + output_tokens * config.cost_per_output_token
        if usage and config.emit_cost and dialect.cost != "none"
        else None
    )
    window = config.context_tokens
    return ResponsePlan(
        prompt_tokens=request.prompt_tokens,
        output_tokens=output_tokens,
        finish_reason=finish_reason,
        chunk_texts=chunk_texts,
        chunk_offsets_ns=tuple(offsets),
        fault=fault,
        usage=usage,
        cost=cost,
        chunk_tokens=sizes,
        cached_tokens=(request.prompt_tokens if cache_hit else 0) if config.prompt_cache else None,
        context_overflow=window is not None
        and request.prompt_tokens + (limit or config.output_tokens) > window,
    )


def _usage_in_stream(config: MockConfig, request: CompletionRequest) -> bool:
    """Whether a stream reports usage: the config's override, else the dialect's policy."""
    if config.always_usage is not None:
        return config.always_usage or request.include_usage
    policy = config.profile.usage
    return policy == "always" or (policy == "on_request" and request.include_usage)


def _chunk_sizes(tokens: int, per_chunk: int, word_cuts: random.Random | None) -> tuple[int, ...]:
    """How many tokens each content chunk carries: `per_chunk` each (the last possibly
    fewer), or, cut at word boundaries, 1 or 2 each as `word_cuts` draws."""
    sizes: list[int] = []
    left = tokens
    while left > 0:
        size = per_chunk if word_cuts is None else word_cuts.choice((1, 2))
        sizes.append(min(size, left))
        left -= sizes[-1]
    return tuple(sizes)


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        raise BadRequest("every message must be an object")
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        # OpenAI's content parts: only the text parts count as prompt text.
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise BadRequest("a message's 'content' must be a string or an array of parts")


def _max_tokens(data: dict[str, Any]) -> int | None:
    for key in ("max_tokens", "max_completion_tokens"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{key}' must be an integer >= 1")
        return value
    return None


def _draw_fault(config: MockConfig, draw: float, *, stream: bool) -> str | None:
    """Lay the fault shares end to end on [0, 1) and return the one `draw` falls in."""
    edge = 0.0
    for fault in FAULTS:
        edge += config.fault_rate(fault)
        if draw < edge:
            return fault if stream or fault.startswith("http_") else None
    return None


def _draw_gap_ns(config: MockConfig, mean_ms: float, rng: random.Random) -> int:
    if config.timing == "fixed":
        gap_ms = mean_ms
    elif config.timing == "uniform":
        gap_ms = rng.uniform(mean_ms - config.jitter_ms, mean_ms + config.jitter_ms)
    elif config.timing == "normal":
        gap_ms = rng.gauss(mean_ms, config.jitter_ms)
    else:
        gap_ms = rng.expovariate(1 / mean_ms) if mean_ms > 0 else 0.0
    return max(0, round(gap_ms * 1_000_000))
