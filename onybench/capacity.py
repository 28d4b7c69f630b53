"""Capacity planning, the pure part: a sweep's levels judged against SLOs, the
capacity and the knee found, and the cost at capacity projected.

Definitions (the README's "Capacity planning" section says the same):

- An SLO is a threshold in the scenarios' grammar (`onybench.thresholds`).
  Every SLO is judged on a level's figures as a gate is (`ttft.p95 < 500ms`
  on the level's TTFT p95). A latency SLO is also a per-request bound: a
  request meets ``ttft.p95 < 500ms`` when its own TTFT is under 500 ms (for
  ``itl`` and ``itl_per_token``, the stat of its own gaps: its p95 gap). A
  failed request meets no SLO; a request without the value (no new
  connection for ``connect``) is not judged on it.
- SLO attainment = share of a level's requests (started after its warm-up,
  dropped arrivals included) that met every per-request SLO.
- Throughput: at a concurrency level, by Little's law, requests/s =
  concurrency × models / (mean end-to-end latency of the level's requests +
  think time)
  (free of the start and end effects of a short hold); at a rate level, the
  requests that completed during the hold, per second of hold.
  Tokens/s and goodput are that rate times the mean output tokens per request
  and times the share of requests meeting every SLO.
- goodput = requests per second that met every SLO (vLLM's ``--goodput``).
- sustained: at a rate level, achieved requests/s ≥ `SUSTAIN_RATIO` (95 %)
  of the offered rate (arrivals scheduled during the hold, sent or dropped,
  per second) and no arrival dropped. A concurrency level offers no rate:
  the client holds the concurrency by construction, so it is sustained.
- A level is within SLOs when attainment ≥ the target (default 90 %), every
  SLO holds on its figures, and it was sustained. Capacity = the highest
  level within SLOs.
- knee = the first level whose relative throughput gain over the previous
  level is under `knee_gain` (10 %) of its relative load increase, or whose
  TTFT p95 is more than `knee_ttft_factor` (2) times the lowest level's.

Costs are projected at capacity, per currency, never added across currencies
(see `project_costs`).
"""

from __future__ import annotations

import itertools
import statistics
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, Literal

from onybench.decimals import decimal_text
from onybench.gates.evaluate import ModelFigures, evaluate_threshold
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import HISTOGRAM_UNITS, UNKNOWN_CURRENCY, GroupMetrics
from onybench.pricing import SECONDS_PER_HOUR, Money, Pricing, per_mtok_at_rate
from onybench.report.timeline import nearest_rank
from onybench.sweep_plan import DEFAULT_TARGET, KNEE_GAIN, KNEE_TTFT_FACTOR, SweepMode
from onybench.thresholds import Threshold

SUSTAIN_RATIO = 0.95
HOURS_PER_MONTH = 730  # 365 days * 24 h / 12
COST_DIGITS = 12  # significant digits of projected amounts (a measured rate is a float)

# A record's per-request value of each histogram, in the histogram's stored units
# per ns: single values, and the gap lists that `itl` stats reduce.
_SINGLE: dict[str, Callable[[RequestRecord], float | None]] = {
    "ttft": lambda r: r.ttft_ns,
    "ttft_content": lambda r: r.ttft_content_ns,
    "tpot": lambda r: r.tpot_ns,
    "e2e": lambda r: r.e2e_ns,
    "connect": lambda r: r.connect_ns,
    "schedule_lag": lambda r: r.schedule_lag_ns,
    "ttft_from_intended": lambda r: r.ttft_from_intended_ns,
    "e2e_from_intended": lambda r: r.e2e_from_intended_ns,
}
_GAPS: dict[str, Callable[[RequestRecord], Sequence[float]]] = {
    "itl": lambda r: r.itl_ns,
    "itl_per_token": lambda r: r.itl_per_token_ns,
}


@dataclass(frozen=True, slots=True)
class _Bound:
    threshold: Threshold
    metric: str
    stat: str


class RequestSlos:
    """The per-request reading of the SLOs (see the module docstring)."""

    def __init__(self, slos: Sequence[Threshold]) -> None:
        self.slos = tuple(slos)
        self._bounds = [bound for bound in map(_bound, slos) if bound is not None]

    def met(self, record: RequestRecord) -> bool:
        """Whether `record` met every per-request SLO."""
        if not record.succeeded:
            return False
        for bound in self._bounds:
            if bound.threshold.model is not None and bound.threshold.model != record.model:
                continue
            value_ms = _request_value_ms(record, bound)
            if value_ms is not None and not bound.threshold.holds(value_ms):
                return False
        return True


def _bound(threshold: Threshold) -> _Bound | None:
    metric, _, rest = threshold.figure.partition(".")
    if metric not in _SINGLE and metric not in _GAPS:
        return None  # not a latency of one request: judged on the level's figures only
    unit = HISTOGRAM_UNITS[metric][0]
    return _Bound(threshold, metric, rest.removesuffix(f"_{unit}"))


def _request_value_ms(record: RequestRecord, bound: _Bound) -> float | None:
    if bound.metric in _SINGLE:
        value_ns = _SINGLE[bound.metric](record)
        return None if value_ns is None else value_ns / 1e6
    gaps = _GAPS[bound.metric](record)
    if not gaps:
        return None
    stat = bound.stat
    if stat == "mean":
        value_ns = statistics.fmean(gaps)
    elif stat == "stdev":
        value_ns = statistics.pstdev(gaps)
    elif stat in ("min", "max"):
        value_ns = min(gaps) if stat == "min" else max(gaps)
    else:
        percentile = float(stat.removeprefix("p").replace("_", "."))
        ranked = nearest_rank(array("q", (round(g) for g in gaps)), (percentile,))
        assert ranked is not None
        value_ns = ranked[0]
    return value_ns / 1e6


CostSource = Literal["api", "pricing"]


@dataclass
class Spend:
    """What one level's requests cost from one source in one currency, and what it bought."""

    amount: Decimal = Decimal(0)
    requests: int = 0
    output_tokens: int = 0


@dataclass
class LevelTally:
    """What one level's records add up to, folded as they arrive.

    `window_start_ns` / `window_end_ns` bound the hold on the records' clock.
    """

    slos: RequestSlos
    window_start_ns: int
    window_end_ns: int
    measured: int = 0
    succeeded: int = 0
    good: int = 0
    output_tokens: int = 0
    e2e_sum_ns: int = 0
    completed_in_window: int = 0
    good_in_window: int = 0
    output_tokens_in_window: int = 0
    spend: dict[tuple[CostSource, str], Spend] = field(default_factory=dict)

    def add(self, record: RequestRecord, *, measured: bool) -> None:
        """Fold in one record; `measured` is False for warm-up requests."""
        good = self.slos.met(record)
        if self.window_start_ns <= record.end_ns <= self.window_end_ns and record.succeeded:
            self.completed_in_window += 1
            self.good_in_window += good
            self.output_tokens_in_window += record.output_token_count
        if not measured:
            return
        self.measured += 1
        self.e2e_sum_ns += record.e2e_ns
        self.good += good
        output_tokens = record.output_token_count if record.succeeded else 0
        if record.succeeded:
            self.succeeded += 1
            self.output_tokens += output_tokens
        if record.cost_amount is not None:
            source: CostSource = "pricing" if record.cost_source == "pricing" else "api"
            key = (source, record.cost_currency or UNKNOWN_CURRENCY)
            spend = self.spend.setdefault(key, Spend())
            spend.amount += record.cost_amount
            spend.requests += 1
            spend.output_tokens += output_tokens


@dataclass(frozen=True, slots=True)
class LevelResult:
    """One level of a sweep, judged. Rates per second; `attainment` 0..1."""

    mode: SweepMode
    level: float
    stage: str
    hold_s: float
    requests: int
    succeeded: int
    dropped: int
    good: int
    attainment: float | None
    offered_per_s: float | None
    achieved_per_s: float
    goodput_per_s: float
    output_tokens_per_s: float
    sustained: bool
    slo_failures: tuple[str, ...]
    within_slo: bool
    # The level's measured requests per model (warm-up left out).
    groups: Mapping[str, GroupMetrics] = field(default_factory=dict)
    # Their cost by source and currency.
    spend: Mapping[tuple[CostSource, str], Spend] = field(default_factory=dict)

    def merged(self) -> GroupMetrics:
        """Every model's figures folded together."""
        total = GroupMetrics()
        for group in self.groups.values():
            total.merge(group)
        return total


def judge_level(
    *,
    mode: SweepMode,
    level: float,
    stage: str,
    hold_s: float,
    tally: LevelTally,
    groups: Mapping[str, GroupMetrics],
    target: float = DEFAULT_TARGET,
    think_time_s: float = 0.0,
) -> LevelResult:
    """A level's figures and verdict from its tally and its per-model groups
    (`think_time_s`: a closed loop's pause between a worker's requests)."""
    dropped = sum(group.dropped for group in groups.values())
    judged = tally.measured + dropped
    attainment = tally.good / judged if judged else None
    if mode == "concurrency":
        mean_e2e_s = tally.e2e_sum_ns / tally.measured / 1e9 if tally.measured else 0.0
        cycle_s = mean_e2e_s + think_time_s
        started_per_s = level * len(groups) / cycle_s if cycle_s > 0 else 0.0
        share = started_per_s / tally.measured if tally.measured else 0.0
        achieved = tally.succeeded * share
        goodput = tally.good * share
        tokens = tally.output_tokens * share
        offered = None
        sustained = True
    else:
        achieved = tally.completed_in_window / hold_s
        goodput = tally.good_in_window / hold_s
        tokens = tally.output_tokens_in_window / hold_s
        offered = judged / hold_s
        sustained = dropped == 0 and achieved >= SUSTAIN_RATIO * offered
    failures = []
    if attainment is None or attainment < target:
        shown = "none measured" if attainment is None else f"{attainment:.1%}"
        failures.append(f"attainment {shown} < {target:.0%}")
    models = [ModelFigures(model, group.figures()) for model, group in groups.items()]
    for threshold in tally.slos.slos:
        for outcome in evaluate_threshold(threshold, models):
            if not outcome.passed:
                measured = "not measured" if outcome.measured is None else f"{outcome.measured:g}"
                failures.append(f"{outcome.text} ({outcome.model}: {measured})")
    if not sustained:
        failures.append(
            f"not sustained: {achieved:.3g}/s of {offered or 0:.3g}/s offered, {dropped} dropped"
        )
    return LevelResult(
        mode=mode,
        level=level,
        stage=stage,
        hold_s=hold_s,
        requests=tally.measured,
        succeeded=tally.succeeded,
        dropped=dropped,
        good=tally.good,
        attainment=attainment,
        offered_per_s=offered,
        achieved_per_s=achieved,
        goodput_per_s=goodput,
        output_tokens_per_s=tokens,
        sustained=sustained,
        slo_failures=tuple(failures),
        within_slo=not failures,
        groups=dict(groups),
        spend=dict(tally.spend),
    )


# --- capacity and knee -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Analysis:
    """Levels in load order, with the capacity and the knee found among them."""

    levels: tuple[LevelResult, ...]
    capacity: LevelResult | None
    knee: LevelResult | None
    knee_reason: str


def analyze(
    levels: Iterable[LevelResult],
    *,
    knee_gain: float = KNEE_GAIN,
    knee_ttft_factor: float = KNEE_TTFT_FACTOR,
) -> Analysis:
    """Capacity (highest level within SLOs) and knee (see the module docstring)."""
    ordered = tuple(sorted(levels, key=lambda result: result.level))
    within = [result for result in ordered if result.within_slo]
    knee, reason = find_knee(ordered, knee_gain, knee_ttft_factor)
    return Analysis(ordered, within[-1] if within else None, knee, reason)


def find_knee(
    ordered: Sequence[LevelResult], knee_gain: float, knee_ttft_factor: float
) -> tuple[LevelResult | None, str]:
    """The first level past the knee, and why; (None, "") when no level is."""
    base_ttft = _ttft_p95(ordered[0]) if ordered else None
    for previous, current in itertools.pairwise(ordered):
        gain = throughput_gain(previous, current)
        load_increase = (current.level - previous.level) / previous.level
        if gain is not None and gain < knee_gain * load_increase:
            return current, (
                f"throughput {gain:+.1%} for +{load_increase:.0%} load "
                f"(under {knee_gain:.0%} of it)"
            )
        ttft = _ttft_p95(current)
        if base_ttft is not None and ttft is not None and ttft > knee_ttft_factor * base_ttft:
            return current, (
                f"TTFT p95 {ttft:.0f} ms > {knee_ttft_factor:g} x the lowest level's "
                f"{base_ttft:.0f} ms"
            )
    return None, ""


def throughput_gain(previous: LevelResult, current: LevelResult) -> float | None:
    """Relative gain in achieved requests/s from `previous` to `current`."""
    if previous.achieved_per_s <= 0:
        return None
    return current.achieved_per_s / previous.achieved_per_s - 1


def _ttft_p95(result: LevelResult) -> float | None:
    value = result.merged().figures().get("ttft.p95_ms")
    return float(value) if isinstance(value, int | float) else None


# --- cost --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostProjection:
    """Spending at a level, in one currency. `source`: the API's reported cost
    (``api``), the scenario's token prices (``pricing``), or the deployment's
    price per hour (``price_per_hour``)."""

    source: Literal["api", "pricing", "price_per_hour"]
    currency: str
    per_request: Decimal | None
    per_hour: Decimal
    per_month: Decimal
    per_1m_output_tokens: Decimal | None
    # Output tokens/s bought by one currency unit per hour (tokens/s ÷ cost per hour).
    tokens_per_s_per_unit_hour: float | None

    def to_json(self) -> dict[str, Any]:
        def text(amount: Decimal | None) -> str | None:
            return None if amount is None else decimal_text(amount)

        return {
            "source": self.source,
            "currency": self.currency,
            "per_request": text(self.per_request),
            "per_hour": text(self.per_hour),
            "per_month": text(self.per_month),
            "per_1m_output_tokens": text(self.per_1m_output_tokens),
            "tokens_per_s_per_unit_hour": self.tokens_per_s_per_unit_hour,
        }


def project_costs(result: LevelResult, pricing: Pricing | None) -> list[CostProjection]:
    """What running at `result`'s load costs, per currency.

    ``api``: the cost the server reported; ``pricing``: the cost the scenario's
    price table gave requests that reported none (`pricing.with_estimated_cost`,
    applied as records arrive). The cost per hour is the level's spend per
    second of hold; per request and per 1M output tokens, over the requests
    and tokens that spend covers. ``price_per_hour``: the deployment's fixed
    price, turned into cost per request and per 1M output tokens at the
    level's throughput. A month is 730 hours.
    """
    projections = []
    for (source, currency), spend in result.spend.items():
        per_hour = _rounded(spend.amount * SECONDS_PER_HOUR / _decimal(result.hold_s))
        tokens_per_s = (
            spend.output_tokens
            * result.output_tokens_per_s
            / max(1, sum(g.output_tokens for g in result.groups.values()))
        )
        projections.append(
            CostProjection(
                source=source,
                currency=currency,
                per_request=_rounded(spend.amount / spend.requests) if spend.requests else None,
                per_hour=per_hour,
                per_month=per_hour * HOURS_PER_MONTH,
                per_1m_output_tokens=_rounded(spend.amount * 1_000_000 / spend.output_tokens)
                if spend.output_tokens
                else None,
                tokens_per_s_per_unit_hour=tokens_per_s / float(per_hour) if per_hour else None,
            )
        )
    hourly = pricing.hourly() if pricing is not None else None
    if hourly is not None:
        projections.append(_hourly_projection(hourly, result))
    return projections


def _hourly_projection(hourly: Money, result: LevelResult) -> CostProjection:
    per_mtok = per_mtok_at_rate(hourly, result.output_tokens_per_s)
    per_request = (
        _rounded(hourly.amount / (_decimal(result.achieved_per_s) * SECONDS_PER_HOUR))
        if result.achieved_per_s > 0
        else None
    )
    return CostProjection(
        source="price_per_hour",
        currency=hourly.currency,
        per_request=per_request,
        per_hour=hourly.amount,
        per_month=hourly.amount * HOURS_PER_MONTH,
        per_1m_output_tokens=None if per_mtok is None else per_mtok.amount,
        tokens_per_s_per_unit_hour=result.output_tokens_per_s / float(hourly.amount)
        if hourly.amount
        else None,
    )


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))


def _rounded(amount: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = COST_DIGITS
        return (+amount).normalize()
