"""CPU to turn one finished 128-token stream into its record and fold it into the metrics.

    python benchmarks/record_build.py [--label before] [--tokens 128] [--repeat 7]

The stream is what the mock sends by default (a role chunk, one content chunk per
token, the finish_reason in the last, a usage + cost chunk, ``[DONE]``), stamped
10 ms apart with a little jitter. It times, per request and in this process only
(no sockets): `assemble` (the stream's JSON decoded into a StreamSummary), the
record build (`assemble` + the RequestRecord), `GroupMetrics.add` and
`ClientHealth.add_record` (the fold), and the whole of build + fold. Each figure
is the best of `--repeat` rounds of enough requests to last about 0.2 s, so a
busy machine shows up as spread, not as a slower best. The figures are printed
and saved to ``benchmarks/results/record_build-<UTC time>[-<label>].json``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from onybench.client import RecordContext, _Attempt
from onybench.metrics.health import ClientHealth
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupMetrics
from onybench.wire.stream import assemble

RESULTS_DIR = Path(__file__).resolve().parent / "results"
START_NS = 1_000_000_000
TTFT_NS = 100_000_000
ITL_NS = 10_000_000


def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
    envelope = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "bench-model",
        "choices": choices,
        **extra,
    }
    return orjson.dumps(envelope).decode()


def stream(tokens: int, rng: random.Random) -> list[tuple[int, str]]:
    """The mock's default stream for `tokens` one-token chunks, with arrival stamps."""
    payloads = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}])]
    for j in range(tokens):
        reason = "length" if j == tokens - 1 else None
        delta = {"content": f" word{j}"}
        payloads.append(chunk([{"index": 0, "delta": delta, "finish_reason": reason}]))
    usage = {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": tokens + 3}
    payloads.append(chunk([], usage=usage, cost={"amount": 0.000131, "currency": "USD"}))
    payloads.append("[DONE]")
    arrival, timed = START_NS + TTFT_NS, []
    for payload in payloads:
        timed.append((arrival, payload))
        arrival += ITL_NS + rng.randrange(-200_000, 200_000)
    return timed


def attempt(timed: list[tuple[int, str]]) -> _Attempt:
    return _Attempt(
        model="bench-model",
        start_ns=START_NS,
        context=RecordContext(index=0, prompt_tokens_requested=3),
        max_tokens=len(timed),
        headers_ns=START_NS + 1_000_000,
        status=200,
        bytes_received=sum(len(data) for _, data in timed),
        closed_cleanly=True,
        timed_data=timed,
    )


def best_us(work: Callable[[], object], rounds: int) -> dict[str, float]:
    """µs per call: the best and the median round of `rounds`, each lasting ~0.2 s."""
    calls = 1
    while True:
        started = time.process_time()
        for _ in range(calls):
            work()
        if time.process_time() - started > 0.05:
            break
        calls *= 2
    calls *= 4
    per_call = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            work()
        per_call.append((time.process_time() - started) / calls * 1e6)
    per_call.sort()
    return {"best_us": round(per_call[0], 2), "median_us": round(per_call[len(per_call) // 2], 2)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="", help="appended to the results file's name")
    parser.add_argument("--tokens", type=int, default=128, help="content chunks per stream")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per figure")
    args = parser.parse_args(argv)

    timed = stream(args.tokens, random.Random(1))
    request = attempt(timed)
    record: RequestRecord = request.record(timed[-1][0], None, None)
    if record.error_class is not None or len(record.token_times_ns) != args.tokens:
        raise SystemExit(f"the benchmark stream did not assemble cleanly: {record}")
    metrics, health = GroupMetrics(), ClientHealth()

    def fold(built: RequestRecord) -> None:
        metrics.add(built)
        health.add_record(built)

    figures = {
        "assemble": best_us(lambda: assemble(timed, closed_cleanly=True), args.repeat),
        "record_build": best_us(lambda: request.record(timed[-1][0], None, None), args.repeat),
        "fold": best_us(lambda: fold(record), args.repeat),
        "build_and_fold": best_us(
            lambda: fold(request.record(timed[-1][0], None, None)), args.repeat
        ),
    }
    for name, figure in figures.items():
        print(f"{name:>15}: {figure['best_us']:8.1f} µs per request (median {figure['median_us']})")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = f"-{args.label}" if args.label else ""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"record_build-{stamp}{suffix}.json"
    document = {
        "label": args.label,
        "tokens": args.tokens,
        "events": len(timed),
        "python": sys.version.split()[0],
        "figures_us_per_request": figures,
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"saved {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
