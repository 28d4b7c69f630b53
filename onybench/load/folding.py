"""Finished requests folded into records and metrics by one task, one per scheduler round.

Why: building a record decodes the whole stream, and folding it fills histograms (~1.3 ms
together for 128 tokens). Done inline, in the task that read a stream's last byte, it
runs at once for every stream that ended in the same scheduler round: when many end
together (fixed output lengths, started together), the bytes other streams receive
meanwhile, the next requests' first tokens among them, are read and stamped late by the
sum. Here one task folds them in order, with a checkpoint between two, so trio polls
the sockets and runs the readers between any two records.

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

from onybench.client import PendingRecord, RecordSink

# Runs one request and hands its pending record to the callback exactly once.
Measure = Callable[[Callable[[PendingRecord], None]], Awaitable[None]]

_Item = tuple[PendingRecord, RecordSink, trio.Event]


class RecordFolder:
    """A queue of finished requests and the task that folds them; see the module doc."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[_Item](math.inf)
        self._queueing = False  # whether handed-over records go through the queue

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fold queued records until `close()`, one per scheduler round."""
        self._queueing = True
        task_status.started()
        try:
            async for item in self._receive:
                _fold(item)
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
            item = (pending, sink, folded)
            if self._queueing:
                self._send.send_nowait(item)
            else:
                _fold(item)

        await measure(hand_over)
        await folded.wait()


def _fold(item: _Item) -> None:
    pending, sink, folded = item
    try:
        sink(pending())
    finally:
        folded.set()
