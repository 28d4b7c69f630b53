"""CPython's cyclic garbage collector, set for a run: fewer, cheaper collections.

Every open stream keeps a chain of ~10 suspended coroutines (its pending read: the
client, httpx, the transport, trio's socket and epoll layers), made anew at each read.
Those are young objects, so with the default threshold (700) the youngest generation
was collected ~13 times a second at 128 streams, each pass walking every parked chain:
~1.3 ms of event-loop stall each, 3-8 µs of CPU per event in all. Their garbage is
freed by reference counting, not by the collector, so collecting the youngest
generation 10-15x less often costs little memory and saves nearly all of that. And
what exists when the run starts (modules, the scenario, the client) is frozen, so the
rare full collections do not walk it again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Net new container objects before the youngest generation is collected (CPython: 700).
YOUNG_THRESHOLD = 10_000


@contextmanager
def run_collector() -> Iterator[None]:
    """Within: objects alive at entry are frozen, and the young threshold is raised."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(YOUNG_THRESHOLD, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
