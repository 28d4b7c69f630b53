"""A sweep's plan: which levels, how long each is held, what judges them.

Pure and validated on construction (`ScenarioError` naming the setting). It
comes from a scenario's ``[sweep]`` section (read by config.py), with
``onybench sweep``'s flags laid over it::

    [sweep]
    mode = "concurrency"        # or "rate": requests/s per model, open loop
    levels = [1, 2, 4, 8]       # or start / max / factor: a geometric series
    hold = "10s"                # each level measured this long ...
    warmup = "2s"               # ... after this warm-up
    search = true               # bisect for the highest level within the SLOs
    slos = ["ttft.p95 < 500ms"] # added to the scenario's thresholds
    target = 90                 # SLO attainment target, percent
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from onybench.errors import ScenarioError
from onybench.thresholds import parse_threshold

SweepMode = Literal["concurrency", "rate"]
SWEEP_MODES: tuple[SweepMode, ...] = ("concurrency", "rate")

DEFAULT_TARGET = 0.90
KNEE_GAIN = 0.10
KNEE_TTFT_FACTOR = 2.0

RATE_RESOLUTION = 0.05  # a rate search stops when its bracket is within 5 % of the lower bound
MAX_LEVELS = 64  # a geometric plan longer than this is a typo, not a sweep


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """How to sweep: the levels (concurrency per model, or requests/s per model),
    how long each is held, and the SLOs that judge them."""

    mode: SweepMode = "concurrency"
    levels: tuple[float, ...] = ()
    start: float = 1.0
    maximum: float = 64.0
    factor: float = 2.0
    hold_s: float = 10.0
    warmup_s: float = 2.0
    search: bool = False
    resolution: float | None = None
    slos: tuple[str, ...] = ()
    target: float = DEFAULT_TARGET
    knee_gain: float = KNEE_GAIN
    knee_ttft_factor: float = KNEE_TTFT_FACTOR

    def __post_init__(self) -> None:
        if self.levels and any(level <= 0 for level in self.levels):
            raise ScenarioError(f"levels must be positive, got {list(self.levels)}", "sweep.levels")
        if self.mode == "concurrency" and any(
            level != int(level) for level in (*self.levels, self.start, self.maximum)
        ):
            raise ScenarioError("concurrency levels are whole numbers", "sweep.levels")
        if self.start <= 0 or self.maximum < self.start:
            raise ScenarioError(
                f"need 0 < start <= max (--start, --max), got {self.start:g} and {self.maximum:g}",
                "sweep.start",
            )
        if self.factor <= 1:
            raise ScenarioError(f"must be above 1, got {self.factor:g}", "sweep.factor")
        if self.hold_s <= 0 or self.warmup_s < 0:
            raise ScenarioError(
                "hold (--hold) must be positive and warmup (--warmup) not negative", "sweep.hold"
            )
        if not 0 < self.target <= 1:
            raise ScenarioError(f"must be in (0, 100] %, got {self.target:.0%}", "sweep.target")
        if self.resolution is not None and self.resolution <= 0:
            raise ScenarioError(f"must be positive, got {self.resolution:g}", "sweep.resolution")
        if len(self.steps()) > MAX_LEVELS:
            raise ScenarioError(
                f"more than {MAX_LEVELS} levels; raise factor (--factor) or lower max (--max)",
                "sweep.max",
            )
        for slo in self.slos:
            parse_threshold(slo)

    def steps(self) -> list[float]:
        """The levels stepped through, in order (before any bisection)."""
        if self.levels:
            return sorted(set(self.levels))
        steps: list[float] = []
        level = self.start
        while level <= self.maximum * (1 + 1e-9) and len(steps) <= MAX_LEVELS:
            steps.append(float(math.floor(level)) if self.mode == "concurrency" else level)
            level *= self.factor
        if steps[-1] < self.maximum:
            steps.append(self.maximum)
        return sorted(set(steps))

    def close_enough(self, low: float, high: float) -> bool:
        """Whether a bisection between `low` (within SLOs) and `high` (not) is done."""
        if self.mode == "concurrency":
            return high - low <= max(1.0, self.resolution or 1.0)
        return high - low <= (self.resolution or RATE_RESOLUTION * low)

    def midpoint(self, low: float, high: float) -> float:
        middle = (low + high) / 2
        return float(math.floor(middle)) if self.mode == "concurrency" else middle

    def label(self, level: float) -> str:
        return f"c={level:g}" if self.mode == "concurrency" else f"rate={level:g}/s"

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "levels": self.steps(),
            "hold_s": self.hold_s,
            "warmup_s": self.warmup_s,
            "search": self.search,
            "resolution": self.resolution,
            "slos": list(self.slos),
            "target_attainment": self.target,
            "knee_gain": self.knee_gain,
            "knee_ttft_factor": self.knee_ttft_factor,
        }
