"""The mock's bytes: SSE events and JSON bodies in the exact Onysoft/OpenAI shapes.

Pure code. Costs go into the JSON as the exact decimal literal (orjson cannot
encode a Decimal, and a float would add rounding noise), spliced in as an
`orjson.Fragment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from onybench.decimals import decimal_text
from onybench.mock.dialects import DIALECTS, Dialect
from onybench.mock.plan import CompletionRequest, ResponsePlan

DONE = b"data: [DONE]\n\n"

# The model names GET /v1/models lists; completions accept any model name.
MODELS = ("openai/gpt-4o-mini",)


def sse(payload: bytes, sent_ns: int | None = None) -> bytes:
    """One ``data:`` event around a JSON object; with `sent_ns`, adds ``"x_sent_ns"`` to it."""
    if sent_ns is not None:
        payload = b'%s,"x_sent_ns":%d}' % (payload[:-1], sent_ns)
    return b"data: " + payload + b"\n\n"


def error_body(message: str, error_type: str, code: int | str | None) -> bytes:
    """An OpenAI-style error object: ``{"error": {"message", "type", "code"}}``."""
    return orjson.dumps({"error": {"message": message, "type": error_type, "code": code}})


def models_body() -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "onybench-mock"}
                for name in MODELS
            ],
        }
    )


@dataclass(frozen=True, slots=True)
class ResponseEncoder:
    """Encodes the chunks and bodies of one response, which share its id, time and model."""

    request: CompletionRequest
    plan: ResponsePlan
    response_id: str
    created: int
    currency: str
    dialect: Dialect = DIALECTS["onysoft"]

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": obj,
            "created": self.created,
            "model": self.request.model,
            "choices": choices,
        }

    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.request.kind == "chat" else "text_completion"

    def role_chunk(self) -> bytes:
        """The chat chunk that opens the assistant message; it carries no token."""
        content = None if self.dialect.role_content_null else ""
        delta = {"role": "assistant", "content": content}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        return orjson.dumps(self._envelope("chat.completion.chunk", [choice]))

    def content_chunks(self, *, finish: bool) -> list[bytes]:
        """Every content chunk; with `finish`, the last carries the plan's finish_reason.

        With a running usage (vLLM's continuous_usage_stats, when asked) every
        chunk carries the usage so far; a dialect that reports usage in the
        finish chunk puts it (and any cost) there.
        """
        plan = self.plan
        last = len(plan.chunk_texts) - 1
        running = self.dialect.continuous_usage and self.request.continuous_usage and plan.usage
        usage_in_finish = plan.usage and self.dialect.usage_place == "finish_chunk"
        chunks = []
        so_far = 0
        finish = finish and not self.dialect.finish_apart
        for j, text in enumerate(plan.chunk_texts):
            reason = plan.finish_reason if finish and j == last else None
            choice: dict[str, Any] = (
                {"index": 0, "delta": {"content": text}, "finish_reason": reason}
                if self.request.kind == "chat"
                else {"index": 0, "text": text, "finish_reason": reason}
            )
            envelope = self._envelope(self._chunk_object(), [choice])
            so_far += plan.chunk_tokens[j]
            if reason is not None and usage_in_finish:
                envelope = self._with_usage(envelope)
            elif running:
                envelope["usage"] = _usage(plan.prompt_tokens, so_far)
            chunks.append(orjson.dumps(envelope))
        return chunks

    def opening_events(self, role_chunk: bool, sent_ns: int | None) -> list[bytes]:
        """The events sent on receipt, before any token: the role chunk of a chat
        stream when `role_chunk` is on (stamped with `sent_ns` when given)."""
        if role_chunk and self.request.kind == "chat":
            return [sse(self.role_chunk(), sent_ns)]
        return []

    def stream_chunks(self) -> list[bytes]:
        """The content chunks of a stream: the last carries the finish_reason
        unless the plan's fault (cut, no_finish) leaves it out."""
        return self.content_chunks(finish=self.plan.fault not in ("cut", "no_finish"))

    def closing_events(self, sent_ns: int | None) -> list[bytes]:
        """The events right after the last content chunk of a stream that ends
        normally (or by the no_done / no_finish faults): the dialect's finish chunk,
        the usage chunk, ``[DONE]``; the chunks stamped with `sent_ns` when given."""
        fault = self.plan.fault
        dialect = self.dialect
        events = []
        if dialect.finish_apart and fault != "no_finish":
            events.append(sse(self.finish_chunk(), sent_ns))
        # (never with no_finish: the plan leaves usage out; a dialect that
        # reports usage in the finish chunk sent it there)
        if self.plan.usage and dialect.usage_place != "finish_chunk":
            events.append(sse(self.usage_chunk(), sent_ns))
        if dialect.done and fault not in ("no_done", "no_finish"):
            events.append(DONE)
        return events

    def finish_chunk(self) -> bytes:
        """The finish_reason on its own, with an empty delta (dialects with `finish_apart`);
        the stream's last chunk, with any `timings`, when no usage follows."""
        choice = {**self._empty_choice(), "finish_reason": self.plan.finish_reason}
        envelope = self._envelope(self._chunk_object(), [choice])
        if not self.plan.usage:
            self._add_timings(envelope)
        return orjson.dumps(envelope)

    def _empty_choice(self) -> dict[str, Any]:
        """A choice that carries nothing: an empty delta (chat) or text (completions)."""
        return (
            {"index": 0, "delta": {}} if self.request.kind == "chat" else {"index": 0, "text": ""}
        )

    def usage_chunk(self) -> bytes:
        """The chunk after the content that reports usage (and cost): with empty
        choices, or (LiteLLM) one choice with an empty delta."""
        choices = [self._empty_choice()] if self.dialect.usage_place == "empty_delta" else []
        return orjson.dumps(self._with_usage(self._envelope(self._chunk_object(), choices)))

    def malformed_chunk(self) -> bytes:
        """A chunk cut off mid-string: not valid JSON."""
        return orjson.dumps(self._envelope(self._chunk_object(), []))[:-20]

    def stream_error(self) -> bytes:
        return error_body("The mock server failed mid-stream.", "server_error", 500)

    def body(self) -> bytes:
        """The whole non-streaming completion, with usage and cost."""
        text = "".join(self.plan.chunk_texts)
        choice: dict[str, Any] = (
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": self.plan.finish_reason,
            }
            if self.request.kind == "chat"
            else {"index": 0, "text": text, "finish_reason": self.plan.finish_reason}
        )
        obj = "chat.completion" if self.request.kind == "chat" else "text_completion"
        return orjson.dumps(self._with_usage(self._envelope(obj, [choice])))

    def _with_usage(self, envelope: dict[str, Any]) -> dict[str, Any]:
        plan = self.plan
        usage = envelope["usage"] = _usage(plan.prompt_tokens, plan.output_tokens)
        if plan.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": plan.cached_tokens}
        if plan.cost is not None:
            if self.dialect.cost == "usage_cost":
                # LiteLLM's own estimate: a bare float, in USD.
                usage["cost"] = float(plan.cost)
            else:
                amount = orjson.Fragment(decimal_text(plan.cost).encode())
                envelope["cost"] = {"amount": amount, "currency": self.currency}
        self._add_timings(envelope)
        return envelope

    def _add_timings(self, envelope: dict[str, Any]) -> None:
        """llama-server's `timings` object, in dialects that send one."""
        if not self.dialect.timings:
            return
        plan = self.plan
        envelope["timings"] = {
            "prompt_n": plan.prompt_tokens,
            "prompt_ms": plan.chunk_offsets_ns[0] / 1e6,
            "predicted_n": plan.output_tokens,
            "predicted_ms": (plan.chunk_offsets_ns[-1] - plan.chunk_offsets_ns[0]) / 1e6,
        }


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
