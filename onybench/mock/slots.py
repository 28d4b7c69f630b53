"""The mock's server model: batch slots, a FIFO queue, and ITL that grows with load.

An inference server decodes a bounded batch of requests at once; requests
beyond it wait, and every token of a batch costs more the fuller it is. The
model, with `slots` = ``MockConfig.batch_slots`` and ``k`` =
``MockConfig.itl_load_factor``:

- a completion request takes one of `slots` batch slots before its first
  token is timed; when all are taken it waits in a first-come first-served
  queue (trio's semaphore wakes waiters in order), so its TTFT is the queue
  wait plus ``ttft_ms``. ``slots = 0`` means no limit.
- ``active`` = requests holding a slot (being generated) right now, itself
  included. Each gap after the first content chunk is the drawn ``itl_ms`` gap
  times ``1 + k * (active - 1)``, with ``active`` read when that gap starts,
  i.e. when the previous chunk has been sent: the schedule is computed at send
  time, not in advance, because it depends on the live load.

With both off (the defaults) chunk j is due at ``received + offset_j``,
exactly as the precomputed plan says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio


class ChunkSchedule:
    """When each content chunk of one response is due (trio time); ask in chunk order."""

    __slots__ = ("_model", "_offsets_ns", "_previous_due", "_start")

    def __init__(self, model: BatchSlots, start: float, offsets_ns: Sequence[int]) -> None:
        self._model = model
        self._start = start
        self._offsets_ns = offsets_ns
        self._previous_due = start

    def due(self, j: int) -> float:
        """When content chunk `j` is due; gaps after the first are scaled by the load now."""
        offsets = self._offsets_ns
        if j == 0 or not self._model.load_dependent:
            due = self._start + offsets[j] / 1e9
        else:
            gap_s = (offsets[j] - offsets[j - 1]) / 1e9
            due = self._previous_due + gap_s * self._model.itl_multiplier()
        self._previous_due = due
        return due

    def last_due(self) -> float:
        """When a whole (non-streamed) response is due: its last chunk's time at today's load."""
        offsets = self._offsets_ns
        if not self._model.load_dependent:
            return self._start + offsets[-1] / 1e9
        gaps_s = (offsets[-1] - offsets[0]) / 1e9
        return self._start + offsets[0] / 1e9 + gaps_s * self._model.itl_multiplier()


class BatchSlots:
    """The server model of one mock process (see the module docstring)."""

    def __init__(self, slots: int, itl_load_factor: float) -> None:
        self._semaphore = trio.Semaphore(slots) if slots > 0 else None
        self._itl_load_factor = itl_load_factor
        self.active = 0

    @property
    def load_dependent(self) -> bool:
        return self._itl_load_factor > 0

    def itl_multiplier(self) -> float:
        """``1 + k * (active - 1)``: how much longer a gap is than the drawn one."""
        return 1 + self._itl_load_factor * max(0, self.active - 1)

    @asynccontextmanager
    async def serve(
        self, received: float, offsets_ns: Sequence[int]
    ) -> AsyncIterator[ChunkSchedule]:
        """Hold a slot (waiting in the queue for one) while the response is sent.

        `received` is when the request arrived (trio time); the schedule starts
        when the slot is taken, so the queue wait adds to the TTFT.
        """
        if self._semaphore is None:
            async with self._active():
                yield ChunkSchedule(self, received, offsets_ns)
            return
        async with self._semaphore, self._active():
            yield ChunkSchedule(self, trio.current_time(), offsets_ns)

    @asynccontextmanager
    async def _active(self) -> AsyncIterator[None]:
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
