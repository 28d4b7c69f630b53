"""Every output of a run directory, and rebuilding them from what a run leaves.

A run writes run.json at its start and records.jsonl as requests finish;
report.json and the files derived from it come at the end:

    report.json   the figures, histograms, scenario, environment (schema: report.schema.json)
    summary.md    GitHub-flavoured Markdown (markdown.py)
    summary.csv   one row per group (csv_report.py)
    report.html   self-contained charts and tables (html_report.py)
    <metric>.hlog HdrHistogram interval logs for ttft, itl, tpot, e2e (hlog.py)

`rebuild_report` makes report.json again from run.json and records.jsonl
alone, so a run killed before its end (SIGKILL leaves no report.json) or made
by an older onybench still gets every output. What records cannot tell is kept
from an existing report.json: client health (event-loop samples are not
records; without them it is reported "unknown"), the stop reason and whether
the run was interrupted, and a sweep's capacity section.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onybench.errors import ReportError
from onybench.metrics.health import ClientHealth
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupKey, GroupMetrics, summarize
from onybench.report.csv_report import write_csv
from onybench.report.hlog import write_interval_logs
from onybench.report.html_report import write_html
from onybench.report.json_report import build_report
from onybench.report.markdown import write_markdown
from onybench.report.timeline import Timeline, digest_records
from onybench.rundir import REPORT_FILE, RUN_FILE, read_json_file, read_records, write_json

MARKDOWN_FILE = "summary.md"
CSV_FILE = "summary.csv"
HTML_FILE = "report.html"

HEALTH_UNKNOWN = (
    "not measured: this report was rebuilt from records.jsonl, which hold no "
    "event-loop samples, and no earlier report.json had them"
)
STOP_UNKNOWN = "unknown: the run ended without writing report.json (killed?)"


def unknown_client_health(reason: str = HEALTH_UNKNOWN) -> dict[str, Any]:
    """report.json's client_health when nothing measured it (`client_limited` null)."""
    return {"client_limited": None, "reasons": [reason], "figures": {}, "metrics": None}


def read_run_metadata(run_dir: Path) -> dict[str, Any]:
    """run.json, checked for what reports need."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a run directory")
    metadata = read_json_file(run_dir / RUN_FILE)
    missing = [
        key
        for key in ("run_id", "started_at", "workers", "clock", "environment", "scenario")
        if key not in metadata
    ]
    if missing:
        raise ReportError(f"{run_dir / RUN_FILE} lacks {', '.join(missing)}")
    return metadata


def run_window(report: Mapping[str, Any]) -> tuple[int, int] | None:
    """(first start, last end) over every group, on the records' clock; None without records."""
    starts = [g["metrics"]["first_start_ns"] for g in report["groups"]]
    ends = [g["metrics"]["last_end_ns"] for g in report["groups"]]
    starts = [s for s in starts if s is not None]
    ends = [e for e in ends if e is not None]
    if not starts or not ends:
        return None
    return min(starts), max(ends)


def wall_ns(metadata: Mapping[str, Any], monotonic_ns: int) -> int:
    """A records' clock reading (monotonic ns) on the wall clock, by run.json's clock pair."""
    clock = metadata["clock"]
    return int(clock["wall_ns"]) + monotonic_ns - int(clock["monotonic_ns"])


def read_timeline(run_dir: Path, report: Mapping[str, Any]) -> Timeline | None:
    """The run's records over time (see timeline.py); None when there is no record."""
    window = run_window(report)
    if window is None:
        return None
    models = [g["model"] for g in report["groups"]]
    return digest_records(
        read_records(run_dir), origin_ns=window[0], end_ns=window[1], models=models
    )


def write_outputs(
    run_dir: Path, report: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write every output but report.json from `report` and records.jsonl."""
    if metadata is None:
        metadata = read_run_metadata(run_dir)
    timeline = read_timeline(run_dir, report)
    try:
        paths = [
            write_markdown(report, run_dir / MARKDOWN_FILE, timeline),
            write_csv(report, run_dir / CSV_FILE),
            write_html(report, run_dir / HTML_FILE, timeline),
        ]
        if timeline is not None:
            origin_wall_ns = wall_ns(metadata, timeline.origin_ns)
            paths += write_interval_logs(timeline, run_dir, origin_wall_ns=origin_wall_ns)
    except OSError as exc:
        raise ReportError(f"cannot write to {run_dir}: {exc.strerror or exc}") from None
    return paths


def rebuild_report(run_dir: Path, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """report.json's document from run.json and records.jsonl (see the module docstring)."""
    if metadata is None:
        metadata = read_run_metadata(run_dir)
    previous = read_previous_report(run_dir)
    groups = fold_groups(read_records(run_dir), scenario_models(metadata))
    health = previous_health(previous)
    if previous is not None:
        stop_reason = str(previous.get("stop_reason", STOP_UNKNOWN))
        interrupted = bool(previous.get("interrupted", True))
        ended_at = _datetime(previous.get("ended_at")) or last_end(metadata, groups)
    else:
        stop_reason, interrupted = STOP_UNKNOWN, True
        ended_at = last_end(metadata, groups)
    report = build_report(
        metadata=metadata,
        groups=groups,
        health=health or ClientHealth(),
        stop_reason=stop_reason,
        interrupted=interrupted,
        ended_at=ended_at,
    )
    if health is None:
        report["client_health"] = unknown_client_health()
    if "merged_from" in metadata:
        report["merged_from"] = metadata["merged_from"]
    if previous is not None and "capacity" in previous:
        # A sweep's verdicts rest on each level's hold window, which records do not keep.
        report["capacity"] = previous["capacity"]
    return report


def render_run_dir(run_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    """Rebuild report.json and write it with every other output; returns it and the paths."""
    metadata = read_run_metadata(run_dir)
    report = rebuild_report(run_dir, metadata)
    paths = [write_report_json(run_dir, report)]
    paths += write_outputs(run_dir, report, metadata)
    return report, paths


def write_report_json(run_dir: Path, report: Mapping[str, Any]) -> Path:
    try:
        return write_json(run_dir / REPORT_FILE, dict(report))
    except OSError as exc:
        raise ReportError(f"cannot write to {run_dir}: {exc.strerror or exc}") from None


def scenario_models(metadata: Mapping[str, Any]) -> list[str]:
    scenario = metadata.get("scenario") or {}
    request = scenario.get("request") or {}
    return [str(model) for model in request.get("models") or ()]


def fold_groups(
    records: Iterable[RequestRecord], models: list[str]
) -> dict[GroupKey, GroupMetrics]:
    """`summarize` the records, then `order_groups`."""
    return order_groups(summarize(records), models)


def order_groups(
    groups: Mapping[GroupKey, GroupMetrics], models: list[str]
) -> dict[GroupKey, GroupMetrics]:
    """Groups ordered by the scenario's models (stages as they come), with an empty
    group for a model that has no record, as a run reports it."""
    ordered = dict(groups)
    seen = {key.model for key in ordered}
    for model in models:
        if model not in seen:
            ordered[GroupKey(model)] = GroupMetrics()
    rank = {model: number for number, model in enumerate(models)}
    return dict(sorted(ordered.items(), key=lambda item: rank.get(item[0].model, len(rank))))


def read_previous_report(run_dir: Path) -> dict[str, Any] | None:
    """The run's report.json if it has a readable one."""
    path = run_dir / REPORT_FILE
    if not path.exists():
        return None
    try:
        return read_json_file(path)
    except ReportError:
        return None  # a half-written or foreign file: rebuilt from the records instead


def previous_health(previous: Mapping[str, Any] | None) -> ClientHealth | None:
    """The client health an earlier report.json measured; None when it has none."""
    if previous is None:
        return None
    try:
        metrics = previous["client_health"]["metrics"]
        return ClientHealth.from_json(metrics) if metrics is not None else None
    except (KeyError, TypeError, ValueError):
        return None  # an older or damaged report: health unknown


def _datetime(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text is not None else None
    except ValueError:
        return None


def last_end(metadata: Mapping[str, Any], groups: Mapping[GroupKey, GroupMetrics]) -> datetime:
    """The last request's end on the wall clock (the run's start when there is none)."""
    ends = [g.last_end_ns for g in groups.values() if g.last_end_ns is not None]
    if not ends:
        return datetime.fromisoformat(str(metadata["started_at"]))
    return datetime.fromtimestamp(wall_ns(metadata, max(ends)) / 1e9, UTC)
