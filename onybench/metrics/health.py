"""Is the client itself the bottleneck? Evidence, folded and judged (pure code).

A load generator that falls behind stamps chunks late: TTFT grows, and chunks
that waited in the socket are read together, so their gaps collapse to zero
("coalesced") while the next gap grows. Servers also send bursts on purpose
(LiteLLM does), so a coalesced arrival is blamed on the client only when the
client's own event loop was lagging or its CPU saturated at that moment.

Evidence, sampled by `onybench.load.health.watch_event_loop`:
- event-loop lag: how late a timer wake-up ran; a chunk that arrives while the
  loop is busy waits about as long before it is stamped;
- CPU share: process CPU time ÷ wall time over each sampling interval.

The verdict (`ClientHealth.verdict`) flags the run as client-limited when the
loop lag was large enough to move the TTFT or ITL medians by more than the bounds
below (over the whole run, or around the reads of the first tokens), when a
noticeable share of token arrivals were coalesced by a lagging client, or when an
open loop started its requests late; a long lag tail alone earns a note on the
figures' tails, not the flag.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from onybench.metrics.histogram import Histogram
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import WARMUP_STAGE

# A chunk arriving while the loop lags by this much is stamped late by up to as much.
BLAME_LAG_NS = 1_000_000
BUSY_CPU_SHARE = 0.9
# Verdict bounds, in ms of loop lag and as a share of token arrivals.
# An idle trio loop already wakes ~1 ms late (epoll rounds its timeout up to
# whole milliseconds), so the median limit sits above that.
LAG_P50_LIMIT_MS = 2.0
# The tail: past this lag p90 the figures' tails (p90 and above) may be overstated
# by about as much. A note, not a verdict: a healthy loop serving 10k events/s on
# two small cores wakes 3-11 ms late at p90 (its scheduler rounds take that long)
# while its TTFT and ITL medians stay within 3 ms and 0.1 ms of the truth
# (benchmarks/: levels 100 and 128).
LAG_P90_NOTE_MS = 5.0
# A few percent of zero gaps barely move the ITL median; beyond this they do.
COALESCED_SHARE_LIMIT = 0.05
# Half the first tokens read while the loop lagged this much: TTFT p50 is off by about
# as much (the benchmarks call a TTFT p50 error beyond 5 ms a distortion).
FIRST_TOKEN_LAG_P50_LIMIT_MS = 5.0
# Open loop: requests that start this late (p99) mean the client fell behind its schedule.
SCHEDULE_LAG_P99_LIMIT_MS = 10.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """`client_limited` with its `reasons` (the medians are off); `notes` name figures
    whose tails may be off while the medians are not."""

    client_limited: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass
class ClientHealth:
    """Mergeable evidence of one or more client processes."""

    loop_lag: Histogram = field(default_factory=Histogram)
    schedule_lag: Histogram = field(default_factory=Histogram)
    # How late each request's first token was read, so stamped: how long its bytes had
    # waited in the kernel where Linux says (`RequestRecord.first_token_wait_ns`), else
    # how long the loop had been stalled when it was read (`_lag_before`), an estimate.
    # A burst of stream openings can hold the loop for a second while the run's overall
    # lag percentiles hardly move; this is where it shows. Warm-up requests left out.
    first_token_lag: Histogram = field(default_factory=Histogram)
    samples: int = 0
    busy_samples: int = 0
    token_arrivals: int = 0
    coalesced_by_client: int = 0
    coalesced_by_server: int = 0
    # This process's sample timeline, for blaming coalesced arrivals; not merged.
    _sample_ns: array[int] = field(default_factory=lambda: array("q"), repr=False)
    _sample_lag_ns: array[int] = field(default_factory=lambda: array("q"), repr=False)
    _sample_busy: array[int] = field(default_factory=lambda: array("b"), repr=False)

    def add_sample(self, woke_ns: int, lag_ns: int, cpu_share: float) -> None:
        """One wake-up of the watcher: when it ran, how late, and the CPU share since the last."""
        busy = cpu_share >= BUSY_CPU_SHARE
        self.samples += 1
        self.busy_samples += busy
        self.loop_lag.record_ns(max(lag_ns, 0))
        self._sample_ns.append(woke_ns)
        self._sample_lag_ns.append(lag_ns)
        self._sample_busy.append(busy)

    def add_record(self, record: RequestRecord) -> None:
        """Count the record's token arrivals and blame each coalesced one."""
        lag_ns = record.schedule_lag_ns
        if lag_ns is not None:
            self.schedule_lag.record_ns(max(lag_ns, 0))
        times = record.token_times_ns
        # Warm-up requests are left out of the TTFT this judges.
        if times and record.stage != WARMUP_STAGE:
            # Measured by the kernel where it can be, else estimated from the loop's lag.
            if record.first_token_wait_ns is not None:
                self.first_token_lag.record_ns(record.first_token_wait_ns)
            elif self._sample_ns:
                self.first_token_lag.record_ns(self._lag_before(times[0]))
        self.token_arrivals += len(times)
        for previous, current in pairwise(times):
            if current == previous:
                if self._client_was_behind(current):
                    self.coalesced_by_client += 1
                else:
                    self.coalesced_by_server += 1

    def _lag_before(self, at_ns: int) -> int:
        """How long the loop had been stalled when it read at `at_ns` (ns, >= 0).

        The wake-up after the read was due at ``woke - lag``: if that is before the
        read, the loop was stalled from then until at least the read. The wake-up
        before the read counts only if the read came in the same scheduler round
        (within `BLAME_LAG_NS` of it): a stall that ended earlier did not delay it.
        """
        sample_ns, lags = self._sample_ns, self._sample_lag_ns
        k = bisect.bisect_left(sample_ns, at_ns)
        stalled = 0
        if k < len(sample_ns):
            due_ns = sample_ns[k] - lags[k]
            stalled = min(lags[k], max(at_ns - due_ns, 0))
        if k > 0 and at_ns - sample_ns[k - 1] <= BLAME_LAG_NS:
            stalled = max(stalled, lags[k - 1])
        return max(stalled, 0)

    def _client_was_behind(self, at_ns: int) -> bool:
        # The read at `at_ns` lies between two wake-ups; either one lagging (or
        # a saturated interval) means the loop was busy when the bytes waited.
        k = bisect.bisect_left(self._sample_ns, at_ns)
        for i in (k - 1, k):
            if 0 <= i < len(self._sample_ns) and (
                self._sample_lag_ns[i] >= BLAME_LAG_NS or self._sample_busy[i]
            ):
                return True
        return False

    def merge(self, other: ClientHealth) -> None:
        self.loop_lag.merge(other.loop_lag)
        self.schedule_lag.merge(other.schedule_lag)
        self.first_token_lag.merge(other.first_token_lag)
        self.samples += other.samples
        self.busy_samples += other.busy_samples
        self.token_arrivals += other.token_arrivals
        self.coalesced_by_client += other.coalesced_by_client
        self.coalesced_by_server += other.coalesced_by_server

    def verdict(self) -> Verdict:
        reasons: list[str] = []
        lag = self.loop_lag.stats()
        if lag and lag["p50"] > LAG_P50_LIMIT_MS:
            reasons.append(
                f"event-loop lag p50 {lag['p50']:.1f} ms: "
                "TTFT and ITL stamps are late by about that"
            )
        notes: list[str] = []
        if lag and lag["p90"] > LAG_P90_NOTE_MS:
            notes.append(
                f"event-loop lag p90 {lag['p90']:.1f} ms: TTFT and ITL tails (p90 and above) "
                "may be overstated by up to about that"
            )
        first = self.first_token_lag.stats()
        if first and first["p50"] > FIRST_TOKEN_LAG_P50_LIMIT_MS:
            reasons.append(
                f"first tokens were read {first['p50']:.1f} ms (p50) after they arrived: "
                "TTFT is overstated by about that"
            )
        share = self.coalesced_by_client / self.token_arrivals if self.token_arrivals else 0.0
        if share > COALESCED_SHARE_LIMIT:
            reasons.append(
                f"{share:.1%} of token arrivals were read together with the previous one while "
                "the client lagged: ITL is distorted (too many zero gaps, too few normal ones)"
            )
        schedule = self.schedule_lag.stats()
        if schedule and schedule["p99"] > SCHEDULE_LAG_P99_LIMIT_MS:
            reasons.append(
                f"schedule lag p99 {schedule['p99']:.1f} ms: requests started late, so the "
                "offered load was lower than planned (latency from the intended start counts it)"
            )
        if reasons and self.samples and self.busy_samples / self.samples >= 0.5:
            reasons.append(f"CPU saturated in {self.busy_samples / self.samples:.0%} of samples")
        return Verdict(client_limited=bool(reasons), reasons=tuple(reasons), notes=tuple(notes))

    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {f"loop_lag.{k}_ms": v for k, v in self.loop_lag.stats().items()}
        figures["loop_lag.count"] = self.loop_lag.count
        figures.update(
            {f"first_token_lag.{k}_ms": v for k, v in self.first_token_lag.stats().items()}
        )
        figures.update({f"schedule_lag.{k}_ms": v for k, v in self.schedule_lag.stats().items()})
        figures["cpu_busy_share"] = self.busy_samples / self.samples if self.samples else 0.0
        figures["token_arrivals"] = self.token_arrivals
        figures["coalesced.client"] = self.coalesced_by_client
        figures["coalesced.server"] = self.coalesced_by_server
        return figures

    def to_json(self) -> dict[str, Any]:
        return {
            "loop_lag": {
                "encoded": self.loop_lag.encode(),
                "overflow": self.loop_lag.overflow_count,
            },
            "schedule_lag": {
                "encoded": self.schedule_lag.encode(),
                "overflow": self.schedule_lag.overflow_count,
            },
            "first_token_lag": {
                "encoded": self.first_token_lag.encode(),
                "overflow": self.first_token_lag.overflow_count,
            },
            "samples": self.samples,
            "busy_samples": self.busy_samples,
            "token_arrivals": self.token_arrivals,
            "coalesced_by_client": self.coalesced_by_client,
            "coalesced_by_server": self.coalesced_by_server,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientHealth:
        return cls(
            loop_lag=Histogram.decode(
                data["loop_lag"]["encoded"], overflow_count=data["loop_lag"]["overflow"]
            ),
            schedule_lag=Histogram.decode(
                data["schedule_lag"]["encoded"], overflow_count=data["schedule_lag"]["overflow"]
            ),
            # Reports from before it existed have none.
            first_token_lag=Histogram.decode(
                data["first_token_lag"]["encoded"],
                overflow_count=data["first_token_lag"]["overflow"],
            )
            if "first_token_lag" in data
            else Histogram(),
            samples=data["samples"],
            busy_samples=data["busy_samples"],
            token_arrivals=data["token_arrivals"],
            coalesced_by_client=data["coalesced_by_client"],
            coalesced_by_server=data["coalesced_by_server"],
        )
