"""report.json: the run's metadata, per-model figures and encoded histograms.

Figures are named `<metric>.<stat>_<unit>` (e.g. `ttft.p95_ms`); thresholds, CSV
and comparisons use the same names. `schema_version` changes whenever a field
changes meaning or disappears. The document's shape is `report.schema.json`
(JSON Schema 2020-12) beside this module; tests hold every report to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from onybench.gates.evaluate import gates_section
from onybench.metrics.health import ClientHealth
from onybench.metrics.profile import ServerProfile
from onybench.metrics.summary import WARMUP_STAGE, GroupKey, GroupMetrics

SCHEMA_VERSION = 1


def build_report(
    *,
    metadata: Mapping[str, Any],
    groups: Mapping[GroupKey, GroupMetrics],
    health: ClientHealth,
    stop_reason: str,
    interrupted: bool,
    ended_at: datetime,
) -> dict[str, Any]:
    """The report.json document; `groups` are keyed by (model, stage).

    `overall` folds every group but the warm-up, which is reported apart;
    `gates` judges the scenario's thresholds (see onybench/gates/evaluate.py).
    """
    overall = GroupMetrics()
    profile = ServerProfile()
    for key, group in groups.items():
        profile.merge(group.profile)
        if key.stage != WARMUP_STAGE:
            overall.merge(group)
    verdict = health.verdict()
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": metadata["run_id"],
        "started_at": metadata["started_at"],
        "ended_at": ended_at.isoformat(),
        "stop_reason": stop_reason,
        "interrupted": interrupted,
        "workers": metadata["workers"],
        "environment": metadata["environment"],
        "scenario": metadata["scenario"],
        "client_health": {
            "client_limited": verdict.client_limited,
            "reasons": list(verdict.reasons),
            "notes": list(verdict.notes),
            "figures": health.figures(),
            "metrics": health.to_json(),
        },
        "overall": {"figures": overall.figures()},
        # What the server did (usage, cost, chunking, connections), warm-up included.
        "server_profile": profile.describe(),
        "groups": [
            {
                "model": key.model,
                **({"stage": key.stage} if key.stage is not None else {}),
                "figures": group.figures(),
                "metrics": group.to_json(),
            }
            for key, group in groups.items()
        ],
    }
    # The scenario's thresholds judged against these figures (and any early abort).
    report["gates"] = gates_section(report)
    return report
