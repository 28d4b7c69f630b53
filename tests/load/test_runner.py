from collections.abc import Callable

import trio
import trio.testing

from onybench.load.runner import ClosedLoopPlan, Runner
from onybench.metrics.record import RequestRecord


class FakeTarget:
    """Each request takes `latency_s` of (mock) time; records what happened when."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.starts: list[tuple[float, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def send(self, index: int, model: str, sink: Callable[[RequestRecord], None]) -> None:
        start = trio.current_time()
        self.starts.append((start, model))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(self.latency_s)
        except trio.Cancelled:
            sink(RequestRecord(index, model, 0, 1, error_class="cancelled"))
            raise
        finally:
            self.in_flight -= 1
        sink(RequestRecord(index, model, 0, 1))


async def test_closed_loop_keeps_exactly_n_in_flight_and_starts_at_exact_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=1.0)
    runner = Runner(
        ClosedLoopPlan(["m"], concurrency=3, requests=10), target.send, handle_signals=False
    )
    t0 = trio.current_time()
    state = await runner.run()
    assert [round(t - t0, 9) for t, _ in target.starts] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert target.max_in_flight == 3
    assert (state.started, state.finished, state.failed) == (10, 10, 0)
    assert state.stop_reason == "all requests done"
    assert trio.current_time() - t0 == 4.0


async def test_duration_stops_issuing_and_in_flight_requests_finish_within_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=2.0)
    plan = ClosedLoopPlan(["m"], concurrency=2, duration_s=5.0, grace_s=10.0)
    runner = Runner(plan, target.send, handle_signals=False)
    t0 = trio.current_time()
    state = await runner.run()
    # Starts at 0, 2, 4 (twice each); the 4 s pair finishes at 6 inside the grace.
    assert sorted(round(t - t0, 9) for t, _ in target.starts) == [0, 0, 2, 2, 4, 4]
    assert (state.finished, state.failed) == (6, 0)
    assert state.stop_reason == "duration reached"
    assert trio.current_time() - t0 == 6.0


async def test_requests_still_in_flight_after_the_grace_period_are_cancelled_and_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=10.0)
    plan = ClosedLoopPlan(["m"], concurrency=2, duration_s=1.0, grace_s=0.5)
    records: list[RequestRecord] = []
    runner = Runner(
        plan, target.send, on_record=lambda r, _: records.append(r), handle_signals=False
    )
    t0 = trio.current_time()
    state = await runner.run()
    assert trio.current_time() - t0 == 1.5
    assert [r.error_class for r in records] == ["cancelled", "cancelled"]
    assert (state.finished, state.failed) == (2, 2)


async def test_stop_from_a_record_listener_stops_issuing_at_that_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=1.0)

    def stop_after_third(record: RequestRecord, runner: Runner) -> None:
        if runner.state.finished == 3:
            runner.stop("cost limit reached")

    runner = Runner(
        ClosedLoopPlan(["m"], concurrency=1, requests=100),
        target.send,
        on_record=stop_after_third,
        handle_signals=False,
    )
    state = await runner.run()
    assert (state.started, state.finished) == (3, 3)
    assert state.stop_reason == "cost limit reached"


async def test_concurrency_and_request_budget_apply_per_model(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=1.0)
    runner = Runner(
        ClosedLoopPlan(["a", "b"], concurrency=2, requests=4), target.send, handle_signals=False
    )
    state = await runner.run()
    assert target.max_in_flight == 4
    assert sorted(model for _, model in target.starts) == ["a"] * 4 + ["b"] * 4
    assert state.planned == 8
