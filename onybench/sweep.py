"""`onybench sweep`: step the load through levels and find the capacity within SLOs.

Every level runs inside one `trio.run` on one `StreamingClient`, so one
connection pool serves the whole sweep: a level reuses the connections the
previous ones opened and nothing is left running between levels (each level
is a `benchmark.execute_on` call, whose nursery has ended when it returns).
Each level is held `hold_s` seconds after `warmup_s` of warm-up; its records
carry the level's stage label (``c=8``, ``rate=4/s``), so report.json has one
group per model and level. What is judged, and how, is `capacity.py`'s.

Stepping stops at the first level outside the SLOs, or once throughput stops
growing (the knee's gain rule); with `search`, stepping stops only at an SLO
failure and the gap between the last level within the SLOs and the first
outside them is then bisected down to `resolution` (1 for concurrency; for
rates 5 % of the lower bound unless given).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from onybench.benchmark import (
    execute_on,
    load_prompts,
    run_metadata,
    scenario_target,
    split_load,
    target_url,
)
from onybench.capacity import (
    Analysis,
    LevelResult,
    LevelTally,
    RequestSlos,
    analyze,
    judge_level,
    throughput_gain,
)
from onybench.client import StreamingClient, Target
from onybench.config import Scenario, validate
from onybench.gates.evaluate import parse_thresholds
from onybench.load.datasets import Prompt
from onybench.metrics.health import ClientHealth
from onybench.metrics.summary import WARMUP_STAGE, GroupKey, GroupMetrics
from onybench.report.capacity import capacity_section
from onybench.report.json_report import build_report
from onybench.report.outputs import write_outputs
from onybench.rundir import REPORT_FILE, RecordWriter, RunDirectory, write_json
from onybench.sweep_plan import SweepPlan


@dataclass(frozen=True, slots=True)
class SweepResult:
    run_dir: Path
    report: dict[str, Any]
    analysis: Analysis
    stop_reason: str
    interrupted: bool


LevelCallback = Callable[[LevelResult], None]


def sweep_slos(scenario: Scenario, planned: Sequence[str], extra: Sequence[str]) -> tuple[str, ...]:
    """The SLOs: the scenario's thresholds, [sweep].slos, then those given on the
    command line; each once."""
    return tuple(dict.fromkeys((*scenario.thresholds, *planned, *extra)))


def level_scenario(scenario: Scenario, plan: SweepPlan, level: float) -> Scenario:
    """`scenario` held at one level for the plan's warm-up and hold."""
    load: dict[str, Any] = {
        "duration_s": plan.hold_s,
        "warmup_s": plan.warmup_s,
        "warmup_requests": 0,
        "requests": None,
        "stages": (),
        # Thresholds are judged per level by the sweep, not as a run's gates.
        "thresholds": (),
    }
    if plan.mode == "concurrency":
        load |= {"concurrency": int(level), "rate": None, "max_in_flight": None}
    else:
        load |= {"rate": level, "concurrency": None, "think_time_s": 0.0}
    result = replace(scenario, **load)
    validate(result)
    return result


def run_sweep(
    scenario: Scenario,
    plan: SweepPlan,
    *,
    out_dir: Path,
    api_key: str | None = None,
    on_level: LevelCallback | None = None,
) -> SweepResult:
    """Sweep `scenario` by `plan`; writes a run directory with a capacity report."""
    prompts = load_prompts(scenario)
    run_dir = RunDirectory(out_dir)
    metadata = run_metadata(scenario, out_dir.name, datetime.now(UTC), 1)
    metadata["sweep"] = plan.to_json()
    run_dir.create(metadata)
    writer = run_dir.record_writer()
    try:
        with target_url(scenario) as base_url:
            target = scenario_target(scenario, base_url, api_key)
            sweeper = _Sweeper(scenario, plan, target, writer, prompts, out_dir.name, on_level)
            trio.run(sweeper.run)
    finally:
        writer.close()

    analysis = analyze(
        sweeper.results, knee_gain=plan.knee_gain, knee_ttft_factor=plan.knee_ttft_factor
    )
    report = build_report(
        metadata=metadata,
        groups=sweeper.groups_in_load_order(),
        health=sweeper.health,
        stop_reason=sweeper.stop_reason,
        interrupted=sweeper.interrupted,
        ended_at=datetime.now(UTC),
    )
    report["capacity"] = capacity_section(analysis, plan.to_json(), scenario.pricing)
    write_json(out_dir / REPORT_FILE, report)
    write_outputs(out_dir, report, metadata)
    return SweepResult(out_dir, report, analysis, sweeper.stop_reason, sweeper.interrupted)


class _Sweeper:
    """The trio side of one sweep: levels in turn on one client."""

    def __init__(
        self,
        scenario: Scenario,
        plan: SweepPlan,
        target: Target,
        writer: RecordWriter,
        prompts: Sequence[Prompt],
        run_id: str,
        on_level: LevelCallback | None,
    ) -> None:
        self._scenario = scenario
        self._plan = plan
        self._target = target
        self._writer = writer
        self._prompts = prompts
        self._run_id = run_id
        self._on_level = on_level
        self._slos = RequestSlos(parse_thresholds(plan.slos))
        self.results: list[LevelResult] = []
        self.groups: dict[GroupKey, GroupMetrics] = {}
        self.health = ClientHealth()
        self.stop_reason = "all levels done"
        self.interrupted = False

    async def run(self) -> None:
        plan = self._plan
        async with StreamingClient(self._target) as client:
            low: float | None = None
            high: float | None = None
            previous: LevelResult | None = None
            for level in plan.steps():
                result = await self._measure(client, level)
                if self.interrupted:
                    return
                if not result.within_slo:
                    high = level
                    self.stop_reason = f"SLOs failed at {result.stage}"
                    break
                low = level
                if (
                    not plan.search
                    and previous is not None
                    and _stopped_growing(plan, previous, result)
                ):
                    self.stop_reason = f"throughput stopped growing at {result.stage}"
                    break
                previous = result
            if not plan.search or low is None or high is None:
                return
            for level in _bisection(plan, low, high, self._was_within):
                await self._measure(client, level)
                if self.interrupted:
                    return
            self.stop_reason = f"search done: {self._last_label()}"

    def _was_within(self, level: float) -> bool:
        return next(r.within_slo for r in self.results if r.level == level)

    def _last_label(self) -> str:
        within = [r.level for r in self.results if r.within_slo]
        return f"capacity {self._plan.label(max(within))}" if within else "no level within SLOs"

    async def _measure(self, client: StreamingClient, level: float) -> LevelResult:
        plan = self._plan
        scenario = level_scenario(self._scenario, plan, level)
        stage = plan.label(level)
        window_start_ns = time.perf_counter_ns() + round(plan.warmup_s * 1e9)
        tally = LevelTally(self._slos, window_start_ns, window_start_ns + round(plan.hold_s * 1e9))
        outcome = await execute_on(
            client,
            scenario,
            self._writer,
            split_load(scenario, 1, self._run_id)[0],
            self._prompts,
            None,
            observe=lambda record: tally.add(record, measured=record.stage != WARMUP_STAGE),
            stage=stage,
        )
        self.health.merge(outcome.health)
        self.interrupted = outcome.interrupted
        if outcome.interrupted:
            self.stop_reason = outcome.stop_reason
        measured = {}
        for key, group in outcome.groups.items():
            if key not in self.groups:
                self.groups[key] = GroupMetrics()
            self.groups[key].merge(group)
            if key.stage != WARMUP_STAGE:
                measured[key.model] = group
        result = judge_level(
            mode=plan.mode,
            level=level,
            stage=stage,
            hold_s=plan.hold_s,
            tally=tally,
            groups=measured,
            target=plan.target,
            think_time_s=scenario.think_time_s,
        )
        self.results.append(result)
        if self._on_level is not None:
            self._on_level(result)
        return result

    def groups_in_load_order(self) -> dict[GroupKey, GroupMetrics]:
        """The groups by model, then the warm-up, then each level from the lowest load."""
        rank = {self._plan.label(r.level): r.level for r in self.results}
        models = list(self._scenario.models)

        def order(key: GroupKey) -> tuple[int, float]:
            level = -1.0 if key.stage == WARMUP_STAGE else rank.get(key.stage or "", math.inf)
            return (models.index(key.model) if key.model in models else len(models), level)

        return {key: self.groups[key] for key in sorted(self.groups, key=order)}


def _stopped_growing(plan: SweepPlan, previous: LevelResult, current: LevelResult) -> bool:
    gain = throughput_gain(previous, current)
    load_increase = (current.level - previous.level) / previous.level
    return gain is not None and gain < plan.knee_gain * load_increase


def _bisection(
    plan: SweepPlan, low: float, high: float, within: Callable[[float], bool]
) -> Iterator[float]:
    """Levels to try between `low` (within SLOs) and `high` (not); `within` reads the
    verdict of the level just yielded."""
    while not plan.close_enough(low, high):
        middle = plan.midpoint(low, high)
        if middle in (low, high):
            return
        yield middle
        if within(middle):
            low = middle
        else:
            high = middle
