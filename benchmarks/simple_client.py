"""What the reference (aiohttp + uvloop) and baseline (httpx, shared pool) clients share.

The request they send, the end of a stream-mode run (`finish_stream`), and the
record of one stream built after its last read:
they only stamp their reads while a stream runs; `stream_record` then splits the
reads into SSE events, JSON-decodes them, and stamps every chunk with a non-empty
``delta.content`` with the read it came in, under onybench's record field names,
so `fidelity.py` judges every client the same way.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import orjson
from cpu_sampler import cpu_s

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
