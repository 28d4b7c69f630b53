"""`onybench sweep` end to end against the mock: the capacity found matches the mock's
server model, levels share one connection pool and leave nothing open, rate levels
are judged on being sustained, and the example scenario runs to a report with curves."""

from __future__ import annotations

import html
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from onybench.capacity import LevelResult
from onybench.cli import EXIT_GATE_FAILED, EXIT_USAGE, app
from onybench.config import Scenario, load_scenario
from onybench.mock import MockConfig
from onybench.mock.server import MockProcess
from onybench.rundir import read_records
from onybench.sweep import run_sweep
from onybench.sweep_plan import SweepPlan
from tests.report.schema_check import assert_valid_report
from tests.report.test_browser import STATUS, chromium, find_browser

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "scenarios" / "capacity-sweep.toml"
MODEL = "openai/gpt-4o-mini"


def connections_to(port: int) -> set[int]:
    """Local ports of the open (ESTABLISHED) IPv4 connections to 127.0.0.1:`port`."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


def open_sockets() -> int:
    """This process's socket descriptors."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor that listed the directory
            continue
    return sum(1 for link in links if link.startswith("socket:"))


def test_search_finds_the_capacity_the_mocks_batch_slots_give(tmp_path: Path) -> None:
    # Few, slow chunks: the mock and the client stay light on a busy machine, and
    # what they add to each TTFT is small beside the queue waits being measured.
    slots, ttft_ms, itl_ms, tokens = 32, 50.0, 250.0, 4
    service_ms = ttft_ms + (tokens - 1) * itl_ms  # one response holds its slot this long
    bound_ms = 350.0
    # A closed loop of c > slots keeps the server busy: slots / service requests
    # complete per second, so by Little's law each request spends c * service / slots,
    # and the mean queue wait is (c - slots) * service / slots, whatever the phases of
    # the streams. The mean TTFT, ttft + that wait, stays under the bound up to:
    expected = math.floor(slots + (bound_ms - ttft_ms) * slots / service_ms)  # 44
    scenario = Scenario(
        name="capacity",
        base_url="mock",
        max_tokens=tokens,
        mock=MockConfig(ttft_ms=ttft_ms, itl_ms=itl_ms, output_tokens=tokens, batch_slots=slots),
    )
    plan = SweepPlan(
        # Either side of the capacity by a whole SLO margin's worth of queue.
        levels=(expected - 4, expected + 4),
        hold_s=2.4,
        warmup_s=1.2,  # more than one round trip through the queue: the waits have settled
        search=True,
        slos=(f"ttft.mean < {bound_ms:g}ms",),
        # The mean's SLO decides; how the per-request waits spread (all alike, or a
        # few long ones when the streams move in lockstep) does not.
        target=0.5,
    )
    result = run_sweep(scenario, plan, out_dir=tmp_path / "run")
    capacity = result.analysis.capacity
    assert capacity is not None
    assert abs(capacity.level - expected) <= max(1, 0.05 * expected), [
        (r.level, r.within_slo, r.slo_failures) for r in result.analysis.levels
    ]
    assert len(result.analysis.levels) >= 4  # the two steps, then bisection
    assert result.report["capacity"]["capacity"] == capacity.level
    assert_valid_report(result.report)


def test_levels_share_one_connection_pool_and_leave_nothing_open(tmp_path: Path) -> None:
    send_log = tmp_path / "send.jsonl"
    config = MockConfig(ttft_ms=10.0, itl_ms=5.0, output_tokens=8, send_log=str(send_log))
    levels = (2, 4, 8)
    before = open_sockets()
    with MockProcess(config) as mock:
        scenario = Scenario(name="pool", base_url=mock.base_url, max_tokens=8)
        plan = SweepPlan(levels=levels, hold_s=0.5, warmup_s=0.0, knee_gain=0.0)
        open_after_level: list[set[int]] = []

        def note_connections(result: LevelResult) -> None:
            open_after_level.append(connections_to(mock.port))

        result = run_sweep(scenario, plan, out_dir=tmp_path / "run", on_level=note_connections)
        # Every level keeps the connections the levels before it opened, and adds
        # only what its extra concurrency needs (plus, at most, one whose response
        # was still being handed back when its worker sent the next request).
        for earlier, later in itertools.pairwise(open_after_level):
            assert earlier <= later
        for level, ports in zip(levels, open_after_level, strict=True):
            assert level <= len(ports) <= level + 1
        # Once the sweep is over, the pool is closed: nothing open on the mock.
        assert connections_to(mock.port) == set()
    assert open_sockets() == before
    lines = [orjson.loads(line) for line in send_log.read_bytes().splitlines()]
    # Every connection the mock ever served was still in the pool at the end: none
    # was dropped and replaced between levels.
    assert {line["client_port"] for line in lines} == open_after_level[-1]
    connects = sum(group["figures"]["connect.count"] for group in result.report["groups"])
    assert connects == len(open_after_level[-1])
    # No request of a level is still running when the next one starts.
    spans: dict[str, list[int]] = defaultdict(list)
    for record in read_records(tmp_path / "run"):
        assert record.stage is not None
        spans[record.stage] += [record.start_ns, record.end_ns]
    for earlier_stage, later_stage in itertools.pairwise(plan.label(level) for level in levels):
        assert max(spans[earlier_stage]) < min(spans[later_stage])


def test_a_rate_level_beyond_the_servers_throughput_is_not_sustained(tmp_path: Path) -> None:
    # 2 slots, 100 ms a response: 20 requests/s at most.
    scenario = Scenario(
        name="rate",
        base_url="mock",
        max_tokens=5,
        arrival="constant",
        mock=MockConfig(ttft_ms=20.0, itl_ms=20.0, output_tokens=5, batch_slots=2),
    )
    plan = SweepPlan(mode="rate", levels=(5, 40), hold_s=1.0, warmup_s=0.3, knee_gain=0.0)
    result = run_sweep(scenario, plan, out_dir=tmp_path / "run")
    low, high = result.analysis.levels
    assert low.sustained
    assert low.within_slo
    assert low.achieved_per_s == pytest.approx(5, rel=0.25)
    assert not high.sustained
    assert high.achieved_per_s < 0.95 * high.offered_per_s  # type: ignore[operator]
    assert high.achieved_per_s == pytest.approx(20, rel=0.25)
    assert result.analysis.capacity is low
    assert_valid_report(result.report)


@dataclass(frozen=True)
class ExampleSweep:
    out: Path
    completed: subprocess.CompletedProcess[str]
    elapsed_s: float


@pytest.fixture(scope="module")
def example_sweep(tmp_path_factory: pytest.TempPathFactory) -> ExampleSweep:
    """`onybench sweep scenarios/capacity-sweep.toml`, as shipped, through the real CLI."""
    out = tmp_path_factory.mktemp("capacity-sweep") / "run"
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "onybench", "sweep", str(EXAMPLE), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return ExampleSweep(out, completed, time.monotonic() - started)


def test_the_capacity_sweep_scenario_runs_within_a_minute_and_reports_its_curves(
    example_sweep: ExampleSweep,
) -> None:
    completed, out = example_sweep.completed, example_sweep.out
    assert completed.returncode == 0, completed.stderr
    assert example_sweep.elapsed_s < 60
    report = orjson.loads((out / "report.json").read_bytes())
    assert_valid_report(report)
    capacity = report["capacity"]
    # Within the slots every request starts at once; a few streams beyond them wait
    # (c - slots) * service / slots each on average (Little's law) when their phases
    # spread, a whole response when they move in lockstep. Either way the p95 SLO
    # holds at the slots and fails once even the mean wait passes its margin.
    mock = load_scenario(EXAMPLE).mock
    slowest_gap_ms = mock.itl_ms * (1 + mock.itl_load_factor * (mock.batch_slots - 1))
    service_ms = mock.ttft_ms + (mock.output_tokens - 1) * slowest_gap_ms
    margin_ms = float(capacity["slos"][0].split("<")[1].removesuffix("ms")) - mock.ttft_ms
    upper = math.floor(mock.batch_slots + margin_ms * mock.batch_slots / service_ms)
    assert mock.batch_slots <= capacity["capacity"] <= upper
    assert {cost["source"] for cost in capacity["costs_at_capacity"]} == {"api", "price_per_hour"}
    html = (out / "report.html").read_text(encoding="utf-8")
    for title in ("Latency against throughput", "Throughput and goodput against load"):
        assert title in html
    data = orjson.loads(html.split('id="onybench-data">', 1)[1].split("</script>", 1)[0])
    curves = [chart for chart in data["charts"] if chart["kind"] == "load"]
    assert len(curves) == 3
    assert all(len(chart["x"]) >= 4 for chart in curves)
    assert "### Capacity" in (out / "summary.md").read_text(encoding="utf-8")
    assert "c=2:" in completed.stderr  # progress, one line per level
    assert f"capacity: concurrency {capacity['capacity']:g}" in completed.stdout


@pytest.mark.slow
def test_the_capacity_report_draws_every_chart_offline_without_errors(
    example_sweep: ExampleSweep, tmp_path: Path
) -> None:
    browser = find_browser()
    dumped = chromium(
        browser, tmp_path / "profile", "--dump-dom", (example_sweep.out / "report.html").as_uri()
    )
    match = STATUS.search(dumped.stdout)
    assert match, dumped.stdout[-2000:]
    status, detail = match.group(1), json.loads(html.unescape(match.group(2)))
    assert detail["errors"] == []
    assert detail["unsized"] == []
    assert detail["charts"] == detail["sized"] > 3
    assert status == "ok"


def test_no_level_within_the_slos_exits_with_the_gate_failure_code(tmp_path: Path) -> None:
    runner = CliRunner()
    outcome = runner.invoke(
        app,
        [
            "sweep",
            "--base-url",
            "mock",
            "--levels",
            "1",
            "--hold",
            "0.3s",
            "--warmup",
            "0",
            "--slo",
            "ttft.p95 < 1ms",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert outcome.exit_code == EXIT_GATE_FAILED, outcome.output
    assert "capacity: no level met every SLO" in outcome.output


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--levels", "1,a"], "--levels"),
        (["--levels", "1.5"], "whole numbers"),
        (["--factor", "1"], "above 1"),
        (["--slo", "ttft.p95 <"], "ttft.p95"),
        (["--target", "0"], "target"),
    ],
)
def test_a_bad_sweep_flag_is_a_usage_error(arguments: list[str], fragment: str) -> None:
    outcome = CliRunner().invoke(app, ["sweep", "--base-url", "mock", *arguments])
    assert outcome.exit_code == EXIT_USAGE
    assert fragment in outcome.output


def test_the_sweep_section_of_a_scenario_is_validated_with_key_paths(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[sweep]\nholds = "2s"\n', encoding="utf-8")
    outcome = CliRunner().invoke(app, ["validate", str(path)])
    assert outcome.exit_code == EXIT_USAGE
    assert "did you mean 'hold'" in outcome.output
    example = load_scenario(EXAMPLE)
    assert example.sweep == SweepPlan(
        start=2,
        maximum=16,
        factor=2,
        hold_s=1.5,
        warmup_s=0.5,
        search=True,
        slos=("ttft.p95 < 150ms",),
        target=0.9,
    )
