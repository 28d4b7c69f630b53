"""JUnit XML for CI systems: one test case per threshold and per comparison.

The file follows the Jenkins JUnit schema (the ``jenkins-junit.xsd`` most CI
systems read; the tests validate against a copy): ``<testsuites>`` holding one
``<testsuite>`` per kind of check, each ``<testcase>`` failing with a
``<failure message=…>`` when its gate failed.

- Thresholds (suite ``onybench.thresholds``): a case per threshold and model.
- Comparisons (suite ``onybench.compare``): a case per gate and model, which
  fails on a regression, and a case per model × metric, which never fails (it
  reports the change in its ``<system-out>``).

Text from the scenario or the target (model names, threshold texts) goes into
attributes and text nodes through ElementTree's escaping; characters XML 1.0
cannot hold at all (most control characters) are replaced by U+FFFD.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from onybench.gates.compare import Comparison
from onybench.gates.evaluate import ThresholdOutcome
from onybench.gates.render import (
    comparison_rows,
    confidence,
    format_figure,
    gate_change,
    method_note,
)

# Everything outside XML 1.0's Char production.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """`text` with the characters XML 1.0 forbids replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


@dataclass(frozen=True, slots=True)
class JunitCase:
    """One test case; `failure` is the failure's message (None: it passed)."""

    name: str
    classname: str
    failure: str | None = None
    detail: str = ""
    output: str = ""


@dataclass(frozen=True, slots=True)
class JunitSuite:
    name: str
    cases: tuple[JunitCase, ...]


def threshold_suite(outcomes: Sequence[ThresholdOutcome]) -> JunitSuite:
    """A case per threshold and model."""
    cases = []
    for outcome in outcomes:
        measured = format_figure(outcome.figure, outcome.measured)
        name = f"{outcome.text} [{outcome.model}]" if outcome.model else outcome.text
        if outcome.passed:
            cases.append(
                JunitCase(name, "onybench.thresholds", output=f"measured {measured}: passed")
            )
            continue
        message = outcome.reason or f"measured {measured}, which fails {outcome.text}"
        cases.append(JunitCase(name, "onybench.thresholds", failure=message, detail=message))
    return JunitSuite("onybench.thresholds", tuple(cases))


def comparison_suite(comparison: Comparison) -> JunitSuite:
    """A case per gate and model (fails on a regression), then one per model × metric."""
    cases = []
    for verdict in comparison.gates:
        name = f"{verdict.gate.text} [{verdict.model}]"
        described = (
            f"change {gate_change(verdict)}, interval "
            f"{_pair(verdict.interval, verdict.gate.relative)} at {confidence(verdict.level)}"
        )
        if verdict.passed:
            cases.append(JunitCase(name, "onybench.compare.gates", output=described))
        else:
            message = (
                f"{described}: {verdict.reason}"
                if verdict.estimate is not None
                else (verdict.reason)
            )
            cases.append(JunitCase(name, "onybench.compare.gates", failure=message, detail=message))
    for change, row in zip(comparison.changes, comparison_rows(comparison.changes), strict=True):
        name = f"{change.metric.name} [{change.model}]"
        baseline, current, absolute, relative, interval, level, significant = row[2:]
        output = (
            f"baseline {baseline}, current {current}, change {absolute} ({relative}), "
            f"interval {interval} at {level}, significant: {significant}"
        )
        cases.append(JunitCase(name, "onybench.compare.changes", output=output))
    return JunitSuite("onybench.compare", tuple(cases))


def _pair(values: tuple[float, float] | None, relative: bool) -> str:
    if values is None:
        return "-"
    if relative:
        return f"[{values[0] * 100:+.1f} %, {values[1] * 100:+.1f} %]"
    return f"[{values[0]:+.4g}, {values[1]:+.4g}]"


def render_junit(suites: Sequence[JunitSuite], note: str = "") -> bytes:
    """The XML document (UTF-8, with its declaration)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    total = sum(len(suite.cases) for suite in suites)
    failed = sum(1 for suite in suites for case in suite.cases if case.failure is not None)
    root = ET.Element(
        "testsuites",
        {"name": "onybench", "tests": str(total), "failures": str(failed), "errors": "0"},
    )
    for suite in suites:
        failures = sum(1 for case in suite.cases if case.failure is not None)
        element = ET.SubElement(
            root,
            "testsuite",
            {
                "name": suite.name,
                "tests": str(len(suite.cases)),
                "failures": str(failures),
                "errors": "0",
                "skipped": "0",
                "time": "0",
                "timestamp": stamp,
            },
        )
        for case in suite.cases:
            testcase = ET.SubElement(
                element,
                "testcase",
                {"name": xml_text(case.name), "classname": case.classname, "time": "0"},
            )
            if case.failure is not None:
                failure = ET.SubElement(
                    testcase, "failure", {"message": xml_text(case.failure), "type": "gate"}
                )
                failure.text = xml_text(case.detail)
            if case.output:
                ET.SubElement(testcase, "system-out").text = xml_text(case.output)
        if note:
            ET.SubElement(element, "system-out").text = xml_text(note)
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


def write_junit(path: Path, suites: Sequence[JunitSuite], note: str = "") -> Path:
    path.write_bytes(render_junit(suites, note))
    return path


def comparison_note(comparison: Comparison) -> str:
    return method_note(comparison)
