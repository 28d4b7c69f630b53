"""The end-of-run summary table for a terminal: one column per model, side by side."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Figures = Mapping[str, Any]
Row = tuple[str, Callable[[Figures], str]]


def render_summary(report: Mapping[str, Any]) -> str:
    """A plain-text table of the report's key figures, plus its warnings."""
    groups = report["groups"]
    columns = [
        group["model"] + (f" [{group['stage']}]" if group.get("stage") else "") for group in groups
    ]
    figures = [group["figures"] for group in groups]
    rows: list[tuple[str, list[str]]] = []
    for label, cell in _rows(figures):
        cells = [cell(f) for f in figures]
        if any(c for c in cells):
            rows.append((label, [c or "-" for c in cells]))
    label_width = max(len(label) for label, _ in rows)
    widths = [
        max(len(columns[i]), *(len(cells[i]) for _, cells in rows)) for i in range(len(columns))
    ]
    lines = [
        " " * label_width
        + "  "
        + "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))
    ]
    for label, cells in rows:
        lines.append(
            label.ljust(label_width)
            + "  "
            + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        )
    lines.append("")
    lines.append(f"stopped: {report['stop_reason']}")
    lines.extend(f"note: {note}" for note in _notes(figures, columns))
    if report["scenario"]["target"].get("http2"):
        lines.append(
            "note: HTTP/2 went through httpx's own transport, not onybench's lean HTTP/1.1 "
            "path: more client CPU per chunk, so watch the client-health verdict"
        )
    lines.extend(_health_warning(report["client_health"]))
    profile = report.get("server_profile")
    if profile is not None:
        lines.extend(f"server: {warning}" for warning in profile["warnings"])
    return "\n".join(lines)


def _health_warning(health: Mapping[str, Any]) -> list[str]:
    notes = [f"note: {note}" for note in health.get("notes", ())]
    if not health["client_limited"]:
        return notes
    return [
        *notes,
        "",
        "WARNING: onybench itself was the bottleneck, so its timings are distorted:",
        *(f"  - {reason}" for reason in health["reasons"]),
        "  Spread the load over more processes (--workers N) or lower --concurrency.",
    ]


def _num(key: str, fmt: str = "{:,.1f}") -> Callable[[Figures], str]:
    def cell(f: Figures) -> str:
        value = f.get(key)
        return fmt.format(value) if value is not None else ""

    return cell


def _latency(metric: str) -> Row:
    def cell(f: Figures) -> str:
        p50, p90, p99 = (f.get(f"{metric}.{s}_ms") for s in ("p50", "p90", "p99"))
        if p50 is None:
            return ""
        return f"{p50:,.1f} / {p90:,.1f} / {p99:,.1f}"

    return (f"{metric} p50/p90/p99 ms", cell)


def _requests(f: Figures) -> str:
    return f"{f.get('requests.succeeded', 0):,} ok / {f.get('requests.total', 0):,}"


def _errors(f: Figures) -> str:
    errors = {k.removeprefix("errors."): v for k, v in f.items() if k.startswith("errors.") and v}
    return ", ".join(f"{name} {count}" for name, count in sorted(errors.items()))


def _tokens(f: Figures) -> str:
    total = f.get("tokens.output")
    if total is None:
        return ""
    estimated = f.get("tokens.estimated_requests", 0)
    return f"{total:,}" + (" (estimated)" if estimated else "")


def _costs(prefix: str, fmt: str) -> Callable[[Figures], str]:
    def cell(f: Figures) -> str:
        return ", ".join(
            fmt.format(value) + " " + key.removeprefix(prefix).upper()
            for key, value in sorted(f.items())
            if key.startswith(prefix)
        )

    return cell


def _rows(figures: list[Figures]) -> list[Row]:
    rows: list[Row] = [
        ("requests", _requests),
        ("dropped (max in flight)", _num("requests.dropped", "{:,}")),
        ("errors", _errors),
        ("error rate", _num("error_rate", "{:.2%}")),
        ("duration s", _num("duration_s", "{:,.2f}")),
        ("requests/s", _num("request_throughput.per_s", "{:,.2f}")),
        ("output tokens/s", _num("output_throughput.tokens_per_s")),
        ("output tokens", _tokens),
        _latency("ttft"),
    ]
    if any(f.get("ttft_content.p50_ms") != f.get("ttft.p50_ms") for f in figures):
        rows.append(_latency("ttft_content"))
    rows += [
        _latency("itl"),
        _latency("tpot"),
        _latency("e2e"),
        ("connect p50 ms", _num("connect.p50_ms")),
        _latency("schedule_lag"),
        _latency("ttft_from_intended"),
        ("cost", _costs("cost.total_", "{:,.6f}")),
        ("cost per 1M output tokens", _costs("cost.per_1m_output_tokens_", "{:,.4f}")),
    ]
    return rows


def _notes(figures: list[Figures], columns: list[str]) -> list[str]:
    notes = []
    for model, f in zip(columns, figures, strict=True):
        if f.get("tokens.estimated_requests"):
            notes.append(
                f"{model}: the server sent no usage for {f['tokens.estimated_requests']} requests; "
                "their output tokens are counted as token-bearing chunks"
            )
        overflow = [k for k, v in f.items() if k.endswith(".overflow") and v]
        if overflow:
            notes.append(
                f"{model}: values beyond the histogram range (about 71 min): {', '.join(overflow)}"
            )
    return notes


def summary_cells(figures: list[Figures]) -> list[tuple[str, list[str]]]:
    """The summary table's rows, for other formats: (label, one cell per group).

    The rows and cells of `render_summary`; a row empty for every group is left
    out, an empty cell is "-".
    """
    rows = []
    for label, cell in _rows(figures):
        cells = [cell(f) for f in figures]
        if any(cells):
            rows.append((label, [c or "-" for c in cells]))
    return rows


def summary_notes(figures: list[Figures], columns: list[str]) -> list[str]:
    """The notes `render_summary` prints under the table (estimated tokens, overflow)."""
    return _notes(figures, columns)
