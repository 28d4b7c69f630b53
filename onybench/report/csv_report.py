"""summary.csv: one row per group, one column per figure.

Columns: `model`, `stage` (empty for a run without stages), then every figure
name any group has, sorted, so the same kind of run always gives the same
columns in the same order. A figure a group lacks (a histogram that stayed
empty, an error class it never saw) is an empty cell. Numbers are written in
full precision (Python's shortest round-trip form); text cells that a
spreadsheet would read as a formula are prefixed with `'`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from onybench.report.escape import csv_text


def figure_columns(report: Mapping[str, Any]) -> list[str]:
    """Every figure name of every group, sorted."""
    return sorted({name for group in report["groups"] for name in group["figures"]})


def write_csv(report: Mapping[str, Any], path: Path) -> Path:
    columns = figure_columns(report)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["model", "stage", *columns])
        for group in report["groups"]:
            figures = group["figures"]
            writer.writerow(
                [
                    csv_text(str(group["model"])),
                    csv_text(str(group.get("stage") or "")),
                    *(_cell(figures.get(name)) for name in columns),
                ]
            )
    return path


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)
