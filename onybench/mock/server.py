"""Running the mock: in this trio run (`serve`, `running_mock`) or in children (`MockProcess`).

One hypercorn process on trio sends about 5,000 chunks/s on a small VM; more
than that needs `MockProcess(config, processes=N)`: N child servers, each with
its own listening socket on the same port (``SO_REUSEPORT``, so the kernel
spreads new connections over them), all appending to the same send log.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import hypercorn.config
import hypercorn.events
import hypercorn.trio
import hypercorn.trio.run
import hypercorn.trio.tcp_server
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
# Connections waiting to be accepted (capped by the kernel's net.core.somaxconn).
# hypercorn's default of 100 overflows when a benchmark opens a thousand streams
# at once, and a dropped SYN is retried only after a second: a TTFT of 1 s that
# is neither the client's nor the server's doing.
LISTEN_BACKLOG = 4096
# The response header that names the serving child of a multi-process mock.
PROCESS_HEADER = b"x-mock-process"

# Set on a hypercorn Config whose connections close after every response (below).
_CLOSE_AFTER_RESPONSE = "onybench_close_after_response"


class _ClosingTCPServer(hypercorn.trio.tcp_server.TCPServer):
    """hypercorn's connection handler, closing the connection once any response is
    done when its config says so, without a ``Connection: close`` header.

    That is llama.cpp's llama-server: it announces keep-alive, then closes after
    every response, so a client that reuses the connection races the
    close. hypercorn has no such setting (its keep_alive_max_requests announces
    the close; a zero keep-alive timeout would also close connections that have
    not sent their first request yet), so the "idle again" event is the hook.
    """

    async def protocol_send(self, event: Any) -> None:
        await super().protocol_send(event)
        if (
            isinstance(event, hypercorn.events.Updated)
            and event.idle
            and getattr(self.config, _CLOSE_AFTER_RESPONSE, False)
        ):
            await super().protocol_send(hypercorn.events.Closed())


# hypercorn's trio server builds its handlers from this module-level name; the
# subclass behaves exactly as the original unless the config asks otherwise.
hypercorn.trio.run.TCPServer = _ClosingTCPServer  # type: ignore[attr-defined]

_Message = MutableMapping[str, Any]
_Send = Callable[[_Message], Awaitable[None]]
_Receive = Callable[[], Awaitable[_Message]]
_Asgi = Callable[[_Message, _Receive, _Send], Awaitable[None]]


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
    listen_fd: int | None = None,
    process_tag: str | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the mock over HTTP/1.1 on `host`:`port` until cancelled.

    Port 0 binds any free port; the port actually bound is reported through
    `task_status.started`, so ``port = await nursery.start(serve, config)``.
    `listen_fd`, when given, is a TCP socket already bound (by `MockProcess`)
    that is served instead, and `host`/`port` are ignored. `process_tag`, when
    given, is sent back in an ``x-mock-process`` header on every response.
    hypercorn logs only warnings and errors, to stderr; nothing goes to stdout.
    """
    if config.engine != "hypercorn":
        raise MockServerError(
            f"the {config.engine} engine does not run inside a trio run: use MockProcess"
        )
    http_config = hypercorn.config.Config()
    if listen_fd is not None:
        http_config.bind = [f"fd://{listen_fd}"]
    else:
        http_config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    http_config.backlog = LISTEN_BACKLOG
    http_config.accesslog = None
    http_config.loglevel = "WARNING"
    http_config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
    http_config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    setattr(http_config, _CLOSE_AFTER_RESPONSE, config.profile.close_after_response)
    send_log = SendLog(config.send_log) if config.send_log is not None else None
    try:
        async with trio.open_nursery() as nursery:
            # hypercorn reports the bound addresses as URLs built from
            # getsockname(), so port 0 comes back as the real port.
            app: _Asgi = MockApp(config, send_log)
            if process_tag is not None:
                app = _TagResponses(app, process_tag.encode())
            binds: list[str] = await nursery.start(hypercorn.trio.serve, app, http_config)
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


class _TagResponses:
    """ASGI middleware: adds ``x-mock-process: <tag>`` to every response head."""

    def __init__(self, app: _Asgi, tag: bytes) -> None:
        self._app = app
        self._header = (PROCESS_HEADER, tag)

    async def __call__(self, scope: _Message, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = self._header

        async def tagged_send(message: _Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self._app(scope, receive, tagged_send)


def process_config(config: MockConfig, index: int) -> MockConfig:
    """The configuration child `index` of a multi-process mock runs: ``seed + index``.

    Each child numbers the completion requests it receives from 0 and seeds each
    one's RNG from ``(seed, number)``, so children with one seed would repeat each
    other's fault and timing draws; with ``seed + index`` they do not, and a run
    stays reproducible as far as the kernel's spread of connections over the
    children allows. Child 0 runs `config` unchanged.
    """
    return config if index == 0 else dataclasses.replace(config, seed=config.seed + index)


def _listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` TCP sockets listening on one port of `host` (``SO_REUSEPORT`` when several).

    Port 0 binds a free port for the first and the others join it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # Accepted connections inherit it; hypercorn sets it only on sockets it binds.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(LISTEN_BACKLOG)
            sock.set_inheritable(True)
    except OSError as error:
        for sock in sockets:
            sock.close()
        raise MockServerError(f"cannot listen on {host}:{port}: {error}") from error
    return sockets


@dataclass(slots=True)
class _Child:
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]


class MockProcess:
    """The mock in child processes (``python -m onybench.mock``), as a sync context manager.

    Usable outside trio, e.g. around ``trio.run``. On entry this process binds
    `host`:`port` (127.0.0.1 and a free port by default; keep it on loopback)
    and hands the listening socket to the child by its descriptor. With
    ``processes=N`` (N > 1) it binds N sockets to that one port with
    ``SO_REUSEPORT`` and starts N children, one socket each: the kernel spreads
    new connections over them (by a hash of the client's address and port, so
    a connection and all its requests stay with one child). Every child
    appends to the same send log (whole lines, ``O_APPEND``) and child i runs
    with ``seed + i`` (see `process_config`); responses of child i carry an
    ``x-mock-process: i`` header when N > 1.

    Entry waits up to `start_timeout_s` seconds for every child's ``LISTENING
    <port>`` line and raises `MockServerError` (with the child's stderr) if one
    dies or stays silent. On exit each child gets SIGTERM, then SIGKILL after
    `stop_timeout_s` seconds. The children also exit by themselves when this
    process dies, because their stdin (a pipe from us) closes.
    """

    def __init__(
        self,
        config: MockConfig,
        *,
        processes: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 3.0,
    ) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be an integer >= 1, not {processes!r}")
        self.config = config
        self.processes = processes
        self._host = host
        self._port = port
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._children: list[_Child] = []
        self._endpoint: MockEndpoint | None = None

    @property
    def port(self) -> int:
        return self._started().port

    @property
    def base_url(self) -> str:
        return self._started().base_url

    @property
    def pids(self) -> tuple[int, ...]:
        """The children's process ids, in index order (empty outside the `with` block)."""
        return tuple(child.process.pid for child in self._children)

    def __enter__(self) -> MockProcess:
        host = self._host
        sockets = _listening_sockets(host, self._port, self.processes)
        port = sockets[0].getsockname()[1]
        try:
            for index, sock in enumerate(sockets):
                self._children.append(self._spawn(index, sock.fileno()))
            deadline = time.monotonic() + self._start_timeout_s
            for child in self._children:
                reported = self._read_port(child, deadline)
                if reported != port:
                    raise self._failure(child, f"listens on port {reported}, not {port}")
            self._endpoint = MockEndpoint(host, port)
        except BaseException:
            self._stop()
            raise
        finally:
            # The children hold their own copies; ours would keep the port
            # open (accepting into a queue nobody reads) after they exit.
            for sock in sockets:
                sock.close()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _spawn(self, index: int, fd: int) -> _Child:
        config = process_config(self.config, index)
        command = [
            sys.executable,
            "-m",
            "onybench.mock",
            orjson.dumps(config.to_json()).decode(),
            "--listen-fd",
            str(fd),
        ]
        if self.processes > 1:
            command += ["--process-tag", str(index)]
        # stderr goes to a file, not a pipe: a pipe nobody reads would block
        # a child that logs a lot. Closed by `_stop`, or below if the start fails.
        stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                pass_fds=(fd,),
                # Its own session: a Ctrl-C at the terminal goes to our process group
                # and must stop the run gracefully, not kill the server mid-stream.
                start_new_session=True,
            )
        except BaseException:
            stderr.close()
            raise
        return _Child(process, stderr)

    def _started(self) -> MockEndpoint:
        if self._endpoint is None:
            raise MockServerError("the mock process is not running; use it in a `with` block")
        return self._endpoint

    def _read_port(self, child: _Child, deadline: float) -> int:
        """The port in the child's ``LISTENING <port>`` line."""
        process = child.process
        stdout = process.stdout
        if stdout is None:
            raise MockServerError("the mock process has no stdout pipe")
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise self._failure(child, f"did not start within {self._start_timeout_s} s")
                if not selector.select(remaining_s):
                    continue
                data = os.read(stdout.fileno(), 256)
                if not data:
                    try:
                        code = process.wait(timeout=self._stop_timeout_s)
                    except subprocess.TimeoutExpired:
                        code = None
                    raise self._failure(child, f"exited (code {code}) before listening")
                line += data
        word, _, port = line.decode(errors="replace").strip().partition(" ")
        if word != "LISTENING" or not port.isdigit():
            raise self._failure(child, f"printed {line!r} instead of 'LISTENING <port>'")
        return int(port)

    def _failure(self, child: _Child, what: str) -> MockServerError:
        child.stderr.seek(0)
        stderr = child.stderr.read()
        return MockServerError(
            f"the mock server process {what}; its stderr:\n{stderr.decode(errors='replace')}"
        )

    def _stop(self) -> None:
        children, self._children, self._endpoint = self._children, [], None
        # All get SIGTERM first, so they shut down side by side.
        for child in children:
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + self._stop_timeout_s
        for child in children:
            process = child.process
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
            child.stderr.close()
