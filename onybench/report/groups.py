"""Report groups: one per model, or per model and load stage.

A group in report.json carries `model` and, when the run had load stages, a
`stage` string (warm-up requests form a stage of their own, `warmup`).
Renderers name and order groups through these helpers, so that stages need no
special case anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onybench.metrics.summary import WARMUP_STAGE
from onybench.report.timeline import Timeline


def group_label(group: Mapping[str, Any]) -> str:
    """`model`, or `model [stage]` (as the console names it) when the group belongs to a stage."""
    stage = group.get("stage")
    return f"{group['model']} [{stage}]" if stage is not None else str(group["model"])


def models_in_order(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """The distinct models of `groups`, in the order they first appear."""
    return list(dict.fromkeys(str(group["model"]) for group in groups))


def load_stages(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """The distinct load stages (warm-up left out), in the order they first appear."""
    stages = (group.get("stage") for group in groups)
    return list(dict.fromkeys(str(s) for s in stages if s is not None and s != WARMUP_STAGE))


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One error class of one group, with the statuses and first messages seen."""

    group: Mapping[str, Any]
    error_class: str
    count: int
    statuses: str
    messages: tuple[str, ...]


def error_rows(groups: Sequence[Mapping[str, Any]], timeline: Timeline | None) -> list[ErrorRow]:
    """Every non-zero `errors.<class>` figure, joined with the timeline's examples."""
    examples = {}
    if timeline is not None:
        examples = {(e.model, e.error_class): e for e in timeline.error_examples}
    rows = []
    for group in groups:
        for name, count in group["figures"].items():
            if not name.startswith("errors.") or not count:
                continue
            error_class = name.removeprefix("errors.")
            example = examples.get((group["model"], error_class))
            rows.append(
                ErrorRow(
                    group=group,
                    error_class=error_class,
                    count=count,
                    statuses=", ".join(str(s) for s in example.statuses) if example else "",
                    messages=tuple(example.messages) if example else (),
                )
            )
    return rows
