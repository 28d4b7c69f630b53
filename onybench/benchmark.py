"""One benchmark run, end to end: scenario in, run directory and figures out.

Wires the layers together and owns nothing they own: the client measures, the
runner schedules, the metrics fold, the report modules write. With several
workers, each is a process with its own `trio.run` and its share of the load;
their figures meet in `GroupMetrics.merge` and `ClientHealth.merge`, the same
exact merge every other combination of runs uses.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any

import trio

from onybench import __version__
from onybench.client import RecordContext, RequestSpec, StreamingClient, Target
from onybench.config import Scenario
from onybench.errors import OnybenchError, ScenarioError
from onybench.gates.evaluate import AbortWatch
from onybench.load.arrivals import arrivals, shard, staged_arrivals
from onybench.load.collector import run_collector
from onybench.load.datasets import (
    Prompt,
    inline,
    load_jsonl,
    load_sharegpt,
    load_text,
    sample,
    synthetic,
    with_unique_prefix,
)
from onybench.load.folding import RecordFolder
from onybench.load.health import watch_event_loop
from onybench.load.runner import LoadPlan, Runner, RunState, Ticket, share_of
from onybench.metrics.health import ClientHealth
from onybench.metrics.histogram import Histogram
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import WARMUP_STAGE, GroupKey, GroupMetrics
from onybench.mock.server import MockProcess
from onybench.pricing import with_estimated_cost
from onybench.report.json_report import build_report
from onybench.report.outputs import write_outputs
from onybench.rundir import REPORT_FILE, RecordWriter, RunDirectory, write_json

PROGRESS_INTERVAL_S = 0.5
# Workers wait for each other at a barrier so the load starts at once; one that
# cannot even start within this long has failed.
BARRIER_TIMEOUT_S = 60.0


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


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class RunResult:
    run_dir: Path
    report: dict[str, Any]
    groups: dict[GroupKey, GroupMetrics]
    health: ClientHealth
    stop_reason: str
    interrupted: bool
    workers: int

    @property
    def succeeded(self) -> int:
        """Succeeded requests outside the warm-up."""
        return sum(g.succeeded for key, g in self.groups.items() if key.stage != WARMUP_STAGE)


@dataclass(frozen=True, slots=True)
class WorkerShare:
    """One worker's part of the load: its concurrency and request budget per model."""

    index: int
    count: int
    concurrency: int
    requests: int | None
    max_cost: Decimal | None
    max_in_flight: int | None = None
    warmup_requests: int = 0
    run_id: str = ""


@dataclass
class LiveStats:
    """What a worker reports every PROGRESS_INTERVAL_S; mergeable across workers."""

    finished: int = 0
    failed: int = 0
    in_flight: int = 0
    output_tokens: int = 0
    ttft: Histogram = field(default_factory=Histogram)

    def merge(self, other: LiveStats) -> None:
        self.finished += other.finished
        self.failed += other.failed
        self.in_flight += other.in_flight
        self.output_tokens += other.output_tokens
        self.ttft.merge(other.ttft)

    def to_json(self) -> dict[str, Any]:
        return {
            "finished": self.finished,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "output_tokens": self.output_tokens,
            "ttft": self.ttft.encode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LiveStats:
        return cls(
            data["finished"],
            data["failed"],
            data["in_flight"],
            data["output_tokens"],
            Histogram.decode(data["ttft"]),
        )

    def progress(self, planned: int | None, elapsed_s: float) -> Progress:
        ttft = self.ttft.stats()
        return Progress(
            planned=planned,
            finished=self.finished,
            failed=self.failed,
            in_flight=self.in_flight,
            elapsed_s=elapsed_s,
            output_tokens_per_s=self.output_tokens / elapsed_s if elapsed_s > 0 else 0.0,
            ttft_p50_ms=ttft.get("p50"),
            ttft_p99_ms=ttft.get("p99"),
        )


@dataclass
class WorkerOutcome:
    """Everything a worker measured, in mergeable form."""

    groups: dict[GroupKey, GroupMetrics]
    health: ClientHealth
    stop_reason: str
    interrupted: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "groups": [
                {"model": key.model, "stage": key.stage, "metrics": group.to_json()}
                for key, group in self.groups.items()
            ],
            "health": self.health.to_json(),
            "stop_reason": self.stop_reason,
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerOutcome:
        return cls(
            groups={
                GroupKey(g["model"], g["stage"]): GroupMetrics.from_json(g["metrics"])
                for g in data["groups"]
            },
            health=ClientHealth.from_json(data["health"]),
            stop_reason=data["stop_reason"],
            interrupted=data["interrupted"],
        )


LiveSink = Callable[[LiveStats], None]


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


def resolve_workers(requested: int | None, scenario: Scenario) -> int:
    """How many worker processes: `None` means as many as there are cores.

    Never more than the concurrency or the request budget can feed.
    """
    workers = requested if requested is not None else os.cpu_count() or 1
    if workers < 1:
        raise ScenarioError(f"must be at least 1, got {workers}", "--workers")
    limit = scenario.closed_loop_concurrency if not scenario.open_loop else workers
    if scenario.stages and not scenario.open_loop:
        limit = workers
    if scenario.request_limit is not None:
        limit = min(limit, scenario.request_limit)
    return min(workers, limit)


def split_load(scenario: Scenario, workers: int, run_id: str = "") -> list[WorkerShare]:
    """Concurrency, budgets, caps and warm-up, split as evenly as whole numbers allow.

    Open-loop schedules and concurrency stages are split when the plan is made:
    each worker takes every n-th arrival, and 1/n of each stage's target.
    """
    shares = []
    requests = scenario.request_limit
    for index in range(workers):
        max_cost = scenario.max_cost / workers if scenario.max_cost is not None else None
        in_flight = scenario.max_in_flight
        shares.append(
            WorkerShare(
                index=index,
                count=workers,
                concurrency=share_of(scenario.closed_loop_concurrency, workers, index),
                requests=share_of(requests, workers, index) if requests is not None else None,
                max_cost=max_cost,
                max_in_flight=max(1, share_of(in_flight, workers, index)) if in_flight else None,
                warmup_requests=share_of(scenario.warmup_requests, workers, index),
                run_id=run_id,
            )
        )
    return shares


def run(
    scenario: Scenario,
    *,
    out_dir: Path,
    api_key: str | None = None,
    progress: ProgressCallback | None = None,
    workers: int = 1,
) -> RunResult:
    """Run `scenario` to completion (or interruption) and write its run directory."""
    prompts = load_prompts(scenario)
    run_dir = RunDirectory(out_dir)
    started_at = datetime.now(UTC)
    metadata = run_metadata(scenario, out_dir.name, started_at, workers)
    run_dir.create(metadata)
    planned = (
        scenario.request_limit * len(scenario.models)
        if scenario.request_limit is not None
        else None
    )
    with target_url(scenario) as base_url:
        target = scenario_target(scenario, base_url, api_key)
        shares = split_load(scenario, workers, out_dir.name)
        if workers == 1:
            outcome = _run_in_process(
                scenario, target, run_dir, shares[0], prompts, planned, progress
            )
        else:
            outcome = _run_workers(scenario, target, run_dir, shares, prompts, planned, progress)

    report = build_report(
        metadata=metadata,
        groups=outcome.groups,
        health=outcome.health,
        stop_reason=outcome.stop_reason,
        interrupted=outcome.interrupted,
        ended_at=datetime.now(UTC),
    )
    write_json(out_dir / REPORT_FILE, report)
    # summary.md, summary.csv, report.html and the .hlog files, from report.json and the records.
    write_outputs(out_dir, report, metadata)
    return RunResult(
        run_dir=out_dir,
        report=report,
        groups=outcome.groups,
        health=outcome.health,
        stop_reason=outcome.stop_reason,
        interrupted=outcome.interrupted,
        workers=workers,
    )


def scenario_target(scenario: Scenario, base_url: str, api_key: str | None) -> Target:
    """The scenario's target section as the client's `Target`, sending to `base_url`."""
    return Target(
        base_url=base_url,
        api_key=api_key,
        headers=scenario.headers,
        connect_timeout_s=scenario.connect_timeout_s,
        read_timeout_s=scenario.read_timeout_s,
        first_token_timeout_s=scenario.first_token_timeout_s,
        total_timeout_s=scenario.total_timeout_s,
        retries=scenario.retries,
        http2=scenario.http2,
    )


@contextmanager
def target_url(scenario: Scenario) -> Iterator[str]:
    """The base URL to send to; for the mock, one started (in a child process) meanwhile."""
    # The mock runs in a child process so its work does not distort our timings.
    if scenario.uses_mock:
        with MockProcess(scenario.mock) as mock:
            yield mock.base_url
    else:
        yield scenario.base_url


def _run_in_process(
    scenario: Scenario,
    target: Target,
    run_dir: RunDirectory,
    share: WorkerShare,
    prompts: Sequence[Prompt],
    planned: int | None,
    progress: ProgressCallback | None,
) -> WorkerOutcome:
    start = time.perf_counter()

    def show(stats: LiveStats) -> None:
        if progress is not None:
            progress(stats.progress(planned, time.perf_counter() - start))

    live = show if progress is not None else None
    writer = run_dir.record_writer()
    try:
        return trio.run(_execute, scenario, target, writer, share, prompts, live)
    finally:
        writer.close()


def _run_workers(
    scenario: Scenario,
    target: Target,
    run_dir: RunDirectory,
    shares: list[WorkerShare],
    prompts: Sequence[Prompt],
    planned: int | None,
    progress: ProgressCallback | None,
) -> WorkerOutcome:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(shares))
    processes: list[multiprocessing.process.BaseProcess] = []
    connections: dict[Connection, int] = {}
    for share in shares:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main,
            args=(scenario, target, run_dir.path, share, prompts, barrier, sender),
            name=f"onybench-worker-{share.index}",
        )
        process.start()
        sender.close()
        processes.append(process)
        connections[receiver] = share.index

    # Workers run in their own sessions; signals reach them through us, once each.
    def forward(signum: int, frame: FrameType | None) -> None:
        for worker in processes:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    live: dict[int, LiveStats] = {}
    outcomes: dict[int, WorkerOutcome] = {}
    start = time.perf_counter()
    try:
        pending = dict(connections)
        while pending:
            for ready in wait(list(pending), timeout=PROGRESS_INTERVAL_S):
                assert isinstance(ready, Connection)
                index = pending[ready]
                try:
                    kind, payload = ready.recv()
                except EOFError:
                    del pending[ready]
                    continue
                if kind == "live":
                    live[index] = LiveStats.from_json(payload)
                else:
                    outcomes[index] = WorkerOutcome.from_json(payload)
                    del pending[ready]
            if progress is not None and live:
                merged = LiveStats()
                for stats in live.values():
                    merged.merge(stats)
                progress(merged.progress(planned, time.perf_counter() - start))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for worker in processes:
            worker.join()
    failed = [str(i) for i in range(len(shares)) if i not in outcomes]
    if failed:
        raise OnybenchError(
            f"worker {', '.join(failed)} ended without a result (see its error above); "
            f"what it measured is in {run_dir.path / 'records.jsonl'}"
        )
    return _merge_outcomes([outcomes[i] for i in sorted(outcomes)])


def _merge_outcomes(outcomes: list[WorkerOutcome]) -> WorkerOutcome:
    merged = WorkerOutcome({}, ClientHealth(), "", False)
    for outcome in outcomes:
        for key, group in outcome.groups.items():
            if key not in merged.groups:
                merged.groups[key] = GroupMetrics()
            merged.groups[key].merge(group)
        merged.health.merge(outcome.health)
        merged.interrupted |= outcome.interrupted
    # Say why the run stopped early if any worker did; else they all finished.
    reasons = [o.stop_reason for o in outcomes if o.stop_reason != "all requests done"]
    merged.stop_reason = reasons[0] if reasons else "all requests done"
    return merged


def _worker_main(
    scenario: Scenario,
    target: Target,
    run_path: Path,
    share: WorkerShare,
    prompts: Sequence[Prompt],
    barrier: Any,
    connection: Connection,
) -> None:
    # A new session keeps a terminal's Ctrl-C from reaching us twice: the parent forwards it.
    os.setsid()
    writer = RunDirectory(run_path).record_writer()
    try:
        barrier.wait(BARRIER_TIMEOUT_S)

        def live(stats: LiveStats) -> None:
            connection.send(("live", stats.to_json()))

        outcome = trio.run(_execute, scenario, target, writer, share, prompts, live)
        connection.send(("done", outcome.to_json()))
    finally:
        writer.close()
        connection.close()


async def _execute(
    scenario: Scenario,
    target: Target,
    records: RecordWriter,
    share: WorkerShare,
    prompts: Sequence[Prompt],
    live: LiveSink | None,
) -> WorkerOutcome:
    """One process's share of the run: requests out, records written, figures folded."""
    async with StreamingClient(target) as client:
        with run_collector():
            return await execute_on(client, scenario, records, share, prompts, live)


async def execute_on(
    client: StreamingClient,
    scenario: Scenario,
    records: RecordWriter,
    share: WorkerShare,
    prompts: Sequence[Prompt],
    live: LiveSink | None,
    *,
    observe: Callable[[RequestRecord], None] | None = None,
    stage: str | None = None,
) -> WorkerOutcome:
    """`_execute` on a client that is already open: its connection pool outlives the
    run, so a sweep's levels share one. `observe` sees every record once it is folded;
    `stage`, when given, labels the measured (not warm-up) requests."""

    def stage_of(ticket_stage: str | None) -> str | None:
        return ticket_stage if stage is None or ticket_stage == WARMUP_STAGE else stage

    groups: dict[GroupKey, GroupMetrics] = {}
    health = ClientHealth()
    costs: dict[str, Decimal] = {}
    # Stops the run once a threshold can no longer pass (a count, cost or error rate past it).
    abort = AbortWatch.for_scenario(
        scenario.thresholds, scenario.request_limit, scenario.warmup_requests
    )

    def on_record(record: RequestRecord, runner: Runner) -> None:
        record = with_estimated_cost(record, scenario.pricing)
        records.append(record)
        key = GroupKey(record.model, record.stage)
        group = groups.get(key)
        if group is None:
            # Built only when missing: a GroupMetrics holds 11 HDR histograms of ~190 KB.
            group = groups[key] = GroupMetrics()
        group.add(record)
        health.add_record(record)
        if record.cost_amount is not None and record.cost_currency is not None:
            currency = record.cost_currency
            costs[currency] = costs.get(currency, Decimal(0)) + record.cost_amount
            if share.max_cost is not None and costs[currency] >= share.max_cost:
                runner.stop(f"cost limit reached ({costs[currency]} {currency})")
        if abort is not None and record.stage != WARMUP_STAGE:
            reason = abort.reason(groups, record.model)
            if reason is not None:
                runner.stop(reason)
        if observe is not None:
            observe(record)

    async def send(ticket: Ticket, sink: Callable[[RequestRecord], None]) -> None:
        prompt = prompt_for(scenario, prompts, ticket.index, share.run_id)
        spec = RequestSpec(
            model=ticket.model,
            messages=prompt.messages,
            max_tokens=prompt.max_tokens or scenario.max_tokens,
            include_usage=scenario.include_usage,
            temperature=scenario.temperature,
            ignore_eos=scenario.ignore_eos,
            min_tokens=scenario.min_tokens,
            extra_body=scenario.extra_body,
        )
        context = RecordContext(
            index=ticket.index,
            intended_start_ns=ticket.intended_start_ns,
            stage=stage_of(ticket.stage),
            prompt_tokens_requested=prompt.input_tokens,
        )
        # Records are built and folded by one task, off the moment of arrival.
        await folder.fold_when_measured(partial(client.measure, spec, context=context), sink)

    runner = Runner(load_plan(scenario, share), send, on_record=on_record)
    background = [partial(watch_event_loop, health)]
    if live is not None:
        background.append(partial(_report_live, runner.state, groups, live))
    folder = RecordFolder()
    async with trio.open_nursery() as folding:
        await folding.start(folder.run)
        try:
            state = await runner.run(background)
        finally:
            folder.close()
    for (model, ticket_stage), dropped in state.dropped.items():
        key = GroupKey(model, stage_of(ticket_stage))
        if key not in groups:
            groups[key] = GroupMetrics()
        groups[key].dropped += dropped
    return WorkerOutcome(groups, health, state.stop_reason or "", state.interrupted)


def load_plan(scenario: Scenario, share: WorkerShare) -> LoadPlan:
    """The runner's plan for one worker's share of the scenario."""
    stages = scenario.stages
    arrivals_for_all: Iterable[float] | None = None
    if scenario.open_loop:
        seed = scenario.seed
        if stages:
            arrivals_for_all = staged_arrivals(
                stages, scenario.arrival, burstiness=scenario.burstiness, seed=seed
            )
        else:
            assert scenario.rate is not None
            arrivals_for_all = arrivals(
                scenario.arrival, scenario.rate, burstiness=scenario.burstiness, seed=seed
            )
    return LoadPlan(
        models=scenario.models,
        concurrency=share.concurrency,
        concurrency_stages=stages if not scenario.open_loop else (),
        think_time_s=scenario.think_time_s,
        arrivals=shard(arrivals_for_all, share.index, share.count)
        if arrivals_for_all is not None
        else None,
        stages=stages,
        max_in_flight=share.max_in_flight,
        requests=share.requests,
        duration_s=scenario.duration_s,
        grace_s=scenario.grace_s,
        warmup_requests=share.warmup_requests,
        warmup_s=scenario.warmup_s,
        first_index=share.index,
        index_step=share.count,
    )


def load_prompts(scenario: Scenario) -> list[Prompt]:
    """Every prompt the run can send, read and checked before any request."""
    source = scenario.prompt_source
    if source is None:
        return inline([scenario.prompt])
    if source.kind == "inline":
        prompts = inline(source.prompts)
    elif source.kind == "synthetic":
        assert source.input_tokens is not None
        prompts = synthetic(
            source.count, source.input_tokens, source.output_tokens, seed=scenario.seed
        )
    else:
        assert source.path is not None
        loader = {"text": load_text, "jsonl": load_jsonl, "sharegpt": load_sharegpt}[source.kind]
        prompts = loader(source.path)
    return list(sample(prompts, None, seed=scenario.seed, shuffle=source.shuffle))


def prompt_for(scenario: Scenario, prompts: Sequence[Prompt], index: int, run_id: str) -> Prompt:
    """Request `index`'s prompt: the same for every model, cycling through the set."""
    prompt = prompts[index % len(prompts)]
    if scenario.prompt_source is not None and scenario.prompt_source.unique_prefix:
        return with_unique_prefix(prompt, index, f"{run_id}/")
    return prompt


async def _report_live(
    state: RunState, groups: dict[GroupKey, GroupMetrics], live: LiveSink
) -> None:
    while True:
        await trio.sleep(PROGRESS_INTERVAL_S)
        stats = LiveStats(state.finished, state.failed, state.in_flight)
        for group in groups.values():
            stats.output_tokens += group.output_tokens
            stats.ttft.merge(group.histograms["ttft"])
        live(stats)


def run_metadata(
    scenario: Scenario, run_id: str, started_at: datetime, workers: int
) -> dict[str, Any]:
    """run.json's document, written when a run (or a sweep) starts."""
    return {
        "schema_version": 1,
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        "workers": workers,
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
