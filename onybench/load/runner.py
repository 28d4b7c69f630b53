"""The trio part of load generation: fan-out, limits, stages, warm-up, stopping.

Closed loop: N workers per model each send one request after another (with an
optional think time), so exactly N are in flight per model; with concurrency
stages the number of workers follows the ramp (k6's ramping-vus). Open loop:
requests start at the times of a pure arrival schedule (`arrivals.py`), each
awaited with `trio.sleep_until` on an absolute time so nothing drifts; an arrival
that finds `max_in_flight` requests of its model still running is dropped and
counted (k6's dropped_iterations). Every model gets the same request sequence
(request `index` picks the prompt), interleaved so all see the same moments.

The run stops issuing when the request budget is spent, the duration is over,
the stages end, the cost cap is reached or a signal arrives; requests still in
flight then get `grace_s` to finish before they are cancelled (and recorded as
`cancelled` by the client).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import trio

from onybench.load.arrivals import Stage, concurrency_at, stages_duration_s
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import WARMUP_STAGE

# How often a concurrency ramp re-reads its target.
RAMP_STEP_S = 0.05


@dataclass(frozen=True, slots=True)
class Ticket:
    """One request to send: its place in the model's sequence, and its schedule."""

    index: int
    model: str
    intended_start_ns: int | None = None
    stage: str | None = None


RecordSink = Callable[[RequestRecord], None]
# Sends the ticket's request and hands its record to the sink exactly once.
SendFn = Callable[[Ticket, RecordSink], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What to send and when. Concurrency, budgets and caps apply per model.

    `arrivals` (offsets in seconds from the start) makes the run open-loop;
    without it the run is closed-loop at `concurrency`, or following
    `concurrency_stages`. `stages` label requests by the stage they start in.
    """

    models: Sequence[str]
    concurrency: int = 1
    concurrency_stages: Sequence[Stage] = ()
    think_time_s: float = 0.0
    arrivals: Iterable[float] | None = None
    stages: Sequence[Stage] = ()
    max_in_flight: int | None = None
    requests: int | None = None
    duration_s: float | None = None
    grace_s: float = 10.0
    warmup_requests: int = 0
    warmup_s: float = 0.0
    # Request indices are first_index, first_index + index_step, ...: with several
    # workers, each takes its own share of the sequence.
    first_index: int = 0
    index_step: int = 1


@dataclass(slots=True)
class RunState:
    """Live counters, read by progress displays and stop conditions."""

    planned: int | None
    started: int = 0
    finished: int = 0
    failed: int = 0
    in_flight: int = 0
    dropped: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    stop_reason: str | None = None
    interrupted: bool = False


BackgroundTask = Callable[[], Awaitable[None]]
RecordListener = Callable[[RequestRecord, "Runner"], None]


def share_of(total: int, parts: int, index: int) -> int:
    """Part `index` of `total` split into `parts` whole numbers as even as can be."""
    return total // parts + (1 if index < total % parts else 0)


class Runner:
    """Runs one plan; `stop(reason)` may be called from any task."""

    def __init__(
        self,
        plan: LoadPlan,
        send: SendFn,
        *,
        on_record: RecordListener | None = None,
        handle_signals: bool = True,
    ) -> None:
        self._plan = plan
        self._send = send
        self._on_record = on_record
        self._handle_signals = handle_signals
        planned = plan.requests * len(plan.models) if plan.requests is not None else None
        self.state = RunState(planned=planned)
        self._stopping = trio.Event()
        self._in_flight_scope = trio.CancelScope()
        self._watchers: trio.Nursery | None = None
        self._in_flight: Counter[str] = Counter()
        self._issued: Counter[str] = Counter()
        self._start = 0.0

    async def run(self, background: Sequence[BackgroundTask] = ()) -> RunState:
        """Run the plan; `background` tasks run alongside and are cancelled at the end."""
        plan = self._plan
        self._start = trio.current_time()
        async with trio.open_nursery() as watchers:
            self._watchers = watchers
            end_s = self._end_s()
            if end_s is not None:
                watchers.start_soon(self._stop_at, end_s)
            if self._handle_signals:
                watchers.start_soon(self._watch_signals)
            for task in background:
                watchers.start_soon(task)
            with self._in_flight_scope:
                async with trio.open_nursery() as requests:
                    if plan.arrivals is not None:
                        await self._open_loop(requests, plan.arrivals)
                    elif plan.concurrency_stages:
                        await self._ramping_closed_loop(requests)
                    else:
                        # Slot by slot across the models, so that every model's streams
                        # open at the same moments.
                        for _ in range(plan.concurrency):
                            for model in plan.models:
                                await self._start_worker(
                                    requests, self._closed_loop_worker, model, None
                                )
            if self.state.stop_reason is None:
                self.state.stop_reason = "all requests done"
            watchers.cancel_scope.cancel()
        return self.state

    def stop(self, reason: str) -> None:
        """Stop issuing requests; in-flight ones get the grace period, then are cancelled."""
        if self._stopping.is_set():
            return
        self.state.stop_reason = reason
        self._stopping.set()
        if self._watchers is not None:
            self._watchers.start_soon(self._cancel_after, self._plan.grace_s)

    def cancel_in_flight(self) -> None:
        self._in_flight_scope.cancel()

    # --- scheduling ---------------------------------------------------------

    def _end_s(self) -> float | None:
        plan = self._plan
        ends = []
        if plan.duration_s is not None:
            ends.append(plan.warmup_s + plan.duration_s)
        stages = plan.stages or plan.concurrency_stages
        if stages:
            ends.append(stages_duration_s(stages))
        return min(ends) if ends else None

    def _may_issue(self, model: str) -> bool:
        budget = self._plan.requests
        return not self._stopping.is_set() and (budget is None or self._issued[model] < budget)

    def _next_ticket(self, model: str, intended_start_ns: int | None) -> Ticket:
        plan = self._plan
        number = self._issued[model]
        self._issued[model] += 1
        elapsed = trio.current_time() - self._start
        warmup = number < plan.warmup_requests or elapsed < plan.warmup_s
        return Ticket(
            index=plan.first_index + number * plan.index_step,
            model=model,
            intended_start_ns=intended_start_ns,
            stage=WARMUP_STAGE if warmup else self._stage_label(elapsed),
        )

    def _stage_label(self, elapsed_s: float) -> str | None:
        stages = self._plan.stages or self._plan.concurrency_stages
        if not stages:
            return None
        end = 0.0
        for number, stage in enumerate(stages, start=1):
            end += stage.duration_s
            if elapsed_s < end:
                return f"{number}: target {stage.target:g}"
        return f"{len(stages)}: target {stages[-1].target:g}"

    async def _send_one(self, ticket: Ticket) -> None:
        self.state.started += 1
        self.state.in_flight += 1
        self._in_flight[ticket.model] += 1
        try:
            await self._send(ticket, self._record)
        finally:
            self.state.in_flight -= 1
            self._in_flight[ticket.model] -= 1

    async def _closed_loop_worker(self, model: str, slot: int | None) -> None:
        think_s = self._plan.think_time_s
        while self._may_issue(model) and (slot is None or slot < self._target_concurrency()):
            await self._send_one(self._next_ticket(model, None))
            if think_s > 0 and self._may_issue(model):
                await trio.sleep(think_s)

    async def _start_worker(
        self, requests: trio.Nursery, worker: Callable[..., Awaitable[None]], *args: object
    ) -> None:
        """Start `worker`, then let the scheduler run a round.

        A thousand workers started at once would open their streams in one scheduler
        round (~1 ms of CPU each), and the first tokens of the streams opened first
        would wait for the whole round before being read: TTFT overstated by up to a
        second. One start a round, the reads that are due are served between any two
        (measured: first-round TTFT p50 error at 500-2,000 streams 16-26 ms with 16
        starts a round, 1.6-3.8 ms with one); opening all still takes what the CPU takes.
        """
        if self._stopping.is_set():
            return  # stopped while starting: the worker would leave at once
        requests.start_soon(worker, *args)
        await trio.sleep(0)

    def _target_concurrency(self) -> int:
        plan = self._plan
        elapsed = trio.current_time() - self._start
        # This worker's whole-number share of the run's target.
        return share_of(
            concurrency_at(plan.concurrency_stages, elapsed), plan.index_step, plan.first_index
        )

    async def _ramping_closed_loop(self, requests: trio.Nursery) -> None:
        # Workers above the target finish their request and leave (a graceful
        # ramp-down); missing ones are started as the target grows.
        workers: dict[str, list[trio.Event]] = {model: [] for model in self._plan.models}

        async def worker(model: str, slot: int, done: trio.Event) -> None:
            try:
                await self._closed_loop_worker(model, slot)
            finally:
                done.set()

        while not self._stopping.is_set():
            target = self._target_concurrency()
            for slot in range(target):
                for model, slots in workers.items():
                    if slot >= len(slots):
                        slots.append(trio.Event())
                    elif slots[slot].is_set():
                        slots[slot] = trio.Event()
                    else:
                        continue
                    await self._start_worker(requests, worker, model, slot, slots[slot])
            if not any(self._may_issue(model) for model in self._plan.models):
                return
            await trio.sleep(RAMP_STEP_S)

    async def _open_loop(self, requests: trio.Nursery, arrivals: Iterable[float]) -> None:
        plan = self._plan
        for offset in arrivals:
            if not any(self._may_issue(model) for model in plan.models):
                return
            end_s = self._end_s()
            if end_s is not None and offset >= end_s:
                return
            due = self._start + offset
            await trio.sleep_until(due)
            if self._stopping.is_set():
                return
            # The schedule's time on the client's clock: now, less how late we woke.
            intended_ns = time.perf_counter_ns() - round((trio.current_time() - due) * 1e9)
            for model in plan.models:
                if not self._may_issue(model):
                    continue
                if plan.max_in_flight is not None and self._in_flight[model] >= plan.max_in_flight:
                    ticket = self._next_ticket(model, intended_ns)
                    self.state.dropped[(model, ticket.stage)] += 1
                    continue
                requests.start_soon(self._send_one, self._next_ticket(model, intended_ns))

    # --- records and stopping -----------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        self.state.finished += 1
        if not record.succeeded:
            self.state.failed += 1
        if self._on_record is not None:
            self._on_record(record, self)

    async def _stop_at(self, end_s: float) -> None:
        await trio.sleep_until(self._start + end_s)
        self.stop("duration reached")

    async def _cancel_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.cancel_in_flight()

    async def _watch_signals(self) -> None:
        # The first signal stops like the end of --duration; a second cancels at once.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.state.interrupted = True
                if self._stopping.is_set():
                    self.cancel_in_flight()
                else:
                    self.stop(f"interrupted by {signal.Signals(signum).name}")
