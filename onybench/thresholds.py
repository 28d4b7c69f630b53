"""Threshold expressions: ``ttft.p95 < 800ms``, parsed into the figure they read.

The grammar (one expression per threshold, spaces optional between parts)::

    metric[.stat][{model=NAME}] OP VALUE [UNIT]

    OP     < <= > >= == !=
    stat   min mean stdev p50 p90 p95 p99 p99.9 (or p99_9) max, for histograms
           (and count, overflow)
    UNIT   latencies: ns us µs ms s m min h (converted to the figure's ms)
           error_rate: % (converted to a fraction) or none (a fraction 0..1)
           costs: a currency code, e.g. USD (it picks the figure: cost.total_usd)
           counts and rates: none

A threshold reads one figure of report.json, named as `GroupMetrics.figures`
names it (``ttft.p95_ms``, ``error_rate``, ``output_throughput.tokens_per_s``,
``cost.total_usd``, …); the report's own figure names are accepted too
(``ttft.p95_ms < 800`` needs no unit: the name carries it). The limit is
converted to the figure's unit with exact decimal arithmetic, so ``0.8s`` is
exactly 800 ms. ``{model=…}`` restricts it to one model; without a selector it
applies to every model.

Every mistake is a `ScenarioError` saying what is wrong and what is expected.
This module only parses; evaluating thresholds as gates is `gates.py`'s job.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from onybench.errors import ScenarioError
from onybench.metrics.histogram import STAT_NAMES
from onybench.metrics.summary import HISTOGRAM_UNITS

SHAPE = "metric.stat{model=NAME} OP value unit, e.g. 'ttft.p95 < 800ms'"

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
OPERATORS: tuple[str, ...] = tuple(_COMPARISONS)


@dataclass(frozen=True, slots=True)
class Threshold:
    """A parsed threshold: `figure` `op` `value`, for `model` (None: every model).

    `value` is in the figure's own unit (ms for latencies, a fraction for
    error_rate, the currency for costs).
    """

    text: str
    figure: str
    op: str
    value: float
    model: str | None

    def holds(self, measured: float) -> bool:
        """Whether a measured figure passes this threshold."""
        return compare(self.op, measured, self.value)


def compare(op: str, measured: float, limit: float) -> bool:
    """``measured OP limit``; ``==`` and ``!=`` compare exactly."""
    try:
        return _COMPARISONS[op](measured, limit)
    except KeyError:
        raise ValueError(f"{op!r} is not one of {' '.join(OPERATORS)}") from None


# --- what can be named --------------------------------------------------------------

Kind = Literal["latency", "seconds", "fraction", "count", "rate", "money"]

LATENCY_HISTOGRAMS: tuple[str, ...] = tuple(
    name for name, (unit, _) in HISTOGRAM_UNITS.items() if unit == "ms"
)
RATE_HISTOGRAMS: tuple[str, ...] = tuple(
    name for name, (unit, _) in HISTOGRAM_UNITS.items() if unit != "ms"
)
_STAT_ALIASES = {"p99.9": "p99_9"}
_STAT_HINTS = {
    "avg": "mean",
    "average": "mean",
    "median": "p50",
    "med": "p50",
    "std": "stdev",
    "stddev": "stdev",
    "sd": "stdev",
    "p999": "p99.9",
    "p100": "max",
    "p0": "min",
    "maximum": "max",
    "minimum": "min",
}
_STATS_TEXT = "min mean stdev p50 p90 p95 p99 p99.9 max"

# name as written -> (figure, kind). Aliases point at the same figure.
_SINGLE_FIGURES: dict[str, tuple[str, Kind]] = {
    "error_rate": ("error_rate", "fraction"),
    "duration": ("duration_s", "seconds"),
    "duration_s": ("duration_s", "seconds"),
    "request_throughput.per_s": ("request_throughput.per_s", "rate"),
    "request_throughput": ("request_throughput.per_s", "rate"),
    "requests_per_s": ("request_throughput.per_s", "rate"),
    "output_throughput.tokens_per_s": ("output_throughput.tokens_per_s", "rate"),
    "output_throughput": ("output_throughput.tokens_per_s", "rate"),
    "output_tokens_per_s": ("output_throughput.tokens_per_s", "rate"),
    "total_throughput.tokens_per_s": ("total_throughput.tokens_per_s", "rate"),
    "total_throughput": ("total_throughput.tokens_per_s", "rate"),
    "total_tokens_per_s": ("total_throughput.tokens_per_s", "rate"),
    "tokens.output": ("tokens.output", "count"),
    "tokens.prompt": ("tokens.prompt", "count"),
    "tokens.estimated_requests": ("tokens.estimated_requests", "count"),
    "tokens.prompt_requested": ("tokens.prompt_requested", "count"),
    "tokens.output_requested": ("tokens.output_requested", "count"),
    "requests.total": ("requests.total", "count"),
    "requests.succeeded": ("requests.succeeded", "count"),
    "requests.failed": ("requests.failed", "count"),
    "requests.dropped": ("requests.dropped", "count"),
}
_COST_FIGURES = ("cost.total", "cost.per_1m_output_tokens")
_GROUPS = ("tokens", "requests", "errors", "cost")
_METRIC_HINTS = {
    "latency": "e2e",
    "e2e_latency": "e2e",
    "time_to_first_token": "ttft",
    "inter_token_latency": "itl",
    "throughput": "output_tokens_per_s",
    "tokens_per_s": "output_tokens_per_s",
    "rps": "requests_per_s",
    "errors": "error_rate",
    "failures": "requests.failed",
    "cost": "cost.total",
    "price": "cost.total",
}

# --- units ----------------------------------------------------------------------------

_MS_PER_UNIT = {
    "ns": Decimal("0.000001"),
    "us": Decimal("0.001"),
    "µs": Decimal("0.001"),  # MICRO SIGN
    "μs": Decimal("0.001"),  # GREEK SMALL LETTER MU
    "ms": Decimal(1),
    "s": Decimal(1000),
    "sec": Decimal(1000),
    "m": Decimal(60_000),
    "min": Decimal(60_000),
    "h": Decimal(3_600_000),
}
_TIME_UNITS_TEXT = "ms, s, us, µs or m"
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_RATE_UNITS = ("/s", "per_s", "rps", "tps")

# --- the scanner --------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_SPACE = re.compile(r"\s*")
_OPERATOR = re.compile(r"<=|>=|==|!=|=<|=>|<>|≤|≥|≠|<|>|=")
_OPERATOR_FIXES = {"=<": "<=", "=>": ">=", "<>": "!=", "≤": "<=", "≥": ">=", "≠": "!=", "=": "=="}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_UNIT = re.compile(r"%|[^\W\d_]+(?:/[^\W\d_]+)?|/[^\W\d_]+")


def parse_threshold(text: str) -> Threshold:
    """Parse ``metric.stat{model=…} OP value unit``; see the module docstring.

    Raises ScenarioError naming the mistake (and the expected shape).
    """
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def fail(self, problem: str) -> ScenarioError:
        return ScenarioError(f"threshold {self.text!r}: {problem}; the shape is {SHAPE}")

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.position)
        assert match is not None  # \s* matches the empty string
        self.position = match.end()

    def rest(self) -> str:
        return self.text[self.position :]

    def parse(self) -> Threshold:
        if not self.text.strip():
            raise self.fail("it is empty")
        self.skip_space()
        name = self.metric_name()
        self.skip_space()
        model = self.selector() if self.rest().startswith("{") else None
        self.skip_space()
        op = self.operator(name)
        self.skip_space()
        number = self.number(op)
        self.skip_space()
        unit = self.unit()
        self.skip_space()
        if self.rest():
            if _OPERATOR.match(self.rest()):
                raise self.fail(
                    f"two comparisons; write one threshold per bound, e.g. "
                    f"'{name} > …' and '{name} < …'"
                )
            raise self.fail(f"unexpected {self.rest()!r} after the value")
        figure, value = _resolve(name, op, number, unit, self.fail)
        return Threshold(self.text, figure, op, value, model)

    def metric_name(self) -> str:
        rest = self.rest()
        match = _NAME.match(rest)
        if match is None:
            if _OPERATOR.match(rest):
                raise self.fail(f"no metric before {rest[0]!r}")
            if _NUMBER.match(rest):
                raise self.fail(
                    "it starts with a number; put the metric on the left, e.g. "
                    "'ttft.p95 < 800ms' rather than '800ms > ttft.p95'"
                )
            raise self.fail(f"{rest.split()[0]!r} is not a metric name")
        self.position += match.end()
        name = match.group()
        # p99.9 is written with a dot but named p99_9 in report.json.
        name = re.sub(r"\.p(\d+)\.(\d+)$", r".p\1_\2", name)
        if self.rest().startswith("."):
            raise self.fail(f"{name + '.'!r} is cut short; name a statistic after the dot")
        return name

    def selector(self) -> str:
        start = self.position
        end = self.text.find("}", start)
        if end < 0:
            raise self.fail("the {model=...} selector is not closed; add '}'")
        self.position = end + 1
        inside = self.text[start + 1 : end].strip()
        if not inside:
            raise self.fail("the selector {} is empty; write {model=NAME} or leave it out")
        model: str | None = None
        for part in inside.split(","):
            key, equals, value = part.partition("=")
            key = key.strip()
            if not equals:
                raise self.fail(f"the selector {{{part.strip()}}} has no '='; write {{model=NAME}}")
            if key != "model":
                close = difflib.get_close_matches(key, ["model"], n=1)
                hint = " (did you mean model?)" if close else ""
                raise self.fail(
                    f"unknown selector key {key!r}{hint}; the only key is model, e.g. "
                    "{model=openai/gpt-4o-mini}"
                )
            value = value.strip()
            if value.startswith("="):
                raise self.fail("the selector takes a single '=': {model=NAME}")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            if not value:
                raise self.fail("the selector names no model: write {model=NAME}")
            if model is not None:
                raise self.fail("the selector names model twice; give one model per threshold")
            model = value
        self.skip_space()
        if self.rest().startswith("."):
            raise self.fail(
                "the {model=...} selector goes after the statistic, e.g. "
                "'ttft.p95{model=openai/gpt-4o-mini} < 1s'"
            )
        assert model is not None
        return model

    def operator(self, name: str) -> str:
        match = _OPERATOR.match(self.rest())
        if match is None:
            found = self.rest().split()[0] if self.rest().strip() else "nothing"
            raise self.fail(
                f"no comparison operator after {name!r} (found {found!r}); "
                f"use one of {' '.join(OPERATORS)}"
            )
        op = match.group()
        if op in _OPERATOR_FIXES:
            raise self.fail(f"{op!r} is not an operator; write {_OPERATOR_FIXES[op]!r}")
        self.position += match.end()
        self.skip_space()
        second = _OPERATOR.match(self.rest())
        if second:
            raise self.fail(f"two operators, {op!r} and {second.group()!r}; use one")
        return op

    def number(self, op: str) -> Decimal:
        rest = self.rest()
        match = _NUMBER.match(rest)
        if match is None:
            if not rest:
                raise self.fail(f"no value after {op!r}")
            if rest[0] in "$€£":
                raise self.fail(
                    f"write the currency code after the amount, e.g. '< 0.50 USD', not {rest!r}"
                )
            raise self.fail(f"expected a number after {op!r}, found {rest.split()[0]!r}")
        self.position += match.end()
        return Decimal(match.group())

    def unit(self) -> str | None:
        match = _UNIT.match(self.rest())
        if match is None:
            return None
        self.position += match.end()
        return match.group()


# --- meaning ----------------------------------------------------------------------


def _resolve(
    name: str,
    op: str,
    number: Decimal,
    unit: str | None,
    fail: Callable[[str], ScenarioError],
) -> tuple[str, float]:
    """(figure name, limit in the figure's unit) for a metric as written."""
    figure, kind, currency = _figure(name, unit, fail)
    if number < 0:
        what = {"latency": "a latency", "seconds": "a duration", "money": "a cost"}.get(
            kind, "this figure"
        )
        raise fail(f"the limit {number} is negative, and {what} never is")
    value = _in_figure_unit(name, op, number, unit, figure, kind, currency, fail)
    return figure, float(value)


def _figure(
    name: str, unit: str | None, fail: Callable[[str], ScenarioError]
) -> tuple[str, Kind, str | None]:
    """(figure, kind, currency fixed by the name) for `name`; unknown names fail."""
    if name in _SINGLE_FIGURES:
        figure, kind = _SINGLE_FIGURES[name]
        return figure, kind, None
    head, _, stat = name.partition(".")
    if head in LATENCY_HISTOGRAMS or head in RATE_HISTOGRAMS:
        return _histogram_figure(head, stat, fail)
    if head == "errors" and re.fullmatch(r"[a-z0-9_]+", stat):
        return name, "count", None
    if name in _COST_FIGURES:
        if unit is None or not _CURRENCY.fullmatch(unit) or unit in _MS_PER_UNIT:
            return name, "money", None  # the unit check explains what is missing
        return f"{name}_{unit.lower()}", "money", unit.upper()
    for cost in _COST_FIGURES:
        currency = name.removeprefix(cost + "_")
        if currency != name and re.fullmatch(r"[a-z]+", currency):
            return name, "money", currency.upper()
    for single in _SINGLE_FIGURES:
        if name.startswith(single + "."):
            raise fail(
                f"{single} is a single figure and takes no statistic: write '{single} OP value'"
            )
    raise fail(_unknown_metric(name))


def _histogram_figure(
    head: str, stat: str, fail: Callable[[str], ScenarioError]
) -> tuple[str, Kind, str | None]:
    latency = head in LATENCY_HISTOGRAMS
    if not stat:
        raise fail(f"{head} needs a statistic, e.g. {head}.p95; one of {_STATS_TEXT} (or count)")
    if stat in ("count", "overflow"):
        return f"{head}.{stat}", "count", None
    if latency and stat.endswith("_ms") and stat.removesuffix("_ms") in STAT_NAMES:
        return f"{head}.{stat}", "latency", None
    stat = _STAT_ALIASES.get(stat, stat)
    if stat in STAT_NAMES:
        if latency:
            return f"{head}.{stat}_ms", "latency", None
        return f"{head}.{stat}", "rate", None
    written = stat.replace("_", ".")
    if written in _STAT_HINTS:
        hint = f" (did you mean {head}.{_STAT_HINTS[written]}?)"
    elif re.fullmatch(r"p\d+(?:\.\d+)?", written):
        hint = " (that percentile is not recorded)"
    else:
        close = difflib.get_close_matches(stat, STAT_NAMES, n=1)
        hint = f" (did you mean {head}.{close[0].replace('_', '.')}?)" if close else ""
    raise fail(f"{written!r} is not a statistic of {head}{hint}; use one of {_STATS_TEXT}")


def _unknown_metric(name: str) -> str:
    candidates = [
        *_SINGLE_FIGURES,
        *LATENCY_HISTOGRAMS,
        *RATE_HISTOGRAMS,
        *_COST_FIGURES,
        "errors.CLASS",
    ]
    head, _, stat = name.partition(".")
    suggestion = _METRIC_HINTS.get(name)
    if suggestion is None:
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        suggestion = close[0] if close else None
    if suggestion is None:
        # A misspelt histogram or group keeps its statistic: ttf.p95 -> ttft.p95.
        head_close = difflib.get_close_matches(head, candidates, n=1, cutoff=0.6)
        head_hint = _METRIC_HINTS.get(head) or (head_close[0] if head_close else None)
        if head_hint is not None:
            keeps_stat = stat and head_hint in (*LATENCY_HISTOGRAMS, *RATE_HISTOGRAMS)
            suggestion = f"{head_hint}.{stat}" if keeps_stat else head_hint
    if head in _GROUPS and suggestion is None:
        members = sorted(n for n in candidates if n.startswith(head + "."))
        return f"unknown metric {name!r}; {head} has {', '.join(members)}"
    hint = f"; did you mean {suggestion}?" if suggestion else "."
    return (
        f"unknown metric {name!r}{hint} Metrics: {', '.join(LATENCY_HISTOGRAMS)} (with a "
        f"statistic), error_rate, requests_per_s, output_tokens_per_s, total_tokens_per_s, "
        f"requests.*, errors.CLASS, tokens.*, cost.total, cost.per_1m_output_tokens"
    )


def _in_figure_unit(
    name: str,
    op: str,
    number: Decimal,
    unit: str | None,
    figure: str,
    kind: Kind,
    currency: str | None,
    fail: Callable[[str], ScenarioError],
) -> Decimal:
    """``number unit`` in `figure`'s unit, or a precise complaint."""
    shown = f"{name} {op} {number}"
    if kind in ("latency", "seconds"):
        what = "a latency" if kind == "latency" else "a duration"
        name_carries_unit = figure == name and figure.endswith(("_ms", "_s"))
        if unit is None:
            if name_carries_unit:
                return number
            raise fail(
                f"{name} is {what}: write a time unit after {number} ({_TIME_UNITS_TEXT}), "
                f"e.g. '{shown}ms'"
            )
        if unit not in _MS_PER_UNIT:
            raise fail(
                f"{name} is {what}: give it a time unit ({_TIME_UNITS_TEXT}), not {_kind_of(unit)}"
            )
        ms = number * _MS_PER_UNIT[unit]
        return ms if kind == "latency" else ms / 1000
    if kind == "fraction":
        if unit == "%":
            if number > 100:
                raise fail(f"{number}% is more than 100 %: {name} is at most 100%")
            return number / 100
        if unit is not None:
            raise fail(
                f"{name} is a fraction: write a percentage ('{shown}%') or a fraction from 0 to "
                f"1, not {_kind_of(unit)}"
            )
        if number > 1:
            raise fail(
                f"{name} without a unit is a fraction from 0 to 1, and {number} is more; "
                f"write '{shown}%' for a percentage"
            )
        return number
    if kind == "money":
        if unit is None:
            if currency is not None:
                return number
            raise fail(
                f"{name} is an amount of money: write its currency code after {number}, "
                f"e.g. '{shown} USD'"
            )
        if not _CURRENCY.fullmatch(unit) or unit in _MS_PER_UNIT:
            raise fail(
                f"{name} is an amount of money: write a currency code (e.g. USD), "
                f"not {_kind_of(unit)}"
            )
        if currency is not None and unit.upper() != currency:
            raise fail(
                f"{name} is in {currency}, but the value is in {unit.upper()}; "
                f"write '{name.rpartition('_')[0]} … {unit.upper()}' to check {unit.upper()}"
            )
        return number
    # counts and rates
    if unit is not None:
        what = "a count" if kind == "count" else "a rate, per second"
        raise fail(f"{name} is {what}: write the number alone, without {_kind_of(unit)}")
    return number


def _kind_of(unit: str) -> str:
    """How to name a misplaced unit in a message."""
    if unit in _MS_PER_UNIT:
        return f"a time unit ({unit})"
    if unit == "%":
        return "a percentage (%)"
    if unit in _RATE_UNITS or "/" in unit:
        return f"a rate unit ({unit})"
    if _CURRENCY.fullmatch(unit):
        return f"a currency ({unit.upper()})"
    return f"{unit!r}, which is not a unit onybench knows"
