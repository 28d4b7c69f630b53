"""Baseline comparison: per model and metric, how a run changed, and whether it is noise.

`compare(baseline, current, gates=…, metrics=…)` pairs the two runs' models
and, for each metric (a histogram statistic such as ``ttft.p95``, or
``error_rate``), reports both values, the absolute and relative change, and a
bootstrap interval of the change. Where the two sides come from:

- a run directory with records.jsonl: the per-request values (TTFT, E2E,
  TPOT… one per request; ITL's gaps grouped by request, resampled by request;
  errors as failed/total). Warm-up records are left out.
- report.json alone: the encoded HDR histograms, resampled as if each value
  were a request (for pooled ITL gaps that ignores that gaps of one response
  move together, so its intervals are narrower than they should be: keep
  records.jsonl when comparing ITL).

Statistics and their intervals are computed by `resample.py`. Two families are
held to a family-wise error `alpha` by Holm's method, each on its own:

- the table's rows (every model × metric): a row is *significant* when the
  change is not 0 — its interval, at the level Holm's step gives it, excludes 0;
- the gates (every ``--fail-on`` × model): a gate *fails* when its interval,
  at its Holm level, lies wholly beyond the margin — for ``> +10%`` the lower
  bound exceeds +10 %. Noise alone fails a gate at most `alpha` of the time,
  whatever the number of gates and models.

The gate grammar (parsed here; metric names resolved by `onybench.thresholds`)::

    metric.stat[{model=NAME}] > [+]N%        fails on an increase beyond N %
    metric.stat[{model=NAME}] < [-]N%        fails on a decrease beyond N %
    metric.stat > +N ms                      an absolute change (latencies: ns us ms s m)
    error_rate > +Npp                        an absolute change in percentage points
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hdrh.histogram import HdrHistogram

from onybench.errors import ReportError, ScenarioError
from onybench.gates.resample import (
    STATISTICS,
    ClusteredValues,
    HolmDecision,
    Population,
    Proportion,
    WeightedValues,
    holm,
    interval_index,
    p_value_above,
    p_value_below,
    p_value_changed,
    percentile_interval,
    relative_change,
)
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import HISTOGRAM_UNITS, WARMUP_STAGE, GroupMetrics
from onybench.rundir import RECORDS_FILE, REPORT_FILE, read_json_file, read_records
from onybench.thresholds import parse_threshold

DEFAULT_METRICS: tuple[str, ...] = (
    "ttft.p50",
    "ttft.p95",
    "ttft.p99",
    "itl.p50",
    "itl.p95",
    "tpot.p50",
    "e2e.p50",
    "e2e.p95",
    "error_rate",
)
DEFAULT_RESAMPLES = 2_000
DEFAULT_ALPHA = 0.05
# The smallest tail an interval may rest on, in replicates: resamples are
# raised so that Holm's strictest level still leaves this many.
MIN_TAIL_REPLICATES = 5

GATE_SHAPE = "metric.stat{model=NAME} > +N% (or < -N%, > +N ms, error_rate > +Npp)"
Source = Literal["records", "histograms"]


# --- metrics and gates -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric:
    """A comparable metric: a histogram's statistic, or the error rate."""

    histogram: str | None  # None for error_rate
    stat: str  # a STATISTICS name, or "rate" for error_rate

    @property
    def name(self) -> str:
        if self.histogram is None:
            return "error_rate"
        return f"{self.histogram}.{self.stat.replace('_', '.')}"

    @property
    def unit(self) -> str:
        if self.histogram is None:
            return "fraction"
        return HISTOGRAM_UNITS[self.histogram][0]


ERROR_RATE = Metric(None, "rate")


def parse_metric(text: str) -> Metric:
    """``ttft.p95``, ``itl.mean``, ``error_rate``… (names as thresholds take them)."""
    metric, _ = _resolve_metric(text.strip(), text)
    return metric


def _resolve_metric(name: str, text: str, unit: str | None = None) -> tuple[Metric, float | None]:
    """The metric `name` names, and `unit`'s value in its figure unit when it is a time unit.

    Figure resolution is thresholds.py's: a probe threshold is parsed for it.
    """
    probes = [f"{name} > 1 {unit}"] if unit else [f"{name} > 0", f"{name} > 0 ms"]
    error: ScenarioError | None = None
    for probe in probes:
        try:
            threshold = parse_threshold(probe)
        except ScenarioError as exc:
            error = error or exc
            continue
        return _metric_of(threshold.figure, text), threshold.value if unit else None
    assert error is not None
    raise ScenarioError(f"{text!r}: {_problem(error)}")


def _problem(error: ScenarioError) -> str:
    """thresholds.py's complaint without its threshold framing."""
    message = str(error)
    message = re.sub(r"^threshold '.*?': ", "", message)
    return re.sub(r"; the shape is .*$", "", message)


def _metric_of(figure: str, text: str) -> Metric:
    if figure == "error_rate":
        return ERROR_RATE
    for histogram, (unit, _) in HISTOGRAM_UNITS.items():
        if not figure.startswith(histogram + "."):
            continue
        stat = figure.removeprefix(histogram + ".")
        stat = stat.removesuffix("_ms") if unit == "ms" else stat
        if stat in STATISTICS:
            return Metric(histogram, stat)
        if stat in ("min", "max"):
            raise ScenarioError(
                f"{text!r}: the bootstrap cannot judge {stat} (a resample never reaches beyond "
                f"the sample's extremes); compare a percentile such as {histogram}.p99"
            )
        raise ScenarioError(f"{text!r}: {figure} is a count, not a statistic to compare")
    raise ScenarioError(
        f"{text!r}: {figure} is a whole-run figure; compare can judge histogram statistics "
        f"({', '.join(s.replace('_', '.') for s in STATISTICS)}) and error_rate"
    )


@dataclass(frozen=True, slots=True)
class Gate:
    """``metric > +10%``: fails when the change is surely beyond `margin`.

    `direction` is +1 (fails on an increase beyond the margin) or -1 (a
    decrease); `relative` says whether `margin` is a fraction of the baseline
    (0.10 for 10 %) or an absolute change in the metric's unit.
    """

    text: str
    metric: Metric
    model: str | None
    direction: Literal[1, -1]
    margin: float
    relative: bool


_GATE = re.compile(
    r"^\s*(?P<name>[^<>=!{}\s]+)\s*(?P<selector>\{[^}]*\})?\s*(?P<op>>=|<=|==|!=|=|>|<)"
    r"\s*(?P<sign>[+-])?\s*(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)?\s*"
    r"(?P<unit>%|pp|[^\W\d_]+)?\s*$"
)


def parse_gate(text: str) -> Gate:
    """Parse a ``--fail-on`` expression (see the module docstring)."""

    def fail(problem: str) -> ScenarioError:
        return ScenarioError(f"gate {text!r}: {problem}; the shape is {GATE_SHAPE}")

    match = _GATE.match(text)
    if match is None:
        raise fail("it is not a metric, an operator and a change")
    op = match["op"]
    if op not in (">", "<"):
        raise fail(f"{op!r} is not a gate operator; use '>' (an increase) or '<' (a decrease)")
    if match["number"] is None:
        raise fail(f"no change after {op!r}, e.g. '{op} {'+' if op == '>' else '-'}10%'")
    direction: Literal[1, -1] = 1 if op == ">" else -1
    sign = match["sign"]
    if sign is not None and (sign == "+") != (direction == 1):
        wanted = "an increase, '> +N'" if direction == 1 else "a decrease, '< -N'"
        raise fail(f"'{op} {sign}…' mixes directions; write {wanted}")
    number = float(match["number"])
    unit = match["unit"]
    selector = match["selector"] or ""
    name = match["name"]
    if unit is None:
        raise fail("the change needs a unit: % (relative), pp (error_rate) or a time unit")
    model: str | None = None
    if selector:
        try:
            model = parse_threshold(f"error_rate{selector} < 1").model
        except ScenarioError as exc:
            raise fail(_problem(exc)) from None
    if unit == "%":
        metric, _ = _resolve_metric(name, text)
        return Gate(text, metric, model, direction, number / 100, relative=True)
    if unit == "pp":
        metric, _ = _resolve_metric(name, text)
        if metric != ERROR_RATE:
            raise fail("pp (percentage points) is for error_rate; use % for a relative change")
        return Gate(text, metric, model, direction, number / 100, relative=False)
    metric, value = _resolve_metric(name, text, unit)
    if metric.unit != "ms" or value is None:
        raise fail(f"{unit!r} is not a unit for {metric.name}; use %")
    return Gate(text, metric, model, direction, value * number, relative=False)


# --- the two sides -----------------------------------------------------------------------


# histogram -> the RequestRecord property (ns) it records, one value per request.
_NS_PROPERTIES = {
    "ttft": "ttft_ns",
    "ttft_content": "ttft_content_ns",
    "tpot": "tpot_ns",
    "e2e": "e2e_ns",
    "connect": "connect_ns",
    "schedule_lag": "schedule_lag_ns",
    "ttft_from_intended": "ttft_from_intended_ns",
    "e2e_from_intended": "e2e_from_intended_ns",
}


def _record_values(record: RequestRecord, histogram: str) -> list[float] | float | None:
    """A record's value(s) of `histogram`, in the figure's unit (ms, or tokens/s)."""
    if histogram == "itl":
        return [gap / 1e6 for gap in record.itl_ns]
    if histogram == "itl_per_token":
        return [gap / 1e6 for gap in record.itl_per_token_ns]
    if histogram == "request_output_tokens_per_s":
        return record.output_tokens_per_s
    value_ns: float | None = getattr(record, _NS_PROPERTIES[histogram])
    return None if value_ns is None else value_ns / 1e6


class ModelSample:
    """One model's measured data on one side: its records, its merged histograms, or
    plain per-request values (``{"ttft": [ms, …]}``, with ``(failed, total)`` requests).
    """

    def __init__(
        self,
        records: Sequence[RequestRecord] | None = None,
        metrics: GroupMetrics | None = None,
        values: Mapping[str, Sequence[float]] | None = None,
        requests: tuple[int, int] | None = None,
    ) -> None:
        if (records is None) + (metrics is None) + (values is None) != 2:
            raise ValueError("give one of records, metrics or values")
        self.records = records
        self.metrics = metrics
        self.values = values
        self.requests = requests
        self._cache: dict[str, Population | None] = {}

    def proportion(self) -> Proportion | None:
        if self.records is not None:
            failed = sum(1 for r in self.records if not r.succeeded)
            total = len(self.records)
        elif self.values is not None:
            failed, total = self.requests or (0, 0)
        else:
            assert self.metrics is not None
            failed = self.metrics.requests - self.metrics.succeeded
            total = self.metrics.requests
        return Proportion(failed, total) if total else None

    def population(self, histogram: str) -> Population | None:
        """The values of `histogram`, or None when there is none."""
        if histogram not in self._cache:
            self._cache[histogram] = self._population(histogram)
        return self._cache[histogram]

    def _population(self, histogram: str) -> Population | None:
        if self.values is not None:
            given = self.values.get(histogram)
            return WeightedValues.of(given) if given else None
        if self.records is not None:
            succeeded = [r for r in self.records if r.succeeded]
            if histogram in ("itl", "itl_per_token"):
                groups: list[list[float]] = []
                for record in succeeded:
                    values = _record_values(record, histogram)
                    assert isinstance(values, list)
                    groups.append(values)
                population = ClusteredValues(groups)
                return population if population.count else None
            single = [_record_values(r, histogram) for r in succeeded]
            values = [v for v in single if isinstance(v, float | int)]
            return WeightedValues.of(values) if values else None
        assert self.metrics is not None
        return histogram_population(self.metrics, histogram)


def histogram_population(metrics: GroupMetrics, histogram: str) -> WeightedValues | None:
    """The histogram's buckets as weighted values (display unit), or None when empty."""
    hist = metrics.histograms[histogram]
    if hist.count == 0:
        return None
    hdr = HdrHistogram.decode(hist.encode())
    highs: list[float] = []
    mids: list[float] = []
    counts: list[int] = []
    for index, count in enumerate(list(hdr.counts)):
        if count:
            lowest = hdr.get_lowest_equivalent_value(hdr.get_value_from_index(index))
            highest = hdr.get_highest_equivalent_value(lowest)
            highs.append(highest / hist.scale)
            mids.append((lowest + ((highest - lowest + 1) >> 1)) / hist.scale)
            counts.append(count)
    return WeightedValues(highs, mids, counts)


@dataclass(frozen=True, slots=True)
class RunSide:
    """One side of a comparison: where it came from and its models' samples."""

    label: str
    source: Source
    models: dict[str, ModelSample]


def load_side(path: Path) -> RunSide:
    """A run directory (records.jsonl preferred, else report.json) or a report.json file."""
    if path.is_dir():
        records_path = path / RECORDS_FILE
        if records_path.exists() and records_path.stat().st_size > 0:
            return side_from_records(str(path), list(read_records(path)))
        report_path = path / REPORT_FILE
        if not report_path.exists():
            raise ReportError(f"{path} has neither {RECORDS_FILE} with records nor {REPORT_FILE}")
        return side_from_report(str(path), _read_report(report_path))
    if path.is_file():
        return side_from_report(str(path), _read_report(path))
    raise ReportError(f"{path} is neither a run directory nor a report.json file")


def _read_report(path: Path) -> dict[str, Any]:
    document = read_json_file(path)
    if not isinstance(document.get("groups"), list):
        raise ReportError(f"{path} is not an onybench report.json (no groups)")
    return document


def side_from_records(label: str, records: Sequence[RequestRecord]) -> RunSide:
    """Per-model records, warm-up left out, models in first-seen order."""
    by_model: dict[str, list[RequestRecord]] = {}
    for record in records:
        if record.stage == WARMUP_STAGE:
            continue
        by_model.setdefault(record.model, []).append(record)
    return RunSide(label, "records", {m: ModelSample(records=r) for m, r in by_model.items()})


def side_from_report(label: str, report: Mapping[str, Any]) -> RunSide:
    """Per-model histograms from report.json, warm-up left out, stages merged."""
    models: dict[str, GroupMetrics] = {}
    try:
        for group in report["groups"]:
            if group.get("stage") == WARMUP_STAGE:
                continue
            metrics = GroupMetrics.from_json(group["metrics"])
            models.setdefault(str(group["model"]), GroupMetrics()).merge(metrics)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"{label}: a group's metrics cannot be read ({exc})") from None
    return RunSide(
        label,
        "histograms",
        {m: ModelSample(metrics=g) for m, g in models.items() if g.requests},
    )


# --- the comparison ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One model × metric: both values, the change, its interval and significance.

    For latencies and rates the interval is of the *relative* change (0.12 =
    +12 %); for error_rate, whose baseline is often 0, of the absolute change
    (a fraction: 0.01 = +1 percentage point). `level` is the interval's error
    level (0.05 = a 95 % interval) after Holm's adjustment.
    """

    model: str
    metric: Metric
    baseline: float | None
    current: float | None
    baseline_count: int
    current_count: int
    interval: tuple[float, float] | None = None
    level: float | None = None
    p_value: float | None = None
    significant: bool = False
    reason: str = ""

    @property
    def absolute(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def relative(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return relative_change(self.baseline, self.current)

    @property
    def interval_is_relative(self) -> bool:
        return self.metric != ERROR_RATE


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """One gate judged for one model: the change, its interval at the Holm level, the verdict."""

    gate: Gate
    model: str
    estimate: float | None
    interval: tuple[float, float] | None
    level: float | None
    p_value: float | None
    passed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Comparison:
    """Everything `compare` found; `passed` is False when any gate failed."""

    baseline: str
    current: str
    baseline_source: Source
    current_source: Source
    alpha: float
    resamples: int
    seed: int
    changes: tuple[Change, ...]
    gates: tuple[GateVerdict, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return all(verdict.passed for verdict in self.gates)


@dataclass
class _Replicates:
    """A model × metric's values and sorted change replicates (relative and absolute)."""

    baseline: float
    current: float
    baseline_count: int
    current_count: int
    relative: list[float]
    absolute: list[float]


def _replicates(
    base: ModelSample, cur: ModelSample, metric: Metric, rng: random.Random, resamples: int
) -> _Replicates | str:
    """The replicates, or why the metric is not measured on a side."""
    if metric == ERROR_RATE:
        base_p, cur_p = base.proportion(), cur.proportion()
        if base_p is None or cur_p is None:
            return "not measured: no request recorded"
        base_r = base_p.replicates(rng, resamples)
        cur_r = cur_p.replicates(rng, resamples)
        b, c = base_p.rate, cur_p.rate
        nb, nc = base_p.trials, cur_p.trials
    else:
        assert metric.histogram is not None
        base_pop = base.population(metric.histogram)
        cur_pop = cur.population(metric.histogram)
        if base_pop is None or cur_pop is None:
            side = "baseline" if base_pop is None else "current run"
            return f"not measured: no {metric.histogram} value in the {side}"
        base_r = base_pop.replicates(metric.stat, rng, resamples)
        cur_r = cur_pop.replicates(metric.stat, rng, resamples)
        b, c = base_pop.statistic(metric.stat), cur_pop.statistic(metric.stat)
        nb, nc = base_pop.count, cur_pop.count
    pairs = [(x, y) for x, y in zip(base_r, cur_r, strict=True) if x == x and y == y]
    return _Replicates(
        b,
        c,
        nb,
        nc,
        sorted(relative_change(x, y) for x, y in pairs),
        sorted(y - x for x, y in pairs),
    )


def needed_resamples(requested: int, family: int, alpha: float) -> int:
    """`requested`, raised so Holm's strictest level (alpha / family) still leaves
    MIN_TAIL_REPLICATES replicates in each tail of its interval."""
    needed = requested
    while family and interval_index(alpha / family, needed) < MIN_TAIL_REPLICATES:
        needed = math.ceil(needed * 1.25)
    return needed


def compare(
    baseline: RunSide,
    current: RunSide,
    *,
    gates: Sequence[Gate] = (),
    metrics: Sequence[Metric] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> Comparison:
    """Compare `current` with `baseline`; see the module docstring.

    Each model × metric draws from its own `random.Random`, seeded by `seed`,
    the model and the metric, so results do not depend on which other rows
    are compared.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    chosen = list(DEFAULT_METRICS_PARSED if metrics is None else metrics)
    for gate in gates:
        if gate.metric not in chosen:
            chosen.append(gate.metric)
    notes: list[str] = []
    common = [m for m in baseline.models if m in current.models]
    for model in baseline.models:
        if model not in current.models:
            notes.append(f"{model} is in the baseline only")
    for model in current.models:
        if model not in baseline.models:
            notes.append(f"{model} is in the current run only")

    rows = [(model, metric) for model in common for metric in chosen]
    gate_cases = [
        (gate, model)
        for gate in gates
        for model in ([gate.model] if gate.model is not None else list(baseline.models))
    ]
    resamples = needed_resamples(resamples, max(len(rows), len(gate_cases)), alpha)

    computed: dict[tuple[str, str], _Replicates | str] = {}

    def replicates_of(model: str, metric: Metric) -> _Replicates | str:
        key = (model, metric.name)
        if key not in computed:
            if model not in baseline.models:
                computed[key] = f"not measured: {model} is not in the baseline"
            elif model not in current.models:
                computed[key] = f"not measured: {model} is not in the current run"
            else:
                rng = random.Random(f"{seed}:{model}:{metric.name}")
                computed[key] = _replicates(
                    baseline.models[model], current.models[model], metric, rng, resamples
                )
        return computed[key]

    changes = _judge_rows(rows, replicates_of, alpha)
    verdicts = _judge_gates(gate_cases, replicates_of, alpha)
    return Comparison(
        baseline=baseline.label,
        current=current.label,
        baseline_source=baseline.source,
        current_source=current.source,
        alpha=alpha,
        resamples=resamples,
        seed=seed,
        changes=tuple(changes),
        gates=tuple(verdicts),
        notes=tuple(notes),
    )


DEFAULT_METRICS_PARSED: tuple[Metric, ...] = tuple(
    ERROR_RATE if name == "error_rate" else Metric(*name.split(".", 1)) for name in DEFAULT_METRICS
)

Lookup = Callable[[str, Metric], "_Replicates | str"]


def _judge_rows(rows: Sequence[tuple[str, Metric]], lookup: Lookup, alpha: float) -> list[Change]:
    measured: list[tuple[int, list[float]]] = []
    results: list[Change] = []
    for index, (model, metric) in enumerate(rows):
        data = lookup(model, metric)
        if isinstance(data, str):
            results.append(Change(model, metric, None, None, 0, 0, reason=data))
            continue
        ordered = data.absolute if metric == ERROR_RATE else data.relative
        measured.append((index, ordered))
        results.append(
            Change(
                model, metric, data.baseline, data.current, data.baseline_count, data.current_count
            )
        )
    decisions = holm([p_value_changed(ordered) for _, ordered in measured], alpha)
    for (index, ordered), decision in zip(measured, decisions, strict=True):
        row = results[index]
        results[index] = Change(
            row.model,
            row.metric,
            row.baseline,
            row.current,
            row.baseline_count,
            row.current_count,
            interval=percentile_interval(ordered, decision.level),
            level=decision.level,
            p_value=decision.adjusted_p,
            significant=decision.rejected,
        )
    return results


def _judge_gates(
    cases: Sequence[tuple[Gate, str]], lookup: Lookup, alpha: float
) -> list[GateVerdict]:
    tested: list[tuple[int, list[float], float]] = []
    results: list[GateVerdict] = []
    for index, (gate, model) in enumerate(cases):
        data = lookup(model, gate.metric)
        if isinstance(data, str):
            results.append(GateVerdict(gate, model, None, None, None, None, False, data))
            continue
        ordered = data.relative if gate.relative else data.absolute
        estimate = (
            relative_change(data.baseline, data.current)
            if gate.relative
            else data.current - data.baseline
        )
        margin = gate.direction * gate.margin
        p = p_value_above(ordered, margin) if gate.direction > 0 else p_value_below(ordered, margin)
        tested.append((index, ordered, p))
        results.append(GateVerdict(gate, model, estimate, None, None, None, True))
    decisions: list[HolmDecision] = holm([p for _, _, p in tested], alpha)
    for (index, ordered, _), decision in zip(tested, decisions, strict=True):
        verdict = results[index]
        results[index] = GateVerdict(
            verdict.gate,
            verdict.model,
            verdict.estimate,
            percentile_interval(ordered, decision.level),
            decision.level,
            decision.adjusted_p,
            passed=not decision.rejected,
            reason=_gate_reason(verdict.gate, decision.rejected),
        )
    return results


def _gate_reason(gate: Gate, failed: bool) -> str:
    side = "lower" if gate.direction > 0 else "upper"
    beyond = "above" if gate.direction > 0 else "below"
    if failed:
        return f"the interval's {side} bound is {beyond} the margin: a real change, not noise"
    return f"the interval's {side} bound is not {beyond} the margin"
