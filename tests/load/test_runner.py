import itertools
from collections import Counter

import trio
import trio.testing

from onybench.load.arrivals import Stage, constant
from onybench.load.runner import LoadPlan, RecordSink, Runner, Ticket
from onybench.metrics.record import RequestRecord


class FakeTarget:
    """Each request takes `latency_s` of (mock) time; records what happened when."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.starts: list[tuple[float, Ticket]] = []
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.t0 = trio.current_time()

    async def send(self, ticket: Ticket, sink: RecordSink) -> None:
        self.starts.append((round(trio.current_time() - self.t0, 9), ticket))
        self.in_flight[ticket.model] += 1
        self.max_in_flight[ticket.model] = max(
            self.max_in_flight[ticket.model], self.in_flight[ticket.model]
        )
        try:
            await trio.sleep(self.latency_s)
        except trio.Cancelled:
            sink(RequestRecord(ticket.index, ticket.model, 0, 1, error_class="cancelled"))
            raise
        finally:
            self.in_flight[ticket.model] -= 1
        sink(RequestRecord(ticket.index, ticket.model, 0, 1, stage=ticket.stage))

    @property
    def start_times(self) -> list[float]:
        return [t for t, _ in self.starts]


def runner_for(target: FakeTarget, plan: LoadPlan, **kwargs: object) -> Runner:
    return Runner(plan, target.send, handle_signals=False, **kwargs)  # type: ignore[arg-type]


async def test_closed_loop_keeps_exactly_n_in_flight_and_starts_at_exact_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=1.0)
    state = await runner_for(target, LoadPlan(["m"], concurrency=3, requests=10)).run()
    assert target.start_times == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert target.max_in_flight["m"] == 3
    assert (state.started, state.finished, state.failed) == (10, 10, 0)
    assert state.stop_reason == "all requests done"
    assert trio.current_time() - target.t0 == 4.0


async def test_think_time_spaces_a_workers_requests(autojump_clock: trio.testing.MockClock) -> None:
    target = FakeTarget(latency_s=1.0)
    await runner_for(target, LoadPlan(["m"], concurrency=1, requests=3, think_time_s=0.5)).run()
    assert target.start_times == [0, 1.5, 3.0]


async def test_duration_stops_issuing_and_in_flight_requests_finish_within_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=2.0)
    plan = LoadPlan(["m"], concurrency=2, duration_s=5.0, grace_s=10.0)
    state = await runner_for(target, plan).run()
    assert sorted(target.start_times) == [0, 0, 2, 2, 4, 4]
    assert (state.finished, state.failed) == (6, 0)
    assert state.stop_reason == "duration reached"
    assert trio.current_time() - target.t0 == 6.0


async def test_requests_still_in_flight_after_the_grace_period_are_cancelled_and_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=10.0)
    plan = LoadPlan(["m"], concurrency=2, duration_s=1.0, grace_s=0.5)
    records: list[RequestRecord] = []
    state = await runner_for(target, plan, on_record=lambda r, _: records.append(r)).run()
    assert trio.current_time() - target.t0 == 1.5
    assert [r.error_class for r in records] == ["cancelled", "cancelled"]
    assert (state.finished, state.failed) == (2, 2)


async def test_stop_from_a_record_listener_stops_issuing_at_that_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=1.0)

    def stop_after_third(record: RequestRecord, runner: Runner) -> None:
        if runner.state.finished == 3:
            runner.stop("cost limit reached")

    plan = LoadPlan(["m"], concurrency=1, requests=100)
    state = await runner_for(target, plan, on_record=stop_after_third).run()
    assert (state.started, state.finished) == (3, 3)
    assert state.stop_reason == "cost limit reached"


async def test_every_model_gets_the_same_request_sequence_and_its_own_concurrency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=1.0)
    state = await runner_for(target, LoadPlan(["a", "b"], concurrency=2, requests=4)).run()
    assert target.max_in_flight == Counter({"a": 2, "b": 2})
    for model in ("a", "b"):
        assert sorted(t.index for _, t in target.starts if t.model == model) == [0, 1, 2, 3]
    assert state.planned == 8


async def test_constant_10_per_s_for_60_s_starts_600_requests_at_exact_offsets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=0.25)
    plan = LoadPlan(["m"], arrivals=constant(10.0), duration_s=60.0)
    state = await runner_for(target, plan).run()
    assert state.started == 600
    assert target.start_times == [round(k / 10, 9) for k in range(600)]
    assert all(t.intended_start_ns is not None for _, t in target.starts)


async def test_open_loop_interleaves_models_at_the_same_moments(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=0.1)
    await runner_for(target, LoadPlan(["a", "b"], arrivals=constant(2.0), requests=3)).run()
    # Trio starts same-moment tasks in any order; the moments are what matter.
    assert sorted((t, ticket.model, ticket.index) for t, ticket in target.starts) == [
        (0, "a", 0),
        (0, "b", 0),
        (0.5, "a", 1),
        (0.5, "b", 1),
        (1.0, "a", 2),
        (1.0, "b", 2),
    ]


async def test_arrivals_beyond_max_in_flight_are_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 10/s with 0.95 s requests would need 10 in flight; the cap holds 3.
    target = FakeTarget(latency_s=0.95)
    plan = LoadPlan(["m"], arrivals=constant(10.0), requests=20, max_in_flight=3)
    state = await runner_for(target, plan).run()
    assert target.max_in_flight["m"] == 3
    assert state.started == 6  # at 0, 0.1, 0.2, then 1.0, 1.1, 1.2
    assert target.start_times == [0, 0.1, 0.2, 1.0, 1.1, 1.2]
    assert sum(state.dropped.values()) == 14


async def test_concurrency_stages_ramp_the_number_of_workers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=0.5)
    plan = LoadPlan(["m"], concurrency_stages=(Stage(2.0, 4.0), Stage(2.0, 4.0), Stage(1.0, 0.0)))
    state = await runner_for(target, plan).run()
    assert target.max_in_flight["m"] == 4
    assert state.stop_reason == "duration reached"
    labels = {t.stage for _, t in target.starts}
    assert {"1: target 4", "2: target 4"} <= labels <= {"1: target 4", "2: target 4", "3: target 0"}
    # The hold stage runs 4 workers back to back: 4 every 0.5 s for 2 s.
    assert sum(1 for _, t in target.starts if t.stage == "2: target 4") == 16


async def test_warmup_requests_are_labelled_and_come_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=1.0)
    await runner_for(target, LoadPlan(["m"], concurrency=1, requests=5, warmup_requests=2)).run()
    assert [t.stage for _, t in target.starts] == ["warmup", "warmup", None, None, None]


async def test_a_ramp_split_between_three_workers_loses_no_concurrency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    in_flight = []
    for worker in range(3):
        target = FakeTarget(latency_s=0.5)
        plan = LoadPlan(
            ["m"],
            concurrency_stages=(Stage(0.0, 10.0), Stage(1.0, 10.0)),
            first_index=worker,
            index_step=3,
        )
        await runner_for(target, plan).run()
        in_flight.append(target.max_in_flight["m"])
    assert in_flight == [4, 3, 3]


async def test_many_workers_start_one_a_round_so_ready_tasks_run_between(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A task that is ready all along (like a stream whose next bytes have arrived) runs
    # between any two worker starts, not after all of them, and the start time is the
    # same for every worker.
    target = FakeTarget(latency_s=1.0)
    started_when_ready_task_ran: list[int] = []
    workers = 100

    async def ready_all_along() -> None:
        while len(target.starts) < workers:
            started_when_ready_task_ran.append(len(target.starts))
            await trio.sleep(0)
        started_when_ready_task_ran.append(len(target.starts))

    plan = LoadPlan(["m"], concurrency=workers, requests=workers)
    runner = runner_for(target, plan)
    await runner.run(background=[ready_all_along])
    assert target.start_times == [0] * workers
    gaps = [b - a for a, b in itertools.pairwise(started_when_ready_task_ran) if b > a]
    assert gaps
    assert max(gaps) <= 2  # (trio may run a round in reverse order)
    assert max(started_when_ready_task_ran) == workers


async def test_the_starts_open_every_models_streams_side_by_side(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=1.0)
    plan = LoadPlan(["a", "b"], concurrency=64, requests=64)
    await runner_for(target, plan).run()
    first_round = [ticket.model for _, ticket in target.starts[:128]]
    ahead = [
        abs(first_round[:n].count("a") - first_round[:n].count("b"))
        for n in range(1, len(first_round) + 1)
    ]
    # Slot by slot: neither model gets ahead by more than the one start of a round,
    # where model by model one would be 64 ahead.
    assert max(ahead) <= 1


async def test_a_stop_while_the_workers_start_starts_no_more_workers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    target = FakeTarget(latency_s=1.0)
    runner = runner_for(target, LoadPlan(["m"], concurrency=160, requests=None))

    async def stop_early() -> None:
        while len(target.starts) < 16:
            await trio.sleep(0)
        runner.stop("cost limit reached")

    state = await runner.run(background=[stop_early])
    assert state.stop_reason == "cost limit reached"
    assert 16 <= len(target.starts) <= 18
