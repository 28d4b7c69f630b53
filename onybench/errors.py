"""The one exception hierarchy of onybench.

    OnybenchError
    ├── ScenarioError          a bad scenario file or flag (exit code 2)
    ├── ReportError            a run directory that cannot be read or written
    ├── MockServerError        the built-in mock could not be started
    └── TargetError            something went wrong talking to the target
        ├── ConnectFailed      DNS, refused, unreachable, TLS handshake
        ├── ReadTimedOut       no bytes for longer than the read timeout
        ├── ConnectionClosed   the peer closed the connection mid-response
        └── ProtocolViolation  bytes that are not valid HTTP/1.1 or event-stream data

The library raises these; only `cli.py` turns them into messages and exit codes.
`TargetError`s never escape a run: the client classifies them into a request's
`error_class` and the run goes on.
"""

from __future__ import annotations


class OnybenchError(Exception):
    """Base of every error onybench raises on purpose."""


class ScenarioError(OnybenchError):
    """A scenario file or command-line setting is invalid.

    `key_path` names the offending setting (e.g. ``load.concurrency``) so the
    message can say exactly what to fix.
    """

    def __init__(self, message: str, key_path: str | None = None) -> None:
        self.key_path = key_path
        super().__init__(f"{key_path}: {message}" if key_path else message)


class ReportError(OnybenchError):
    """A run directory cannot be created, written or read."""


class MockServerError(OnybenchError):
    """The built-in mock server could not be started."""


class TargetError(OnybenchError):
    """Talking to the target failed; `error_class` is the record's classification."""

    error_class = "transport_error"


class ConnectFailed(TargetError):
    error_class = "connect_error"


class ReadTimedOut(TargetError):
    error_class = "read_timeout"


class ConnectionClosed(TargetError):
    error_class = "connection_closed"


class ProtocolViolation(TargetError):
    error_class = "protocol_error"
