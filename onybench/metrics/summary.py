"""RequestRecords folded into per-model figures: counters, HDR histograms, cost.

`GroupMetrics` is the one accumulator: `add` folds in a record, `merge` folds in
another accumulator exactly (integer counters, HDR counts, Decimal sums), and
`to_json` / `from_json` carry it between processes and runs losslessly. A run in
several processes and `onybench merge` both end in `merge`, so splitting the
records any way and merging gives the very same figures as one fold.

What goes where:

- Every request counts in `requests`; a request with an `error_class`
  (http_429, truncated, cancelled, ...) counts in `errors` and is left out of
  every histogram and token total: its timings describe a failure, not the
  service.
- `itl` pools every gap of every successful request (vLLM's definition), so
  long responses weigh more than short ones. `itl_per_token` holds only the
  gaps of requests whose usage says chunks carried several tokens. `tpot` is
  left out when undefined (one token or fewer), never recorded as 0. `connect`
  holds only requests that opened a new connection.
- Cost is summed over *all* requests that reported one, failed ones included:
  a failed request can still have been billed, and the total is meant to match
  the invoice. Currencies are kept apart, never added; an amount without a
  currency is kept under "UNKNOWN" rather than dropped or guessed.
- The throughput window runs from the first request's start to the last
  request's end, over all requests: it is the run's wall time.

Figure names (`figures()`), the names report.json, thresholds, CSV and
comparisons use; `<metric>.<stat>_<unit>`:

    requests.total  requests.succeeded  requests.failed  errors.<class>
    error_rate                      failed / total, a fraction 0..1
    duration_s                      first start -> last end, seconds
    request_throughput.per_s        succeeded requests / duration_s
    output_throughput.tokens_per_s  output tokens / duration_s
    total_throughput.tokens_per_s   (prompt + output tokens) / duration_s
    tokens.output  tokens.prompt  tokens.estimated_requests
    <hist>.count  <hist>.overflow (only when non-zero)
    <hist>.<stat>_ms                for ttft ttft_content itl itl_per_token tpot e2e connect
    request_output_tokens_per_s.<stat>   (the name already carries its unit)
    cost.total_<currency>           float, currency lower-case (exact strings: to_json)
    cost.per_1m_output_tokens_<currency>   total cost / output tokens * 10**6

with <stat> one of min mean stdev p50 p90 p95 p99 p99_9 max. The throughput
figures appear only when the window is longer than 0, stats only for histograms
that hold a value, cost per 1M tokens only when output tokens > 0.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from onybench.metrics.histogram import Histogram
from onybench.metrics.profile import ServerProfile
from onybench.metrics.record import RequestRecord

# name -> (display unit, stored units per display unit). Latencies: µs stored,
# ms shown. The per-request rate: milli-tokens/s stored (integers, so 3
# significant digits hold from 0.001 tokens/s up), tokens/s shown.
HISTOGRAM_UNITS: dict[str, tuple[str, float]] = {
    "ttft": ("ms", 1000.0),
    "ttft_content": ("ms", 1000.0),
    "itl": ("ms", 1000.0),
    "itl_per_token": ("ms", 1000.0),
    "tpot": ("ms", 1000.0),
    "e2e": ("ms", 1000.0),
    "connect": ("ms", 1000.0),
    "request_output_tokens_per_s": ("tokens_per_s", 1000.0),
    # Open-loop runs only: how late requests started, and latency counted from
    # the intended start (coordinated omission).
    "schedule_lag": ("ms", 1000.0),
    "ttft_from_intended": ("ms", 1000.0),
    "e2e_from_intended": ("ms", 1000.0),
}


# The stage name of warm-up requests: reported, but kept out of the results.
WARMUP_STAGE = "warmup"


class GroupKey(NamedTuple):
    """What a group of requests shares: the model, and the load stage if any."""

    model: str
    stage: str | None = None


UNKNOWN_CURRENCY = "UNKNOWN"


def _new_histograms() -> dict[str, Histogram]:
    return {name: Histogram(unit, scale) for name, (unit, scale) in HISTOGRAM_UNITS.items()}


def _min_or_none(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max_or_none(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class GroupMetrics:
    """Everything measured for one group of requests (one model), mergeable.

    Token counts are over succeeded requests; `estimated_token_requests` counts
    the succeeded ones whose output count came from chunks (no usage in the
    stream). `cost` maps currency -> exact total. `first_start_ns` /
    `last_end_ns` are clock readings (ns) bounding the run's throughput window.
    """

    requests: int = 0
    succeeded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    output_tokens: int = 0
    prompt_tokens: int = 0
    estimated_token_requests: int = 0
    prompt_tokens_requested: int = 0
    output_tokens_requested: int = 0
    # Open loop: arrivals that were not sent because max_in_flight was reached.
    dropped: int = 0
    cost: dict[str, Decimal] = field(default_factory=dict)
    first_start_ns: int | None = None
    last_end_ns: int | None = None
    histograms: dict[str, Histogram] = field(default_factory=_new_histograms)
    profile: ServerProfile = field(default_factory=ServerProfile)

    def add(self, record: RequestRecord) -> None:
        """Fold one request in."""
        self.requests += 1
        self.profile.add(record)
        self.first_start_ns = _min_or_none(self.first_start_ns, record.start_ns)
        self.last_end_ns = _max_or_none(self.last_end_ns, record.end_ns)
        if record.cost_amount is not None:
            self._add_cost(record.cost_currency or UNKNOWN_CURRENCY, record.cost_amount)
        if record.error_class is not None:
            self.errors[record.error_class] += 1
            return

        self.succeeded += 1
        self.prompt_tokens_requested += record.prompt_tokens_requested or 0
        self.output_tokens_requested += record.max_tokens_requested or 0
        self.output_tokens += record.output_token_count
        self.prompt_tokens += record.prompt_tokens or 0
        if record.token_count_source == "estimated_from_chunks":
            self.estimated_token_requests += 1

        hist = self.histograms
        hist["e2e"].record_ns(record.e2e_ns)
        for name, value_ns in (
            ("ttft", record.ttft_ns),
            ("ttft_content", record.ttft_content_ns),
            ("tpot", record.tpot_ns),
            ("connect", record.connect_ns),
            ("schedule_lag", record.schedule_lag_ns),
            ("ttft_from_intended", record.ttft_from_intended_ns),
            ("e2e_from_intended", record.e2e_from_intended_ns),
        ):
            if value_ns is not None:
                hist[name].record_ns(value_ns)
        gaps_ns = record.itl_ns
        hist["itl"].record_all_ns(gaps_ns)
        hist["itl_per_token"].record_all_ns(record.itl_per_token_from(gaps_ns))
        rate = record.output_tokens_per_s
        if rate is not None:
            rates = hist["request_output_tokens_per_s"]
            rates.record(round(rate * rates.scale))

    def merge(self, other: GroupMetrics) -> None:
        """Fold another accumulator in, exactly; `other` is left unchanged."""
        self.requests += other.requests
        self.succeeded += other.succeeded
        self.errors.update(other.errors)
        self.output_tokens += other.output_tokens
        self.prompt_tokens += other.prompt_tokens
        self.estimated_token_requests += other.estimated_token_requests
        self.prompt_tokens_requested += other.prompt_tokens_requested
        self.output_tokens_requested += other.output_tokens_requested
        self.dropped += other.dropped
        for currency, amount in other.cost.items():
            self._add_cost(currency, amount)
        self.first_start_ns = _min_or_none(self.first_start_ns, other.first_start_ns)
        self.last_end_ns = _max_or_none(self.last_end_ns, other.last_end_ns)
        for name, histogram in self.histograms.items():
            histogram.merge(other.histograms[name])
        self.profile.merge(other.profile)

    def _add_cost(self, currency: str, amount: Decimal) -> None:
        # Decimal addition is exact up to 28 significant digits, far beyond any bill.
        self.cost[currency] = self.cost.get(currency, Decimal(0)) + amount

    @property
    def duration_s(self) -> float | None:
        """First start -> last end, in seconds; None before any request."""
        if self.first_start_ns is None or self.last_end_ns is None:
            return None
        return (self.last_end_ns - self.first_start_ns) / 1e9

    def figures(self) -> dict[str, float | int | str]:
        """The flat, named figures (see the module docstring for every name)."""
        failed = self.requests - self.succeeded
        out: dict[str, float | int | str] = {
            "requests.total": self.requests,
            "requests.succeeded": self.succeeded,
            "requests.failed": failed,
        }
        for error_class in sorted(self.errors):
            out[f"errors.{error_class}"] = self.errors[error_class]
        if self.requests:
            out["error_rate"] = failed / self.requests
        duration_s = self.duration_s
        if duration_s is not None:
            out["duration_s"] = duration_s
            if duration_s > 0:
                out["request_throughput.per_s"] = self.succeeded / duration_s
                out["output_throughput.tokens_per_s"] = self.output_tokens / duration_s
                out["total_throughput.tokens_per_s"] = (
                    self.prompt_tokens + self.output_tokens
                ) / duration_s
        out["tokens.output"] = self.output_tokens
        out["tokens.prompt"] = self.prompt_tokens
        out["tokens.estimated_requests"] = self.estimated_token_requests
        if self.prompt_tokens_requested:
            out["tokens.prompt_requested"] = self.prompt_tokens_requested
        if self.output_tokens_requested:
            out["tokens.output_requested"] = self.output_tokens_requested
        if self.dropped:
            out["requests.dropped"] = self.dropped
        for name, histogram in self.histograms.items():
            out[f"{name}.count"] = histogram.count
            if histogram.overflow_count:
                out[f"{name}.overflow"] = histogram.overflow_count
            suffix = "" if name.endswith(histogram.unit) else f"_{histogram.unit}"
            for stat, value in histogram.stats().items():
                out[f"{name}.{stat}{suffix}"] = value
        for currency in sorted(self.cost):
            total = self.cost[currency]
            # A figure name holds [a-z0-9_] only, whatever the API calls its currency.
            key = re.sub(r"[^a-z0-9]+", "_", currency.lower()).strip("_") or "unknown"
            out[f"cost.total_{key}"] = float(total)
            if self.output_tokens > 0:
                out[f"cost.per_1m_output_tokens_{key}"] = float(
                    total * 1_000_000 / self.output_tokens
                )
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: histograms in HdrHistogram's base64 text, costs as
        exact decimal strings, keys sorted so equal metrics give equal text."""
        return {
            "requests": self.requests,
            "succeeded": self.succeeded,
            "errors": dict(sorted(self.errors.items())),
            "output_tokens": self.output_tokens,
            "prompt_tokens": self.prompt_tokens,
            "estimated_token_requests": self.estimated_token_requests,
            "prompt_tokens_requested": self.prompt_tokens_requested,
            "output_tokens_requested": self.output_tokens_requested,
            "dropped": self.dropped,
            "cost": {currency: str(self.cost[currency]) for currency in sorted(self.cost)},
            "first_start_ns": self.first_start_ns,
            "last_end_ns": self.last_end_ns,
            "histograms": {
                name: {"encoded": histogram.encode(), "overflow": histogram.overflow_count}
                for name, histogram in self.histograms.items()
            },
            "profile": self.profile.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupMetrics:
        """The inverse of `to_json`; raises KeyError when a field is missing."""
        encoded = data["histograms"]
        return cls(
            requests=data["requests"],
            succeeded=data["succeeded"],
            errors=Counter(data["errors"]),
            output_tokens=data["output_tokens"],
            prompt_tokens=data["prompt_tokens"],
            estimated_token_requests=data["estimated_token_requests"],
            prompt_tokens_requested=data["prompt_tokens_requested"],
            output_tokens_requested=data["output_tokens_requested"],
            dropped=data["dropped"],
            cost={currency: Decimal(amount) for currency, amount in data["cost"].items()},
            first_start_ns=data["first_start_ns"],
            last_end_ns=data["last_end_ns"],
            histograms={
                name: Histogram.decode(
                    encoded[name]["encoded"],
                    unit=unit,
                    scale=scale,
                    overflow_count=encoded[name]["overflow"],
                )
                for name, (unit, scale) in HISTOGRAM_UNITS.items()
            },
            # Reports written before the server profile existed have none.
            profile=ServerProfile.from_json(data.get("profile", {})),
        )


def summarize(records: Iterable[RequestRecord]) -> dict[GroupKey, GroupMetrics]:
    """Fold records into one GroupMetrics per (model, stage), in first-seen order."""
    groups: dict[GroupKey, GroupMetrics] = {}
    for record in records:
        key = GroupKey(record.model, record.stage)
        group = groups.get(key)
        if group is None:
            group = groups[key] = GroupMetrics()
        group.add(record)
    return groups
