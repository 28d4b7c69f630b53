"""What report.html plots: chart specifications as plain data (pure).

Each chart is a dict the page's script hands to uPlot: one shared `x` array
and, per series, a `values` array aligned with it (None where a series has no
point). Kinds:

- `percentile`: latency against percentile, x = 1 / (1 − p), drawn on a log
  axis labelled in percent (HdrHistogram's percentile plot), from the encoded
  histograms by percentile iteration;
- `cdf`: fraction of requests at or below a latency, from the histograms'
  buckets;
- `time`: seconds since the run's first request, from the records'
  timeline;
- `stage`: one point per load stage, in run order (`xTicks` names them);
- `load`: one point per sweep level, against a number (the load, or the
  throughput it achieved), from report.json's `capacity` section.

Groups with a `stage` get one series each in the distribution charts; the
stage charts plot each model across the stages. Warm-up groups are left out
of every chart (they stay in the tables).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onybench.metrics.summary import HISTOGRAM_UNITS, WARMUP_STAGE
from onybench.report.distribution import read_distribution
from onybench.report.groups import group_label, load_stages, models_in_order
from onybench.report.timeline import INTERVAL_METRICS, Timeline, nearest_rank

Spec = dict[str, Any]

METRIC_TITLES = {
    "ttft": "Time to first token",
    "itl": "Inter-token latency",
    "tpot": "Time per output token",
    "e2e": "End-to-end latency",
}
DISTRIBUTION_METRICS = ("ttft", "itl", "tpot", "e2e")


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    spec: Spec


@dataclass(frozen=True, slots=True)
class ChartSection:
    title: str
    note: str
    charts: tuple[Chart, ...]


def chart_sections(report: Mapping[str, Any], timeline: Timeline | None) -> list[ChartSection]:
    groups = [g for g in report["groups"] if g.get("stage") != WARMUP_STAGE]
    capacity = report.get("capacity")
    sections = [
        _capacity(capacity) if capacity else None,
        _distributions(groups),
        _over_time(timeline) if timeline is not None else None,
        _against_load(groups),
    ]
    charts = [section for section in sections if section is not None and section.charts]
    # Ids in document order, so the page and its tests can name each chart.
    number = 0
    for section in charts:
        for chart in section.charts:
            chart.spec["id"] = f"chart-{number}"
            number += 1
    return charts


# --- distributions ------------------------------------------------------------


def _distributions(groups: Sequence[Mapping[str, Any]]) -> ChartSection:
    charts = []
    for metric in DISTRIBUTION_METRICS:
        scale = HISTOGRAM_UNITS[metric][1]
        curves = []
        for index, group in enumerate(groups):
            encoded = group["metrics"]["histograms"][metric]["encoded"]
            curve = read_distribution(encoded, scale)
            if curve is not None:
                curves.append((index, group_label(group), curve))
        if not curves:
            continue
        title = METRIC_TITLES[metric]
        percentile_series = [
            (
                label,
                index,
                # 100 % lies at infinity on this axis: the max is in the table.
                {_inverse_tail(p): round(v, 3) for p, v in curve.percentiles if p < 100},
            )
            for index, label, curve in curves
        ]
        cdf_series = [
            (label, index, {round(v, 3): round(f, 5) for v, f in curve.cdf})
            for index, label, curve in curves
        ]
        charts.append(
            Chart(
                f"{title}: percentiles",
                _aligned("percentile", percentile_series, "percentile", "ms"),
            )
        )
        charts.append(Chart(f"{title}: CDF", _aligned("cdf", cdf_series, "ms", "fraction ≤ x")))
    return ChartSection(
        "Latency distributions",
        "From the HDR histograms in report.json (every successful request), one line per "
        "group; the percentile axis is logarithmic in 1 / (1 − p).",
        tuple(charts),
    )


def _inverse_tail(percentile: float) -> float:
    return round(1 / (1 - percentile / 100), 4)


def _aligned(
    kind: str,
    series: Sequence[tuple[str, int, Mapping[float, float]]],
    x_label: str,
    y_label: str,
) -> Spec:
    """One x array (the union of every series' x) and values aligned to it."""
    xs = sorted({x for _, _, points in series for x in points})
    return {
        "kind": kind,
        "xLabel": x_label,
        "yLabel": y_label,
        "x": xs,
        "series": [
            {"label": label, "color": color, "dash": False, "values": [points.get(x) for x in xs]}
            for label, color, points in series
        ],
    }


# --- over time ----------------------------------------------------------------


def _over_time(timeline: Timeline) -> ChartSection:
    interval_s = timeline.interval_s
    xs = [round(timeline.start_s(i) + interval_s / 2, 3) for i in range(timeline.intervals)]

    def spec(y_label: str, series: list[dict[str, Any]]) -> Spec:
        return {"kind": "time", "xLabel": "s", "yLabel": y_label, "x": xs, "series": series}

    def line(label: str, color: int, values: Sequence[float | None], dash: bool = False) -> Any:
        return {"label": label, "color": color, "dash": dash, "values": list(values)}

    models = timeline.models
    charts = [
        Chart(
            "Output throughput",
            spec(
                "tokens/s",
                [
                    line(m.model, i, [round(t / interval_s, 1) for t in m.output_tokens])
                    for i, m in enumerate(models)
                ],
            ),
        ),
        Chart(
            "Requests completed",
            spec(
                "requests/s",
                [
                    line(m.model, i, [round(n / interval_s, 3) for n in m.succeeded])
                    for i, m in enumerate(models)
                ]
                + [
                    line(f"{m.model} failed", i, [round(n / interval_s, 3) for n in m.failed], True)
                    for i, m in enumerate(models)
                    if any(m.failed)
                ],
            ),
        ),
        Chart(
            "Requests in flight",
            spec(
                "requests (mean)",
                [
                    line(m.model, i, [round(v, 2) for v in m.in_flight])
                    for i, m in enumerate(models)
                ],
            ),
        ),
    ]
    for metric in INTERVAL_METRICS:
        series = []
        for i, m in enumerate(models):
            ranks = [nearest_rank(values, (50, 99)) for values in m.latency_us[metric]]
            if not any(ranks):
                continue
            p50 = [r[0] / 1000 if r else None for r in ranks]
            p99 = [r[1] / 1000 if r else None for r in ranks]
            series += [line(f"{m.model} p50", i, p50), line(f"{m.model} p99", i, p99, True)]
        if series:
            charts.append(Chart(f"{METRIC_TITLES[metric]} over time", spec("ms", series)))
    if timeline.errors:
        charts.append(
            Chart(
                "Errors",
                spec(
                    "failed requests/s",
                    [
                        line(error_class, i, [round(n / interval_s, 3) for n in counts])
                        for i, (error_class, counts) in enumerate(sorted(timeline.errors.items()))
                    ],
                ),
            )
        )
    return ChartSection(
        "Over the run",
        f"From records.jsonl in {interval_s:g} s intervals: requests by the time they ended, "
        "tokens by the time they arrived, latency percentiles of the requests that ended in "
        "the interval (p99 dashed).",
        tuple(charts),
    )


# --- against load ---------------------------------------------------------------


def _against_load(groups: Sequence[Mapping[str, Any]]) -> ChartSection | None:
    stages = load_stages(groups)
    if not stages:
        return None
    models = models_in_order(groups)
    by_key = {(g["model"], g.get("stage")): g["figures"] for g in groups}
    xs = list(range(len(stages)))

    def series(figure: str, suffix: str = "", dash: bool = False) -> list[dict[str, Any]]:
        return [
            {
                "label": model + suffix,
                "color": color,
                "dash": dash,
                "values": [by_key.get((model, stage), {}).get(figure) for stage in stages],
            }
            for color, model in enumerate(models)
        ]

    def spec(y_label: str, lines: list[dict[str, Any]]) -> Spec:
        return {
            "kind": "stage",
            "xLabel": "stage",
            "yLabel": y_label,
            "x": xs,
            "xTicks": stages,
            "series": lines,
        }

    charts = [
        Chart(
            "Output throughput by stage", spec("tokens/s", series("output_throughput.tokens_per_s"))
        ),
        Chart(
            "Requests completed by stage", spec("requests/s", series("request_throughput.per_s"))
        ),
    ]
    for metric in ("ttft", "itl", "e2e"):
        lines = series(f"{metric}.p50_ms", " p50") + series(f"{metric}.p99_ms", " p99", True)
        charts.append(Chart(f"{METRIC_TITLES[metric]} by stage", spec("ms", lines)))
    return ChartSection(
        "Against load",
        "Each load stage's figures, in run order (p99 dashed).",
        tuple(charts),
    )


# --- capacity (sweeps) ------------------------------------------------------------


def _capacity(capacity: Mapping[str, Any]) -> ChartSection:
    levels = capacity["levels"]
    load = "concurrency" if capacity["mode"] == "concurrency" else "offered requests/s"

    def points(x: str, y: Callable[[Mapping[str, Any]], float | None]) -> dict[float, float]:
        return {
            round(row[x], 3): round(value, 3) for row in levels if (value := y(row)) is not None
        }

    def latency(name: str) -> Callable[[Mapping[str, Any]], float | None]:
        return lambda row: row["latency_ms"].get(name)

    latency_lines = [
        (
            f"{METRIC_TITLES[metric]} p{p}",
            color,
            points("output_tokens_per_s", latency(f"{metric}.p{p}_ms")),
        )
        for color, metric in enumerate(("ttft", "itl", "e2e"))
        for p in (50, 95)
    ]
    load_lines = [
        ("requests/s", 0, points("level", lambda row: row["achieved_per_s"])),
        ("goodput/s", 1, points("level", lambda row: row["goodput_per_s"])),
    ]
    if capacity["mode"] == "rate":
        load_lines.append(("offered/s", 2, points("level", lambda row: row["offered_per_s"])))
    attainment = [
        ("SLO attainment", 0, points("level", lambda row: row["attainment"])),
        ("target", 1, {round(row["level"], 3): capacity["target_attainment"] for row in levels}),
    ]
    charts = (
        Chart(
            "Latency against throughput", _aligned("load", latency_lines, "output tokens/s", "ms")
        ),
        Chart("Throughput and goodput against load", _aligned("load", load_lines, load, "per s")),
        Chart("SLO attainment against load", _aligned("load", attainment, load, "fraction")),
    )
    return ChartSection(
        "Capacity",
        "One point per sweep level, from report.json's capacity section; goodput counts the "
        "requests that met every SLO.",
        charts,
    )
