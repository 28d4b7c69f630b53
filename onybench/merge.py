"""`onybench merge`: runs made in parallel (processes, machines) combined exactly.

What the merged run directory holds:

- `records.jsonl`: every run's records, run after run, each with its clock
  readings (`start_ns`, `end_ns`, `headers_ns`, `first_content_ns`,
  `intended_start_ns`, `token_times_ns`) rebased onto the *first* run's
  monotonic clock: a run's records move by the difference of the two runs'
  wall-minus-monotonic offsets (each run.json's `clock` pair), so the same
  wall-clock moment has the same reading in every merged record. Durations
  (`connect_ns`, `first_token_wait_ns`) are left as they are. Runs on one machine share the
  monotonic clock and move by 0 (up to the pairs' few-µs read skew, also 0
  when run.json files are copies). Request `index`es are kept as each run
  numbered them.
- `run.json`: the first run's, with the merged run's id, the earliest start,
  the summed worker count, and `merged_from` naming the runs; its `clock`
  pair is the first run's, which dates every merged record.
- `report.json` and every other output: each run's records folded into
  `GroupMetrics` (one per model, or model and stage) and the runs' folds
  combined with `GroupMetrics.merge`, the same exact merge `--workers` uses:
  counts and Decimal costs summed, HDR histograms added. Client health is
  merged with `ClientHealth.merge` from each run's report.json; if one run
  has none (a killed run), the merged health is "unknown".

Runs whose scenarios differ are merged all the same, with a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from onybench.errors import ReportError
from onybench.metrics.health import ClientHealth
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupKey, GroupMetrics, summarize
from onybench.report.json_report import build_report
from onybench.report.outputs import (
    STOP_UNKNOWN,
    last_end,
    order_groups,
    previous_health,
    read_previous_report,
    read_run_metadata,
    scenario_models,
    unknown_client_health,
    write_outputs,
    write_report_json,
)
from onybench.rundir import RecordWriter, RunDirectory, read_records

# RequestRecord fields holding clock readings: rebased when runs merge.
TIMESTAMP_FIELDS = ("start_ns", "end_ns", "headers_ns", "first_content_ns", "intended_start_ns")
TIMESTAMP_TUPLE_FIELDS = ("token_times_ns",)
# ...and those holding durations, which no clock change moves.
DURATION_FIELDS = ("connect_ns", "first_token_wait_ns")
ALL_DONE = "all requests done"


@dataclass(frozen=True, slots=True)
class SourceRun:
    path: Path
    metadata: dict[str, Any]
    report: dict[str, Any] | None
    offset_ns: int  # added to the run's clock readings to put them on the first run's clock


@dataclass(frozen=True, slots=True)
class MergeResult:
    report: dict[str, Any]
    paths: list[Path]
    warnings: tuple[str, ...]


def clock_offset_ns(clock: dict[str, Any], base: dict[str, Any]) -> int:
    """What to add to a reading of `clock`'s monotonic clock to read `base`'s at the
    same wall-clock moment (each a run.json `clock` pair)."""
    return (int(clock["wall_ns"]) - int(clock["monotonic_ns"])) - (
        int(base["wall_ns"]) - int(base["monotonic_ns"])
    )


def rebase(record: RequestRecord, offset_ns: int) -> RequestRecord:
    """`record` with every clock reading moved by `offset_ns` (durations unchanged)."""
    if offset_ns == 0:
        return record
    changes: dict[str, Any] = {}
    for name in TIMESTAMP_FIELDS:
        value = getattr(record, name)
        if value is not None:
            changes[name] = value + offset_ns
    for name in TIMESTAMP_TUPLE_FIELDS:
        changes[name] = tuple(t + offset_ns for t in getattr(record, name))
    return replace(record, **changes)


def merge_runs(sources: Sequence[Path], out: Path) -> MergeResult:
    """Merge the run directories `sources` into the new (or empty) directory `out`."""
    if not sources:
        raise ReportError("give at least one run directory to merge")
    _refuse_non_empty(out)
    resolved = [path.resolve() for path in sources]
    if len(set(resolved)) != len(resolved):
        raise ReportError("a run directory is given twice: its requests would count twice")
    if out.resolve() in resolved:
        raise ReportError(f"--out {out} is one of the runs to merge")
    runs = _read_sources(sources)
    warnings = _scenario_warnings(runs)
    metadata = _merged_metadata(runs, out.name)
    RunDirectory(out).create(metadata)

    groups: dict[GroupKey, GroupMetrics] = {}
    writer = RecordWriter(out / "records.jsonl")
    try:
        for run in runs:
            # Each run folded on its own, then merged: the --workers path exactly.
            folded = summarize(_copied(read_records(run.path), run.offset_ns, writer))
            for key, group in folded.items():
                if key not in groups:
                    groups[key] = GroupMetrics()
                groups[key].merge(group)
    finally:
        writer.close()
    groups = order_groups(groups, scenario_models(metadata))

    health, health_note = _merged_health(runs)
    if health_note:
        warnings.append(health_note)
    reasons = [
        run.report.get("stop_reason", STOP_UNKNOWN) if run.report else STOP_UNKNOWN for run in runs
    ]
    stopped_early = [reason for reason in reasons if reason != ALL_DONE]
    report = build_report(
        metadata=metadata,
        groups=groups,
        health=health or ClientHealth(),
        stop_reason=stopped_early[0] if stopped_early else ALL_DONE,
        interrupted=any(run.report is None or run.report.get("interrupted", True) for run in runs),
        ended_at=_ended_at(runs, metadata, groups),
    )
    if health is None:
        report["client_health"] = unknown_client_health(health_note)
    report["merged_from"] = metadata["merged_from"]
    paths = [write_report_json(out, report)]
    paths += write_outputs(out, report, metadata)
    return MergeResult(report, paths, tuple(warnings))


def _refuse_non_empty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReportError(
            f"--out {out} is not empty; runs are never mixed: "
            "choose a new directory or remove this one"
        )


def _read_sources(sources: Sequence[Path]) -> list[SourceRun]:
    metadata = [read_run_metadata(path) for path in sources]
    base = metadata[0]["clock"]
    return [
        SourceRun(
            path=path,
            metadata=meta,
            report=read_previous_report(path),
            offset_ns=clock_offset_ns(meta["clock"], base),
        )
        for path, meta in zip(sources, metadata, strict=True)
    ]


def _copied(
    records: Iterable[RequestRecord], offset_ns: int, writer: RecordWriter
) -> Iterator[RequestRecord]:
    for record in records:
        moved = rebase(record, offset_ns)
        writer.append(moved)
        yield moved


def _scenario_warnings(runs: Sequence[SourceRun]) -> list[str]:
    first = runs[0]
    warnings = []
    for run in runs[1:]:
        scenario, reference = run.metadata["scenario"], first.metadata["scenario"]
        if scenario != reference:
            keys = sorted(
                key
                for key in set(scenario) | set(reference)
                if scenario.get(key) != reference.get(key)
            )
            warnings.append(
                f"{run.path} was run with another scenario than {first.path} "
                f"(differs in: {', '.join(keys)}); merged anyway, the first one is reported"
            )
    return warnings


def _merged_metadata(runs: Sequence[SourceRun], run_id: str) -> dict[str, Any]:
    first = runs[0].metadata
    started = min(runs, key=lambda run: datetime.fromisoformat(run.metadata["started_at"]))
    return {
        **first,
        "run_id": run_id,
        "started_at": started.metadata["started_at"],
        "workers": sum(int(run.metadata["workers"]) for run in runs),
        "merged_from": [
            {
                "run_id": str(run.metadata["run_id"]),
                "started_at": str(run.metadata["started_at"]),
                "host": str(run.metadata["environment"].get("host", "")),
            }
            for run in runs
        ],
    }


def _merged_health(runs: Sequence[SourceRun]) -> tuple[ClientHealth | None, str]:
    merged = ClientHealth()
    for run in runs:
        health = previous_health(run.report)
        if health is None:
            return None, (
                f"client health unknown: {run.path} has no report.json with client-health "
                "samples (a killed run?), so the merged runs' health cannot be told"
            )
        merged.merge(health)
    return merged, ""


def _ended_at(
    runs: Sequence[SourceRun], metadata: dict[str, Any], groups: dict[GroupKey, GroupMetrics]
) -> datetime:
    # The records are on the first run's clock now, so its pair dates them all.
    ends = [last_end(metadata, groups)]
    for run in runs:
        if run.report is not None and "ended_at" in run.report:
            try:
                ends.append(datetime.fromisoformat(run.report["ended_at"]))
            except ValueError:
                continue
    return max(ends)
