"""A minimal reference SSE load client on aiohttp + uvloop, the yardstick for onybench.

    python benchmarks/reference_client.py '{"mode": "stream", ...}'

It does what onybench does and nothing more: a closed loop of `concurrency`
workers, each request stamped with ``perf_counter_ns`` when it starts and on
every read of the body; after the stream has ended, the events are split and
JSON-decoded, and every chunk with non-empty ``delta.content`` is a token
stamped with the read it came in. Records go to ``records.jsonl`` with
onybench's field names (``response_id``, ``start_ns``, ``token_times_ns``,
``error_class``), so `fidelity.py` judges both the same way. Modes and the CPU
window are those of `onybench_driver.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
from typing import Any

import aiohttp
import uvloop

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_sampler import cpu_s
from simple_client import (
    BODY,
    HEADERS,
    client_main,
    finish_stream,
    held_open_figures,
    rss_bytes,
    run_mode,
    stream_record,
)


async def one_request(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    clock = time.perf_counter_ns
    start_ns = clock()
    reads: list[tuple[int, bytes]] = []
    error: str | None = None
    try:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            if response.status != 200:
                error = f"http_{response.status}"
            async for data in response.content.iter_any():
                reads.append((clock(), data))
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = type(exc).__name__
    return stream_record(start_ns, reads, error)


async def stream(args: dict[str, Any]) -> dict[str, Any]:
    url = args["base_url"] + "/chat/completions"
    budget = args["requests"]
    cpu_before, wall_before = cpu_s(), time.perf_counter_ns()
    records: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal budget
            while budget > 0:
                budget -= 1
                records.append(await one_request(session, url))

        await asyncio.gather(*(worker() for _ in range(args["concurrency"])))
    return finish_stream(args, records, cpu_before, wall_before)


async def hold_open(args: dict[str, Any], streams: int, settle_s: float) -> dict[str, Any]:
    url = args["base_url"] + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    all_open = asyncio.Event()
    opened = 0

    async def hold(session: aiohttp.ClientSession) -> None:
        nonlocal opened
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            opened += 1
            if opened == streams:
                all_open.set()
            async for _ in response.content.iter_any():
                pass

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        gc.collect()
        before = rss_bytes(), cpu_s(), time.perf_counter()
        tasks = [asyncio.create_task(hold(session)) for _ in range(streams)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_open.wait(), args["timeout_s"])
        at_open = cpu_s(), time.perf_counter()
        await asyncio.sleep(settle_s)
        settled = rss_bytes(), cpu_s()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return held_open_figures(streams, opened, before, at_open, settled)


def main(argv: list[str]) -> int:
    return client_main(argv, lambda args: uvloop.run(run_mode(args, stream, hold_open)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
