"""The real CLI: typer's runner in-process, and a subprocess where signals matter."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from onybench.cli import app
from onybench.mock.config import MockConfig
from onybench.mock.server import MockProcess
from tests.processes import start_slow_run, starved_interpreter, wait_for_records
from tests.report.schema_check import assert_valid_report

runner = CliRunner()
FAST_MOCK = "[target]\nbase_url = 'mock'\n[mock]\nttft_ms = 1.0\nitl_ms = 1.0\noutput_tokens = 4\n"


def scenario_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(FAST_MOCK + extra)
    return path


def test_run_against_the_mock_prints_a_summary_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["run", str(scenario_file(tmp_path)), "-n", "5", "-c", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "5 ok / 5" in result.stdout
    report = orjson.loads((out / "report.json").read_bytes())
    assert_valid_report(report)
    assert report["groups"][0]["figures"]["requests.succeeded"] == 5
    assert len((out / "records.jsonl").read_bytes().splitlines()) == 5
    assert (out / "run.json").exists()


def test_two_models_are_reported_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "run",
        str(scenario_file(tmp_path)),
        "-m",
        "a/one",
        "-m",
        "b/two",
        "-n",
        "3",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    assert "a/one" in header
    assert "b/two" in header
    report = orjson.loads((out / "report.json").read_bytes())
    assert [g["figures"]["requests.total"] for g in report["groups"]] == [3, 3]


def test_a_non_empty_out_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    result = runner.invoke(app, ["run", "--base-url", "mock", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not empty" in result.stderr


def test_a_missing_key_is_a_usage_error_that_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MY_KEY", raising=False)
    result = runner.invoke(app, ["run", "--api-key-env", "MY_KEY", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "set the environment variable MY_KEY" in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "soon"], "--duration: 'soon' is not a duration"),
        (["-c", "0"], "load.concurrency: must be at least 1"),
        (["--max-cost", "lots"], "--max-cost: 'lots' is not a number"),
        (["-H", "no-colon"], "--header: 'no-colon' is not 'Name: value'"),
        (["--base-url", "ftp://x"], "target.base_url"),
        (["--workers", "many"], "--workers: 'many' is not a number of processes"),
    ],
)
def test_bad_flags_exit_2_with_a_message_naming_the_setting(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["run", "--base-url", "mock", *args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert message in result.stderr


def test_nothing_succeeded_exits_3(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, "http_500_rate = 1.0\n")
    result = runner.invoke(app, ["run", str(path), "-n", "3", "--out", str(tmp_path / "r")])
    assert result.exit_code == 3
    assert "http_500 3" in result.stdout


def test_strict_exits_4_when_the_client_was_the_bottleneck(tmp_path: Path) -> None:
    path = scenario_file(tmp_path).with_name("overload.toml")
    path.write_text(
        "[target]\nbase_url = 'mock'\n[mock]\nttft_ms = 20.0\nitl_ms = 5.0\noutput_tokens = 64\n"
    )
    args = ["run", str(path), "-n", "40", "-c", "20"]
    with starved_interpreter():
        strict = runner.invoke(app, [*args, "--strict", "--out", str(tmp_path / "strict")])
    assert strict.exit_code == 4, strict.output
    assert "the client was the bottleneck and --strict was given" in strict.stderr
    report = orjson.loads((tmp_path / "strict" / "report.json").read_bytes())
    assert report["client_health"]["client_limited"] is True


def test_help_documents_the_exit_codes() -> None:
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    assert "130 interrupted" in result.stdout
    assert "3 nothing succeeded" in result.stdout


def test_the_key_appears_in_no_output_and_no_report_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-ony-THE-SECRET-KEY"
    monkeypatch.setenv("ONYSOFT_API_KEY", secret)
    out = tmp_path / "run"
    with MockProcess(
        MockConfig(ttft_ms=1, itl_ms=1, output_tokens=4, require_api_key=secret)
    ) as mock:
        result = runner.invoke(
            app, ["run", "--base-url", mock.base_url, "-n", "3", "--out", str(out)]
        )
    assert result.exit_code == 0, result.output
    assert "3 ok / 3" in result.stdout
    assert secret not in result.stdout + result.stderr
    for path in out.iterdir():
        assert secret not in path.read_text(), path.name


# --- real subprocesses: signals -------------------------------------------------


def test_sigkill_leaves_run_json_and_whole_record_lines(tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = start_slow_run(tmp_path, "-n", "1000", "-c", "4", "--out", str(out))
    try:
        wait_for_records(out / "records.jsonl", 5)
        process.kill()
    finally:
        process.wait(timeout=10)
    assert orjson.loads((out / "run.json").read_bytes())["scenario"]["name"] == "slow"
    lines = (out / "records.jsonl").read_bytes().splitlines()
    assert len(lines) >= 5
    assert all(orjson.loads(line)["error_class"] is None for line in lines)
    assert not (out / "report.json").exists()


@pytest.mark.parametrize(
    ("signum", "workers"), [(signal.SIGINT, "1"), (signal.SIGTERM, "1"), (signal.SIGINT, "2")]
)
def test_a_signal_stops_the_run_exits_130_and_reports_what_finished(
    tmp_path: Path, signum: signal.Signals, workers: str
) -> None:
    out = tmp_path / "run"
    process = start_slow_run(
        tmp_path, "-n", "1000", "-c", "4", "--workers", workers, "--out", str(out)
    )
    try:
        wait_for_records(out / "records.jsonl", 5)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr.decode()
    report = orjson.loads((out / "report.json").read_bytes())
    lines = (out / "records.jsonl").read_bytes().splitlines()
    figures = report["groups"][0]["figures"]
    assert figures["requests.total"] == len(lines)
    # In-flight requests finished within the grace period: nothing was lost or cancelled.
    assert figures["requests.succeeded"] == len(lines)
    assert report["interrupted"] is True
    assert b"interrupted by" in stdout
