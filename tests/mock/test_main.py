"""``python -m onybench.mock``, the child process entry point."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import orjson
import pytest


def start_child(config_json: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "onybench.mock", config_json],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def close_pipes(child: subprocess.Popen[bytes]) -> None:
    for pipe in (child.stdin, child.stdout, child.stderr):
        if pipe is not None:
            pipe.close()


@pytest.mark.parametrize("engine", ["hypercorn", "lean"])
def test_it_prints_one_listening_line_serves_and_exits_cleanly_on_sigterm(engine: str) -> None:
    child = start_child(orjson.dumps({"output_tokens": 2, "engine": engine}).decode())
    assert child.stdout is not None
    word, port = child.stdout.readline().decode().split()
    assert word == "LISTENING"
    response = httpx.get(f"http://127.0.0.1:{port}/v1/models")
    assert response.status_code == 200
    child.terminate()
    # wait(), not communicate(): that would also close stdin, a second way to stop.
    assert child.wait(timeout=10) == 0
    assert child.stderr is not None
    assert (child.stdout.read(), child.stderr.read()) == (b"", b"")
    close_pipes(child)


@pytest.mark.parametrize("engine", ["hypercorn", "lean"])
def test_it_exits_when_its_stdin_pipe_closes_so_it_never_outlives_its_parent(engine: str) -> None:
    child = start_child(orjson.dumps({"engine": engine}).decode())
    assert child.stdout is not None
    assert child.stdin is not None
    assert child.stdout.readline().startswith(b"LISTENING ")
    child.stdin.close()
    assert child.wait(timeout=10) == 0
    close_pipes(child)


def test_a_bad_configuration_exits_2_saying_why() -> None:
    child = start_child('{"ttft_ms": -5}')
    stdout, stderr = child.communicate(timeout=10)
    assert child.returncode == 2
    assert stdout == b""
    assert b"mock.ttft_ms" in stderr


def test_an_unknown_option_or_a_bad_descriptor_exits_2_with_the_usage_line() -> None:
    for extra in (["--port", "8000"], ["--listen-fd", "three"], ["--listen-fd"]):
        child = subprocess.Popen(
            [sys.executable, "-m", "onybench.mock", "{}", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = child.communicate(timeout=10)
        assert child.returncode == 2, extra
        assert stdout == b""
        assert b"usage: python -m onybench.mock" in stderr


def test_onybench_mock_serves_on_the_lean_engine_until_ctrl_c() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "onybench", "mock", "--engine", "lean", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None
    line = child.stderr.readline().decode()
    assert "lean engine" in line
    base_url = line.split()[-4]  # "... listening on http://127.0.0.1:PORT/v1 (Ctrl-C to stop)"
    body = {"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": 2}
    response = httpx.post(f"{base_url}/chat/completions", json={**body, "stream": True})
    assert response.status_code == 200
    assert response.content.endswith(b"data: [DONE]\n\n")
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=10) == 130
    close_pipes(child)
