"""The real CLI in a subprocess, for tests where signals and crashes matter; and a
starved interpreter, for tests of an overloaded client."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SLOW_SCENARIO = """
name = "slow"
[target]
base_url = "mock"
[mock]
ttft_ms = 1.0
itl_ms = 20.0
output_tokens = 4
"""


def start_slow_run(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """The CLI in a subprocess, slow enough to be killed half-way."""
    scenario = tmp_path / "slow.toml"
    scenario.write_text(SLOW_SCENARIO)
    return subprocess.Popen(
        [sys.executable, "-m", "onybench", "run", str(scenario), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_records(records: Path, count: int, timeout_s: float = 30.0) -> None:
    # Polls a file another process writes; there is no event to wait on across processes.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if records.exists() and len(records.read_bytes().splitlines()) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{records} never reached {count} lines")


@contextmanager
def starved_interpreter() -> Iterator[None]:
    """Within: a thread holds the GIL in a busy loop, so the event loop gets it only
    between switch intervals and reads several tokens at once: an overloaded client.
    (More streams cannot do it: the mock runs out of CPU first.)"""
    stop = threading.Event()

    def hog_the_interpreter() -> None:
        while not stop.is_set():
            sum(range(2000))

    hog = threading.Thread(target=hog_the_interpreter, daemon=True)
    hog.start()
    try:
        yield
    finally:
        stop.set()
        hog.join()
