"""The run directory's outputs, rendered from run.json and records.jsonl."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from onybench.config import Scenario
from onybench.metrics.histogram import HIGHEST_TRACKABLE, LOWEST_TRACKABLE, SIGNIFICANT_DIGITS
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import GroupKey, GroupMetrics, summarize
from onybench.report.charts import chart_sections
from onybench.report.csv_report import figure_columns
from onybench.report.hlog import hlog_tag
from onybench.report.outputs import STOP_UNKNOWN, render_run_dir
from onybench.report.timeline import digest_records, nearest_rank
from onybench.rundir import read_records
from tests.report.conftest import SECRET_HEADER_VALUE
from tests.report.schema_check import assert_valid_report

MS = 1_000_000
S = 1_000_000_000
BASE_NS = 5_000 * S  # the records' monotonic clock at the run's start
WALL_NS = 1_800_000_000 * S  # the wall clock at the same moment
EVIL_MODEL = '<script>alert("model")</script>'
EVIL_MESSAGE = "</script><!-- <img src=x onerror=alert(1)> @octocat #1 | **boom**"
EVIL_STAGE = "<b>stage</b>"


def ok(
    index: int, model: str, start_ms: int, tokens: int = 4, stage: str | None = None
) -> RequestRecord:
    start = BASE_NS + start_ms * MS
    times = tuple(start + (100 + 10 * i) * MS for i in range(tokens))
    return RequestRecord(
        index=index,
        model=model,
        start_ns=start,
        end_ns=times[-1] + 5 * MS,
        status=200,
        token_times_ns=times,
        first_content_ns=times[0],
        prompt_tokens=3,
        output_tokens=tokens,
        cost_amount=Decimal("0.0000013"),
        cost_currency="USD",
        finish_reason="stop",
        output_text="<script>alert('output')</script>",
        stage=stage,
    )


def failed(index: int, model: str, start_ms: int) -> RequestRecord:
    start = BASE_NS + start_ms * MS
    return RequestRecord(
        index=index,
        model=model,
        start_ns=start,
        end_ns=start + 20 * MS,
        error_class="http_500",
        error_message=EVIL_MESSAGE,
        status=500,
    )


def make_run_dir(path: Path, records: list[RequestRecord], models: tuple[str, ...]) -> Path:
    path.mkdir()
    scenario = Scenario(name="evil <b>", base_url="mock", models=models)
    metadata = {
        "schema_version": 1,
        "run_id": path.name,
        "started_at": datetime.fromtimestamp(WALL_NS / S, UTC).isoformat(),
        "workers": 1,
        "clock": {"wall_ns": WALL_NS, "monotonic_ns": BASE_NS},
        "environment": {"onybench": "0.1.0", "python": "3.11", "platform": "x", "host": "h"},
        "scenario": scenario.to_json(),
    }
    (path / "run.json").write_bytes(orjson.dumps(metadata))
    (path / "records.jsonl").write_bytes(
        b"".join(orjson.dumps(r.to_json_dict()) + b"\n" for r in records)
    )
    return path


def evil_run(tmp_path: Path) -> tuple[Path, list[RequestRecord]]:
    records = [
        ok(0, EVIL_MODEL, 0),
        ok(1, EVIL_MODEL, 50),
        failed(2, EVIL_MODEL, 60),
        ok(3, "b/two", 10),
        ok(4, "b/two", 400, tokens=6),
    ]
    return make_run_dir(tmp_path / "run", records, (EVIL_MODEL, "b/two")), records


def test_untrusted_text_is_escaped_in_html_and_markdown(tmp_path: Path) -> None:
    run_dir, _ = evil_run(tmp_path)
    render_run_dir(run_dir)
    page = (run_dir / "report.html").read_text()
    # Only our own four scripts: the guard, the data, uPlot, the page's script.
    assert page.count("<script") == page.count("</script>") == 4
    assert "<!--" not in page
    assert "<img" not in page
    assert "<b>" not in page
    assert '<script>alert("model")' not in page
    assert "&lt;script&gt;alert(&quot;model&quot;)&lt;/script&gt;" in page  # tables
    assert "\\u003cscript\\u003ealert" in page  # the chart data
    assert "&lt;/script&gt;&lt;!-- &lt;img src=x onerror=alert(1)&gt;" in page  # error message
    assert "alert('output')" not in page  # model output is never shown

    markdown = (run_dir / "summary.md").read_text()
    assert "<script" not in markdown
    assert "<img" not in markdown
    assert "<!--" not in markdown
    assert "@octocat" not in markdown
    assert '&lt;script&gt;alert("model")&lt;/script&gt;' in markdown
    assert (
        "&lt;/script&gt;&lt;!-- &lt;img src=x onerror=alert(1)&gt; &#64;octocat &#35;1 "
        "\\| \\*\\*boom\\*\\*" in markdown
    )


def test_a_report_rebuilt_from_records_alone_is_valid_and_says_what_it_cannot_know(
    tmp_path: Path,
) -> None:
    run_dir, records = evil_run(tmp_path)
    report, paths = render_run_dir(run_dir)
    assert_valid_report(run_dir / "report.json")
    assert [p.name for p in paths] == [
        "report.json",
        "summary.md",
        "summary.csv",
        "report.html",
        "ttft.hlog",
        "itl.hlog",
        "tpot.hlog",
        "e2e.hlog",
    ]
    assert report["client_health"]["client_limited"] is None
    assert report["stop_reason"] == STOP_UNKNOWN
    assert report["interrupted"] is True
    # Ended when the last request did, on the wall clock.
    last_end_ns = max(r.end_ns for r in records)
    assert datetime.fromisoformat(report["ended_at"]) == datetime.fromtimestamp(
        (WALL_NS + last_end_ns - BASE_NS) / S, UTC
    )
    expected = summarize(records)
    assert [(g["model"], g["metrics"]) for g in report["groups"]] == [
        (key.model, group.to_json()) for key, group in expected.items()
    ]
    assert report["overall"]["figures"]["requests.total"] == 5
    assert report["overall"]["figures"]["cost.total_usd"] == float(Decimal("0.0000052"))


def test_a_model_without_records_still_gets_its_group(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", [ok(0, "a/one", 0)], ("a/one", "z/none"))
    report, _ = render_run_dir(run_dir)
    assert [(g["model"], g["figures"]["requests.total"]) for g in report["groups"]] == [
        ("a/one", 1),
        ("z/none", 0),
    ]
    assert_valid_report(report)


def test_an_empty_run_renders_every_file_but_the_interval_logs(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", [], ("a/one",))
    report, paths = render_run_dir(run_dir)
    assert_valid_report(report)
    assert [p.name for p in paths] == ["report.json", "summary.md", "summary.csv", "report.html"]
    assert datetime.fromisoformat(report["ended_at"]) == datetime.fromisoformat(
        report["started_at"]
    )


def test_summary_csv_has_one_row_per_group_and_sorted_figure_columns(mixed_run: Path) -> None:
    report = orjson.loads((mixed_run / "report.json").read_bytes())
    with (mixed_run / "summary.csv").open(newline="") as file:
        rows = list(csv.reader(file))
    header, body = rows[0], rows[1:]
    names = figure_columns(report)
    assert header == ["model", "stage", *names]
    assert names == sorted(names)
    assert "errors.http_500" in names
    assert len(body) == len(report["groups"])
    for row, group in zip(body, report["groups"], strict=True):
        assert row[0] == group["model"]
        assert row[1] == ""
        for name, cell in zip(names, row[2:], strict=True):
            value = group["figures"].get(name)
            assert cell == (
                "" if value is None else repr(value) if isinstance(value, float) else str(value)
            )


def test_interval_logs_are_standard_and_add_up_to_the_reports_histograms(mixed_run: Path) -> None:
    report = orjson.loads((mixed_run / "report.json").read_bytes())
    run = orjson.loads((mixed_run / "run.json").read_bytes())
    first_start = min(g["metrics"]["first_start_ns"] for g in report["groups"])
    start_s = (run["clock"]["wall_ns"] + first_start - run["clock"]["monotonic_ns"]) / S
    for metric in ("ttft", "itl", "tpot", "e2e"):
        text = (mixed_run / f"{metric}.hlog").read_text()
        assert "#[Histogram log format version 1.2]" in text
        assert (
            '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
            in text
        )
        assert re.search(r"^#\[BaseTime: \d+\.\d+ \(seconds since epoch\)\]$", text, re.M)
        lines = [line for line in text.splitlines() if line.startswith("Tag=")]
        assert {line.split(",")[0] for line in lines} == {"Tag=a/one", "Tag=b/two"}
        reference = HdrHistogram(LOWEST_TRACKABLE, HIGHEST_TRACKABLE, SIGNIFICANT_DIGITS)
        reader = HistogramLogReader(str(mixed_run / f"{metric}.hlog"), reference)
        totals: dict[str, HdrHistogram] = {}
        while (interval := reader.get_next_interval_histogram()) is not None:
            tag = interval.get_tag()
            totals.setdefault(
                tag, HdrHistogram(LOWEST_TRACKABLE, HIGHEST_TRACKABLE, SIGNIFICANT_DIGITS)
            ).add(interval)
        assert abs(reader.start_time_sec - start_s) < 0.001
        for group in report["groups"]:
            expected = HdrHistogram.decode(group["metrics"]["histograms"][metric]["encoded"])
            total = totals[hlog_tag(group["model"])]
            assert total.get_total_count() == expected.get_total_count() > 0
            assert total.encode() == expected.encode()


def test_hlog_tags_have_no_comma_or_space() -> None:
    assert hlog_tag("my model, v2\n") == "my_model__v2_"


def test_in_flight_is_the_time_average_and_tokens_land_when_they_arrive() -> None:
    # A: 0 → 1.5 s; B: 0.5 → 1.0 s, both from the origin. 100 ms intervals.
    a = RequestRecord(
        index=0,
        model="m",
        start_ns=0,
        end_ns=1_500 * MS,
        token_times_ns=(50 * MS, 1_450 * MS),
        output_tokens=4,
    )
    b = RequestRecord(
        index=1,
        model="m",
        start_ns=500 * MS,
        end_ns=1_000 * MS,
        token_times_ns=(950 * MS,),
        output_tokens=1,
    )
    timeline = digest_records([a, b], origin_ns=0, end_ns=1_500 * MS)
    assert (timeline.interval_ns, timeline.intervals) == (100 * MS, 15)
    series = timeline.models[0]
    assert series.in_flight == [1.0] * 5 + [2.0] * 5 + [1.0] * 5
    # Two tokens per chunk for A, one for B, each in its arrival's interval.
    assert series.output_tokens[0] == 2.0
    assert series.output_tokens[9] == 1.0
    assert series.output_tokens[14] == 2.0
    assert sum(series.output_tokens) == 5.0
    # Requests count where they ended: B at 1.0 s, A at the run's end (the last interval).
    assert series.succeeded[10] == series.succeeded[14] == 1
    assert sum(series.succeeded) == 2
    assert list(series.latency_us["ttft"][14]) == [50_000]
    assert nearest_rank(series.latency_us["itl"][14], (50, 100)) == [1_400_000, 1_400_000]


def test_groups_with_stages_get_charts_against_load_without_the_warmup() -> None:
    def group(model: str, stage: str | None, tokens_per_s: float) -> dict[str, object]:
        metrics = GroupMetrics()
        metrics.add(ok(0, model, 0))
        figures = {**metrics.figures(), "output_throughput.tokens_per_s": tokens_per_s}
        entry: dict[str, object] = {
            "model": model,
            "figures": figures,
            "metrics": metrics.to_json(),
        }
        if stage is not None:
            entry["stage"] = stage
        return entry

    report = {
        "groups": [
            group("a", "warmup", 1.0),
            group("a", "1: target 5", 10.0),
            group("b", "1: target 5", 20.0),
            group("a", EVIL_STAGE, 30.0),
        ]
    }
    sections = chart_sections(report, None)
    assert [s.title for s in sections] == ["Latency distributions", "Against load"]
    load = sections[1].charts[0].spec
    assert load["xTicks"] == ["1: target 5", EVIL_STAGE]
    assert [(s["label"], s["values"]) for s in load["series"]] == [
        ("a", [10.0, 30.0]),
        ("b", [20.0, None]),
    ]
    ttft = sections[0].charts[0].spec
    assert [s["label"] for s in ttft["series"]] == [
        "a [1: target 5]",
        "b [1: target 5]",
        f"a [{EVIL_STAGE}]",
    ]
    ids = [chart.spec["id"] for section in sections for chart in section.charts]
    assert ids == [f"chart-{n}" for n in range(len(ids))]


def test_a_report_with_stages_renders_them_escaped(tmp_path: Path) -> None:
    records = [
        ok(0, "a/one", 0, stage="warmup"),
        ok(1, "a/one", 100, stage=EVIL_STAGE),
        ok(2, "a/one", 300, stage="2"),
    ]
    run_dir = make_run_dir(tmp_path / "run", records, ("a/one",))
    report, _ = render_run_dir(run_dir)
    assert_valid_report(report)
    assert [g.get("stage") for g in report["groups"]] == ["warmup", EVIL_STAGE, "2"]
    page = (run_dir / "report.html").read_text()
    assert "<b>" not in page
    assert "Against load" in page
    assert "&lt;b&gt;stage&lt;/b&gt;" in (run_dir / "summary.md").read_text()
    # The rebuilt groups match a fold of the records by (model, stage).
    assert {(g["model"], g.get("stage")) for g in report["groups"]} == set(summarize(records))
    assert GroupKey("a/one", "2") in summarize(read_records(run_dir))


def test_no_output_holds_a_header_value(mixed_run: Path) -> None:
    written = {path.name for path in mixed_run.iterdir()}
    assert {"report.html", "summary.md", "summary.csv", "itl.hlog"} <= written
    for path in mixed_run.iterdir():
        assert SECRET_HEADER_VALUE not in path.read_text(), path.name
    scenario = orjson.loads((mixed_run / "report.json").read_bytes())["scenario"]
    assert scenario["target"]["headers"] == {"X-Team-Token": "<withheld>"}
