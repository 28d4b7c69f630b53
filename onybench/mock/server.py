"""Running the mock: in this trio run (`serve`, `running_mock`) or in a child (`MockProcess`)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit

import hypercorn.config
import hypercorn.trio
import orjson
import trio

from onybench.errors import MockServerError
from onybench.mock.app import MockApp
from onybench.mock.config import MockConfig
from onybench.mock.sendlog import SendLog

# How long a connection may sit idle between requests. Longer than
# hypercorn's 5 s default so that a benchmark with sparse arrivals does not
# race the server closing a pooled connection.
KEEP_ALIVE_TIMEOUT_S = 60.0
# hypercorn closes a connection after this many requests (1000 by default),
# which would add connection set-ups to a long benchmark; never do that.
KEEP_ALIVE_MAX_REQUESTS = sys.maxsize


@dataclass(frozen=True, slots=True)
class MockEndpoint:
    """Where a running mock listens."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:8123/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"


async def serve(
    config: MockConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the mock over HTTP/1.1 on `host`:`port` until cancelled.

    Port 0 binds any free port; the port actually bound is reported through
    `task_status.started`, so ``port = await nursery.start(serve, config)``.
    hypercorn logs only warnings and errors, to stderr; nothing goes to stdout.
    """
    http_config = hypercorn.config.Config()
    http_config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    http_config.accesslog = None
    http_config.loglevel = "WARNING"
    http_config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
    http_config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    send_log = SendLog(config.send_log) if config.send_log is not None else None
    try:
        async with trio.open_nursery() as nursery:
            # hypercorn reports the bound addresses as URLs built from
            # getsockname(), so port 0 comes back as the real port.
            binds: list[str] = await nursery.start(
                hypercorn.trio.serve, MockApp(config, send_log), http_config
            )
            bound_port = urlsplit(binds[0]).port
            if bound_port is None:
                raise MockServerError(f"hypercorn reported no port: {binds}")
            task_status.started(bound_port)
    finally:
        if send_log is not None:
            send_log.close()


@asynccontextmanager
async def running_mock(config: MockConfig, host: str = "127.0.0.1") -> AsyncIterator[MockEndpoint]:
    """The mock serving on a free port of `host` in this trio run, for the ``async with`` body.

    An exception from the body comes out as itself, not wrapped in the
    ExceptionGroup of the nursery the server runs in.
    """
    try:
        async with trio.open_nursery() as nursery:
            port: int = await nursery.start(serve, config, host)
            yield MockEndpoint(host, port)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class MockProcess:
    """The mock in a child process (``python -m onybench.mock``), as a sync context manager.

    Usable outside trio, e.g. around ``trio.run``. On entry it waits up to
    `start_timeout_s` seconds for the child's ``LISTENING <port>`` line and
    raises `MockServerError` (with the child's stderr) if the child dies or
    stays silent. On exit it sends SIGTERM, then SIGKILL after
    `stop_timeout_s` seconds. The child also exits by itself when this process
    dies, because its stdin (a pipe from us) closes.
    """

    def __init__(
        self,
        config: MockConfig,
        *,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 3.0,
    ) -> None:
        self.config = config
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._endpoint: MockEndpoint | None = None

    @property
    def port(self) -> int:
        return self._started().port

    @property
    def base_url(self) -> str:
        return self._started().base_url

    def __enter__(self) -> MockProcess:
        # stderr goes to a file, not a pipe: a pipe nobody reads would block
        # a child that logs a lot.
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "onybench.mock", orjson.dumps(self.config.to_json()).decode()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            # Its own session: a Ctrl-C at the terminal goes to our process group
            # and must stop the run gracefully, not kill the server mid-stream.
            start_new_session=True,
        )
        try:
            self._endpoint = MockEndpoint("127.0.0.1", self._read_port(self._process))
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _started(self) -> MockEndpoint:
        if self._endpoint is None:
            raise MockServerError("the mock process is not running; use it in a `with` block")
        return self._endpoint

    def _read_port(self, process: subprocess.Popen[bytes]) -> int:
        """The port in the child's ``LISTENING <port>`` line."""
        stdout = process.stdout
        if stdout is None:
            raise MockServerError("the mock process has no stdout pipe")
        deadline = time.monotonic() + self._start_timeout_s
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise self._failure(f"did not start within {self._start_timeout_s} s")
                if not selector.select(remaining_s):
                    continue
                data = os.read(stdout.fileno(), 256)
                if not data:
                    try:
                        code = process.wait(timeout=self._stop_timeout_s)
                    except subprocess.TimeoutExpired:
                        code = None
                    raise self._failure(f"exited (code {code}) before listening")
                line += data
        word, _, port = line.decode(errors="replace").strip().partition(" ")
        if word != "LISTENING" or not port.isdigit():
            raise self._failure(f"printed {line!r} instead of 'LISTENING <port>'")
        return int(port)

    def _failure(self, what: str) -> MockServerError:
        stderr = b""
        if self._stderr is not None:
            self._stderr.seek(0)
            stderr = self._stderr.read()
        return MockServerError(
            f"the mock server process {what}; its stderr:\n{stderr.decode(errors='replace')}"
        )

    def _stop(self) -> None:
        process, self._process, self._endpoint = self._process, None, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=self._stop_timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
