"""HdrHistogram interval logs: `ttft.hlog`, `itl.hlog`, `tpot.hlog`, `e2e.hlog`.

The standard HdrHistogram log format (version 1.2, as hdrh's
`HistogramLogWriter` writes it), which HdrHistogram's own tools
(HistogramLogProcessor, HistogramLogAnalyzer) and hdrh's `HistogramLogReader`
read:

    #[Histogram log format version 1.2]
    #[StartTime: 1795638858.406 (seconds since epoch), 2026-11-25T20:34:18.406Z]
    #[BaseTime: 1795638858.406000 (seconds since epoch)]
    "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
    Tag=openai/gpt-4o-mini,0.000723,1.000000,126143.000000,HISTFAAAA...

One line per model (the tag; a comma or white space in a name becomes `_`)
and interval of the run's timeline (see `timeline.py`: requests bucketed by
end time), empty intervals included so the time axis has no holes. StartTime
and BaseTime are the run's first request start on the wall clock, to the
millisecond below; interval timestamps are seconds from it (so the first one
is that start's sub-millisecond part). Values are whole microseconds, and so
is `Interval_Max`. Each
interval histogram has the summary's shape (1 µs .. 1 h, 3 significant
digits), so adding every interval of a tag gives the run's histogram for that
model (values beyond an hour are left out, as in report.json's
`<metric>.overflow`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from hdrh.log import HistogramLogWriter

from onybench import __version__
from onybench.metrics.histogram import Histogram
from onybench.report.timeline import INTERVAL_METRICS, Timeline

_NOT_IN_TAG = re.compile(r"[\s,]")


def hlog_tag(label: str) -> str:
    """A tag HdrHistogram accepts: no comma, no white space."""
    return _NOT_IN_TAG.sub("_", label) or "_"


def write_interval_logs(timeline: Timeline, run_dir: Path, *, origin_wall_ns: int) -> list[Path]:
    """Write `<metric>.hlog` for every interval metric; returns the paths written."""
    paths = []
    for metric in INTERVAL_METRICS:
        path = run_dir / f"{metric}.hlog"
        temp = path.with_suffix(".hlog.tmp")
        with temp.open("w", encoding="utf-8") as log:
            _write_log(log, timeline, metric, origin_wall_ns)
        temp.replace(path)
        paths.append(path)
    return paths


def _write_log(log: TextIO, timeline: Timeline, metric: str, origin_wall_ns: int) -> None:
    writer = HistogramLogWriter(log)
    writer.output_comment(
        f"[Logged with onybench {__version__}: {metric} of each request that ended in the "
        "interval, in microseconds]"
    )
    writer.output_log_format_version()
    # Whole milliseconds, written alike in both lines: a reader that compares the two
    # (hdrh's does) must not find the first interval starting before the StartTime.
    base_ms = origin_wall_ns // 1_000_000
    stamp = datetime.fromtimestamp(base_ms / 1000, UTC).isoformat(timespec="milliseconds")
    # hdrh's own output_start_time is broken (it calls a method datetime lacks).
    writer.output_comment(
        f"[StartTime: {base_ms / 1000:.3f} (seconds since epoch), {stamp.replace('+00:00', 'Z')}]"
    )
    writer.output_base_time(base_ms)
    writer.output_legend()
    interval_ms = timeline.interval_ns / 1e6
    # The run's first start lies this far after the BaseTime's whole millisecond.
    origin_ms = (origin_wall_ns - base_ms * 1_000_000) / 1e6
    tags = [hlog_tag(model.model) for model in timeline.models]
    for index in range(timeline.intervals):
        for tag, model in zip(tags, timeline.models, strict=True):
            # A new histogram is cheaper than hdrh's reset(), a Python loop over every count.
            recorded = Histogram()
            recorded.record_all(model.latency_us[metric][index])  # beyond an hour: left out
            histogram = recorded.hdr
            # Relative timestamps (ms from the BaseTime); the writer logs them in seconds.
            histogram.set_start_time_stamp(origin_ms + index * interval_ms)
            histogram.set_end_time_stamp(origin_ms + (index + 1) * interval_ms)
            log.write(f"Tag={tag},")
            writer.output_interval_histogram(histogram, max_value_unit_ratio=1.0)
