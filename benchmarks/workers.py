"""`--workers 2` against `--workers 1`: events/s and client CPU on the same workload.

    python benchmarks/workers.py [--repeats 2] [--results-dir DIR]

For each level, `onybench run --workers N` (the CLI, in a process of its own) runs
a closed loop against the mock on its lean engine (2 processes), N = 1 then 2,
`--repeats` times, and the table shows token events received per second of the
run, the CPU the client processes spent (all of them, from `getrusage` of the
children), and whether the run was flagged client-limited. The levels: 128
streams at ITL 10 ms (12,800 events/s offered, about what one process takes
here) and 512 streams at 10 ms (51,200 offered: more than one process takes).
The mock shares the machine's cores with the client processes, so the ratio says
as much about the cores left to the clients as about the clients. Loopback only.
Results go to `benchmarks/results/workers-<UTC time>.json`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from onybench.mock.config import MockConfig
from onybench.mock.server import MockProcess

BENCH_DIR = Path(__file__).resolve().parent
LEVELS = (("128", 128, 384, 128), ("512-overload", 512, 512, 32))


def _scenario(base_url: str, streams: int, requests: int, tokens: int) -> str:
    return (
        f'[target]\nbase_url = "{base_url}"\n'
        f'[request]\nmodels = ["bench-model"]\nprompt = "one two three"\nmax_tokens = {tokens}\n'
        f"[load]\nconcurrency = {streams}\nrequests = {requests}\n"
    )


def run_once(streams: int, requests: int, tokens: int, workers: int, work: Path) -> dict[str, Any]:
    config = MockConfig(ttft_ms=100.0, itl_ms=10.0, output_tokens=tokens, engine="lean")
    out = work / f"{streams}-{workers}-{time.perf_counter_ns()}"
    with MockProcess(config, processes=2, start_timeout_s=30.0) as mock:
        scenario = work / "scenario.toml"
        scenario.write_text(_scenario(mock.base_url, streams, requests, tokens))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "onybench",
                "run",
                str(scenario),
                "--workers",
                str(workers),
                "--out",
                str(out),
            ],
            capture_output=True,
            timeout=300,
            check=False,
            # The mock checks no key; the client wants one to send.
            env={**os.environ, "ONYSOFT_API_KEY": "bench-not-a-secret"},
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 4):
        return {"error": done.stderr.decode(errors="replace")[-2000:]}
    report = orjson.loads((out / "report.json").read_bytes())
    figures = report["groups"][0]["figures"]
    events = figures["tokens.output"]
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "workers": workers,
        "requests_ok": figures["requests.succeeded"],
        "tokens": events,
        "duration_s": figures["duration_s"],
        "events_per_s": events / figures["duration_s"],
        "client_cpu_s": cpu_s,
        "cpu_us_per_event": cpu_s * 1e6 / events,
        "client_limited": report["client_health"]["client_limited"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    options = parser.parse_args(argv)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "levels": {},
    }
    with tempfile.TemporaryDirectory(prefix="onybench-workers-") as temp:
        for key, streams, requests, tokens in LEVELS:
            runs = []
            for _ in range(options.repeats):
                for workers in (1, 2):
                    sys.stderr.write(f"{key}: --workers {workers} ...\n")
                    runs.append(run_once(streams, requests, tokens, workers, Path(temp)))
            results["levels"][key] = runs
    print(f"onybench --workers 2 vs 1, {results['date']} on {results['cpus']} CPUs")
    print(f"{'level':14} {'workers':>7} {'events/s':>9} {'CPU µs/ev':>9} {'flagged':>8}")
    for key, runs in results["levels"].items():
        for row in runs:
            if "error" in row:
                print(f"{key:14} error: {row['error'][-300:]}")
                continue
            print(
                f"{key:14} {row['workers']:>7} {row['events_per_s']:>9.0f} "
                f"{row['cpu_us_per_event']:>9.1f} {row['client_limited']!s:>8}"
            )
        one = [r["events_per_s"] for r in runs if r.get("workers") == 1]
        two = [r["events_per_s"] for r in runs if r.get("workers") == 2]
        if one and two:
            ratio = (sum(two) / len(two)) / (sum(one) / len(one))
            results.setdefault("ratios", {})[key] = round(ratio, 2)
            print(f"{key:14} events/s, 2 workers / 1: {ratio:.2f}")
    options.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = options.results_dir / f"workers-{stamp}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
