"""`onybench probe`: a few requests that show how a server streams, before a long benchmark.

Sequential, on one connection pool, so the connection's life shows too:

1. `requests` streams asking for usage (``stream_options.include_usage``); if the
   server refuses that field, once more without it;
2. one stream without ``stream_options``: does usage come unasked?
3. one stream asking for vLLM's ``continuous_usage_stats``: supported (a running
   usage in every chunk), ignored, or refused;
4. one stream with ``ignore_eos`` (vLLM, llama.cpp): accepted or refused (OpenAI
   refuses fields outside its schema).

The streams of step 1 (those a run would send) fold into a `GroupMetrics`, so
the server profile printed is the very one a run's report would hold; the option
probes only give their verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from onybench.client import RequestSpec, StreamingClient, Target
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupMetrics

Verdict = Literal["accepted", "refused", "unknown"]
ContinuousVerdict = Literal["supported", "ignored", "refused", "unknown"]

PROBE_PROMPT = "Count from one to twenty, separated by spaces."


@dataclass
class ProbeResult:
    """What the probe found; `records` (every request) in the order sent, `metrics`
    over the step-1 streams only."""

    base_url: str
    model: str
    records: list[RequestRecord] = field(default_factory=list)
    include_usage: Verdict = "unknown"
    usage_unasked: bool | None = None
    continuous_usage: ContinuousVerdict = "unknown"
    ignore_eos: Verdict = "unknown"
    metrics: GroupMetrics = field(default_factory=GroupMetrics)

    @property
    def succeeded(self) -> int:
        return self.metrics.succeeded

    def to_json(self) -> dict[str, Any]:
        figures = self.metrics.figures()
        return {
            "base_url": self.base_url,
            "model": self.model,
            "requests": self.metrics.requests,
            "succeeded": self.succeeded,
            "errors": dict(self.metrics.errors),
            "options": {
                "stream_options.include_usage": self.include_usage,
                "usage_without_asking": self.usage_unasked,
                "stream_options.continuous_usage_stats": self.continuous_usage,
                "ignore_eos": self.ignore_eos,
            },
            "figures": {
                name: figures[name]
                for name in ("ttft.p50_ms", "itl.p50_ms", "e2e.p50_ms", "connect.p50_ms")
                if name in figures
            },
            "server_profile": self.metrics.profile.describe(),
            "first_error": next(
                (r.error_message for r in self.records if r.error_class is not None), None
            ),
            "suggestions": self.suggestions(),
        }

    def suggestions(self) -> list[str]:
        """Scenario settings this server calls for."""
        out = []
        if self.include_usage == "refused":
            out.append("request.include_usage = false  (the server refuses stream_options)")
        if self.continuous_usage == "supported":
            out.append(
                "request.extra_body = { stream_options = { include_usage = true, "
                "continuous_usage_stats = true } }  (exact per-token ITL)"
            )
        if self.ignore_eos == "accepted":
            out.append("request.ignore_eos = true  (output lengths under control)")
        return out


async def probe(
    target: Target, model: str, *, requests: int = 3, max_tokens: int = 16
) -> ProbeResult:
    """Probe `target` with `model` (see the module docstring); never raises for the target's
    errors: they are in the records."""
    result = ProbeResult(target.base_url, model)
    base = RequestSpec(
        model=model, messages=({"role": "user", "content": PROBE_PROMPT},), max_tokens=max_tokens
    )
    async with StreamingClient(target) as client:

        async def send(spec: RequestSpec, *, profiled: bool = False) -> RequestRecord:
            kept: list[RequestRecord] = []
            await client.run_request(spec, kept.append)
            record = kept[0]
            result.records.append(record)
            if profiled:
                result.metrics.add(record)
            return record

        first = await send(base)
        result.include_usage = _verdict(first)
        if result.include_usage == "refused":
            base = replace(base, include_usage=False)
        else:
            result.metrics.add(first)
        for _ in range(requests - 1 if result.include_usage != "refused" else requests):
            await send(base, profiled=True)
        unasked = await send(replace(base, include_usage=False))
        if unasked.succeeded:
            result.usage_unasked = unasked.output_tokens is not None
        continuous = await send(
            replace(
                base,
                include_usage=False,
                extra_body=(
                    ("stream_options", {"include_usage": True, "continuous_usage_stats": True}),
                ),
            )
        )
        verdict = _verdict(continuous)
        if verdict == "accepted":
            result.continuous_usage = "supported" if continuous.chunk_tokens else "ignored"
        elif verdict == "refused":
            result.continuous_usage = "refused"
        result.ignore_eos = _verdict(await send(replace(base, ignore_eos=True)))
    return result


def _verdict(record: RequestRecord) -> Verdict:
    """A stream that got 200 accepted the request's options; a 400 or 422 refused them."""
    if record.status == 200:
        return "accepted"
    if record.status in (400, 422):
        return "refused"
    return "unknown"
