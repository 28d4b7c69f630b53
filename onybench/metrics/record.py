"""One request's measurements, and the figures derived from them.

Every time is a monotonic `time.perf_counter_ns()` reading (nanoseconds); every
duration is the raw difference of two of them: nothing is subtracted or
calibrated away. The definitions here are the product; README.md repeats them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import Any, Literal

TokenCountSource = Literal["usage", "estimated_from_chunks"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What one request measured; one line of records.jsonl.

    `error_class` is None for a request that completed; otherwise it names why it
    did not (`http_429`, `connect_error`, `truncated`, `stream_error`,
    `invalid_json`, `cancelled`, ...). A failed request keeps whatever it measured.
    """

    index: int
    model: str
    start_ns: int
    end_ns: int
    error_class: str | None = None
    error_message: str | None = None
    status: int | None = None
    # Duration of the TCP (and TLS) set-up when this request opened a new
    # connection; None when it reused one.
    connect_ns: int | None = None
    headers_ns: int | None = None
    # Arrival of every chunk that carried a non-empty content, reasoning or
    # tool-call delta, in order; the first is the first token.
    token_times_ns: tuple[int, ...] = ()
    first_content_ns: int | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None  # the server's usage.completion_tokens
    cost_amount: Decimal | None = None
    cost_currency: str | None = None
    finish_reason: str | None = None
    response_id: str | None = None
    bytes_received: int = 0
    output_text: str = field(default="", repr=False)
    # Open-loop runs: when the schedule meant the request to start. Latency is
    # also measured from here (coordinated omission: a late start is the
    # client's delay, and the user would have waited through it).
    intended_start_ns: int | None = None
    # The load stage the request belongs to ("warmup" for warm-up requests,
    # which are kept apart from the results); None for a single-level run.
    stage: str | None = None
    prompt_tokens_requested: int | None = None  # the prompt's estimated length
    max_tokens_requested: int | None = None
    # What the server did (the report's server profile): data events received ([DONE] too),
    # whether `[DONE]` came, whether the first event was a token-less (role) chunk,
    # whether it sent a `timings` object.
    events: int = 0
    done: bool = False
    role_first: bool = False
    server_timings: bool = False
    # Each token-bearing chunk's token count, when the server sent a running usage
    # in every chunk (vLLM's continuous_usage_stats); empty otherwise.
    chunk_tokens: tuple[int, ...] = ()
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens
    # "server" (the API's cost object), "usage_cost" (a proxy's usage.cost estimate)
    # or "pricing" (the scenario's price table applied to the usage); None: no cost.
    cost_source: str | None = None
    # Attempts that failed and were sent again (only with --retries): the record is
    # the last attempt's (its start_ns too). retry_after_s: the last Retry-After any
    # attempt was given, in seconds.
    retries: int = 0
    retry_after_s: float | None = None
    # How long the first token's bytes had waited in the kernel before the client read
    # them (Linux's receive timestamps, `onybench.arrival`): its stamp, so TTFT, is late
    # by this much (at least: the kernel stamps a read's last bytes, and bytes read with
    # the first token may have come after it). None where the kernel gives no stamps.
    first_token_wait_ns: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_class is None

    @property
    def ttft_ns(self) -> int | None:
        """First token's arrival − the moment the request started sending."""
        return self.token_times_ns[0] - self.start_ns if self.token_times_ns else None

    @property
    def ttft_content_ns(self) -> int | None:
        """Like `ttft_ns`, for the first content token (later when reasoning comes first)."""
        return self.first_content_ns - self.start_ns if self.first_content_ns is not None else None

    @property
    def e2e_ns(self) -> int:
        """Last byte of the stream − start."""
        return self.end_ns - self.start_ns

    @property
    def itl_ns(self) -> list[int]:
        """Every gap between consecutive token-bearing chunks."""
        return [b - a for a, b in pairwise(self.token_times_ns)]

    @property
    def output_token_count(self) -> int:
        """The server's usage count, or the number of token-bearing chunks without it."""
        return self.output_tokens if self.output_tokens is not None else len(self.token_times_ns)

    @property
    def token_count_source(self) -> TokenCountSource:
        return "usage" if self.output_tokens is not None else "estimated_from_chunks"

    @property
    def tokens_per_chunk(self) -> float | None:
        """Mean output tokens per token-bearing chunk, when usage says more than one."""
        chunks = len(self.token_times_ns)
        if self.output_tokens is None or chunks == 0 or self.output_tokens <= chunks:
            return None
        return self.output_tokens / chunks

    @property
    def itl_per_token_ns(self) -> list[float]:
        """Each ITL gap ÷ the tokens per chunk; empty unless chunks carry several tokens.

        With a running usage in every chunk the gap is divided by the later
        chunk's own token count (exact). Otherwise only the total usage is known
        and every chunk is assumed to carry the mean: reports label that an estimate.
        """
        return self.itl_per_token_from(self.itl_ns)

    def itl_per_token_from(self, itl_ns: list[int]) -> list[float]:
        """`itl_per_token_ns` from this record's `itl_ns`, for a caller that has it already."""
        counts = self.chunk_tokens
        if counts and len(counts) == len(self.token_times_ns):
            if max(counts) <= 1:
                return []
            return [gap / n for gap, n in zip(itl_ns, counts[1:], strict=True) if n > 0]
        per_chunk = self.tokens_per_chunk
        if per_chunk is None:
            return []
        return [gap / per_chunk for gap in itl_ns]

    @property
    def tpot_ns(self) -> float | None:
        """(e2e − ttft) / (output tokens − 1); None (not zero) for one token or fewer."""
        ttft = self.ttft_ns
        tokens = self.output_token_count
        if ttft is None or tokens < 2:
            return None
        return (self.e2e_ns - ttft) / (tokens - 1)

    @property
    def schedule_lag_ns(self) -> int | None:
        """Actual start − intended start (open loop only); None after a retry, whose last
        attempt started late because of the server, not the client."""
        if self.intended_start_ns is None or self.retries:
            return None
        return self.start_ns - self.intended_start_ns

    @property
    def ttft_from_intended_ns(self) -> int | None:
        """First token's arrival − the intended start (open loop only)."""
        if self.intended_start_ns is None or not self.token_times_ns:
            return None
        return self.token_times_ns[0] - self.intended_start_ns

    @property
    def e2e_from_intended_ns(self) -> int | None:
        return None if self.intended_start_ns is None else self.end_ns - self.intended_start_ns

    @property
    def output_tokens_per_s(self) -> float | None:
        """Output tokens ÷ e2e for this request."""
        e2e = self.e2e_ns
        tokens = self.output_token_count
        if e2e <= 0 or tokens == 0:
            return None
        return tokens * 1e9 / e2e

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (cost as an exact decimal string)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, Decimal):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> RequestRecord:
        fields = dict(data)
        if fields.get("cost_amount") is not None:
            fields["cost_amount"] = Decimal(fields["cost_amount"])
        fields["token_times_ns"] = tuple(fields.get("token_times_ns", ()))
        fields["chunk_tokens"] = tuple(fields.get("chunk_tokens", ()))
        return cls(**fields)
