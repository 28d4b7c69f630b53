"""The "obvious way" baseline of issue 3: one httpx AsyncClient, one shared pool, on trio.

    python benchmarks/httpx_baseline.py '{"mode": "stream", ...}'

What a user would write first: a closed loop of `concurrency` workers sharing one
`httpx.AsyncClient` with its default transport (httpcore's connection pool), made
to take any number of streams (`Limits(max_connections=None,
max_keepalive_connections=None)`, `Timeout(pool=None)`: without them it raises
`PoolTimeout` past 100). Each request is stamped when it starts and on every read
of the body (`aiter_raw`); the record is built after the stream as the reference
client builds its own (`simple_client.py`). Stream mode only, with the CPU window
of `onybench_driver.py`; `run.py --httpx-baseline` runs it at the 100-stream level.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import httpx
import orjson
import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_sampler import CpuSampler, cpu_s
from simple_client import BODY, HEADERS, finish_stream, stream_record


async def one_request(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    clock = time.perf_counter_ns
    start_ns = clock()
    reads: list[tuple[int, bytes]] = []
    error: str | None = None
    try:
        async with client.stream("POST", url, content=BODY, headers=HEADERS) as response:
            if response.status_code != 200:
                error = f"http_{response.status_code}"
            async for data in response.aiter_raw():
                reads.append((clock(), data))
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    return stream_record(start_ns, reads, error)


async def stream(args: dict[str, Any]) -> dict[str, Any]:
    url = args["base_url"] + "/chat/completions"
    budget = args["requests"]
    cpu_before, wall_before = cpu_s(), time.perf_counter_ns()
    records: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(10.0, read=120.0, pool=None)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def worker() -> None:
            nonlocal budget
            while budget > 0:
                budget -= 1
                records.append(await one_request(client, url))

        async with trio.open_nursery() as nursery:
            for _ in range(args["concurrency"]):
                nursery.start_soon(worker)
    return finish_stream(args, records, cpu_before, wall_before)


def main(argv: list[str]) -> int:
    args = orjson.loads(argv[0])
    if args["mode"] != "stream":
        raise SystemExit("the httpx baseline runs in stream mode only")
    with CpuSampler() as sampler:
        outcome = trio.run(stream, args)
    outcome["cpu_samples"] = sampler.samples
    sys.stdout.write(orjson.dumps(outcome).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
