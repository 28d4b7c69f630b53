"""Regression gates: thresholds judged against a run, and runs compared with a baseline.

- `evaluate.py`: thresholds (parsed by `onybench.thresholds`) judged per model
  against report.json's figures, the report's ``gates`` section, and
  `AbortWatch`, which stops a run whose threshold can no longer pass.
- `compare.py`: a run against a baseline, per model and metric, with
  bootstrap intervals and ``--fail-on`` gates.
- `resample.py`: the bootstrap and Holm's method (pure, seeded).
- `render.py`: the results as terminal tables and Markdown.

Nothing here prints or exits: `cli.py` turns failed gates into exit code 1.
"""

from __future__ import annotations

from onybench.gates.compare import (
    Comparison,
    Gate,
    Metric,
    compare,
    load_side,
    parse_gate,
    parse_metric,
)
from onybench.gates.evaluate import (
    ABORT_PREFIX,
    AbortWatch,
    ThresholdOutcome,
    evaluate_thresholds,
    gates_section,
    parse_thresholds,
)

__all__ = [
    "ABORT_PREFIX",
    "AbortWatch",
    "Comparison",
    "Gate",
    "Metric",
    "ThresholdOutcome",
    "compare",
    "evaluate_thresholds",
    "gates_section",
    "load_side",
    "parse_gate",
    "parse_metric",
    "parse_thresholds",
]
