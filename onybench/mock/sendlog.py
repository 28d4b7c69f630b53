"""The send log: the mock's own account of every request, the truth clients are checked against.

One JSON line per request, appended when the request ends (however it ends):

    {"id": "req_…", "model": "…" | null, "path": "/v1/…", "status": 200,
     "fault": null | "<one of config.FAULTS>", "stream": true | false | null,
     "received_ns": …, "token_send_start_ns": […], "token_sent_ns": […], "end_ns": …,
     "output_tokens": N, "prompt_tokens": P | null,
     "cost": "<exact decimal>" | null, "currency": "USD",
     "client_disconnected": false, "client_port": 40312 | null}

Times are `time.perf_counter_ns()` readings (CLOCK_MONOTONIC on Linux, the
clock clients in other processes read too). ``received_ns`` is taken when the
app is handed the request (hypercorn has read and parsed the request line and
headers by then). Content chunk j was written to the socket between
``token_send_start_ns[j]`` (read just before handing it to the HTTP layer; the
chunk's ``x_sent_ns`` when stamping) and ``token_sent_ns[j]`` (read once the
HTTP layer returned): one entry per content chunk actually sent, none for a
non-streaming response. ``end_ns`` is read after the last write.
``output_tokens`` counts the tokens in the content actually sent; ``cost`` is
the cost the response reported (null when it reported none). ``client_port``
is the client's TCP port: one per connection, so counting them counts the
connections a client opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import orjson

from onybench.errors import MockServerError


@dataclass(frozen=True, slots=True)
class SendRecord:
    """One request's line; the fields are described in the module docstring."""

    id: str
    model: str | None
    path: str
    status: int | None
    fault: str | None
    stream: bool | None
    received_ns: int
    token_send_start_ns: tuple[int, ...]
    token_sent_ns: tuple[int, ...]
    end_ns: int
    output_tokens: int
    prompt_tokens: int | None
    cost: str | None
    currency: str
    client_disconnected: bool
    client_port: int | None = None


class SendLog:
    """An append-only JSON-lines file.

    Each line goes out in one ``write(2)`` on an ``O_APPEND`` descriptor, with
    no user-space buffer: a reader never sees half a line from a live server,
    and a server killed by a signal loses no line it had already finished.
    """

    def __init__(self, path: str) -> None:
        """Open (or create) the file at `path`; `MockServerError` if that fails."""
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise MockServerError(f"cannot open the send log {path!r}: {error}") from error

    def write(self, record: SendRecord) -> None:
        line = memoryview(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        while line:
            line = line[os.write(self._fd, line) :]

    def close(self) -> None:
        os.close(self._fd)
