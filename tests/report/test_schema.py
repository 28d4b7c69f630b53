"""report.json follows the shipped schema, and the schema is strict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from onybench.config import Scenario
from onybench.metrics.health import ClientHealth
from onybench.metrics.summary import HISTOGRAM_UNITS, GroupMetrics
from onybench.mock.config import MockConfig
from onybench.report.outputs import unknown_client_health
from onybench.report.schema import report_schema
from tests.report.conftest import run_cli
from tests.report.schema_check import assert_valid_report, schema_errors

Report = dict[str, Any]


def load(path: Path) -> Report:
    report: Report = orjson.loads((path / "report.json").read_bytes())
    return report


def test_a_mock_runs_report_follows_the_schema(mixed_run: Path) -> None:
    report = load(mixed_run)
    assert sorted(g["model"] for g in report["groups"]) == ["a/one", "b/two"]
    assert report["overall"]["figures"]["requests.failed"] > 0  # errors are in it too
    assert_valid_report(report)
    assert_valid_report(mixed_run / "report.json")


def test_a_group_may_carry_a_stage_and_health_may_be_unknown(mixed_run: Path) -> None:
    report = load(mixed_run)
    report["groups"][0]["stage"] = "1: target 10"
    report["client_health"] = unknown_client_health()
    report["merged_from"] = [{"run_id": "a", "started_at": report["started_at"], "host": "h"}]
    assert_valid_report(report)


def drop(*path: str | int) -> Callable[[Report], None]:
    def change(report: Report) -> None:
        target: Any = report
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def put(value: object, *path: str | int) -> Callable[[Report], None]:
    def change(report: Report) -> None:
        target: Any = report
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (drop("groups"), "(top)"),
        (drop("schema_version"), "(top)"),
        (drop("groups", 0, "model"), "groups/0"),
        (drop("groups", 0, "metrics", "histograms", "ttft"), "groups/0/metrics/histograms"),
        (drop("groups", 0, "metrics", "cost"), "groups/0/metrics"),
        (drop("environment", "host"), "environment"),
        (drop("scenario", "load", "concurrency"), "scenario/load"),
        (drop("client_health", "metrics"), "client_health"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_report_missing_a_field_is_invalid(
    mixed_run: Path, change: Callable[[Report], None], where: str
) -> None:
    report = load(mixed_run)
    change(report)
    errors = schema_errors(report)
    assert any(error.startswith(where) for error in errors), errors


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (put(1, "surprise"), "(top)"),
        (put("x", "groups", 0, "colour"), "groups/0"),
        (put(1, "groups", 0, "metrics", "surprise"), "groups/0/metrics"),
        (put(1, "groups", 0, "metrics", "histograms", "ttft", "surprise"), "groups/0/metrics"),
        (put(1, "scenario", "target", "api_key"), "scenario/target"),
        (put(1, "environment", "user"), "environment"),
        (put(1, "client_health", "metrics", "surprise"), "client_health"),
        (put({"encoded": "HISTF", "overflow": 0}, "groups", 0, "metrics", "histograms", "x"), ""),
        # Figures: names must be dotted lower-case words, values numbers.
        (put(1.0, "groups", 0, "figures", "TTFT.p50_ms"), "groups/0/figures"),
        (put(1.0, "overall", "figures", "ttft p50"), "overall/figures"),
        (put("fast", "groups", 0, "figures", "ttft.p50_ms"), "groups/0/figures/ttft.p50_ms"),
        # Typed fields.
        (put(7, "groups", 0, "stage"), "groups/0/stage"),
        (put("yes", "interrupted"), "interrupted"),
        (put(2, "schema_version"), "schema_version"),
        (put("1.5 USD", "groups", 0, "metrics", "cost", "USD"), "groups/0/metrics/cost/USD"),
        (put("s3cr3t", "scenario", "target", "headers", "Authorization"), "scenario/target"),
        (put("yesterday", "started_at"), "started_at"),
        (put(None, "client_health", "client_limited"), "client_health"),
        (put({**unknown_client_health(), "figures": {"a": 1}}, "client_health"), "client_health"),
        (put({**unknown_client_health(), "reasons": []}, "client_health"), "client_health"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_report_with_an_unknown_or_mistyped_field_is_invalid(
    mixed_run: Path, change: Callable[[Report], None], where: str
) -> None:
    report = load(mixed_run)
    change(report)
    errors = schema_errors(report)
    assert errors
    assert any(error.startswith(where) for error in errors), errors


# --- the schema keeps up with the code -------------------------------------------
# When one of these fails, a field was added to or removed from report.json: update
# onybench/report/report.schema.json (and schema_version, if a field changed meaning
# or disappeared).


def properties(definition: str) -> dict[str, Any]:
    props: dict[str, Any] = report_schema()["$defs"][definition]["properties"]
    return props


def test_the_schema_names_every_histogram_of_the_summary() -> None:
    schema_histograms = properties("group_metrics")["histograms"]["properties"]
    assert set(schema_histograms) == set(HISTOGRAM_UNITS)


def test_the_schema_names_every_field_of_group_metrics() -> None:
    assert set(properties("group_metrics")) == set(GroupMetrics().to_json())


def test_the_schema_names_every_field_of_client_health() -> None:
    measured = report_schema()["$defs"]["client_health"]["oneOf"][0]["properties"]
    assert set(measured["metrics"]["properties"]) == set(ClientHealth().to_json())


@pytest.mark.parametrize(
    "scenario",
    [Scenario(), Scenario(base_url="mock")],
    ids=["default", "mock"],
)
def test_the_schema_names_every_field_of_the_scenario(scenario: Scenario) -> None:
    document = scenario.to_json()
    schema = properties("scenario")
    assert set(schema) == set(document)
    for section, value in document.items():
        if isinstance(value, dict) and section in ("target", "request", "load"):
            assert set(schema[section]["properties"]) == set(value), section
    mock_schema = schema["mock"]["oneOf"][1]["properties"]
    assert set(mock_schema) == set(MockConfig().to_json())


SHAPED_SCENARIO = """
name = "shapes"
[target]
base_url = "mock"
[request]
models = ["a/one", "b/two"]
max_tokens = 4
[load]
ramp = "rate"
arrival = "poisson"
stages = [{ duration = "0.4s", target = 30 }, { duration = "0.4s", target = 60 }]
warmup = 3
max_in_flight = 2
[mock]
ttft_ms = 1.0
itl_ms = 5.0
output_tokens = 4
"""


def test_an_open_loop_staged_run_with_warmup_follows_the_schema(tmp_path: Path) -> None:
    scenario = tmp_path / "shapes.toml"
    scenario.write_text(SHAPED_SCENARIO)
    run_cli("run", str(scenario), "--out", str(tmp_path / "run"))
    report = load(tmp_path / "run")
    assert_valid_report(report)
    stages = {g.get("stage") for g in report["groups"]}
    assert stages == {"warmup", "1: target 30", "2: target 60"}
    assert "Against load" in (tmp_path / "run" / "report.html").read_text()
