"""`onybench merge`: runs made in parallel combine exactly into one."""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from onybench.cli import app
from onybench.merge import (
    DURATION_FIELDS,
    TIMESTAMP_FIELDS,
    TIMESTAMP_TUPLE_FIELDS,
    clock_offset_ns,
    rebase,
)
from onybench.metrics.health import ClientHealth
from onybench.metrics.record import RequestRecord
from tests.report.schema_check import assert_valid_report

runner = CliRunner()
# Another machine's monotonic clock: it reads this much more at the same wall time.
OTHER_CLOCK_NS = 987_654_321_123


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def groups_of(report: dict[str, Any]) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(g["model"], g.get("stage")): g for g in report["groups"]}


def split_run(run: Path, parts: Path, clock_shift_ns: int = 0) -> tuple[Path, Path]:
    """The run's records dealt into two run directories, as two processes would have
    made them; the second one's monotonic clock reads `clock_shift_ns` more."""
    lines = (run / "records.jsonl").read_bytes().splitlines()
    first, second = parts / "first", parts / "second"
    for part, share, shift in ((first, lines[0::2], 0), (second, lines[1::2], clock_shift_ns)):
        part.mkdir(parents=True)
        metadata = read_json(run / "run.json")
        metadata["run_id"] = part.name
        metadata["clock"]["monotonic_ns"] += shift
        (part / "run.json").write_bytes(orjson.dumps(metadata))
        records = [
            rebase(RequestRecord.from_json_dict(orjson.loads(line)), shift) for line in share
        ]
        (part / "records.jsonl").write_bytes(
            b"".join(orjson.dumps(r.to_json_dict()) + b"\n" for r in records)
        )
    return first, second


def merge(*args: Path | str) -> Any:
    return runner.invoke(app, ["merge", *map(str, args)])


def test_one_run_split_in_two_and_merged_gives_exactly_the_original_figures(
    mixed_run: Path, tmp_path: Path
) -> None:
    first, second = split_run(mixed_run, tmp_path)
    out = tmp_path / "merged"

    result = merge(first, second, "--out", out)

    assert result.exit_code == 0, result.output
    original = read_json(mixed_run / "report.json")
    merged = read_json(out / "report.json")
    assert_valid_report(merged)
    # Counts, exact costs, histograms, the throughput window: all the same.
    assert groups_of(merged) == groups_of(original)
    assert merged["overall"] == original["overall"]
    assert merged["overall"]["figures"]["requests.failed"] > 0
    assert merged["workers"] == 2
    assert [run["run_id"] for run in merged["merged_from"]] == ["first", "second"]
    # The split runs had no report.json: their client health is unknown, and said so.
    assert merged["client_health"]["client_limited"] is None
    assert "client health unknown" in result.stderr
    records = [orjson.loads(line) for line in (out / "records.jsonl").read_bytes().splitlines()]
    expected = [
        orjson.loads(line) for line in (mixed_run / "records.jsonl").read_bytes().splitlines()
    ]
    key = lambda r: (r["model"], r["index"])  # noqa: E731
    assert sorted(records, key=key) == sorted(expected, key=key)
    assert (out / "report.html").exists()
    assert (out / "ttft.hlog").exists()


def test_runs_on_different_clocks_are_put_on_the_first_runs_clock(
    mixed_run: Path, tmp_path: Path
) -> None:
    first, second = split_run(mixed_run, tmp_path, clock_shift_ns=OTHER_CLOCK_NS)
    assert read_json(second / "run.json")["clock"] != (read_json(first / "run.json")["clock"])
    out = tmp_path / "merged"

    result = merge(first, second, "--out", out)

    assert result.exit_code == 0, result.output
    original = read_json(mixed_run / "report.json")
    merged = read_json(out / "report.json")
    assert groups_of(merged) == groups_of(original)
    records = {
        (r["model"], r["index"]): r
        for r in map(orjson.loads, (out / "records.jsonl").read_bytes().splitlines())
    }
    expected = {
        (r["model"], r["index"]): r
        for r in map(orjson.loads, (mixed_run / "records.jsonl").read_bytes().splitlines())
    }
    assert records == expected
    assert read_json(out / "run.json")["clock"] == read_json(first / "run.json")["clock"]


def test_finished_runs_merge_their_client_health(mixed_run: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(mixed_run, one)
    shutil.copytree(mixed_run, two)
    out = tmp_path / "merged"

    result = merge(one, two, "--out", out)

    assert result.exit_code == 0, result.output
    original = read_json(mixed_run / "report.json")
    merged = read_json(out / "report.json")
    assert_valid_report(merged)
    health = ClientHealth.from_json(original["client_health"]["metrics"])
    health.merge(ClientHealth.from_json(original["client_health"]["metrics"]))
    assert merged["client_health"]["metrics"] == health.to_json()
    assert merged["client_health"]["client_limited"] == health.verdict().client_limited
    figures = original["overall"]["figures"]
    assert merged["overall"]["figures"]["requests.total"] == 2 * figures["requests.total"]
    assert merged["overall"]["figures"]["cost.total_usd"] == 2 * figures["cost.total_usd"]
    assert merged["stop_reason"] == original["stop_reason"]
    assert merged["interrupted"] is False


def test_merge_refuses_a_non_empty_out_and_the_same_run_twice(
    mixed_run: Path, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    result = merge(mixed_run, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "is not empty" in result.stderr
    twice = merge(mixed_run, mixed_run, "--out", tmp_path / "new")
    assert twice.exit_code == 2
    assert "given twice" in twice.stderr
    assert not (tmp_path / "new").exists()


def test_runs_with_different_scenarios_merge_with_a_warning(
    mixed_run: Path, tmp_path: Path
) -> None:
    first, second = split_run(mixed_run, tmp_path)
    metadata = read_json(second / "run.json")
    metadata["scenario"]["load"]["concurrency"] = 99
    (second / "run.json").write_bytes(orjson.dumps(metadata))

    result = merge(first, second, "--out", tmp_path / "merged")

    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr
    assert "another scenario" in result.stderr
    assert "differs in: load" in result.stderr


def test_every_clock_field_of_a_record_is_rebased_and_no_duration_is() -> None:
    clock_fields = {f.name for f in fields(RequestRecord) if f.name.endswith("_ns")}
    assert clock_fields == set(TIMESTAMP_FIELDS) | set(TIMESTAMP_TUPLE_FIELDS) | set(
        DURATION_FIELDS
    )
    record = RequestRecord(
        index=0,
        model="m",
        start_ns=100,
        end_ns=200,
        connect_ns=7,
        headers_ns=120,
        token_times_ns=(150, 160),
        first_content_ns=150,
    )
    moved = rebase(record, 1000)
    assert (moved.start_ns, moved.end_ns, moved.headers_ns) == (1100, 1200, 1120)
    assert (moved.token_times_ns, moved.first_content_ns) == ((1150, 1160), 1150)
    assert moved.connect_ns == 7
    assert (moved.ttft_ns, moved.e2e_ns, moved.itl_ns) == (
        record.ttft_ns,
        record.e2e_ns,
        record.itl_ns,
    )


def test_the_clock_offset_maps_the_same_wall_moment_to_the_same_reading() -> None:
    base = {"wall_ns": 1_000_000, "monotonic_ns": 50}
    other = {"wall_ns": 1_000_300, "monotonic_ns": 9_000}  # read 300 ns later on its clock
    offset = clock_offset_ns(other, base)
    # The wall moment 1_000_300 is 9_000 on `other` and 350 on `base`.
    assert 9_000 + offset == 350
