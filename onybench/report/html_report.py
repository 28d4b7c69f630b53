"""report.html: one self-contained page that opens offline.

Everything is inline: the stylesheet, uPlot (vendored, minified, MIT, under
`assets/`), the page's own script and the chart data as JSON. A
Content-Security-Policy forbids every fetch (`default-src 'none'`), so the page
cannot reach the network even if something tried; it records any error,
blocked fetch or loaded resource in `#render-status`, with whether every chart
drew a canvas with a size (the browser test reads it).

Tables and text are rendered here, escaped with `html_text`; the chart data
goes through `json_for_script`, which leaves no `</script>` or `<!--` in the
page. Colours follow `prefers-color-scheme`, and charts are redrawn when it
changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson

from onybench import __version__
from onybench.report.capacity import capacity_html
from onybench.report.charts import ChartSection, chart_sections
from onybench.report.console import summary_cells, summary_notes
from onybench.report.escape import html_text as h
from onybench.report.escape import json_for_script
from onybench.report.groups import error_rows, group_label
from onybench.report.server_profile import profile_rows
from onybench.report.timeline import Timeline

UPLOT_JS = "uPlot.iife.min.js"
UPLOT_CSS = "uPlot.min.css"
UPLOT_LICENSE = "LICENSE.uPlot.txt"
MESSAGE_CHARS = 500
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
)

# Installed first in <head>: catches errors (the library's own included),
# console errors and blocked fetches for the page's self-check.
_GUARD_JS = """window.__onybench = { errors: [], violations: [] };
window.addEventListener("error", function (e) {
  window.__onybench.errors.push(String(e.message || (e.target && e.target.tagName) || e.type));
}, true);
window.addEventListener("unhandledrejection", function (e) {
  window.__onybench.errors.push("unhandled rejection: " + String(e.reason));
});
document.addEventListener("securitypolicyviolation", function (e) {
  window.__onybench.violations.push(e.violatedDirective + " " + e.blockedURI);
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__onybench.errors.push(Array.prototype.map.call(arguments, String).join(" "));
    return original.apply(console, arguments);
  };
})();"""


@cache
def _asset(name: str) -> str:
    return files("onybench.report").joinpath("assets", name).read_text(encoding="utf-8")


def _inline_safe(text: str, element: str) -> str:
    # Our own assets never contain their element's end tag; refuse rather than break the page.
    if f"</{element}" in text.lower() or "<!--" in text:
        raise ValueError(f"an inline {element} must not contain </{element} or <!--")
    return text


def render_html(report: Mapping[str, Any], timeline: Timeline | None = None) -> str:
    """The page; `timeline` (from records.jsonl) adds the time series and error messages."""
    sections = chart_sections(report, timeline)
    data = {"charts": [chart.spec for section in sections for chart in section.charts]}
    scenario = report["scenario"]
    title = f"onybench: {scenario.get('name', '')} · {report['run_id']}"
    body = [
        f"<h1>{h(title)}</h1>",
        _facts(report),
        _health(report["client_health"]),
        *([capacity_html(report["capacity"])] if report.get("capacity") else []),
        "<h2>Summary</h2>",
        _summary(report["groups"]),
        _errors(report["groups"], timeline),
        _cost(report["groups"]),
        _server_profile(report.get("server_profile")),
        *(_chart_section(section) for section in sections),
        _scenario(report),
        f"<footer>onybench {h(__version__)} · charts drawn with uPlot (MIT) · "
        f"report schema version {h(str(report['schema_version']))}</footer>",
        '<pre id="render-status" data-status="pending" hidden></pre>',
    ]
    license_text = _inline_safe(_asset(UPLOT_LICENSE), "script").replace("*/", "* /")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="color-scheme" content="light dark">',
            f"<title>{h(title)}</title>",
            f"<script>{_GUARD_JS}</script>",
            f"<style>{_inline_safe(_asset(UPLOT_CSS), 'style')}</style>",
            f"<style>{_inline_safe(_asset('report.css'), 'style')}</style>",
            "</head>",
            "<body>",
            *body,
            f'<script type="application/json" id="onybench-data">{json_for_script(data)}</script>',
            f"<script>/*\n{license_text}*/\n{_inline_safe(_asset(UPLOT_JS), 'script')}</script>",
            f"<script>{_inline_safe(_asset('report.js'), 'script')}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write_html(report: Mapping[str, Any], path: Path, timeline: Timeline | None = None) -> Path:
    path.write_text(render_html(report, timeline), encoding="utf-8")
    return path


def _facts(report: Mapping[str, Any]) -> str:
    scenario = report["scenario"]
    environment = report["environment"]
    workers = report["workers"]
    facts = [
        f"target {scenario.get('target', {}).get('base_url', '?')}",
        f"{report['started_at']} → {report['ended_at']}",
        f"{workers} worker{'s' if workers != 1 else ''}",
        f"stopped: {report['stop_reason']}",
        f"onybench {environment['onybench']}, Python {environment['python']}",
        f"host {environment['host']}",
    ]
    if report["interrupted"]:
        facts.append("interrupted")
    merged = report.get("merged_from")
    if merged:
        facts.append("merged from " + ", ".join(str(run["run_id"]) for run in merged))
    return '<p class="facts">' + "".join(f"<span>{h(fact)}</span>" for fact in facts) + "</p>"


def _health(health: Mapping[str, Any]) -> str:
    if health["client_limited"] is None:
        return (
            '<div class="alert unknown"><strong>Client health unknown:</strong> '
            + h("; ".join(health["reasons"]))
            + "</div>"
        )
    notes = "".join(
        f'<div class="alert unknown"><strong>Note:</strong> {h(note)}</div>'
        for note in health.get("notes", ())
    )
    if not health["client_limited"]:
        return notes
    reasons = "".join(f"<li>{h(reason)}</li>" for reason in health["reasons"])
    return notes + (
        '<div class="alert warning"><strong>onybench itself was the bottleneck</strong>, '
        f"so its timings are distorted:<ul>{reasons}</ul>"
        "Spread the load over more processes (<code>--workers N</code>) or lower "
        "<code>--concurrency</code>.</div>"
    )


def _server_profile(profile: Mapping[str, Any] | None) -> str:
    rows = profile_rows(profile) if profile is not None else []
    if profile is None or not rows:
        return ""
    table = "".join(f"<tr><th>{h(label)}</th><td>{h(value)}</td></tr>" for label, value in rows)
    warnings = "".join(f"<li>{h(warning)}</li>" for warning in profile["warnings"])
    return f"<h2>Server profile</h2><table>{table}</table>" + (
        f'<div class="alert unknown"><ul>{warnings}</ul></div>' if warnings else ""
    )


def _summary(groups: Sequence[Mapping[str, Any]]) -> str:
    if not groups:
        return '<p class="note">No request was recorded.</p>'
    figures = [group["figures"] for group in groups]
    columns = [group_label(group) for group in groups]
    head = "<tr><th></th>" + "".join(f'<th class="num">{h(c)}</th>' for c in columns) + "</tr>"
    rows = "".join(
        f"<tr><th>{h(label)}</th>"
        + "".join(f'<td class="num">{h(c)}</td>' for c in cells)
        + "</tr>"
        for label, cells in summary_cells(figures)
    )
    notes = "".join(f"<li>{h(note)}</li>" for note in summary_notes(figures, columns))
    return f'<div class="table-wrap"><table id="summary">{head}{rows}</table></div>' + (
        f'<ul class="note">{notes}</ul>' if notes else ""
    )


def _errors(groups: Sequence[Mapping[str, Any]], timeline: Timeline | None) -> str:
    rows = [
        f"<tr><td>{h(group_label(row.group))}</td><td>{h(row.error_class)}</td>"
        f'<td class="num">{row.count:,}</td><td>{h(row.statuses)}</td>'
        f'<td class="msg">{"<br>".join(h(m, MESSAGE_CHARS) for m in row.messages)}</td></tr>'
        for row in error_rows(groups, timeline)
    ]
    if not rows:
        return '<h2>Errors</h2><p class="note">None: every request completed.</p>'
    return (
        "<h2>Errors</h2>"
        '<p class="note">Failed requests by class; their timings are left out of every '
        "latency figure. Messages are the first distinct ones, as the target sent them.</p>"
        '<div class="table-wrap"><table id="errors"><tr><th>group</th><th>error</th>'
        '<th class="num">count</th><th>HTTP status</th><th>first messages</th></tr>'
        + "".join(rows)
        + "</table></div>"
    )


def _cost(groups: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for group in groups:
        figures = group["figures"]
        for currency, amount in group["metrics"]["cost"].items():
            rate = figures.get(f"cost.per_1m_output_tokens_{currency.lower()}")
            rows.append(
                f"<tr><td>{h(group_label(group))}</td><td>{h(currency)}</td>"
                f'<td class="num">{h(amount)}</td>'
                f'<td class="num">{"-" if rate is None else f"{rate:,.4f}"}</td></tr>'
            )
    if not rows:
        return '<h2>Cost</h2><p class="note">The API reported no cost.</p>'
    return (
        "<h2>Cost</h2>"
        '<p class="note">As the API reported it, summed exactly; currencies are never added '
        "together.</p>"
        '<div class="table-wrap"><table id="cost"><tr><th>group</th><th>currency</th>'
        '<th class="num">total</th><th class="num">per 1M output tokens</th></tr>'
        + "".join(rows)
        + "</table></div>"
    )


def _chart_section(section: ChartSection) -> str:
    figures = "".join(
        f"<figure><figcaption>{h(chart.title)}</figcaption>"
        f'<div class="chart" id="{h(chart.spec["id"])}"></div></figure>'
        for chart in section.charts
    )
    return (
        f'<h2>{h(section.title)}</h2><p class="note">{h(section.note)}</p>'
        f'<div class="charts">{figures}</div>'
    )


def _scenario(report: Mapping[str, Any]) -> str:
    text = orjson.dumps(report["scenario"], option=orjson.OPT_INDENT_2).decode("utf-8")
    return (
        "<h2>Scenario</h2><details><summary>The scenario as run (header values withheld)"
        f'</summary><pre class="scenario">{h(text)}</pre></details>'
    )
