"""Helpers for the mock's tests: request bodies, SSE splitting, the send log."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio.testing

MODEL = "openai/gpt-4o-mini"
# Three words, so three prompt tokens by the mock's definition.
MESSAGES = [{"role": "user", "content": "Merhaba nasilsin dunya"}]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "stream": True, **extra}


def sse_data(body: bytes) -> list[bytes]:
    """The data of every event of a body made only of ``data: X\\n\\n`` events."""
    assert body.endswith(b"\n\n"), body[-50:]
    events = body[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events), events
    return [event.removeprefix(b"data: ") for event in events]


def exact_json(data: bytes) -> Any:
    """JSON with every non-integer number as a Decimal, to compare costs exactly."""
    return json.loads(data, parse_float=Decimal)


def content_text(chunks: list[Any]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def expected_text(n: int) -> str:
    return "".join(f"tok{k} " for k in range(n))


async def read_send_log(path: Path) -> list[dict[str, Any]]:
    """The send log once the in-process server has finished with every request.

    A request's line is written after its last send, which the client may see
    first; waiting until no task can run is waiting for that write itself.
    """
    await trio.testing.wait_all_tasks_blocked()
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def send_log(tmp_path: Path) -> Path:
    return tmp_path / "send.jsonl"
