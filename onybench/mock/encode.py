"""The mock's bytes: SSE events and JSON bodies in the exact Onysoft/OpenAI shapes.

Pure code. Costs go into the JSON as the exact decimal literal (orjson cannot
encode a Decimal, and a float would add rounding noise), spliced in as an
`orjson.Fragment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from onybench.mock.plan import CompletionRequest, ResponsePlan, decimal_text

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
        choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        return orjson.dumps(self._envelope("chat.completion.chunk", [choice]))

    def content_chunks(self, *, finish: bool) -> list[bytes]:
        """Every content chunk; with `finish`, the last carries the plan's finish_reason."""
        last = len(self.plan.chunk_texts) - 1
        chunks = []
        for j, text in enumerate(self.plan.chunk_texts):
            reason = self.plan.finish_reason if finish and j == last else None
            choice: dict[str, Any] = (
                {"index": 0, "delta": {"content": text}, "finish_reason": reason}
                if self.request.kind == "chat"
                else {"index": 0, "text": text, "finish_reason": reason}
            )
            chunks.append(orjson.dumps(self._envelope(self._chunk_object(), [choice])))
        return chunks

    def usage_chunk(self) -> bytes:
        """The chunk with empty choices that reports usage (and cost)."""
        return orjson.dumps(self._with_usage(self._envelope(self._chunk_object(), [])))

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
        prompt, output = self.plan.prompt_tokens, self.plan.output_tokens
        envelope["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
        }
        if self.plan.cost is not None:
            amount = orjson.Fragment(decimal_text(self.plan.cost).encode())
            envelope["cost"] = {"amount": amount, "currency": self.currency}
        return envelope
