"""The mock speaks the protocol real clients expect: the official SDK reads what we record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openai import OpenAI

from onybench.benchmark import RunResult
from onybench.benchmark import run as benchmark_run
from onybench.config import Scenario
from onybench.mock.config import MockConfig
from onybench.mock.server import MockProcess
from onybench.rundir import read_records
from tests.report.schema_check import assert_valid_report


def run(*args: Any, **kwargs: Any) -> RunResult:
    """The real run, and its report.json held to the shipped schema."""
    result = benchmark_run(*args, **kwargs)
    assert_valid_report(result.report)
    return result


PROMPT = "Merhaba! Nasılsın?"


def test_official_sdk_and_onybench_read_the_same_text_usage_and_finish_reason(
    tmp_path: Path,
) -> None:
    config = MockConfig(ttft_ms=1, itl_ms=1, output_tokens=12, tokens_per_chunk=3)
    with MockProcess(config) as mock:
        sdk = OpenAI(api_key="sk-ony-test", base_url=mock.base_url, max_retries=0)
        stream = sdk.chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            max_tokens=10,
            stream_options={"include_usage": True},
        )
        text, finish_reason, usage = "", None, None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish_reason = chunk.choices[0].finish_reason or finish_reason
            if chunk.usage is not None:
                usage = chunk.usage
        scenario = Scenario(base_url=mock.base_url, prompt=PROMPT, max_tokens=10, requests=1)
        run(scenario, out_dir=tmp_path / "run", api_key="sk-ony-test")

    (record,) = read_records(tmp_path / "run")
    assert record.error_class is None
    assert record.output_text == text
    assert text  # the comparison is of something
    assert record.finish_reason == finish_reason == "length"
    assert usage is not None
    assert (record.prompt_tokens, record.output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert record.output_tokens == 10
    # 10 tokens in chunks of 3: four token-bearing chunks.
    assert len(record.token_times_ns) == 4
