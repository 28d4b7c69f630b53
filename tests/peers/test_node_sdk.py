"""The official Node.js SDK (`openai` from npm) reads from the mock what onybench records.

A second client that neither the mock's nor onybench's authors wrote, in another
language: `node/stream.mjs` streams one chat completion with it and prints the text,
usage and finish reason it read. Needs Node.js and `npm ci` in tests/peers/node
(`.ci/run` does both); without them the test is skipped, except under CI=true.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from onybench.benchmark import run as benchmark_run
from onybench.config import Scenario
from onybench.mock.config import MockConfig
from onybench.mock.server import MockProcess
from onybench.rundir import read_records
from tests.mock.conftest import expected_text
from tests.peers.tools import peer_missing, require_program

NODE_FOLDER = Path(__file__).parent / "node"
PROMPT = "Merhaba! Nasılsın?"
MAX_TOKENS = 10


def node_sdk_stream(node: str, base_url: str) -> dict[str, object]:
    if not (NODE_FOLDER / "node_modules" / "openai").is_dir():
        peer_missing(f"the openai package is not installed: run `npm ci` in {NODE_FOLDER}")
    request = {
        "baseURL": base_url,
        "model": "openai/gpt-4o-mini",
        "prompt": PROMPT,
        "max_tokens": MAX_TOKENS,
    }
    completed = subprocess.run(
        [node, str(NODE_FOLDER / "stream.mjs"), orjson.dumps(request)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr.decode()
    answer: dict[str, object] = orjson.loads(completed.stdout)
    return answer


def test_node_sdk_and_onybench_read_the_same_text_usage_and_finish_reason(tmp_path: Path) -> None:
    node = require_program("node", "install Node.js 20 or later")
    config = MockConfig(
        ttft_ms=1, itl_ms=1, output_tokens=12, tokens_per_chunk=3, always_usage=False
    )
    with MockProcess(config) as mock:
        sdk = node_sdk_stream(node, mock.base_url)
        scenario = Scenario(
            base_url=mock.base_url, prompt=PROMPT, max_tokens=MAX_TOKENS, requests=1
        )
        benchmark_run(scenario, out_dir=tmp_path / "run", api_key="sk-ony-test")

    (record,) = read_records(tmp_path / "run")
    assert record.error_class is None
    # The mock is deterministic: token k is "tok<k> ", cut at max_tokens.
    assert record.output_text == sdk["text"] == expected_text(MAX_TOKENS)
    assert record.finish_reason == sdk["finish_reason"] == "length"
    # The usage came only because both asked for it (stream_options.include_usage).
    assert sdk["usage"] == {
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.output_tokens,
        "total_tokens": (record.prompt_tokens or 0) + (record.output_tokens or 0),
    }
    assert (record.prompt_tokens, record.output_tokens) == (2, MAX_TOKENS)  # two prompt words
    # 10 tokens in chunks of 3: four content chunks; the role chunk is no token for either.
    assert len(record.token_times_ns) == sdk["content_chunks"] == 4
