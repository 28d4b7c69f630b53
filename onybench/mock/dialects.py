"""The dialects of "OpenAI-compatible" streaming the mock can speak.

Each profile reproduces what a real server does (observed on current releases)
in the ways that change a benchmark's figures: when and where usage comes, what
cost looks like, how the stream ends, the opening chunk, how tokens are cut
into chunks, the connection's life and which request fields are accepted.

- onysoft: role chunk with content "", usage always in its own chunk with
  `choices: []`, Onysoft's `cost` object, `[DONE]`.
- openai: usage only when `stream_options.include_usage` asks, no cost, and a
  400 for any request field outside OpenAI's schema.
- vllm: as openai (unknown fields accepted), and `continuous_usage_stats`
  honoured: a running usage in every chunk.
- llamacpp: role chunk with content null, the finish_reason in a chunk of its
  own, usage when asked, a `timings` object in the last chunk, and the
  connection closed after every response.
- litellm: the finish_reason in a chunk of its own (empty delta), usage when
  asked, in a chunk with one empty-delta choice, its cost as `usage.cost` (a
  float in USD), as LiteLLM 1.106 sends them.
- hf-serve: role chunk with content null, usage inside the finish chunk, no
  `[DONE]`, chunks cut at word boundaries (1 or 2 tokens each).
- llama-cpp-python: no usage in streams at all; a prompt over the context
  window gets 200 and an empty body.

`llamacpp` is llama.cpp's llama-server, which announces keep-alive but closes
the connection after every streamed response; `hf-serve` is Hugging Face's
`transformers serve`; `litellm` is the LiteLLM proxy, whose `usage.cost` is its
own estimate in USD (the mock computes it from its prices, as a float).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

DialectName = Literal[
    "onysoft", "openai", "vllm", "llamacpp", "litellm", "hf-serve", "llama-cpp-python"
]
UsagePolicy = Literal["always", "on_request", "never"]
UsagePlace = Literal["empty_choices", "empty_delta", "finish_chunk"]
CostShape = Literal["object", "usage_cost", "none"]
ContextError = Literal["openai", "llamacpp", "empty_body"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """One server's streaming behaviour (see the module's table)."""

    name: DialectName
    role_content_null: bool = False
    usage: UsagePolicy = "on_request"
    usage_place: UsagePlace = "empty_choices"
    cost: CostShape = "none"
    done: bool = True
    # Fields outside OpenAI's own request schema are refused with a 400.
    strict_fields: bool = False
    continuous_usage: bool = False
    timings: bool = False
    close_after_response: bool = False
    # Chunks cut at word boundaries: each carries 1 or 2 tokens (seeded), not tokens_per_chunk.
    word_chunks: bool = False
    # How a prompt longer than the context window (MockConfig.context_tokens) is refused.
    context_error: ContextError = "openai"
    # The finish_reason in a chunk of its own with an empty delta, after the last token.
    finish_apart: bool = False


DIALECTS: Final[dict[str, Dialect]] = {
    d.name: d
    for d in (
        Dialect("onysoft", usage="always", cost="object"),
        Dialect("openai", strict_fields=True),
        Dialect("vllm", continuous_usage=True),
        Dialect(
            "llamacpp",
            role_content_null=True,
            timings=True,
            close_after_response=True,
            context_error="llamacpp",
            finish_apart=True,
        ),
        Dialect("litellm", usage_place="empty_delta", cost="usage_cost", finish_apart=True),
        Dialect(
            "hf-serve",
            role_content_null=True,
            usage="always",
            usage_place="finish_chunk",
            done=False,
            word_chunks=True,
        ),
        Dialect(
            "llama-cpp-python", role_content_null=True, usage="never", context_error="empty_body"
        ),
    )
}

# The request fields OpenAI's chat and text completion endpoints accept; a strict
# dialect answers 400 to any other (as OpenAI does to e.g. vLLM's `ignore_eos`).
OPENAI_FIELDS: Final = frozenset(
    {
        "model", "messages", "prompt", "stream", "stream_options", "max_tokens",
        "max_completion_tokens", "temperature", "top_p", "n", "stop", "presence_penalty",
        "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "seed",
        "tools", "tool_choice", "parallel_tool_calls", "response_format", "service_tier",
        "store", "metadata", "reasoning_effort", "modalities", "audio", "prediction",
        "echo", "best_of", "suffix", "verbosity", "prompt_cache_key", "safety_identifier",
    }
)  # fmt: skip
