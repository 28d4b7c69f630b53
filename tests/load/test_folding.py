"""RecordFolder: each record folded exactly once, when the loop is idle, even when cancelled."""

from __future__ import annotations

import gc
import random
from collections import Counter
from collections.abc import Callable

import pytest
import trio
import trio.testing

from onybench.client import PendingRecord
from onybench.load.collector import YOUNG_THRESHOLD, run_collector
from onybench.load.folding import IDLE_WAIT_S, Measure, RecordFolder
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import summarize

MS = 1_000_000


def make_record(index: int) -> RequestRecord:
    start = index * 7 * MS
    tokens = tuple(start + (50 + 3 * k + index % 5) * MS for k in range(1 + index % 9))
    return RequestRecord(
        index=index,
        model="m",
        start_ns=start,
        end_ns=tokens[-1] + MS,
        token_times_ns=tokens,
        first_content_ns=tokens[0],
        output_tokens=len(tokens),
        prompt_tokens=10 + index % 3,
        error_class=None if index % 11 else "http_500",
    )


def measured(index: int, built: Counter[int]) -> Measure:
    """A stand-in for StreamingClient.measure: a checkpoint, then the hand-over."""

    def build() -> RequestRecord:
        built[index] += 1
        return make_record(index)

    async def measure(hand_over: Callable[[PendingRecord], None]) -> None:
        await trio.sleep(0.001 * (index % 4))
        hand_over(build)

    return measure


async def test_every_record_reaches_the_sink_once_and_before_its_task_goes_on() -> None:
    folder = RecordFolder()
    sunk: list[int] = []
    built: Counter[int] = Counter()
    seen_by_own_task: list[bool] = []

    async def request(index: int) -> None:
        await folder.fold_when_measured(measured(index, built), lambda r: sunk.append(r.index))
        seen_by_own_task.append(index in sunk)

    async with trio.open_nursery() as nursery:
        await nursery.start(folder.run)
        async with trio.open_nursery() as requests:
            for index in range(200):
                requests.start_soon(request, index)
        folder.close()

    assert sorted(sunk) == list(range(200))
    assert set(built.values()) == {1}
    assert seen_by_own_task == [True] * 200


def handed_over_at_once(index: int) -> Measure:
    async def measure(hand_over: Callable[[PendingRecord], None]) -> None:
        hand_over(lambda: make_record(index))

    return measure


async def test_records_wait_until_no_other_task_is_runnable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 100 streams end in the same round while other streams' reads keep the loop busy
    # (a reader checkpointing 300 times): every fold waits until the reads are done.
    # On the mock clock no time passes while the loop is busy, so none is overdue.
    folder = RecordFolder()
    folded_after_turns: list[int] = []
    turns = 0

    async def reader() -> None:
        nonlocal turns
        for _ in range(300):
            turns += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        await nursery.start(folder.run)
        nursery.start_soon(reader)
        async with trio.open_nursery() as requests:
            for index in range(100):
                requests.start_soon(
                    folder.fold_when_measured,
                    handed_over_at_once(index),
                    lambda r: folded_after_turns.append(turns),
                )
        folder.close()

    assert folded_after_turns == [300] * 100


async def test_a_loop_never_idle_folds_each_record_once_overdue_one_per_round(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # An overloaded client: its loop is never idle. A record is folded once it has
    # waited IDLE_WAIT_S, and then one per scheduler round, the reads running between.
    folder = RecordFolder()
    folded: list[tuple[int, float]] = []  # (reader turns so far, trio time)
    turns = 0
    done = trio.Event()

    async def reader() -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            autojump_clock.jump(0.001)  # each round takes 1 ms
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        await nursery.start(folder.run)
        nursery.start_soon(reader)
        handed_at = trio.current_time()
        async with trio.open_nursery() as requests:
            for index in range(100):
                requests.start_soon(
                    folder.fold_when_measured,
                    handed_over_at_once(index),
                    lambda r: folded.append((turns, trio.current_time())),
                )
        done.set()
        folder.close()

    assert len(folded) == 100
    assert min(at for _, at in folded) >= handed_at + IDLE_WAIT_S
    # Within one round the folder may run before or after the reader: at most two
    # folds between two of the reader's turns, and no more than one round a fold.
    assert max(Counter(turn for turn, _ in folded).values()) <= 2
    assert folded[-1][0] - folded[0][0] in range(49, 102)


async def test_a_task_woken_while_a_record_is_built_runs_before_it_is_folded_in(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Building and folding are two steps: a read that became due during the build
    # (here: a task woken by it) runs between them.
    folder = RecordFolder()
    order: list[str] = []
    woken = trio.Event()

    async def reader() -> None:
        await woken.wait()
        order.append("read")

    def build() -> RequestRecord:
        order.append("built")
        woken.set()
        return make_record(1)

    async def measure(hand_over: Callable[[PendingRecord], None]) -> None:
        hand_over(build)

    async with trio.open_nursery() as nursery:
        await nursery.start(folder.run)
        nursery.start_soon(reader)
        await folder.fold_when_measured(measure, lambda r: order.append("folded"))
        folder.close()

    assert order == ["built", "read", "folded"]


async def test_a_record_built_when_the_folder_is_cancelled_is_folded_in_all_the_same(
    autojump_clock: trio.testing.MockClock,
) -> None:
    folder = RecordFolder()
    sunk: list[int] = []
    with trio.CancelScope() as everything:
        async with trio.open_nursery() as nursery:
            await nursery.start(folder.run)

            def build() -> RequestRecord:
                everything.cancel()  # the run is torn down between the two steps
                return make_record(3)

            async def measure(hand_over: Callable[[PendingRecord], None]) -> None:
                hand_over(build)

            await folder.fold_when_measured(measure, lambda r: sunk.append(r.index))
    assert everything.cancelled_caught
    assert sunk == [3]


async def test_a_record_waiting_for_an_idle_loop_when_the_folder_is_cancelled_is_folded() -> None:
    # Taken off the queue, waiting for an idle moment (the loop is busy), then cancelled.
    folder = RecordFolder()
    sunk: list[int] = []
    with trio.CancelScope() as everything:
        async with trio.open_nursery() as nursery:
            await nursery.start(folder.run)

            async def busy() -> None:
                while True:
                    await trio.lowlevel.checkpoint()

            async def cancel_soon() -> None:
                for _ in range(5):  # the folder has the record and waits
                    await trio.lowlevel.checkpoint()
                everything.cancel()

            nursery.start_soon(busy)
            nursery.start_soon(cancel_soon)
            await folder.fold_when_measured(handed_over_at_once(4), lambda r: sunk.append(r.index))
    assert everything.cancelled_caught
    assert sunk == [4]


async def test_records_queued_when_the_run_is_cancelled_are_folded_all_the_same() -> None:
    folder = RecordFolder()
    sunk: Counter[int] = Counter()
    built: Counter[int] = Counter()

    async def request(index: int) -> None:
        await folder.fold_when_measured(measured(index, built), lambda r: sunk.update([r.index]))

    with trio.CancelScope() as everything:
        async with trio.open_nursery() as nursery:
            await nursery.start(folder.run)
            for index in range(60):
                nursery.start_soon(request, index)
            await trio.sleep(0.002)  # some handed over, some still measuring
            everything.cancel()

    # Those still measuring were cancelled before any hand-over: no record to fold.
    assert set(sunk.values()) == {1}
    assert sunk == built
    assert len(sunk) > 0


async def test_a_record_handed_over_after_the_folder_closed_is_folded_where_it_is() -> None:
    folder = RecordFolder()
    sunk: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(folder.run)
        folder.close()
    built: Counter[int] = Counter()
    await folder.fold_when_measured(measured(7, built), lambda r: sunk.append(r.index))
    assert sunk == [7]


async def test_a_cancelled_request_hands_over_and_is_folded_without_waiting() -> None:
    # The client hands its `cancelled` record over while the Cancelled propagates.
    folder = RecordFolder()
    sunk: list[str | None] = []

    async def measure(hand_over: Callable[[PendingRecord], None]) -> None:
        try:
            await trio.sleep_forever()
        finally:
            hand_over(lambda: make_record(11))

    async with trio.open_nursery() as nursery:
        await nursery.start(folder.run)
        with trio.move_on_after(0.01):
            await folder.fold_when_measured(measure, lambda r: sunk.append(r.error_class))
        folder.close()
    assert sunk == ["http_500"]


@pytest.mark.parametrize("seed", range(5))
def test_the_order_records_are_folded_in_changes_no_total(seed: int) -> None:
    records = [make_record(i) for i in range(300)]
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    in_order, any_order = summarize(records), summarize(shuffled)
    assert in_order.keys() == any_order.keys()
    for key, group in in_order.items():
        assert group.figures() == any_order[key].figures()
        assert group.histograms == any_order[key].histograms


def test_the_run_collector_raises_the_young_threshold_and_restores_it() -> None:
    before = gc.get_threshold()
    with run_collector():
        assert gc.get_threshold()[0] == max(YOUNG_THRESHOLD, before[0])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_folding_runs_on_the_mock_clock_without_real_sleeps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    folder = RecordFolder()
    sunk: list[int] = []
    built: Counter[int] = Counter()
    async with trio.open_nursery() as nursery:
        await nursery.start(folder.run)
        async with trio.open_nursery() as requests:
            for index in range(20):
                requests.start_soon(
                    folder.fold_when_measured,
                    measured(index, built),
                    lambda r: sunk.append(r.index),
                )
        folder.close()
    assert sorted(sunk) == list(range(20))
