"""Report groups: one per model, or per model and load stage.

A group in report.json carries `model` and, when the run had load stages, a
`stage` string (warm-up requests form a stage of their own, `warmup`).
Renderers name and order groups through these helpers, so that stages need no
special case anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from onybench.metrics.summary import WARMUP_STAGE


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
