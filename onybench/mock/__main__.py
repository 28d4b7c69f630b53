"""``python -m onybench.mock '<MockConfig JSON>' [--listen-fd N] [--process-tag T]``.

The mock as a child process. Prints exactly one line to stdout, ``LISTENING
<port>``, once it listens: on the already bound TCP socket with descriptor N
when ``--listen-fd`` is given (how `MockProcess` starts it), else on 127.0.0.1
(any free port). ``--process-tag T`` adds ``x-mock-process: T`` to every
response. Logs go to stderr. It runs until SIGTERM or SIGINT, or until its
stdin reaches end of file when stdin is a pipe: `MockProcess` holds the other
end, so the child never outlives its parent. The configuration's ``engine``
picks hypercorn on trio or the lean loop (`onybench.mock.lean`).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import stat
import sys
from dataclasses import dataclass
from functools import partial

import orjson
import trio

from onybench.errors import ScenarioError
from onybench.mock.config import MockConfig
from onybench.mock.lean import LeanServer
from onybench.mock.server import LISTEN_BACKLOG, serve

_USAGE = "usage: python -m onybench.mock '<MockConfig JSON>' [--listen-fd N] [--process-tag T]"


@dataclass(frozen=True, slots=True)
class _Arguments:
    config: MockConfig
    listen_fd: int | None = None
    process_tag: str | None = None


async def _run(arguments: _Arguments) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                partial(
                    serve,
                    arguments.config,
                    listen_fd=arguments.listen_fd,
                    process_tag=arguments.process_tag,
                )
            )
            print(f"LISTENING {port}", flush=True)
            if stat.S_ISFIFO(os.fstat(0).st_mode):
                nursery.start_soon(_cancel_at_stdin_eof, nursery.cancel_scope)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


async def _cancel_at_stdin_eof(scope: trio.CancelScope) -> None:
    async with trio.lowlevel.FdStream(os.dup(0)) as stdin:
        while await stdin.receive_some():
            pass
    scope.cancel()


def _parse(argv: list[str]) -> _Arguments | None:
    """The arguments, or None when they do not follow the usage line."""
    if not argv or len(argv) % 2 != 1:
        return None
    options: dict[str, str] = {}
    for name, value in zip(argv[1::2], argv[2::2], strict=True):
        if name not in ("--listen-fd", "--process-tag") or name in options:
            return None
        options[name] = value
    listen_fd = options.get("--listen-fd")
    if listen_fd is not None and not listen_fd.isdigit():
        return None
    data = orjson.loads(argv[0])
    if not isinstance(data, dict):
        raise ScenarioError("the configuration must be a JSON object")
    return _Arguments(
        MockConfig.from_json(data),
        int(listen_fd) if listen_fd is not None else None,
        options.get("--process-tag"),
    )


def _raise_open_file_limit() -> None:
    # Every stream is a socket; a benchmark holding thousands of them open
    # would hit a soft limit of 1024 long before the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str]) -> int:
    """Run the mock configured by `argv`; the exit code: 0, or 2 for a bad argument."""
    try:
        arguments = _parse(argv)
    except (orjson.JSONDecodeError, ScenarioError, TypeError) as error:
        print(f"onybench.mock: bad configuration: {error}", file=sys.stderr)
        return 2
    if arguments is None:
        print(_USAGE, file=sys.stderr)
        return 2
    _raise_open_file_limit()
    if arguments.config.engine == "lean":
        _serve_lean(arguments)
    else:
        trio.run(_run, arguments)
    return 0


def _serve_lean(arguments: _Arguments) -> None:
    """The lean engine's loop, on the inherited socket or a free port of 127.0.0.1."""
    if arguments.listen_fd is not None:
        listener = socket.socket(fileno=arguments.listen_fd)
    else:
        listener = socket.create_server(("127.0.0.1", 0), backlog=LISTEN_BACKLOG)
    server = LeanServer(
        arguments.config,
        listener,
        process_tag=arguments.process_tag,
        stop_fd=0 if stat.S_ISFIFO(os.fstat(0).st_mode) else None,
    )
    print(f"LISTENING {listener.getsockname()[1]}", flush=True)
    with listener:
        server.serve_forever()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
