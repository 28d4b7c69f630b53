"""Scenario files end to end: the shipped examples, and every kind of broken file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from onybench.benchmark import RunResult
from onybench.benchmark import run as benchmark_run
from onybench.cli import app
from onybench.config import Scenario, load_scenario
from onybench.metrics.summary import GroupKey
from onybench.mock.config import MockConfig
from tests.report.schema_check import assert_valid_report


def run(*args: Any, **kwargs: Any) -> RunResult:
    """The real run, and its report.json held to the shipped schema."""
    result = benchmark_run(*args, **kwargs)
    assert_valid_report(result.report)
    return result


SCENARIOS = Path(__file__).parent.parent / "scenarios"
runner = CliRunner()


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_example_scenario_validates(path: Path) -> None:
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {path}")


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(SCENARIOS.glob("*.toml")) if load_scenario(p).uses_mock],
    ids=lambda p: p.stem,
)
def test_every_example_scenario_on_the_mock_runs_to_a_report(path: Path, tmp_path: Path) -> None:
    scenario = load_scenario(path)
    result = run(scenario, out_dir=tmp_path / "run")
    assert (tmp_path / "run" / "report.json").exists()
    assert result.succeeded > 0
    assert result.report["overall"]["figures"]["error_rate"] == 0


def test_two_models_one_twice_as_slow_are_reported_side_by_side(tmp_path: Path) -> None:
    mock = MockConfig(ttft_ms=40, itl_ms=4, output_tokens=16, latency_factors={"slow": 2.0})
    scenario = Scenario(
        base_url="mock",
        models=("fast", "slow"),
        concurrency=2,
        requests=10,
        max_tokens=None,
        mock=mock,
    )
    result = run(scenario, out_dir=tmp_path / "run")
    fast, slow = (result.groups[GroupKey(m)].figures() for m in ("fast", "slow"))
    assert [g["model"] for g in result.report["groups"]] == ["fast", "slow"]
    assert fast["requests.succeeded"] == slow["requests.succeeded"] == 10
    # The slow model's TTFT is longer by the configured 40 ms; the rest is shared overhead.
    assert slow["ttft.p50_ms"] - fast["ttft.p50_ms"] == pytest.approx(40, abs=8)
    assert slow["itl.p50_ms"] == pytest.approx(2 * fast["itl.p50_ms"], rel=0.25)


BROKEN = {
    "unknown key": ("[load]\nconcurency = 4\n", "load.concurency", "did you mean 'concurrency'"),
    "misspelt section": ("[laod]\nconcurrency = 4\n", "laod", "did you mean 'load'"),
    "wrong type": ('[load]\nconcurrency = "four"\n', "load.concurrency", "expected a whole number"),
    "negative rate": ("[load]\nrate = -5\n", "load.rate", "positive number of requests/s"),
    "zero rate": ("[load]\nrate = 0\n", "load.rate", "positive number of requests/s"),
    "zero concurrency": ("[load]\nconcurrency = 0\n", "load.concurrency", "at least 1"),
    "empty model list": ("[request]\nmodels = []\n", "request.models", "at least one"),
    "missing dataset file": (
        '[prompts]\nsource = "jsonl"\npath = "nope.jsonl"\n',
        "nope.jsonl",
        "",
    ),
    "bad distribution name": (
        '[prompts]\nsource = "synthetic"\ninput_tokens = { distribution = "gauss", mean = 9 }\n',
        "prompts.input_tokens.distribution",
        "not one of fixed, uniform, normal",
    ),
    "bad arrival name": (
        '[load]\nrate = 2\narrival = "poison"\n',
        "load.arrival",
        "did you mean 'poisson'",
    ),
    "bad duration string": ('[load]\nduration = "soon"\n', "load.duration", "not a duration"),
    "empty stage list": ("[load]\nstages = []\n", "load.stages", "non-empty list of stages"),
    "negative stage duration": (
        '[load]\nstages = [{ duration = "-3s", target = 2 }]\n',
        "load.stages[0].duration",
        "not a duration",
    ),
    "malformed threshold": ('thresholds = ["ttft.p95 <"]\n', "thresholds[0]", ""),
    "threshold on an unknown metric": ('thresholds = ["tfft.p95 < 1s"]\n', "thresholds[0]", "tfft"),
    "conflicting stop conditions": (
        '[load]\nduration = "10s"\nstages = [{ duration = "5s", target = 2 }]\n',
        "load.duration",
        "stages set the run's length",
    ),
    "concurrency with a rate": (
        "[load]\nrate = 5\nconcurrency = 3\n",
        "load.concurrency",
        "max_in_flight",
    ),
    "invalid TOML": ("[load\nrate = 5\n", "invalid TOML", "line 1"),
}


@pytest.mark.parametrize(("text", "key", "fix"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_scenario_fails_before_any_request_with_exit_2_naming_key_and_fix(
    tmp_path: Path, text: str, key: str, fix: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text + '\n[target]\nbase_url = "mock"\n')
    out = tmp_path / "run"
    for command in (["validate", str(path)], ["run", str(path), "--out", str(out)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert key in result.stderr
        assert fix in result.stderr
    assert not out.exists()  # nothing was sent, nothing was written


def test_the_error_names_the_line_of_the_offending_key(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "x"\n\n[load]\nrequests = 5\nrate = -1\n')
    result = runner.invoke(app, ["validate", str(path)])
    assert f"{path}:5: load.rate" in result.stderr


def test_malformed_dataset_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text('"fine"\n{"prompt": \n')
    path = tmp_path / "s.toml"
    path.write_text('[prompts]\nsource = "jsonl"\npath = "prompts.jsonl"\n')
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "prompts.jsonl:2" in result.stderr


def test_a_flag_of_the_wrong_type_over_a_file_value_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[target]\nbase_url = "mock"\n[load]\nconcurrency = 4\n')
    result = runner.invoke(app, ["run", str(path), "--concurrency", "many"])
    assert result.exit_code == 2
    assert "--concurrency" in result.output
