"""Finished requests folded into records and metrics by one task, when the loop is idle.

Why: building a record decodes the whole stream, and folding it fills histograms (~1 ms
together for 128 tokens). Done inline, in the task that read a stream's last byte, it
runs at once for every stream that ended in the same scheduler round: when many end
together (fixed output lengths, started together), the bytes other streams receive
meanwhile, the next requests' first tokens among them, are read and stamped late by the
sum. Here one task folds them in order, in two steps (build the record, fold it in),
each only when no other task is runnable (trio's `wait_all_tasks_blocked`): a read that
is due goes first, and one that comes during a step waits for that step alone (~0.5 ms
for 128 tokens), not for a pile of records. A loop that is never idle (an overloaded
client) still folds every record: one that has waited `IDLE_WAIT_S` is built and folded
at the next scheduler round, one per round, so the queue stays bounded.

    folder = RecordFolder()
    async with trio.open_nursery() as nursery:
        await nursery.start(folder.run)
        try:
            ...  # request tasks: await folder.fold_when_measured(measure, sink)
        finally:
            folder.close()  # folder.run folds what is queued, then returns

Exactly once, cancellation included: the measuring code hands the pending record over
synchronously (no checkpoint, so also while it is being cancelled), and a record that
can no longer go through the queue (the folding task has ended or was cancelled) is
folded at once where it is handed over.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio
from trio.testing import wait_all_tasks_blocked

from onybench.client import PendingRecord, RecordSink
from onybench.metrics.record import RequestRecord

# Runs one request and hands its pending record to the callback exactly once.
Measure = Callable[[Callable[[PendingRecord], None]], Awaitable[None]]

# The pending record, its sink, the event its request waits on, and when (trio's clock)
# it was handed over.
_Item = tuple[PendingRecord, RecordSink, trio.Event, float]

# How long (s) a record waits for an idle loop before it is folded regardless. At 128
# streams the loop falls idle every few ms; in a closed loop the request's worker sends
# its next request only once the record is folded, so this bounds that delay as well.
IDLE_WAIT_S = 0.025


class RecordFolder:
    """A queue of finished requests and the task that folds them; see the module doc."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[_Item](math.inf)
        self._queueing = False  # whether handed-over records go through the queue

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fold queued records until `close()`, each when the loop is idle (see the module doc)."""
        self._queueing = True
        task_status.started()
        try:
            async for pending, sink, folded, handed_at in self._receive:
                overdue_at = handed_at + IDLE_WAIT_S
                record: RequestRecord | None = None
                try:
                    # Building and folding are two steps, each in an idle moment of its
                    # own: half as long a stall for a read that comes meanwhile.
                    await _idle_or_overdue(overdue_at)
                    record = pending()
                    await _idle_or_overdue(overdue_at)
                finally:
                    # Cancelled in either wait too: folded exactly once.
                    try:
                        sink(record if record is not None else pending())
                    finally:
                        folded.set()
        finally:
            # Cancelled (the run is being torn down): what is queued is folded now, and
            # whatever is handed over from here on is folded where it is handed over.
            self._queueing = False
            while True:
                try:
                    item = self._receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                _fold(item)

    def close(self) -> None:
        """No more records through the queue: `run` returns once it has folded the rest."""
        self._queueing = False
        self._send.close()

    async def fold_when_measured(self, measure: Measure, sink: RecordSink) -> None:
        """Run `measure`; its record reaches `sink` exactly once, through the queue.

        Returns once the record is folded, so whatever `sink` decides (a cost limit
        reached, a threshold failed) is in force before the caller sends again. If this
        task is cancelled meanwhile, the record is folded all the same.
        """
        folded = trio.Event()

        def hand_over(pending: PendingRecord) -> None:
            item = (pending, sink, folded, trio.current_time())
            if self._queueing:
                self._send.send_nowait(item)
            else:
                _fold(item)

        await measure(hand_over)
        await folded.wait()


async def _idle_or_overdue(overdue_at: float) -> None:
    """Wait until no other task is runnable, or until `overdue_at` (trio's clock). Once
    overdue, returns without a checkpoint: receiving the item was its scheduler round."""
    if trio.current_time() < overdue_at:
        with trio.move_on_at(overdue_at):
            await wait_all_tasks_blocked()


def _fold(item: _Item) -> None:
    pending, sink, folded, _ = item
    try:
        sink(pending())
    finally:
        folded.set()
