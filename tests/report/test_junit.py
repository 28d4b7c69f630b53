"""JUnit XML: every file onybench writes validates against the Jenkins JUnit schema
(tests/data/junit.xsd) and lists every threshold and comparison."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from onybench.cli import EXIT_GATE_FAILED, EXIT_OK, app
from onybench.gates.compare import ModelSample, RunSide, compare, parse_gate
from onybench.gates.evaluate import ThresholdOutcome
from onybench.report.junit import (
    comparison_suite,
    render_junit,
    threshold_suite,
    xml_text,
)

runner = CliRunner()
SCHEMA = Path(__file__).resolve().parents[1] / "data" / "junit.xsd"


@cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def valid_junit(document: bytes | Path) -> etree._Element:
    """The parsed document, after asserting it follows the schema."""
    data = document.read_bytes() if isinstance(document, Path) else document
    root = etree.fromstring(data)
    if not schema().validate(root):
        raise AssertionError(f"not valid JUnit XML: {schema().error_log}\n{data.decode()}")
    return root


def cases(root: etree._Element) -> list[tuple[str, str, str | None]]:
    """(classname, name, failure message or None) of every test case."""
    out = []
    for case in root.iter("testcase"):
        failure = case.find("failure")
        out.append(
            (
                case.get("classname"),
                case.get("name"),
                None if failure is None else failure.get("message"),
            )
        )
    return out


def test_the_schema_itself_rejects_what_jenkins_would() -> None:
    # A testcase without a name, and a failure before system-out's wrong sibling order.
    bad = b'<testsuites><testsuite name="s" tests="1"><testcase/></testsuite></testsuites>'
    assert not schema().validate(etree.fromstring(bad))
    misplaced = (
        b'<testsuites><testsuite name="s" tests="1"><testcase name="c">'
        b"<system-out>x</system-out><failure/></testcase></testsuite></testsuites>"
    )
    assert not schema().validate(etree.fromstring(misplaced))


def test_thresholds_become_one_case_each_with_failures_carrying_the_reason() -> None:
    outcomes = [
        ThresholdOutcome("ttft.p95 < 800ms", "a/one", "ttft.p95_ms", "<", 800.0, 812.5, False),
        ThresholdOutcome("ttft.p95 < 800ms", "b/two", "ttft.p95_ms", "<", 800.0, 640.0, True),
        ThresholdOutcome(
            "error_rate < 1%",
            "b/two",
            "error_rate",
            "<",
            0.01,
            None,
            False,
            "not measured: no request was recorded for this model",
        ),
    ]
    root = valid_junit(render_junit([threshold_suite(outcomes)]))
    assert root.get("tests") == "3"
    assert root.get("failures") == "2"
    assert cases(root) == [
        (
            "onybench.thresholds",
            "ttft.p95 < 800ms [a/one]",
            "measured 812.50 ms, which fails ttft.p95 < 800ms",
        ),
        ("onybench.thresholds", "ttft.p95 < 800ms [b/two]", None),
        (
            "onybench.thresholds",
            "error_rate < 1% [b/two]",
            "not measured: no request was recorded for this model",
        ),
    ]


def test_text_xml_cannot_hold_is_replaced_and_markup_is_escaped() -> None:
    name = 'evil"<model>\x00\x1b[31m&'
    outcome = ThresholdOutcome("error_rate < 1%", name, "error_rate", "<", 0.01, 0.5, False)
    root = valid_junit(render_junit([threshold_suite([outcome])]))
    [(_, case_name, _)] = cases(root)
    assert case_name == 'error_rate < 1% [evil"<model>\ufffd\ufffd[31m&]'
    assert xml_text("ok\ttab\nline") == "ok\ttab\nline"


def test_an_empty_suite_is_still_valid() -> None:
    root = valid_junit(render_junit([threshold_suite([])]))
    assert root.get("tests") == "0"


def test_a_comparison_lists_every_gate_and_every_row() -> None:
    base = RunSide(
        "base",
        "records",
        {"m": ModelSample(values={"ttft": [100.0 + i for i in range(50)]}, requests=(0, 50))},
    )
    slow = RunSide(
        "cur",
        "records",
        {"m": ModelSample(values={"ttft": [150.0 + i for i in range(50)]}, requests=(0, 50))},
    )
    result = compare(
        base, slow, gates=[parse_gate("ttft.p50 > +10%"), parse_gate("ttft.p95 > +100%")]
    )
    root = valid_junit(render_junit([comparison_suite(result)], "note"))
    listed = cases(root)
    assert [(c, n) for c, n, _ in listed[:2]] == [
        ("onybench.compare.gates", "ttft.p50 > +10% [m]"),
        ("onybench.compare.gates", "ttft.p95 > +100% [m]"),
    ]
    assert listed[0][2] is not None
    assert "the interval's lower bound is above the margin" in listed[0][2]
    assert listed[1][2] is None
    rows = [n for c, n, _ in listed if c == "onybench.compare.changes"]
    assert rows == [f"{change.metric.name} [m]" for change in result.changes]
    assert len(rows) == 9  # the default metrics
    assert root.find("testsuite/system-out").text == "note"


FAST_MOCK = "[target]\nbase_url = 'mock'\n[mock]\nttft_ms = 1.0\nitl_ms = 1.0\noutput_tokens = 4\n"


@pytest.fixture(scope="module")
def run_with_junit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("junit")
    scenario = tmp / "s.toml"
    scenario.write_text('thresholds = ["requests.total == 4"]\n' + FAST_MOCK)
    junit = tmp / "run.xml"
    result = runner.invoke(
        app,
        [
            "run",
            str(scenario),
            "-n",
            "4",
            "-m",
            "a/one",
            "-m",
            "b/two",
            "-t",
            "ttft.p50 < 0.001ms",
            "--junit",
            str(junit),
            "--out",
            str(tmp / "run"),
        ],
    )
    assert result.exit_code == EXIT_GATE_FAILED, result.output
    return tmp / "run", junit


def test_run_writes_junit_listing_every_threshold_per_model(
    run_with_junit: tuple[Path, Path],
) -> None:
    _, junit = run_with_junit
    root = valid_junit(junit)
    listed = cases(root)
    assert [(c, n) for c, n, _ in listed] == [
        ("onybench.thresholds", "requests.total == 4 [a/one]"),
        ("onybench.thresholds", "requests.total == 4 [b/two]"),
        ("onybench.thresholds", "ttft.p50 < 0.001ms [a/one]"),
        ("onybench.thresholds", "ttft.p50 < 0.001ms [b/two]"),
    ]
    failures = [message for _, _, message in listed]
    assert failures[:2] == [None, None]
    for message in failures[2:]:
        assert message is not None
        assert message.startswith("measured ")
        assert message.endswith(" ms, which fails ttft.p50 < 0.001ms")
    assert root.get("failures") == "2"


def test_check_and_compare_write_valid_junit(
    run_with_junit: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, _ = run_with_junit
    check_xml = tmp_path / "check.xml"
    result = runner.invoke(
        app,
        [
            "check",
            str(run_dir),
            "--no-scenario-thresholds",
            "-t",
            "requests.total < 5",
            "--junit",
            str(check_xml),
        ],
    )
    assert result.exit_code == EXIT_OK, result.output
    assert cases(valid_junit(check_xml)) == [
        ("onybench.thresholds", "requests.total < 5 [a/one]", None),
        ("onybench.thresholds", "requests.total < 5 [b/two]", None),
    ]
    compare_xml = tmp_path / "compare.xml"
    result = runner.invoke(
        app,
        [
            "compare",
            str(run_dir),
            str(run_dir),
            "--fail-on",
            "e2e.p50 > +10%",
            "--junit",
            str(compare_xml),
        ],
    )
    assert result.exit_code == EXIT_OK, result.output
    listed = cases(valid_junit(compare_xml))
    assert ("onybench.compare.gates", "e2e.p50 > +10% [a/one]", None) in listed
    assert ("onybench.compare.gates", "e2e.p50 > +10% [b/two]", None) in listed
    assert sum(1 for c, _, _ in listed if c == "onybench.compare.changes") == 18
