"""Pure analysis for the benchmarks: client records against the mock's send log.

No I/O beyond reading JSON-lines files, no trio, no onybench internals: the
same code judges onybench and the reference client.

Definitions (every time a `time.perf_counter_ns()` reading, one machine, one clock):
- true TTFT of a request = the mock's ``token_sent_ns[0]`` (the first content
  chunk's write had returned) − the client's ``start_ns``;
- TTFT error = reported TTFT − true TTFT (per request), reported as p50 and p99
  over the requests;
- the write itself happened between ``token_send_start_ns`` (read just before
  it) and ``token_sent_ns`` (read after it returned); on a saturated machine the
  mock can be descheduled between the write and that second reading, so the
  errors measured against ``token_send_start_ns`` are given too
  (``*_vs_start``): the true error lies between the two;
- ITL error at p = p-th percentile of every reported gap − p-th percentile of
  every true gap (``token_sent_ns`` differences), both pooled over all
  requests of the level;
- lateness of the mock = when content chunk k was written (``token_sent_ns[k]``,
  or its start ``token_send_start_ns[k]``) − when it was due
  (``received_ns + ttft + k × itl``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson

NS_PER_MS = 1_000_000


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON-lines file (an absent file has none)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0 to 100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def _ms(value: float | None) -> float | None:
    return None if value is None else value / NS_PER_MS


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def client_fidelity(
    records: Iterable[dict[str, Any]], sent: Iterable[dict[str, Any]], first_round: int = 0
) -> dict[str, Any]:
    """TTFT and ITL, as the client reported them and as the mock's log says they were.

    `records` need ``response_id``, ``start_ns``, ``token_times_ns`` and
    ``error_class``; `sent` are send-log lines (``id``, ``token_sent_ns``).
    Only succeeded records whose id is in the log are compared. With
    `first_round` = the concurrency, the TTFT error p50 is also given for the
    first `first_round` requests started (connections being opened) and for
    the later ones (started as earlier streams ended) apart.
    """
    by_id = {line["id"]: line for line in sent}
    records = sorted(records, key=lambda record: record["start_ns"])
    rounds: tuple[list[int], list[int]] = ([], [])
    ttft_errors: list[int] = []
    reported_ttft: list[int] = []
    true_ttft: list[int] = []
    ttft_errors_vs_start: list[int] = []
    reported_gaps: list[int] = []
    true_gaps: list[int] = []
    start_gaps: list[int] = []
    events = failed = unmatched = count_mismatch = 0
    for record in records:
        times = record.get("token_times_ns") or []
        if record.get("error_class") is not None:
            failed += 1
            continue
        line = by_id.get(record.get("response_id"))
        if line is None or not times or not line["token_sent_ns"]:
            unmatched += 1
            continue
        truth = line["token_sent_ns"]
        events += len(times)
        if len(truth) != len(times):
            count_mismatch += 1
        start = record["start_ns"]
        reported_ttft.append(times[0] - start)
        true_ttft.append(truth[0] - start)
        ttft_errors.append(times[0] - truth[0])
        rounds[len(ttft_errors) > first_round].append(times[0] - truth[0])
        ttft_errors_vs_start.append(times[0] - line["token_send_start_ns"][0])
        reported_gaps.extend(b - a for a, b in pairwise(times))
        true_gaps.extend(b - a for a, b in pairwise(truth))
        start_gaps.extend(b - a for a, b in pairwise(line["token_send_start_ns"]))
    figures: dict[str, Any] = {
        "requests_compared": len(ttft_errors),
        "requests_failed": failed,
        "requests_unmatched": unmatched,
        "requests_token_count_mismatch": count_mismatch,
        "token_events": events,
    }
    for q in (50, 99):
        figures[f"ttft_error_p{q}_ms"] = _ms(percentile(ttft_errors, q))
        figures[f"ttft_reported_p{q}_ms"] = _ms(percentile(reported_ttft, q))
        figures[f"ttft_true_p{q}_ms"] = _ms(percentile(true_ttft, q))
        reported = percentile(reported_gaps, q)
        true = percentile(true_gaps, q)
        figures[f"itl_reported_p{q}_ms"] = _ms(reported)
        figures[f"itl_true_p{q}_ms"] = _ms(true)
        figures[f"itl_error_p{q}_ms"] = _ms(_difference(reported, true))
        figures[f"ttft_error_vs_start_p{q}_ms"] = _ms(percentile(ttft_errors_vs_start, q))
        figures[f"itl_error_vs_start_p{q}_ms"] = _ms(
            _difference(reported, percentile(start_gaps, q))
        )
    if first_round:
        figures["ttft_error_p50_first_round_ms"] = _ms(percentile(rounds[0], 50))
        figures["ttft_error_p50_later_rounds_ms"] = _ms(percentile(rounds[1], 50))
    figures["itl_zero_gap_share"] = (
        sum(1 for gap in reported_gaps if gap == 0) / len(reported_gaps) if reported_gaps else None
    )
    return figures


def mock_lateness(sent: Iterable[dict[str, Any]], ttft_ms: float, itl_ms: float) -> dict[str, Any]:
    """How late the mock wrote each content chunk against its fixed schedule."""
    sent_late: list[int] = []
    start_late: list[int] = []
    streams = 0
    for line in sent:
        if not line.get("token_sent_ns"):
            continue
        streams += 1
        received = line["received_ns"]
        for k, (start, done) in enumerate(
            zip(line["token_send_start_ns"], line["token_sent_ns"], strict=True)
        ):
            due = received + round((ttft_ms + k * itl_ms) * NS_PER_MS)
            sent_late.append(done - due)
            start_late.append(start - due)
    return {
        "streams": streams,
        "chunks": len(sent_late),
        "sent_lateness_p50_ms": _ms(percentile(sent_late, 50)),
        "sent_lateness_p99_ms": _ms(percentile(sent_late, 99)),
        "sent_lateness_max_ms": _ms(max(sent_late)) if sent_late else None,
        "start_lateness_p50_ms": _ms(percentile(start_late, 50)),
        "start_lateness_p99_ms": _ms(percentile(start_late, 99)),
        # Never negative: a chunk is never sent before it is due.
        "start_lateness_min_ms": _ms(min(start_late)) if start_late else None,
    }


def window_cpu_s(samples: Sequence[Sequence[float]], start_ns: int, end_ns: int) -> float | None:
    """CPU seconds spent from `start_ns` to `end_ns`, interpolated from ``(ns, cpu_s)`` samples."""
    if len(samples) < 2 or end_ns <= start_ns:
        return None

    def cpu_at(ns: int) -> float:
        for (t0, c0), (t1, c1) in pairwise(samples):
            if t0 <= ns <= t1:
                return c0 + (c1 - c0) * (ns - t0) / (t1 - t0) if t1 > t0 else c1
        return samples[0][1] if ns < samples[0][0] else samples[-1][1]

    return cpu_at(end_ns) - cpu_at(start_ns)


def streaming_window(records: Iterable[dict[str, Any]]) -> tuple[int, int] | None:
    """From the first request's start to the last token received, over all records."""
    starts = [r["start_ns"] for r in records]
    ends = [r["token_times_ns"][-1] for r in records if r.get("token_times_ns")]
    if not starts or not ends:
        return None
    return min(starts), max(ends)


def token_events(records: Iterable[dict[str, Any]]) -> int:
    """Token-bearing chunks the client received, over all its records."""
    return sum(len(record.get("token_times_ns") or ()) for record in records)


def ratio(a: float | None, b: float | None) -> float | None:
    """a ÷ b, None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b
