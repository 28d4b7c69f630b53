"""summary.md: the run in GitHub-flavoured Markdown, for `$GITHUB_STEP_SUMMARY` and PR comments.

The console's table (one column per group, side by side), its notes, the
client-health warning as a GitHub alert, the thresholds judged (when the
scenario has any), then errors (count, HTTP status, first
messages) and cost (exact totals per currency). Every piece of text that came
from the scenario or the target passes through `markdown_text`: no markup,
mention or issue reference can come out of a model name or an error body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from onybench.gates.render import format_figure
from onybench.report.capacity import capacity_markdown
from onybench.report.console import summary_cells, summary_notes
from onybench.report.escape import markdown_text as md
from onybench.report.groups import error_rows, group_label
from onybench.report.server_profile import profile_rows
from onybench.report.timeline import Timeline

MESSAGE_CHARS = 200


def render_markdown(report: Mapping[str, Any], timeline: Timeline | None = None) -> str:
    """The Markdown document; `timeline` adds example error messages."""
    groups: Sequence[Mapping[str, Any]] = report["groups"]
    scenario = report["scenario"]
    lines = [f"## onybench: {md(str(scenario.get('name', '')))}", ""]
    facts = [
        f"run {md(report['run_id'])}",
        f"{md(report['started_at'])} → {md(report['ended_at'])}",
        f"target {md(str(scenario.get('target', {}).get('base_url', '?')))}",
        f"{report['workers']} worker{'s' if report['workers'] != 1 else ''}",
        f"stopped: {md(report['stop_reason'])}",
    ]
    if report["interrupted"]:
        facts.append("**interrupted**")
    if report.get("merged_from"):
        facts.append(f"merged from {len(report['merged_from'])} runs")
    lines += [" · ".join(facts), ""]
    lines += _health(report["client_health"])
    if report.get("capacity"):
        lines += capacity_markdown(report["capacity"])
    lines += _table(groups)
    lines += _gates(report.get("gates"))
    lines += _errors(groups, timeline)
    lines += _cost(groups)
    lines += _server_profile(report.get("server_profile"))
    return "\n".join(lines).rstrip() + "\n"


def _server_profile(profile: Mapping[str, Any] | None) -> list[str]:
    rows = profile_rows(profile) if profile is not None else []
    if profile is None or not rows:
        return []
    lines = ["## Server profile", "", "| | |", "|:--|:--|"]
    lines += [f"| {md(label)} | {md(value)} |" for label, value in rows]
    lines.append("")
    if profile["warnings"]:
        lines.append("> [!NOTE]")
        lines += [f"> - {md(warning)}" for warning in profile["warnings"]]
        lines.append("")
    return lines


def write_markdown(report: Mapping[str, Any], path: Path, timeline: Timeline | None = None) -> Path:
    path.write_text(render_markdown(report, timeline), encoding="utf-8")
    return path


def _health(health: Mapping[str, Any]) -> list[str]:
    if health["client_limited"] is None:
        return [
            "> [!NOTE]",
            f"> Client health unknown: {md('; '.join(health['reasons']))}",
            "",
        ]
    notes = [f"> [!NOTE]\n> {md(note)}\n" for note in health.get("notes", ())]
    if not health["client_limited"]:
        return notes
    return [
        *notes,
        "> [!WARNING]",
        "> **onybench itself was the bottleneck**, so its timings are distorted:",
        *(f"> - {md(reason)}" for reason in health["reasons"]),
        ">",
        "> Spread the load over more processes (`--workers N`) or lower `--concurrency`.",
        "",
    ]


def _table(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    if not groups:
        return ["No request was recorded.", ""]
    figures = [group["figures"] for group in groups]
    columns = [group_label(group) for group in groups]
    lines = [
        "| | " + " | ".join(md(column) for column in columns) + " |",
        "|:--|" + "--:|" * len(columns),
    ]
    for label, cells in summary_cells(figures):
        lines.append(f"| {md(label)} | " + " | ".join(md(cell) for cell in cells) + " |")
    lines.append("")
    notes = summary_notes(figures, columns)
    if notes:
        lines += [*(f"- {md(note)}" for note in notes), ""]
    return lines


def _gates(gates: Mapping[str, Any] | None) -> list[str]:
    """The thresholds judged (report.json's `gates`), when the scenario had any."""
    if not gates or not gates["thresholds"]:
        return []
    outcomes = gates["thresholds"]
    failed = sum(1 for outcome in outcomes if not outcome["passed"])
    verdict = (
        f"**{failed} of {len(outcomes)} thresholds failed.**"
        if failed
        else f"All {len(outcomes)} thresholds passed."
    )
    lines = ["### Thresholds", "", verdict, ""]
    if gates["aborted"]:
        lines += ["> [!CAUTION]", f"> Stopped early: {md(gates['aborted'])}", ""]
    lines += ["| threshold | model | measured | result |", "|:--|:--|--:|:--|"]
    for outcome in outcomes:
        result = "pass" if outcome["passed"] else "**FAIL**"
        if outcome["reason"]:
            result += f" ({md(outcome['reason'])})"
        measured = format_figure(outcome["figure"], outcome["measured"])
        lines.append(
            f"| {md(outcome['threshold'])} | {md(outcome['model'] or '-')} | {measured} "
            f"| {result} |"
        )
    return [*lines, ""]


def _errors(groups: Sequence[Mapping[str, Any]], timeline: Timeline | None) -> list[str]:
    rows = [
        f"| {md(group_label(row.group))} | {md(row.error_class)} | {row.count:,} "
        f"| {row.statuses} | {md(row.messages[0] if row.messages else '', MESSAGE_CHARS)} |"
        for row in error_rows(groups, timeline)
    ]
    if not rows:
        return []
    return [
        "### Errors",
        "",
        "| group | error | count | HTTP status | first message |",
        "|:--|:--|--:|:--|:--|",
        *rows,
        "",
    ]


def _cost(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for group in groups:
        per_1m = group["figures"]
        for currency, amount in group["metrics"]["cost"].items():
            rate = per_1m.get(f"cost.per_1m_output_tokens_{currency.lower()}")
            rate_cell = f"{rate:,.4f}" if rate is not None else "-"
            rows.append(
                f"| {md(group_label(group))} | {md(currency)} | {md(amount)} | {rate_cell} |"
            )
    if not rows:
        return []
    return [
        "### Cost",
        "",
        "As the API reported it, summed exactly; currencies are never added together.",
        "",
        "| group | currency | total | per 1M output tokens |",
        "|:--|:--|--:|--:|",
        *rows,
        "",
    ]
