"""What the server did that matters for reading the figures: the server profile.

"OpenAI-compatible" servers differ in ways that change what a figure means:
usage sent or not (token counts then estimated from chunks), several tokens per
chunk (ITL is then per chunk), cost from the API, a proxy's estimate or a price
table, `[DONE]` or a bare close, connections closed after every response, a
prompt cache that makes TTFT unrealistically low. `ServerProfile` counts these
per request, merges exactly like the rest of `GroupMetrics` (which holds one),
and `describe()` turns the counts into report.json's `server_profile` section,
with a warning for every figure that is estimated or distorted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from onybench.metrics.record import RequestRecord

# Cost sources, in the order reports list them; "none" = the request reported no cost.
COST_SOURCES = ("server", "usage_cost", "pricing", "none")
# A prompt cache serving more than this share of prompt tokens gets a warning.
CACHE_WARNING_SHARE = 0.1


@dataclass
class ServerProfile:
    """Counters over requests: `streams` are the requests the server answered 200,
    `complete_streams` those that also ended well; usage, cost, stream end and token
    counts are over the complete ones (a failed stream ends before its usage)."""

    streams: int = 0
    complete_streams: int = 0
    events: int = 0
    done: int = 0
    finish_then_close: int = 0
    role_first: int = 0
    usage_reported: int = 0
    continuous_usage: int = 0
    # Over streams with usage and at least one token-bearing chunk: their tokens and chunks.
    usage_tokens: int = 0
    usage_token_chunks: int = 0
    # Per-request mean tokens per chunk, rounded to one decimal ("1.0", "1.7"): the distribution.
    tokens_per_chunk: Counter[str] = field(default_factory=Counter)
    cost_sources: Counter[str] = field(default_factory=Counter)
    connections_opened: int = 0
    connections_reused: int = 0
    connections_closed_by_server: int = 0
    cache_reports: int = 0
    cache_hit_requests: int = 0
    cached_tokens: int = 0
    cache_prompt_tokens: int = 0
    reasoning_tokens: int = 0
    server_timings: int = 0
    retries: int = 0
    retry_after_requests: int = 0

    def add(self, record: RequestRecord) -> None:
        """Fold one request in (any outcome; only what it shows is counted)."""
        self.retries += record.retries
        if record.retry_after_s is not None:
            self.retry_after_requests += 1
        if record.error_class == "connection_closed":
            self.connections_closed_by_server += 1
        if record.status is None:
            return
        if record.connect_ns is not None:
            self.connections_opened += 1
        else:
            self.connections_reused += 1
        # Records written before onybench noted what the server did (events = 0 for a
        # stream that was not empty) tell nothing about it.
        if record.status != 200 or (record.events == 0 and record.succeeded):
            return
        self.streams += 1
        self.events += record.events
        self.role_first += record.role_first
        self.server_timings += record.server_timings
        if not record.succeeded:
            # A failed stream ends early: its usage, cost and end tell nothing of the server.
            return
        self.complete_streams += 1
        self.done += record.done
        self.finish_then_close += not record.done and record.finish_reason is not None
        self.reasoning_tokens += record.reasoning_tokens or 0
        self.cost_sources[record.cost_source or "none"] += 1
        if record.cached_tokens is not None:
            self.cache_reports += 1
            self.cached_tokens += record.cached_tokens
            self.cache_prompt_tokens += record.prompt_tokens or 0
            self.cache_hit_requests += record.cached_tokens > 0
        if record.output_tokens is None:
            return
        self.usage_reported += 1
        self.continuous_usage += bool(record.chunk_tokens)
        chunks = len(record.token_times_ns)
        if chunks:
            self.usage_tokens += record.output_tokens
            self.usage_token_chunks += chunks
            self.tokens_per_chunk[f"{record.output_tokens / chunks:.1f}"] += 1

    def merge(self, other: ServerProfile) -> None:
        """Fold another profile in, exactly."""
        for name in _COUNTER_FIELDS:
            getattr(self, name).update(getattr(other, name))
        for name in _INT_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _INT_FIELDS}
        for name in _COUNTER_FIELDS:
            out[name] = dict(sorted(getattr(self, name).items()))
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerProfile:
        """The inverse of `to_json`; fields an older report lacks count as 0."""
        profile = cls()
        for name in _INT_FIELDS:
            setattr(profile, name, int(data.get(name, 0)))
        for name in _COUNTER_FIELDS:
            getattr(profile, name).update(data.get(name, {}))
        return profile

    def describe(self) -> dict[str, Any]:
        """report.json's `server_profile`: the counts by topic, and the warnings."""
        missing_usage = self.complete_streams - self.usage_reported
        mean_per_chunk = (
            self.usage_tokens / self.usage_token_chunks if self.usage_token_chunks else None
        )
        return {
            "streams": self.streams,
            "complete_streams": self.complete_streams,
            "events": self.events,
            "usage": {
                "reported": self.usage_reported,
                "continuous": self.continuous_usage,
                "missing": missing_usage,
                "token_counts": _token_count_source(self.usage_reported, missing_usage),
            },
            "tokens_per_chunk": {
                "mean": mean_per_chunk,
                "requests_by_mean": dict(
                    sorted(self.tokens_per_chunk.items(), key=lambda item: float(item[0]))
                ),
            },
            "cost_source": {source: self.cost_sources[source] for source in COST_SOURCES},
            "stream_end": {
                "done": self.done,
                "finish_then_close": self.finish_then_close,
            },
            "role_first_chunk": self.role_first,
            "connections": {
                "opened": self.connections_opened,
                "reused": self.connections_reused,
                "closed_by_server": self.connections_closed_by_server,
            },
            "prompt_cache": {
                "reported": self.cache_reports,
                "hit_requests": self.cache_hit_requests,
                "cached_tokens": self.cached_tokens,
                "hit_share": self.cached_tokens / self.cache_prompt_tokens
                if self.cache_prompt_tokens
                else None,
            },
            "reasoning_tokens": self.reasoning_tokens,
            "server_timings": self.server_timings,
            "retries": {
                "retries": self.retries,
                "retry_after_requests": self.retry_after_requests,
            },
            "warnings": self.warnings(),
        }

    def warnings(self) -> list[str]:
        """One sentence for each figure the server's behaviour makes estimated or suspect."""
        out: list[str] = []
        missing_usage = self.complete_streams - self.usage_reported
        if missing_usage:
            out.append(
                f"{missing_usage} of {self.complete_streams} complete streams reported no "
                "usage: their output token counts are ESTIMATED as one token per content chunk"
            )
        if self.usage_tokens > self.usage_token_chunks > 0:
            mean = self.usage_tokens / self.usage_token_chunks
            if self.continuous_usage == self.usage_reported:
                basis = "per-token ITL (itl_per_token) is exact, from the running usage"
            else:
                basis = (
                    "per-token ITL (itl_per_token) is ESTIMATED by spreading each gap over "
                    "the mean tokens per chunk"
                )
            out.append(
                f"chunks carried {mean:.2f} tokens on average: ITL is measured between "
                f"chunks, not tokens; {basis}"
            )
        no_cost = self.cost_sources["none"]
        if self.cost_sources["pricing"]:
            out.append(
                f"cost of {self.cost_sources['pricing']} requests is ESTIMATED from the "
                "scenario's price table: the server sent no cost"
            )
        if self.cost_sources["usage_cost"]:
            out.append(
                f"cost of {self.cost_sources['usage_cost']} requests is the proxy's own "
                "estimate (usage.cost, e.g. LiteLLM's price map), not the API's bill"
            )
        if no_cost and no_cost < self.complete_streams:
            out.append(f"{no_cost} of {self.complete_streams} complete streams reported no cost")
        if self.cache_prompt_tokens and (
            self.cached_tokens / self.cache_prompt_tokens > CACHE_WARNING_SHARE
        ):
            share = self.cached_tokens / self.cache_prompt_tokens
            out.append(
                f"the prompt cache served {share:.0%} of prompt tokens: TTFT is lower than "
                "for fresh prompts (set prompts.unique_prefix = true to defeat the cache)"
            )
        if self.connections_closed_by_server:
            out.append(
                f"the server closed {self.connections_closed_by_server} connections before "
                "answering (counted as connection_closed, not as server errors)"
            )
        return out


def _token_count_source(reported: int, missing: int) -> str:
    if not missing:
        return "usage"
    return "estimated_from_chunks" if not reported else "mixed"


_COUNTER_FIELDS = tuple(
    f.name for f in fields(ServerProfile) if f.name in ("tokens_per_chunk", "cost_sources")
)
_INT_FIELDS = tuple(f.name for f in fields(ServerProfile) if f.name not in _COUNTER_FIELDS)
