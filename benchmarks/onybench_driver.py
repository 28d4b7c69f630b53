"""Runs onybench in this process for `run.py` and prints its own measurements as one JSON line.

    python benchmarks/onybench_driver.py '{"mode": "stream", ...}'

Both modes go through `onybench.benchmark.run`, the library call behind
``onybench run``, with a scenario built from the scenario-file schema, against
an already running mock:
- ``stream``: a closed loop; writes the run directory. The CPU window is this
  process's whole CPU time (user + system, every thread) from the first request
  (the issue's "first send"; onybench's transport is wrapped to see it) until
  `run()` returns, its report written; so work moved off the per-chunk path
  (stream assembly, metrics, report) counts. The CPU from just before `run()`
  is kept too (``cpu_s_with_start_up``).
- ``open``: `concurrency` streams opened at once against a mock whose first
  token never comes in time. onybench's own transport is wrapped to see the
  first request and count response heads: once all have arrived, the CPU
  spent since the first request is read (and, apart, since just before
  `run()`), the streams sit idle for `settle_s`, the RSS growth is read,
  and a SIGINT stops the run (grace 0: the streams are cancelled at once). A
  smaller warm-up run first pays the one-time costs (lazy imports, allocator
  arenas), so they are not charged to the streams.

Imports happen before any window opens.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio

import onybench.client
from onybench.benchmark import run
from onybench.config import Scenario, scenario_from_dict
from onybench.transport import LeanTransport

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_sampler import CpuSampler, cpu_s
from simple_client import raise_open_file_limit, rss_bytes

MODEL = "bench-model"
PROMPT = "one two three"
API_KEY = "bench-not-a-secret"


def scenario(args: dict[str, Any], *, grace_s: float) -> Scenario:
    load: dict[str, Any] = {
        "concurrency": args["concurrency"],
        "requests": args["requests"],
        "grace": f"{grace_s * 1000:.0f}ms",
    }
    if args.get("duration_s"):
        load["duration"] = f"{args['duration_s']:.0f}s"
    return scenario_from_dict(
        {
            "name": "bench",
            "target": {"base_url": args["base_url"]},
            "request": {"models": [MODEL], "prompt": PROMPT, "max_tokens": args["tokens"]},
            "load": load,
        }
    )


def stream(args: dict[str, Any]) -> dict[str, Any]:
    global _first_request
    plan = scenario(args, grace_s=args.get("grace_s", 10.0))
    # The window opens at the first send (see _CountingTransport).
    onybench.client.LeanTransport = _CountingTransport  # type: ignore[attr-defined]
    _first_request = None
    gc.collect()
    with CpuSampler() as sampler:
        cpu_before = cpu_s()
        result = run(plan, out_dir=Path(args["out_dir"]), api_key=API_KEY)
        cpu_after, wall_after = cpu_s(), time.perf_counter_ns()
    if _first_request is None:
        return {"error": "onybench sent no request"}
    cpu_first, wall_first = _first_request
    return {
        "cpu_samples": sampler.samples,
        "cpu_s": cpu_after - cpu_first,
        "cpu_s_with_start_up": cpu_after - cpu_before,
        "window_start_ns": wall_first,
        "window_end_ns": wall_after,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "stop_reason": result.stop_reason,
    }


class _Probe:
    """What the counting transport measures; the baseline is set just before `run()`."""

    def __init__(self, streams: int, settle_s: float) -> None:
        self.streams = streams
        self.settle_s = settle_s
        self.heads = 0
        self.cpu_before = self.wall_before = 0.0
        self.cpu_first: float | None = None
        self.wall_first = 0.0
        self.rss_before = 0
        self.figures: dict[str, Any] = {}

    def start(self) -> None:
        gc.collect()
        self.rss_before, self.cpu_before, self.wall_before = (
            rss_bytes(),
            cpu_s(),
            time.perf_counter(),
        )

    def request_starting(self) -> None:
        # The window opens at the first request: the run's own start-up (scenario,
        # run directory, event loop, client) is once per run, not per stream.
        if self.cpu_first is None:
            self.cpu_first, self.wall_first = cpu_s(), time.perf_counter()

    async def head_arrived(self) -> None:
        self.heads += 1
        if self.heads != self.streams:
            return
        cpu_open, wall_open = cpu_s(), time.perf_counter()
        # Let the role chunks that follow the heads land, then weigh.
        await trio.sleep(self.settle_s)
        assert self.cpu_first is not None
        self.figures = {
            "opened": self.heads,
            "cpu_s": cpu_open - self.cpu_first,
            "cpu_s_with_start_up": cpu_open - self.cpu_before,
            "open_wall_s": wall_open - self.wall_first,
            "idle_cpu_s": cpu_s() - cpu_open,
            "rss_growth_bytes": rss_bytes() - self.rss_before,
        }
        os.kill(os.getpid(), signal.SIGINT)  # the run stops as on Ctrl-C


_probe: _Probe | None = None
# (CPU s, perf_counter_ns) at the run's first request.
_first_request: tuple[float, int] | None = None


class _CountingTransport(LeanTransport):
    """onybench's own transport, noting the first request (and, held open, the heads)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        global _first_request
        if _first_request is None:
            _first_request = cpu_s(), time.perf_counter_ns()
        if _probe is not None:
            _probe.request_starting()
        response = await super().handle_async_request(request)
        if _probe is not None:
            await _probe.head_arrived()
        return response


def hold_open(args: dict[str, Any]) -> dict[str, Any]:
    global _probe
    # StreamingClient builds its default transport from this module global.
    onybench.client.LeanTransport = _CountingTransport  # type: ignore[attr-defined]
    outcome: dict[str, Any] = {"streams": args["concurrency"]}
    with tempfile.TemporaryDirectory() as temp:
        for name, streams, settle_s in (
            ("warm-up", args.get("warm_up", 20), 0.2),
            ("measured", args["concurrency"], args["settle_s"]),
        ):
            _probe = probe = _Probe(streams, settle_s)
            # A grace of 1 ms (0 is refused): the SIGINT cancels the idle streams at once.
            plan = scenario({**args, "concurrency": streams, "requests": streams}, grace_s=0.001)
            probe.start()
            run(plan, out_dir=Path(temp) / name, api_key=API_KEY)
        outcome.update(probe.figures or {"opened": probe.heads, "error": "not all opened"})
    return outcome


def main(argv: list[str]) -> int:
    args = orjson.loads(argv[0])
    raise_open_file_limit()
    outcome = stream(args) if args["mode"] == "stream" else hold_open(args)
    sys.stdout.write(orjson.dumps(outcome).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
