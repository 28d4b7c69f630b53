"""``python -m onybench.mock '<MockConfig JSON>'``: the mock as a child process.

Prints exactly one line to stdout, ``LISTENING <port>``, once it listens on
127.0.0.1 (any free port); logs go to stderr. It runs until SIGTERM or SIGINT,
or until its stdin reaches end of file when stdin is a pipe: `MockProcess`
holds the other end, so the child never outlives its parent.
"""

from __future__ import annotations

import os
import signal
import stat
import sys

import orjson
import trio

from onybench.errors import ScenarioError
from onybench.mock.config import MockConfig
from onybench.mock.server import serve


async def _run(config: MockConfig) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, config)
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


def main(argv: list[str]) -> int:
    """Run the mock configured by ``argv[0]``; the exit code: 0, or 2 for a bad argument."""
    if len(argv) != 1:
        print("usage: python -m onybench.mock '<MockConfig JSON>'", file=sys.stderr)
        return 2
    try:
        data = orjson.loads(argv[0])
        if not isinstance(data, dict):
            raise ScenarioError("the configuration must be a JSON object")
        config = MockConfig.from_json(data)
    except (orjson.JSONDecodeError, ScenarioError, TypeError) as error:
        print(f"onybench.mock: bad configuration: {error}", file=sys.stderr)
        return 2
    trio.run(_run, config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
