"""Threshold and comparison results as text: terminal tables, and Markdown for PR comments.

Model names and gate texts come from the scenario or the command line; in
Markdown they pass through `markdown_text`, like every other report's text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from onybench.gates.compare import ERROR_RATE, Change, Comparison, GateVerdict, Metric
from onybench.gates.evaluate import ThresholdOutcome
from onybench.report.escape import markdown_text as md


def format_figure(figure: str | None, value: float | None) -> str:
    """A figure's value with its unit, as people read it (``812.4 ms``, ``1.20 %``)."""
    if value is None or figure is None:
        return "-"
    if figure == "error_rate":
        return f"{value * 100:.2f} %"
    if figure.endswith("_ms"):
        return f"{value:,.2f} ms"
    if figure.endswith("_s") and not figure.endswith("per_s"):
        return f"{value:,.3f} s"
    if figure.startswith("cost."):
        currency = figure.rsplit("_", 1)[-1].upper()
        return f"{value:,.6g} {currency}"
    if figure.endswith("per_s"):
        return f"{value:,.1f}/s"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}"


def threshold_rows(outcomes: Sequence[ThresholdOutcome]) -> list[list[str]]:
    """threshold, model, measured, result: one row per outcome."""
    rows = []
    for outcome in outcomes:
        result = "pass" if outcome.passed else "FAIL"
        if outcome.reason:
            result += f" ({outcome.reason})"
        rows.append(
            [
                outcome.text,
                outcome.model or "-",
                format_figure(outcome.figure, outcome.measured),
                result,
            ]
        )
    return rows


THRESHOLD_HEADERS = ["threshold", "model", "measured", "result"]


def render_threshold_table(outcomes: Sequence[ThresholdOutcome], aborted: str | None) -> str:
    """The thresholds as a plain-text table, with a verdict line."""
    failed = sum(1 for outcome in outcomes if not outcome.passed)
    lines = [text_table(THRESHOLD_HEADERS, threshold_rows(outcomes)), ""]
    if aborted:
        lines.append(f"stopped early: {aborted}")
    total = len(outcomes)
    lines.append(
        f"thresholds: {failed} of {total} failed" if failed else f"thresholds: all {total} passed"
    )
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


# --- comparisons ------------------------------------------------------------------------


def format_value(metric: Metric, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == ERROR_RATE:
        return f"{value * 100:.2f} %"
    if metric.unit == "ms":
        return f"{value:,.2f} ms"
    return f"{value:,.1f}/s"


def format_difference(metric: Metric, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == ERROR_RATE:
        return f"{value * 100:+.2f} pp"
    if metric.unit == "ms":
        return f"{value:+,.2f} ms"
    return f"{value:+,.1f}/s"


def percent(value: float | None) -> str:
    """A signed percentage, e.g. +12.3 %."""
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "+∞" if value > 0 else "-∞"
    return f"{value * 100:+.1f} %"


def confidence(level: float | None) -> str:
    """An error level as a confidence, e.g. 0.05 -> 95 %, 0.00556 -> 99.44 %."""
    if level is None:
        return "-"
    return f"{(1 - level) * 100:.4g} %"


def _interval(values: tuple[float, float] | None, relative: bool, metric: Metric) -> str:
    if values is None:
        return "-"
    low, high = values
    if relative:
        return f"[{percent(low)}, {percent(high)}]"
    return f"[{format_difference(metric, low)}, {format_difference(metric, high)}]"


COMPARISON_HEADERS = [
    "model",
    "metric",
    "baseline",
    "current",
    "change",
    "relative",
    "interval",
    "confidence",
    "significant",
]


def comparison_rows(changes: Sequence[Change]) -> list[list[str]]:
    rows = []
    for change in changes:
        verdict = change.reason or ("yes" if change.significant else "no")
        rows.append(
            [
                change.model,
                change.metric.name,
                format_value(change.metric, change.baseline),
                format_value(change.metric, change.current),
                format_difference(change.metric, change.absolute),
                percent(change.relative),
                _interval(change.interval, change.interval_is_relative, change.metric),
                confidence(change.level),
                verdict,
            ]
        )
    return rows


GATE_HEADERS = ["gate", "model", "change", "interval", "confidence", "result"]


def gate_change(verdict: GateVerdict) -> str:
    if verdict.estimate is None:
        return "-"
    if verdict.gate.relative:
        return percent(verdict.estimate)
    return format_difference(verdict.gate.metric, verdict.estimate)


def gate_rows(verdicts: Sequence[GateVerdict]) -> list[list[str]]:
    rows = []
    for verdict in verdicts:
        result = "pass" if verdict.passed else "FAIL"
        if verdict.reason and (not verdict.passed or verdict.estimate is None):
            result += f" ({verdict.reason})"
        rows.append(
            [
                verdict.gate.text,
                verdict.model,
                gate_change(verdict),
                _interval(verdict.interval, verdict.gate.relative, verdict.gate.metric),
                confidence(verdict.level),
                result,
            ]
        )
    return rows


def method_note(comparison: Comparison) -> str:
    sources = f"{comparison.baseline_source} vs {comparison.current_source}"
    return (
        f"bootstrap from {sources}, {comparison.resamples:,} resamples, seed {comparison.seed}; "
        f"family-wise error {comparison.alpha:g} held by Holm's method (rows and gates "
        f"each a family), so intervals are wider than {confidence(comparison.alpha)}"
    )


def verdict_line(comparison: Comparison) -> str:
    failed = sum(1 for verdict in comparison.gates if not verdict.passed)
    if not comparison.gates:
        return "no gate given (--fail-on): nothing can fail"
    if failed:
        return f"gates: {failed} of {len(comparison.gates)} failed"
    return f"gates: all {len(comparison.gates)} passed"


def render_comparison(comparison: Comparison) -> str:
    """The comparison as plain-text tables for a terminal."""
    lines = [
        f"onybench compare: {comparison.baseline} -> {comparison.current}",
        method_note(comparison),
        "",
        text_table(COMPARISON_HEADERS, comparison_rows(comparison.changes)),
    ]
    lines += [f"note: {note}" for note in comparison.notes]
    if comparison.gates:
        lines += ["", text_table(GATE_HEADERS, gate_rows(comparison.gates))]
    lines += ["", verdict_line(comparison)]
    return "\n".join(lines)


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: int) -> list[str]:
    """Rows escaped; the first `right` columns left-aligned, the rest right-aligned."""
    align = [":--" if i < right else "--:" for i in range(len(headers))]
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(md(cell) for cell in row) + " |" for row in rows),
    ]


def render_comparison_markdown(comparison: Comparison) -> str:
    """The comparison in GitHub-flavoured Markdown, fit for a PR comment."""
    failed = [verdict for verdict in comparison.gates if not verdict.passed]
    if not comparison.gates:
        headline = "No gate was given: this comparison reports, it does not judge."
    elif failed:
        headline = f"**Regression: {len(failed)} of {len(comparison.gates)} gates failed.**"
    else:
        headline = f"All {len(comparison.gates)} gates passed."
    lines = [
        "## onybench compare",
        "",
        f"Baseline {md(comparison.baseline)} → current {md(comparison.current)}.",
        "",
        headline,
        "",
    ]
    if comparison.gates:
        lines += ["### Gates", ""]
        lines += _markdown_table(GATE_HEADERS, gate_rows(comparison.gates), right=2)
        lines += [""]
    lines += ["### Changes", ""]
    lines += _markdown_table(COMPARISON_HEADERS, comparison_rows(comparison.changes), right=2)
    lines += [""]
    lines += [f"- {md(note)}" for note in comparison.notes]
    lines += [
        f"<sub>{md(method_note(comparison))}. A gate fails only when its whole interval lies "
        "beyond the margin; a row is significant when its interval excludes 0.</sub>",
    ]
    return "\n".join(lines).rstrip() + "\n"
