"""Closed-loop fan-out in one trio nursery, with stop conditions and a grace period.

`N` workers per model each send one request after another, so exactly N are in
flight per model. The run stops issuing when the request budget is spent, the
duration is over, the cost cap is reached or a signal arrives; requests still in
flight then get `grace_s` to finish before they are cancelled (and recorded as
`cancelled` by the client).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from onybench.metrics.record import RequestRecord

# Sends request `index` for `model` and hands its record to the sink exactly once.
SendFn = Callable[[int, str, Callable[[RequestRecord], None]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClosedLoopPlan:
    """Concurrency and limits apply per model; durations in seconds."""

    models: Sequence[str]
    concurrency: int
    requests: int | None = None
    duration_s: float | None = None
    grace_s: float = 10.0
    # Request indices are first_index, first_index + index_step, ...: with several
    # workers, each numbers its requests apart from the others'.
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
    stop_reason: str | None = None
    interrupted: bool = False


BackgroundTask = Callable[[], Awaitable[None]]
RecordListener = Callable[[RequestRecord, "Runner"], None]


class Runner:
    """Runs one closed-loop plan; `stop(reason)` may be called from any task."""

    def __init__(
        self,
        plan: ClosedLoopPlan,
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

    async def run(self, background: Sequence[BackgroundTask] = ()) -> RunState:
        """Run the plan; `background` tasks run alongside and are cancelled at the end."""
        plan = self._plan
        budgets = {
            model: plan.requests if plan.requests is not None else math.inf for model in plan.models
        }
        next_index = plan.first_index

        async def worker(model: str) -> None:
            nonlocal next_index
            while not self._stopping.is_set() and budgets[model] > 0:
                budgets[model] -= 1
                index = next_index
                next_index += plan.index_step
                self.state.started += 1
                self.state.in_flight += 1
                try:
                    await self._send(index, model, self._record)
                finally:
                    self.state.in_flight -= 1

        async with trio.open_nursery() as watchers:
            self._watchers = watchers
            if plan.duration_s is not None:
                watchers.start_soon(self._stop_after, plan.duration_s)
            if self._handle_signals:
                watchers.start_soon(self._watch_signals)
            for task in background:
                watchers.start_soon(task)
            with self._in_flight_scope:
                async with trio.open_nursery() as workers:
                    for model in plan.models:
                        for _ in range(plan.concurrency):
                            workers.start_soon(worker, model)
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

    def _record(self, record: RequestRecord) -> None:
        self.state.finished += 1
        if not record.succeeded:
            self.state.failed += 1
        if self._on_record is not None:
            self._on_record(record, self)

    async def _stop_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
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
