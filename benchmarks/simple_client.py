"""What the clients other than onybench share (reference, trio floor, httpx baseline).

The request they send, the end of a stream-mode run (`finish_stream`), a held-open
run's figures (`held_open_figures`), the modes and the process's entry point
(`run_mode`, `client_main`), and the record of one stream built after its last read:
they only stamp their reads while a stream runs; `stream_record` then splits the
reads into SSE events, JSON-decodes them, and stamps every chunk with a non-empty
``delta.content`` with the read it came in, under onybench's record field names,
so `fidelity.py` judges every client the same way.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from cpu_sampler import CpuSampler, cpu_s

BODY = orjson.dumps(
    {
        "model": "bench-model",
        "messages": [{"role": "user", "content": "one two three"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
)
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench-not-a-secret"}


def stream_record(
    start_ns: int, reads: list[tuple[int, bytes]], error: str | None
) -> dict[str, Any]:
    """One records.jsonl line from `(arrival_ns, bytes)` reads."""
    token_times: list[int] = []
    response_id = None
    pending = b""
    for arrival_ns, data in reads:
        *events, pending = (pending + data).split(b"\n\n")
        for event in events:
            payload = event.removeprefix(b"data: ")
            if payload == b"[DONE]":
                continue
            chunk = orjson.loads(payload)
            response_id = chunk.get("id", response_id)
            choices = chunk.get("choices")
            if choices and choices[0].get("delta", {}).get("content"):
                token_times.append(arrival_ns)
    return {
        "response_id": response_id,
        "start_ns": start_ns,
        "token_times_ns": token_times,
        "error_class": error,
    }


def finish_stream(
    args: dict[str, Any], records: list[dict[str, Any]], cpu_before: float, wall_before: int
) -> dict[str, Any]:
    """Write `records` to `args["out_dir"]`/records.jsonl and close the CPU window that
    `cpu_before` / `wall_before` opened: what a stream-mode run reports to `run.py`."""
    out = Path(args["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "records.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    cpu_after, wall_after = cpu_s(), time.perf_counter_ns()
    return {
        "cpu_s": cpu_after - cpu_before,
        "window_start_ns": wall_before,
        "window_end_ns": wall_after,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def raise_open_file_limit() -> None:
    """Up to the hard limit: thousands of streams held open are thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def held_open_figures(
    streams: int,
    opened: int,
    before: tuple[int, float, float],
    at_open: tuple[float, float],
    settled: tuple[int, float],
) -> dict[str, Any]:
    """A held-open run's outcome from (RSS, CPU, wall) before the streams, (CPU, wall)
    once all had opened, and (RSS, CPU) after they sat idle."""
    (rss_before, cpu_before, wall_before), (cpu_open, wall_open) = before, at_open
    rss_open, cpu_settled = settled
    return {
        "streams": streams,
        "opened": opened,
        "cpu_s": cpu_open - cpu_before,
        "open_wall_s": wall_open - wall_before,
        "idle_cpu_s": cpu_settled - cpu_open,
        "rss_growth_bytes": rss_open - rss_before,
    }


Mode = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
HoldOpen = Callable[[dict[str, Any], int, float], Awaitable[dict[str, Any]]]


async def run_mode(args: dict[str, Any], stream: Mode, hold_open: HoldOpen) -> dict[str, Any]:
    """``stream``, or ``open``: a small warm-up held open, then the measured streams."""
    if args["mode"] == "stream":
        return await stream(args)
    if args.get("warm_up", 20):
        await hold_open(args, args.get("warm_up", 20), 0.2)
    return await hold_open(args, args["concurrency"], args["settle_s"])


def client_main(argv: list[str], run: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """A client process: `run` the JSON arguments in `argv[0]` under the CPU sampler
    and print the outcome as one JSON line (what `run.py` reads)."""
    args = orjson.loads(argv[0])
    raise_open_file_limit()
    with CpuSampler() as sampler:
        outcome = run(args)
    if args["mode"] == "stream":
        outcome["cpu_samples"] = sampler.samples
    sys.stdout.write(orjson.dumps(outcome).decode() + "\n")
    return 0
