"""The capacity section of a sweep's reports: report.json's ``capacity``, and its
summary.md and report.html renderings (the charts are in charts.py).

report.json's section (schema: ``$defs/capacity``): the plan, one row per
level in load order (throughput, goodput, attainment, latency percentiles,
error rate, cost per currency, the verdict and why), the capacity and knee
found, and the cost projected at capacity, one entry per source and currency.
Amounts are exact decimal strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onybench.capacity import Analysis, LevelResult, project_costs
from onybench.decimals import decimal_text
from onybench.pricing import Pricing
from onybench.report.escape import html_text as h
from onybench.report.escape import markdown_text as md

# The latency figures each level row carries (from the level's merged histograms).
LEVEL_FIGURES = tuple(
    f"{metric}.{stat}_ms"
    for metric in ("ttft", "itl", "tpot", "e2e")
    for stat in ("p50", "p90", "p95", "p99")
)
SOURCE_NAMES = {
    "api": "cost reported by the API",
    "pricing": "scenario's token prices",
    "price_per_hour": "deployment's price per hour",
}


def capacity_section(
    analysis: Analysis, plan: Mapping[str, Any], pricing: Pricing | None
) -> dict[str, Any]:
    """report.json's ``capacity`` from a sweep's analysis."""
    capacity = analysis.capacity
    knee = analysis.knee
    return {
        **plan,
        "levels": [_level_row(result) for result in analysis.levels],
        "capacity": None if capacity is None else capacity.level,
        "capacity_stage": None if capacity is None else capacity.stage,
        "knee": None if knee is None else knee.level,
        "knee_stage": None if knee is None else knee.stage,
        "knee_reason": analysis.knee_reason,
        "costs_at_capacity": []
        if capacity is None
        else [projection.to_json() for projection in project_costs(capacity, pricing)],
    }


def _level_row(result: LevelResult) -> dict[str, Any]:
    figures = result.merged().figures()
    return {
        "level": result.level,
        "stage": result.stage,
        "requests": result.requests,
        "succeeded": result.succeeded,
        "dropped": result.dropped,
        "good": result.good,
        "attainment": result.attainment,
        "offered_per_s": result.offered_per_s,
        "achieved_per_s": result.achieved_per_s,
        "goodput_per_s": result.goodput_per_s,
        "output_tokens_per_s": result.output_tokens_per_s,
        "error_rate": figures.get("error_rate"),
        "latency_ms": {name: figures[name] for name in LEVEL_FIGURES if name in figures},
        "cost": {
            currency: decimal_text(amount)
            for currency, amount in sorted(result.merged().cost.items())
        },
        "sustained": result.sustained,
        "within_slo": result.within_slo,
        "slo_failures": list(result.slo_failures),
    }


# --- summary.md ----------------------------------------------------------------------


def capacity_markdown(section: Mapping[str, Any]) -> list[str]:
    """The section as Markdown lines: verdict, cost at capacity, the level table."""
    lines = ["### Capacity", ""]
    lines += [f"- {md(fact)}" for fact in capacity_facts(section)]
    lines.append("")
    for head, rows in _tables(section):
        lines += [
            "| " + " | ".join(head) + " |",
            "| " + " | ".join("---" if n == 0 else "---:" for n in range(len(head))) + " |",
        ]
        lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
        lines.append("")
    return lines


# --- report.html -----------------------------------------------------------------------


def capacity_html(section: Mapping[str, Any]) -> str:
    """The section as HTML (its charts come with the other charts)."""
    facts = "".join(f"<li>{h(fact)}</li>" for fact in capacity_facts(section))
    parts = ['<h2 id="capacity">Capacity</h2>', f"<ul>{facts}</ul>"]
    for head, rows in _tables(section):
        header = "".join(f"<th>{h(cell)}</th>" for cell in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{h(cell)}</td>" for cell in row) + "</tr>" for row in rows
        )
        parts.append(f'<div class="table-wrap"><table><tr>{header}</tr>{body}</table></div>')
    return "\n".join(parts)


# --- shared cells ------------------------------------------------------------------------


def _unit(section: Mapping[str, Any]) -> str:
    return "concurrency" if section["mode"] == "concurrency" else "requests/s"


def _tables(section: Mapping[str, Any]) -> list[tuple[tuple[str, ...], list[list[str]]]]:
    """(head, rows) of the cost table (when there is a cost) and the level table."""
    tables: list[tuple[tuple[str, ...], list[list[str]]]] = []
    costs = section["costs_at_capacity"]
    if costs:
        head: tuple[str, ...] = (
            "cost at capacity",
            "currency",
            "per request",
            "per hour",
            "per month",
            "per 1M output tokens",
            "output tokens/s per unit/hour",
        )
        tables.append((head, [_cost_cells(cost) for cost in costs]))
    head = (
        _unit(section),
        "req/s",
        "goodput/s",
        "attainment",
        "tokens/s",
        "TTFT p95 ms",
        "ITL p95 ms",
        "E2E p95 ms",
        "errors",
        "within SLOs",
    )
    tables.append((head, [_level_cells(row) for row in section["levels"]]))
    return tables


def capacity_facts(section: Mapping[str, Any]) -> list[str]:
    """The verdict in sentences: SLOs, hold, capacity, knee."""
    unit = _unit(section)
    slos = ", ".join(section["slos"]) or "none given"
    facts = [
        f"SLOs: {slos}; attainment target {section['target_attainment']:.0%}",
        f"each level held {section['hold_s']:g} s after {section['warmup_s']:g} s of warm-up"
        + ("; bisected" if section["search"] else ""),
    ]
    if section["capacity"] is None:
        facts.append("capacity: no level met every SLO")
    else:
        row = next(r for r in section["levels"] if r["level"] == section["capacity"])
        facts.append(
            f"capacity: {unit} {section['capacity']:g} "
            f"({row['achieved_per_s']:.3g} req/s, {row['output_tokens_per_s']:.4g} output "
            f"tokens/s, goodput {row['goodput_per_s']:.3g}/s)"
        )
        if row is section["levels"][-1]:
            facts.append("every level tried met the SLOs: the capacity may be higher")
    knee = section["knee"]
    facts.append(
        "knee: not reached" if knee is None else f"knee: {unit} {knee:g}, {section['knee_reason']}"
    )
    return facts


def _cost_cells(cost: Mapping[str, Any]) -> list[str]:
    rate = cost["tokens_per_s_per_unit_hour"]
    return [
        SOURCE_NAMES[cost["source"]],
        cost["currency"],
        cost["per_request"] or "-",
        cost["per_hour"],
        cost["per_month"],
        cost["per_1m_output_tokens"] or "-",
        "-" if rate is None else f"{rate:.4g}",
    ]


def _level_cells(row: Mapping[str, Any]) -> list[str]:
    latency = row["latency_ms"]

    def ms(name: str) -> str:
        value = latency.get(name)
        return "-" if value is None else f"{value:.0f}"

    attainment = row["attainment"]
    error_rate = row["error_rate"]
    return [
        f"{row['level']:g}",
        f"{row['achieved_per_s']:.3g}",
        f"{row['goodput_per_s']:.3g}",
        "-" if attainment is None else f"{attainment:.1%}",
        f"{row['output_tokens_per_s']:.4g}",
        ms("ttft.p95_ms"),
        ms("itl.p95_ms"),
        ms("e2e.p95_ms"),
        "-" if error_rate is None else f"{error_rate:.1%}",
        "yes" if row["within_slo"] else "no: " + "; ".join(row["slo_failures"]),
    ]
