"""A background thread that samples this process's CPU time, for windows inside a run.

The drivers read their CPU time around the whole run; the samples (every
`period_s`, a few µs of CPU each) let `run.py` also cut out the streaming part
(first request sent to last token received) by interpolation, leaving out the
once-per-run work (start-up, report) that dominates short runs.
"""

from __future__ import annotations

import resource
import threading
import time


def cpu_s() -> float:
    """User + system CPU time of this process (every thread), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuSampler:
    """``with CpuSampler() as sampler:`` … ``sampler.samples``: ``[(perf_counter_ns, cpu_s)]``."""

    def __init__(self, period_s: float = 0.02) -> None:
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self.samples: list[tuple[int, float]] = []

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter_ns(), cpu_s()))
            if self._stop.wait(self._period_s):
                return

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter_ns(), cpu_s()))
