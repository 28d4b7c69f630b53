"""The watcher task that samples the client's own event-loop lag and CPU share."""

from __future__ import annotations

import time

import trio

from onybench.metrics.health import ClientHealth

# 20 ms: fine enough to catch a loop that falls behind, and at 50 wake-ups/s a
# small load of its own (a wake-up costs ~0.5 ms of CPU on the project's VM).
TICK_S = 0.02
# Process CPU time may advance in scheduler ticks (seen here: whole 10 ms steps),
# so the CPU share is measured over windows of many wake-ups.
CPU_WINDOW_S = 0.25


async def watch_event_loop(health: ClientHealth, tick_s: float = TICK_S) -> None:
    """Sample until cancelled: each wake-up's lateness and the CPU share since the last."""
    due = trio.current_time() + tick_s
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    share = 0.0
    while True:
        await trio.sleep_until(due)
        now = trio.current_time()
        woke_ns = time.perf_counter_ns()
        wall = time.perf_counter()
        if wall - wall_before >= CPU_WINDOW_S:
            cpu = time.process_time()
            share = (cpu - cpu_before) / (wall - wall_before)
            cpu_before, wall_before = cpu, wall
        health.add_sample(woke_ns, round((now - due) * 1e9), share)
        # Measure each wake-up against its own deadline: after a long stall the
        # next tick is due one tick from now, not a burst of overdue ticks.
        due = max(due + tick_s, now + tick_s / 2)
