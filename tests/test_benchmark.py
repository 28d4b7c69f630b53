"""End to end: the real client against the real mock server, over loopback."""

from __future__ import annotations

import statistics
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from onybench.benchmark import RunResult
from onybench.benchmark import run as benchmark_run
from onybench.config import Scenario
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupKey, summarize
from onybench.mock.config import Engine, MockConfig
from onybench.mock.server import MockProcess
from onybench.rundir import read_records
from tests.processes import starved_interpreter
from tests.report.schema_check import assert_valid_report


def run(*args: Any, **kwargs: Any) -> RunResult:
    """The real run, and its report.json held to the shipped schema."""
    result = benchmark_run(*args, **kwargs)
    assert_valid_report(result.report)
    return result


MODEL = GroupKey("openai/gpt-4o-mini")


def read_send_log(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def mock_scenario(mock: MockConfig, **changes: object) -> Scenario:
    return Scenario(
        base_url="mock", mock=mock, prompt="one two three", max_tokens=None
    ).with_overrides(**changes)


@pytest.mark.parametrize(
    ("concurrency", "requests", "engine"),
    [(1, 3, "hypercorn"), (20, 40, "hypercorn"), (20, 40, "lean")],
)
def test_reported_ttft_and_itl_match_the_mocks_logged_truth(
    tmp_path: Path, concurrency: int, requests: int, engine: Engine
) -> None:
    log = tmp_path / "sent.jsonl"
    mock = MockConfig(ttft_ms=100, itl_ms=10, output_tokens=128, send_log=str(log), engine=engine)
    result = run(
        mock_scenario(mock, concurrency=concurrency, requests=requests), out_dir=tmp_path / "run"
    )
    sent = {s["id"]: s for s in read_send_log(log)}
    records = list(read_records(tmp_path / "run"))
    assert sorted(r.response_id for r in records) == sorted(sent)

    # The truth is the mock's log of when it sent each token: `token_sent_ns`, read
    # as its write to the socket returned, and `token_send_start_ns`, read just
    # before (the server's loop may yield in between, so a burst of writes spreads
    # the two apart). One monotonic clock for both processes. Errors are taken per
    # request, so a p50 over requests in two start-up waves cannot fall between them.
    def first_token_error_ms(stamp: str) -> float:
        return statistics.median(
            (r.token_times_ns[0] - sent[r.response_id][stamp][0]) / 1e6 for r in records
        )

    true_itl_ms = [(b - a) / 1e6 for s in sent.values() for a, b in pairwise(s["token_sent_ns"])]
    figures = result.report["groups"][0]["figures"]
    assert abs(first_token_error_ms("token_sent_ns")) <= 2.0
    assert first_token_error_ms("token_send_start_ns") >= 0  # never before the write began
    assert abs(figures["itl.p50_ms"] - statistics.median(true_itl_ms)) <= 1.0
    # Counts, tokens and cost: exactly what the mock sent.
    assert figures["requests.total"] == figures["requests.succeeded"] == len(sent) == requests
    assert figures["tokens.output"] == sum(s["output_tokens"] for s in sent.values())
    assert figures["tokens.output"] == 128 * requests
    total_cost = sum((Decimal(s["cost"]) for s in sent.values()), Decimal(0))
    assert result.groups[MODEL].cost == {"USD": total_cost}


def fault_run(tmp_path: Path, **faults: float) -> tuple[RunResult, list[RequestRecord]]:
    mock = MockConfig(ttft_ms=1, itl_ms=1, output_tokens=8, cut_after_chunks=3, **faults)
    result = run(mock_scenario(mock, concurrency=2, requests=6), out_dir=tmp_path / "run")
    return result, list(read_records(tmp_path / "run"))


@pytest.mark.parametrize(
    ("fault", "error_class", "message_part"),
    [
        ("http_429_rate", "http_429", ""),
        ("http_500_rate", "http_500", ""),
        ("malformed_chunk_rate", "invalid_json", "invalid JSON"),
        ("cut_rate", "truncated", "dropped"),
        ("no_finish_rate", "truncated", "neither [DONE] nor a finish_reason"),
        ("stream_error_rate", "stream_error", ""),
    ],
)
def test_each_bad_stream_is_a_classified_error_and_the_run_goes_on(
    tmp_path: Path, fault: str, error_class: str, message_part: str
) -> None:
    result, records = fault_run(tmp_path, **{fault: 1.0})
    figures = result.report["groups"][0]["figures"]
    assert figures["requests.total"] == 6
    assert figures[f"errors.{error_class}"] == 6
    assert figures["ttft.count"] == 0  # failed requests stay out of the latency figures
    assert all(
        r.error_class == error_class and message_part in (r.error_message or "") for r in records
    )


def test_http_errors_keep_the_servers_error_message(tmp_path: Path) -> None:
    _, records = fault_run(tmp_path, http_429_rate=1.0)
    assert all(r.status == 429 and r.error_message for r in records)


def test_truncated_stream_keeps_what_it_measured(tmp_path: Path) -> None:
    _, records = fault_run(tmp_path, cut_rate=1.0)
    assert all(len(r.token_times_ns) == 3 for r in records)


def test_finish_reason_and_clean_close_without_done_counts_as_complete(tmp_path: Path) -> None:
    result, records = fault_run(tmp_path, no_done_rate=1.0)
    figures = result.report["groups"][0]["figures"]
    assert figures["requests.succeeded"] == 6
    assert all(r.finish_reason is not None for r in records)


def test_unreachable_host_is_a_connect_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scenario = Scenario(base_url=f"http://127.0.0.1:{port}/v1", requests=3)
    result = run(scenario, out_dir=tmp_path / "run", api_key="sk-ony-test")
    assert result.report["groups"][0]["figures"]["errors.connect_error"] == 3
    assert result.succeeded == 0


def test_wrong_key_is_http_401_and_the_key_appears_nowhere(tmp_path: Path) -> None:
    secret = "sk-ony-SECRET-never-print-me"
    with MockProcess(
        MockConfig(ttft_ms=1, itl_ms=1, output_tokens=4, require_api_key="right")
    ) as mock:
        scenario = Scenario(base_url=mock.base_url, requests=2, headers=(("X-Extra", secret),))
        result = run(scenario, out_dir=tmp_path / "run", api_key=secret)
    assert result.report["groups"][0]["figures"]["errors.http_401"] == 2
    for path in (tmp_path / "run").iterdir():
        assert secret not in path.read_text(), path.name


def test_max_cost_stops_the_run_at_the_request_that_reaches_it(tmp_path: Path) -> None:
    mock = MockConfig(
        ttft_ms=1,
        itl_ms=1,
        output_tokens=10,
        cost_per_prompt_token=Decimal(0),
        cost_per_output_token=Decimal("0.001"),
    )
    scenario = mock_scenario(mock, concurrency=1, requests=100, max_cost=Decimal("0.03"))
    result = run(scenario, out_dir=tmp_path / "run")
    assert len(list(read_records(tmp_path / "run"))) == 3
    assert result.groups[MODEL].cost == {"USD": Decimal("0.030")}
    assert result.stop_reason.startswith("cost limit reached")


def test_a_deliberately_overloaded_client_is_flagged_with_coalesced_itl(tmp_path: Path) -> None:
    mock = MockConfig(ttft_ms=20, itl_ms=5, output_tokens=64)
    with starved_interpreter():
        result = run(mock_scenario(mock, concurrency=20, requests=40), out_dir=tmp_path / "run")
    health = result.report["client_health"]
    assert health["client_limited"] is True
    assert health["figures"]["coalesced.client"] > 0
    assert any("event-loop lag" in reason for reason in health["reasons"])


def test_a_run_well_inside_the_clients_capacity_is_not_flagged(tmp_path: Path) -> None:
    mock = MockConfig(ttft_ms=20, itl_ms=10, output_tokens=32)
    result = run(mock_scenario(mock, concurrency=2, requests=4), out_dir=tmp_path / "run")
    health = result.report["client_health"]
    assert health["client_limited"] is False, health["reasons"]
    assert health["figures"]["loop_lag.count"] > 0


def test_two_workers_and_one_give_the_same_totals_and_merge_exactly(tmp_path: Path) -> None:
    mock = MockConfig(ttft_ms=20, itl_ms=2, output_tokens=16, seed=7)
    results = {
        workers: run(
            mock_scenario(mock, concurrency=4, requests=40),
            out_dir=tmp_path / f"w{workers}",
            workers=workers,
        )
        for workers in (1, 2)
    }
    one, two = (results[n].groups[MODEL] for n in (1, 2))
    assert results[2].workers == 2
    assert (two.requests, two.succeeded, two.output_tokens, two.prompt_tokens) == (
        one.requests,
        one.succeeded,
        one.output_tokens,
        one.prompt_tokens,
    )
    assert two.cost == one.cost
    for name in ("ttft", "itl", "tpot", "e2e"):
        assert two.histograms[name].count == one.histograms[name].count
        # Same fixed-timing workload: the medians agree within a few ms of timing noise.
        assert abs(two.histograms[name].stats()["p50"] - one.histograms[name].stats()["p50"]) < 5
    # The workers' merged figures are exactly the fold of all their records.
    records = list(read_records(tmp_path / "w2"))
    assert sorted(r.index for r in records) == list(range(40))
    refold = summarize(records)[MODEL]
    assert refold.histograms == two.histograms
    assert refold.figures() == two.figures()


def test_200_concurrent_streams_on_one_transport_all_complete_intact(tmp_path: Path) -> None:
    # Many connections reading at once must never see each other's bytes.
    mock = MockConfig(ttft_ms=200, itl_ms=1, output_tokens=16)
    result = run(mock_scenario(mock, concurrency=200, requests=400), out_dir=tmp_path / "run")
    figures = result.report["groups"][0]["figures"]
    assert figures["requests.succeeded"] == figures["requests.total"] == 400
    assert figures["tokens.output"] == 400 * 16


def test_a_token_later_than_the_first_token_timeout_is_a_classified_error(tmp_path: Path) -> None:
    # The role chunk comes at once; the first token only after 500 ms.
    mock = MockConfig(ttft_ms=500, itl_ms=1, output_tokens=4)
    scenario = mock_scenario(mock, requests=2, first_token_timeout_s=0.1)
    _ = run(scenario, out_dir=tmp_path / "run")
    records = list(read_records(tmp_path / "run"))
    assert [r.error_class for r in records] == ["first_token_timeout"] * 2
    assert all(r.e2e_ns < 400_000_000 for r in records)


def test_a_stream_longer_than_the_total_timeout_is_a_classified_error(tmp_path: Path) -> None:
    mock = MockConfig(ttft_ms=1, itl_ms=50, output_tokens=40)
    _ = run(mock_scenario(mock, requests=2, total_timeout_s=0.2), out_dir=tmp_path / "run")
    records = list(read_records(tmp_path / "run"))
    assert [r.error_class for r in records] == ["total_timeout"] * 2
    assert all(len(r.token_times_ns) > 0 for r in records)  # what it measured is kept
