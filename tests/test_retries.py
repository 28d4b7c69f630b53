"""429 with Retry-After: never retried silently; with --retries, retried and counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from onybench.benchmark import run
from onybench.config import Scenario
from onybench.mock.config import MockConfig
from onybench.rundir import read_records
from tests.report.schema_check import assert_valid_report


def run_429s(tmp_path: Path, rate: float, **changes: Any) -> tuple[dict[str, Any], list[Any]]:
    log = tmp_path / "sent.jsonl"
    mock = MockConfig(ttft_ms=1, itl_ms=0.5, output_tokens=4, http_429_rate=rate, send_log=str(log))
    scenario = Scenario(base_url="mock", mock=mock, max_tokens=None).with_overrides(**changes)
    result = run(scenario, out_dir=tmp_path / "run")
    assert_valid_report(result.report)
    return result.report, [orjson.loads(line) for line in log.read_bytes().splitlines()]


def test_without_retries_every_429_is_recorded_with_its_retry_after(tmp_path: Path) -> None:
    report, sent = run_429s(tmp_path, 1.0, concurrency=2, requests=6)
    records = list(read_records(tmp_path / "run"))
    assert len(sent) == len(records) == 6  # nothing sent twice
    assert {r.error_class for r in records} == {"http_429"}
    assert all(r.retry_after_s == 1.0 and r.retries == 0 for r in records)
    assert all("Retry-After: 1 s" in (r.error_message or "") for r in records)
    assert report["server_profile"]["retries"] == {"retries": 0, "retry_after_requests": 6}


def test_with_retries_each_retry_is_counted_and_sent_once_more(tmp_path: Path) -> None:
    report, sent = run_429s(tmp_path, 0.3, concurrency=4, requests=12, retries=3)
    records = list(read_records(tmp_path / "run"))
    assert len(records) == 12
    retries = sum(r.retries for r in records)
    # Every attempt reached the mock once: the records' attempts, no more, no fewer.
    assert len(sent) == 12 + retries
    assert retries == sum(1 for s in sent if s["status"] == 429) - sum(
        1 for r in records if r.error_class == "http_429"
    )
    assert retries > 0
    # A request that still failed had used up all its retries.
    assert all(r.retries == 3 for r in records if r.error_class == "http_429")
    assert report["server_profile"]["retries"]["retries"] == retries
    # Retry-After is kept from the attempt that met it, even when a retry then succeeded.
    assert all(r.retry_after_s == 1.0 for r in records if r.retries)
    assert report["server_profile"]["retries"]["retry_after_requests"] == sum(
        1 for r in records if r.retries or r.error_class == "http_429"
    )
    figures = report["groups"][0]["figures"]
    assert figures["requests.total"] == 12
