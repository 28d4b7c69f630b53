"""The real LiteLLM proxy in front of the mock: onybench records through it what the mock sent.

The mock and onybench could share a misunderstanding of the protocol; LiteLLM is a
peer neither of them wrote. One proxy (the `peers` extra: `pip install -e '.[peers]'`)
is started per module with two models: `openai/gpt-4o-mini` on a clean mock and
`failing-model` on a mock whose every stream fails half-way. Everything stays on
127.0.0.1: no database, no callbacks, no telemetry, and the price map LiteLLM ships
instead of the one it would fetch.

What LiteLLM 1.106 sends, and these tests pin: the usage (only when the request asks
with `stream_options.include_usage`) in its own chunk after the `finish_reason` chunk,
with `choices: [{"index": 0, "delta": {}}]`; in it `usage.cost`, a float in USD from
the prices of its config, while the upstream's `cost` object is dropped; the
upstream's response id passed through; an upstream error mid-stream becomes
`data: {"error": {...}}` and the stream ends without `[DONE]`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from onybench.benchmark import RunResult
from onybench.benchmark import run as benchmark_run
from onybench.config import Scenario
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupKey
from onybench.mock.config import MockConfig
from onybench.mock.server import MockProcess
from onybench.rundir import read_records
from onybench.wire.sse import SseDecoder
from tests.mock.conftest import expected_text
from tests.peers.tools import require_program
from tests.processes import wait_for_records
from tests.report.schema_check import assert_valid_report

# Start-up imports all of LiteLLM: about 12 s of CPU, over 30 s on two busy cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "openai/gpt-4o-mini"
FAILING_MODEL = "failing-model"
# LiteLLM refuses to start without a master key; clients send it as their Bearer token.
MASTER_KEY = "sk-onybench-peer-test"
PROMPT = "one two three"  # three prompt tokens by the mock's count
OUTPUT_TOKENS = 7
# Binary fractions: LiteLLM multiplies floats, and with these its sum is exact, so
# the cost it reports can be compared exactly.
INPUT_COST_PER_TOKEN = Decimal(2) ** -20
OUTPUT_COST_PER_TOKEN = Decimal(2) ** -19
EXPECTED_COST = 3 * INPUT_COST_PER_TOKEN + OUTPUT_TOKENS * OUTPUT_COST_PER_TOKEN
# What LiteLLM would otherwise fetch from the internet at start-up (price map …).
LOCAL_SOURCES = (
    "MODEL_COST_MAP",
    "ANTHROPIC_BETA_HEADERS",
    "BLOG_POSTS",
    "POLICY_TEMPLATES",
    "AUTOROUTER_PRESETS",
)
# The copies LiteLLM ships, and loopback only, whatever HTTP proxy the environment names.
OFFLINE_ENV = {f"LITELLM_LOCAL_{name}": "True" for name in LOCAL_SOURCES} | {
    "NO_PROXY": "*",
    "no_proxy": "*",
}
START_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class Proxy:
    base_url: str
    send_log: Path  # the clean mock's
    failing_send_log: Path


def litellm_config(upstreams: dict[str, str]) -> dict[str, Any]:
    """The proxy's config (JSON is YAML): each model name forwarded to its mock's /v1."""
    return {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{name.removeprefix('openai/')}",
                    "api_base": base_url,
                    "api_key": "sk-upstream",
                    "input_cost_per_token": float(INPUT_COST_PER_TOKEN),
                    "output_cost_per_token": float(OUTPUT_COST_PER_TOKEN),
                },
            }
            for name, base_url in upstreams.items()
        ],
        # No retries: a request is one upstream request, so the send logs count them.
        "litellm_settings": {"telemetry": False, "num_retries": 0, "callbacks": []},
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }


def free_port() -> int:
    # LiteLLM binds by number, not an inherited socket; the port could be taken in
    # between, which start-up would then report.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    # LiteLLM announces readiness only in its log; asking its liveness route is the
    # documented way to wait for it.
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"litellm exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base_url}/health/liveliness", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"litellm not ready after {START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    litellm = require_program("litellm", "pip install -e '.[peers]'")
    folder = tmp_path_factory.mktemp("litellm")
    send_log, failing_send_log = folder / "clean.jsonl", folder / "failing.jsonl"
    clean = MockConfig(ttft_ms=1, itl_ms=1, output_tokens=OUTPUT_TOKENS, send_log=str(send_log))
    failing = replace(clean, stream_error_rate=1.0, send_log=str(failing_send_log))
    with MockProcess(clean) as mock, MockProcess(failing) as failing_mock:
        config = folder / "config.yaml"
        upstreams = {MODEL: mock.base_url, FAILING_MODEL: failing_mock.base_url}
        config.write_text(json.dumps(litellm_config(upstreams)))
        port = free_port()
        log = folder / "litellm.log"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LITELLM_LOG")}
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=folder,
                env=env | OFFLINE_ENV,
            )
            try:
                base_url = f"http://127.0.0.1:{port}"
                wait_until_ready(process, base_url, log)
                yield Proxy(f"{base_url}/v1", send_log, failing_send_log)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def raw_stream(proxy: Proxy, model: str) -> list[str]:
    """The data of every event of one streamed request through the proxy, unparsed."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    decoder = SseDecoder()
    events = []
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    url = f"{proxy.base_url}/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        for data in response.iter_raw():
            events += decoder.feed(data)
    events += decoder.feed(b"")
    return [event.data for event in events]


def run_through(
    proxy: Proxy, tmp_path: Path, send_log: Path, requests: int, **changes: object
) -> tuple[RunResult, list[RequestRecord], list[dict[str, Any]]]:
    """onybench's run through the proxy, its records, and the mock's lines for that run.

    LiteLLM asks each upstream for its models only at start-up, so every line the
    mock writes during the run is one of the run's chat completions.
    """
    before = len(send_log.read_bytes().splitlines())
    scenario = Scenario(
        base_url=proxy.base_url, prompt=PROMPT, max_tokens=None, requests=requests
    ).with_overrides(**changes)
    result = benchmark_run(scenario, out_dir=tmp_path / "run", api_key=MASTER_KEY)
    assert_valid_report(result.report)
    # The mock writes a request's line after its last send, which may be after
    # onybench saw the end of the stream through the proxy.
    wait_for_records(send_log, before + requests)
    sent = [orjson.loads(line) for line in send_log.read_bytes().splitlines()[before:]]
    assert all(line["path"] == "/v1/chat/completions" for line in sent)
    return result, list(read_records(tmp_path / "run")), sent


def test_litellm_sends_usage_and_its_own_cost_in_a_last_chunk_with_an_empty_delta(
    proxy: Proxy,
) -> None:
    *chunks, done = raw_stream(proxy, MODEL)
    assert done == "[DONE]"
    *content, finish, usage = (orjson.loads(chunk) for chunk in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in content) == expected_text(
        OUTPUT_TOKENS
    )
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert usage["choices"] == [{"index": 0, "delta": {}}]
    assert usage["usage"]["prompt_tokens"] == 3
    assert usage["usage"]["completion_tokens"] == OUTPUT_TOKENS
    assert usage["usage"]["cost"] == float(EXPECTED_COST)
    assert "cost" not in usage  # the mock's own cost object does not get through


def test_counts_usage_and_cost_through_litellm_are_what_the_mock_sent(
    proxy: Proxy, tmp_path: Path
) -> None:
    result, records, sent = run_through(proxy, tmp_path, proxy.send_log, 6, concurrency=3)
    figures = result.report["groups"][0]["figures"]
    assert figures["requests.total"] == figures["requests.succeeded"] == 6
    # LiteLLM passes the upstream's id through, and sent no request twice.
    assert sorted(r.response_id or "" for r in records) == sorted(s["id"] for s in sent)
    assert len(sent) == 6
    by_id = {s["id"]: s for s in sent}
    for record in records:
        truth = by_id[record.response_id or ""]
        assert record.error_class is None
        assert record.token_count_source == "usage"
        assert (record.prompt_tokens, record.output_tokens) == (
            truth["prompt_tokens"],
            truth["output_tokens"],
        )
        assert record.output_text == expected_text(truth["output_tokens"])
        assert len(record.token_times_ns) == OUTPUT_TOKENS  # one token per chunk
        assert record.finish_reason == "stop"
        # LiteLLM's figure, not the mock's own (which LiteLLM dropped).
        assert (record.cost_amount, record.cost_currency) == (EXPECTED_COST, "USD")
        assert Decimal(truth["cost"]) != EXPECTED_COST
    assert figures["tokens.output"] == sum(s["output_tokens"] for s in sent) == 6 * OUTPUT_TOKENS
    assert figures["tokens.estimated_requests"] == 0
    assert result.groups[GroupKey(MODEL)].cost == {"USD": 6 * EXPECTED_COST}


def test_without_include_usage_litellm_sends_no_usage_and_the_count_is_labelled_estimated(
    proxy: Proxy, tmp_path: Path
) -> None:
    result, records, sent = run_through(proxy, tmp_path, proxy.send_log, 2, include_usage=False)
    figures = result.report["groups"][0]["figures"]
    assert figures["requests.succeeded"] == len(sent) == 2
    assert figures["tokens.estimated_requests"] == 2
    # One token per chunk, so counting chunks gets the mock's count right.
    assert figures["tokens.output"] == sum(s["output_tokens"] for s in sent)
    assert all(r.output_tokens is None and r.cost_amount is None for r in records)


def test_an_upstream_error_mid_stream_is_a_stream_error_through_litellm(
    proxy: Proxy, tmp_path: Path
) -> None:
    *chunks, error = raw_stream(proxy, FAILING_MODEL)
    assert "[DONE]" not in chunks
    assert "The mock server failed mid-stream." in orjson.loads(error)["error"]["message"]

    result, records, sent = run_through(
        proxy, tmp_path, proxy.failing_send_log, 4, models=(FAILING_MODEL,), concurrency=2
    )
    figures = result.report["groups"][0]["figures"]
    assert figures["requests.total"] == figures["errors.stream_error"] == 4
    assert figures["requests.succeeded"] == figures["ttft.count"] == 0
    assert [s["fault"] for s in sent] == ["stream_error"] * 4
    by_id = {s["id"]: s for s in sent}
    for record in records:
        assert record.error_class == "stream_error"
        assert "The mock server failed mid-stream." in (record.error_message or "")
        # What arrived before the error is kept: the mock's tokens up to it.
        assert record.output_text == expected_text(by_id[record.response_id or ""]["output_tokens"])


def test_a_wrong_key_is_answered_400_not_401_and_recorded_as_such(
    proxy: Proxy, tmp_path: Path
) -> None:
    # Without a database LiteLLM cannot look a key up: it answers 400, "No connected db.".
    wrong_key = "sk-wrong-key-for-the-peer-test"
    scenario = Scenario(base_url=proxy.base_url, prompt=PROMPT, requests=1)
    result = benchmark_run(scenario, out_dir=tmp_path / "run", api_key=wrong_key)
    (record,) = read_records(tmp_path / "run")
    assert (record.error_class, record.status) == ("http_400", 400)
    assert "No connected db." in (record.error_message or "")
    assert result.report["groups"][0]["figures"]["errors.http_400"] == 1
    assert not any(wrong_key in path.read_text() for path in (tmp_path / "run").iterdir())
