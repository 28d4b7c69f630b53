"""`onybench probe` against each mock dialect: the right verdicts and server profile."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from onybench.cli import EXIT_NOTHING_SUCCEEDED, EXIT_OK, app
from onybench.client import Target
from onybench.mock.config import MockConfig
from onybench.mock.server import running_mock
from onybench.probe import probe
from onybench.report.probe_console import render_probe

# dialect -> (usage unasked, continuous usage, ignore_eos, cost source, [DONE] streams)
EXPECTED: dict[str, tuple[bool | None, str, str, str, int]] = {
    "onysoft": (True, "ignored", "accepted", "server", 3),
    "openai": (False, "ignored", "refused", "none", 3),
    "vllm": (False, "supported", "accepted", "none", 3),
    "llamacpp": (False, "ignored", "accepted", "none", 3),
    "litellm": (False, "ignored", "accepted", "usage_cost", 3),
    "hf-serve": (True, "ignored", "accepted", "none", 0),
    "llama-cpp-python": (False, "ignored", "accepted", "none", 3),
}


async def probe_dialect(dialect: str) -> dict[str, Any]:
    config = MockConfig(ttft_ms=2, itl_ms=0.5, output_tokens=6, tokens_per_chunk=2, dialect=dialect)
    async with running_mock(config) as mock:
        result = await probe(Target(mock.base_url), "m", requests=3)
    return result.to_json()


@pytest.mark.parametrize("dialect", sorted(EXPECTED))
async def test_probe_reports_each_dialects_options_and_profile(dialect: str) -> None:
    unasked, continuous, ignore_eos, cost, done = EXPECTED[dialect]
    findings = await probe_dialect(dialect)
    profile = findings["server_profile"]
    # llama-server closes after every response: the one reuse that raced the close
    # is lost, and classified, not retried; after it every request connects anew.
    lost = profile["connections"]["closed_by_server"]
    assert lost <= (1 if dialect == "llamacpp" else 0)
    assert findings["succeeded"] == findings["requests"] - lost == 3 - lost
    options = findings["options"]
    assert options["stream_options.include_usage"] == "accepted"
    assert options["usage_without_asking"] is unasked
    assert options["stream_options.continuous_usage_stats"] == continuous
    assert options["ignore_eos"] == ignore_eos
    assert profile["cost_source"][cost] == 3 - lost
    assert profile["stream_end"]["done"] == (done - lost if done else 0)
    assert profile["role_first_chunk"] == 3 - lost
    estimated = dialect == "llama-cpp-python"
    assert profile["usage"]["token_counts"] == ("estimated_from_chunks" if estimated else "usage")
    # Two tokens per chunk (1 or 2 when cut at words): the profile says so wherever
    # usage tells it.
    mean = profile["tokens_per_chunk"]["mean"]
    if dialect == "hf-serve":
        assert 1.0 < mean < 2.0
    elif not estimated:
        assert mean == 2.0
    if dialect == "llamacpp":
        assert profile["connections"]["reused"] == 0
        assert profile["server_timings"] == 3 - lost
    text = render_probe(findings)
    assert f"ignore_eos                    {ignore_eos}" in text
    if continuous == "supported":
        assert "continuous_usage_stats = true" in text


def test_the_probe_command_prints_json_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["probe", "mock", "-m", "m", "--dialect", "vllm", "--json"])
    assert result.exit_code == EXIT_OK, result.output
    findings = orjson.loads(result.stdout)
    assert findings["base_url"] == "mock (vllm)"
    assert findings["options"]["stream_options.continuous_usage_stats"] == "supported"


def test_the_probe_command_exits_3_when_nothing_answers() -> None:
    result = CliRunner().invoke(app, ["probe", "http://127.0.0.1:1/v1", "-m", "m"])
    assert result.exit_code == EXIT_NOTHING_SUCCEEDED
    assert "connect" in result.stdout
