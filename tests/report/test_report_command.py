"""`onybench report RUN_DIR`: every output again, from run.json and records.jsonl."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from onybench.cli import app
from onybench.metrics.summary import summarize
from onybench.report.outputs import STOP_UNKNOWN
from onybench.rundir import read_records
from tests.processes import start_slow_run, wait_for_records
from tests.report.schema_check import assert_valid_report

runner = CliRunner()
OUTPUTS = {
    "report.json",
    "summary.md",
    "summary.csv",
    "report.html",
    "ttft.hlog",
    "itl.hlog",
    "tpot.hlog",
    "e2e.hlog",
}


def test_a_run_killed_midway_gets_a_valid_report_of_its_finished_requests(tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = start_slow_run(tmp_path, "-n", "1000", "-c", "4", "--out", str(out))
    try:
        wait_for_records(out / "records.jsonl", 6)
        process.kill()
    finally:
        process.wait(timeout=10)
    assert not (out / "report.json").exists()
    finished = (out / "records.jsonl").read_bytes().splitlines()

    result = runner.invoke(app, ["report", str(out)])

    assert result.exit_code == 0, result.output
    assert {path.name for path in out.iterdir()} >= OUTPUTS
    report = orjson.loads((out / "report.json").read_bytes())
    assert_valid_report(report)
    figures = report["groups"][0]["figures"]
    assert figures["requests.total"] == len(finished) >= 6
    assert figures["requests.succeeded"] == len(finished)
    assert figures["e2e.count"] == len(finished)
    assert report["interrupted"] is True
    assert report["stop_reason"] == STOP_UNKNOWN
    assert report["client_health"]["client_limited"] is None
    assert "client health unknown" in result.stdout
    assert f"{len(finished)} ok / {len(finished)}" in result.stdout
    # The page and the summary describe the same requests.
    assert f"{len(finished)} ok / {len(finished)}" in (out / "summary.md").read_text()


def test_re_rendering_a_finished_run_reproduces_its_report_and_keeps_client_health(
    mixed_copy: Path,
) -> None:
    before = orjson.loads((mixed_copy / "report.json").read_bytes())
    for name in OUTPUTS - {"report.json"}:
        (mixed_copy / name).unlink()

    result = runner.invoke(app, ["report", str(mixed_copy)])

    assert result.exit_code == 0, result.output
    after = orjson.loads((mixed_copy / "report.json").read_bytes())
    assert_valid_report(after)
    assert {path.name for path in mixed_copy.iterdir()} >= OUTPUTS

    def by_group(report: dict[str, object]) -> dict[tuple[str, object], object]:
        return {(g["model"], g.get("stage")): g for g in report["groups"]}  # type: ignore[attr-defined]

    assert by_group(after) == by_group(before)
    assert after["overall"] == before["overall"]
    assert after["client_health"] == before["client_health"]
    for key in ("run_id", "started_at", "ended_at", "stop_reason", "interrupted", "scenario"):
        assert after[key] == before[key], key
    # And it is the fold of the records.
    folded = summarize(read_records(mixed_copy))
    assert {(k.model, k.stage): g.to_json() for k, g in folded.items()} == {
        key: group["metrics"]  # type: ignore[index]
        for key, group in by_group(after).items()
    }


def test_report_on_a_folder_that_is_not_a_run_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "run.json" in result.stderr
    missing = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "is not a run directory" in missing.stderr
