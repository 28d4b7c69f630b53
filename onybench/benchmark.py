"""One benchmark run, end to end: scenario in, run directory and figures out.

Wires the layers together and owns nothing they own: the client measures, the
runner schedules, the metrics fold, the report modules write.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import trio

from onybench import __version__
from onybench.client import RequestSpec, StreamingClient, Target
from onybench.config import Scenario
from onybench.errors import ScenarioError
from onybench.load.health import watch_event_loop
from onybench.load.runner import ClosedLoopPlan, Runner, RunState
from onybench.metrics.health import ClientHealth
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupMetrics
from onybench.mock.server import MockProcess
from onybench.report.json_report import build_report
from onybench.rundir import REPORT_FILE, RunDirectory, write_json

PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class Progress:
    """A live snapshot for progress displays."""

    planned: int | None
    finished: int
    failed: int
    in_flight: int
    elapsed_s: float
    output_tokens_per_s: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None


@dataclass(frozen=True, slots=True)
class RunResult:
    run_dir: Path
    report: dict[str, Any]
    groups: dict[str, GroupMetrics]
    health: ClientHealth
    stop_reason: str
    interrupted: bool

    @property
    def succeeded(self) -> int:
        return sum(group.succeeded for group in self.groups.values())


ProgressCallback = Callable[[Progress], None]


def new_run_id(scenario: Scenario, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{scenario.name}"


def resolve_api_key(scenario: Scenario, environ: Mapping[str, str] = os.environ) -> str | None:
    """The key from the environment; required for every target but the mock."""
    if scenario.uses_mock:
        return None
    key = environ.get(scenario.api_key_env, "").strip()
    if not key:
        raise ScenarioError(
            f"no API key: set the environment variable {scenario.api_key_env} "
            "(or name another one with --api-key-env), or use --base-url mock",
            "target.api_key_env",
        )
    return key


def run(
    scenario: Scenario,
    *,
    out_dir: Path,
    api_key: str | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Run `scenario` to completion (or interruption) and write its run directory."""
    with _target_url(scenario) as base_url:
        target = Target(
            base_url=base_url,
            api_key=api_key,
            headers=scenario.headers,
            connect_timeout_s=scenario.connect_timeout_s,
            read_timeout_s=scenario.read_timeout_s,
        )
        return trio.run(_run, scenario, target, out_dir, progress)


@contextmanager
def _target_url(scenario: Scenario) -> Iterator[str]:
    # The mock runs in a child process so its work does not distort our timings.
    if scenario.uses_mock:
        with MockProcess(scenario.mock) as mock:
            yield mock.base_url
    else:
        yield scenario.base_url


async def _run(
    scenario: Scenario, target: Target, out_dir: Path, progress: ProgressCallback | None
) -> RunResult:
    run_dir = RunDirectory(out_dir)
    started_at = datetime.now(UTC)
    metadata = _run_metadata(scenario, out_dir.name, started_at)
    run_dir.create(metadata)
    groups = {model: GroupMetrics() for model in scenario.models}
    health = ClientHealth()
    costs: dict[str, Decimal] = {}
    plan = ClosedLoopPlan(
        models=scenario.models,
        concurrency=scenario.concurrency,
        requests=scenario.request_limit,
        duration_s=scenario.duration_s,
        grace_s=scenario.grace_s,
    )

    def on_record(record: RequestRecord, runner: Runner) -> None:
        run_dir.append(record)
        groups[record.model].add(record)
        health.add_record(record)
        if record.cost_amount is not None and record.cost_currency is not None:
            costs[record.cost_currency] = (
                costs.get(record.cost_currency, Decimal(0)) + record.cost_amount
            )
            if scenario.max_cost is not None and costs[record.cost_currency] >= scenario.max_cost:
                runner.stop(
                    f"cost limit reached ({costs[record.cost_currency]} {record.cost_currency})"
                )

    try:
        async with StreamingClient(target) as client:
            specs = {
                model: RequestSpec(
                    model=model,
                    prompt=scenario.prompt,
                    max_tokens=scenario.max_tokens,
                    include_usage=scenario.include_usage,
                )
                for model in scenario.models
            }

            async def send(index: int, model: str, sink: Callable[[RequestRecord], None]) -> None:
                await client.run_request(index, specs[model], sink)

            runner = Runner(plan, send, on_record=on_record)
            background = [partial(watch_event_loop, health)]
            if progress is not None:
                background.append(partial(_report_progress, runner.state, groups, progress))
            state = await runner.run(background)
    finally:
        run_dir.close()

    report = build_report(
        metadata=metadata,
        groups=groups,
        health=health,
        stop_reason=state.stop_reason or "",
        interrupted=state.interrupted,
        ended_at=datetime.now(UTC),
    )
    write_json(out_dir / REPORT_FILE, report)
    return RunResult(
        run_dir=out_dir,
        report=report,
        groups=groups,
        health=health,
        stop_reason=state.stop_reason or "",
        interrupted=state.interrupted,
    )


async def _report_progress(
    state: RunState, groups: dict[str, GroupMetrics], progress: ProgressCallback
) -> None:
    start = time.perf_counter()
    while True:
        await trio.sleep(PROGRESS_INTERVAL_S)
        elapsed = time.perf_counter() - start
        merged = GroupMetrics()
        for group in groups.values():
            merged.merge(group)
        ttft = merged.histograms["ttft"].stats()
        progress(
            Progress(
                planned=state.planned,
                finished=state.finished,
                failed=state.failed,
                in_flight=state.in_flight,
                elapsed_s=elapsed,
                output_tokens_per_s=merged.output_tokens / elapsed if elapsed > 0 else 0.0,
                ttft_p50_ms=ttft.get("p50"),
                ttft_p99_ms=ttft.get("p99"),
            )
        )


def _run_metadata(scenario: Scenario, run_id: str, started_at: datetime) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        # Ties the monotonic stamps in records.jsonl to wall-clock time.
        "clock": {"wall_ns": time.time_ns(), "monotonic_ns": time.perf_counter_ns()},
        "environment": {
            "onybench": __version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "host": socket.gethostname(),
        },
        "scenario": scenario.to_json(),
    }
