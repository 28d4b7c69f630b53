"""Thresholds evaluated as pass/fail gates against a run's figures, and the early abort.

`evaluate_thresholds(report, texts)` reads report.json's document and judges
every threshold (parsed by `onybench.thresholds`, never here) for every model
it applies to: a threshold with ``{model=…}`` judges that model, one without
judges each model of the run in turn. What a model's figures are:

- Warm-up requests never count: their groups (stage ``warmup``) are left out.
- A model measured in load stages has one group per stage; a threshold judges
  the model over the whole measured run, its stages merged exactly (HDR
  histograms added, counts summed), as `GroupMetrics.merge` does. Stages are
  not judged one by one.
- A figure that is missing fails, with the reason: no request recorded, no
  request succeeded, no value of that histogram, no cost in that currency…
  Counters that report.json leaves out when they are zero (``errors.<class>``,
  ``requests.dropped``, ``<hist>.overflow``) read as 0.

`AbortWatch` is the hook a running benchmark calls after each record: it
answers with a reason when a threshold can no longer pass whatever the rest of
the run does — a count or cost (which only grow) already beyond an upper limit,
or an ``error_rate`` upper limit that the failures so far exceed even if every
request left in the budget succeeds. Only such certain cases stop a run early.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from onybench.errors import ScenarioError
from onybench.metrics.summary import HISTOGRAM_UNITS, WARMUP_STAGE, GroupKey, GroupMetrics
from onybench.thresholds import Threshold, compare, parse_threshold

# A stop reason that starts so says the run was stopped by `AbortWatch`.
ABORT_PREFIX = "threshold can no longer pass: "


@dataclass(frozen=True, slots=True)
class ThresholdOutcome:
    """One threshold judged for one model.

    `model` is None only when there was no model to judge (an empty run, or
    an invalid threshold text); `figure`, `op` and `limit` are None for an
    invalid text. `reason` says why a threshold failed without a measurement
    (``not measured: …``, ``invalid: …``); it is empty otherwise.
    """

    text: str
    model: str | None
    figure: str | None
    op: str | None
    limit: float | None
    measured: float | None
    passed: bool
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.text,
            "model": self.model,
            "figure": self.figure,
            "op": self.op,
            "limit": self.limit,
            "measured": self.measured,
            "passed": self.passed,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThresholdOutcome:
        return cls(
            text=data["threshold"],
            model=data["model"],
            figure=data["figure"],
            op=data["op"],
            limit=data["limit"],
            measured=data["measured"],
            passed=data["passed"],
            reason=data["reason"],
        )


@dataclass(frozen=True, slots=True)
class ModelFigures:
    """A model's measured figures (warm-up left out, stages merged)."""

    model: str
    figures: Mapping[str, float | int | str]
    warmup_only: bool = False


def model_figures(report: Mapping[str, Any]) -> list[ModelFigures]:
    """Every model of report.json's `groups`, in the scenario's order, with its figures.

    A model with one group keeps that group's figures as written; several
    (load stages) are merged from their `metrics`.
    """
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    warmup: set[str] = set()
    for group in report.get("groups", ()):
        model = str(group["model"])
        by_model.setdefault(model, [])
        if group.get("stage") == WARMUP_STAGE:
            warmup.add(model)
            continue
        by_model[model].append(group)
    # The scenario's order (groups come in the order their first record finished).
    scenario_models = ((report.get("scenario") or {}).get("request") or {}).get("models") or []
    rank = {str(model): number for number, model in enumerate(scenario_models)}
    ordered = sorted(by_model.items(), key=lambda item: rank.get(item[0], len(rank)))
    out = []
    for model, groups in ordered:
        if not groups:
            out.append(ModelFigures(model, {}, warmup_only=model in warmup))
        elif len(groups) == 1:
            out.append(ModelFigures(model, groups[0]["figures"]))
        else:
            merged = GroupMetrics()
            for group in groups:
                merged.merge(GroupMetrics.from_json(group["metrics"]))
            out.append(ModelFigures(model, merged.figures()))
    return out


def parse_thresholds(texts: Sequence[str]) -> list[Threshold]:
    """Parse every text; the first bad one raises ScenarioError."""
    return [parse_threshold(text) for text in texts]


def evaluate_thresholds(report: Mapping[str, Any], texts: Sequence[str]) -> list[ThresholdOutcome]:
    """Judge each threshold for each model it applies to; see the module docstring.

    An unparsable text (e.g. from an older scenario) fails as ``invalid: …``
    rather than raising: the report can still be judged.
    """
    if not texts:
        return []
    models = model_figures(report)
    outcomes: list[ThresholdOutcome] = []
    for text in texts:
        try:
            threshold = parse_threshold(text)
        except ScenarioError as exc:
            outcomes.append(
                ThresholdOutcome(text, None, None, None, None, None, False, f"invalid: {exc}")
            )
            continue
        outcomes += evaluate_threshold(threshold, models)
    return outcomes


def evaluate_threshold(
    threshold: Threshold, models: Sequence[ModelFigures]
) -> list[ThresholdOutcome]:
    """One threshold against the models it selects."""
    if threshold.model is not None:
        chosen = [m for m in models if m.model == threshold.model]
        if not chosen:
            known = ", ".join(m.model for m in models) or "none"
            return [
                _outcome(
                    threshold,
                    threshold.model,
                    None,
                    f"not measured: model {threshold.model!r} is not in this run "
                    f"(its models: {known})",
                )
            ]
    else:
        chosen = list(models)
        if not chosen:
            return [_outcome(threshold, None, None, "not measured: the run recorded no request")]
    out = []
    for model in chosen:
        measured, reason = read_figure(model, threshold.figure)
        out.append(_outcome(threshold, model.model, measured, reason))
    return out


def _outcome(
    threshold: Threshold, model: str | None, measured: float | None, reason: str
) -> ThresholdOutcome:
    passed = measured is not None and threshold.holds(measured)
    return ThresholdOutcome(
        threshold.text,
        model,
        threshold.figure,
        threshold.op,
        threshold.value,
        measured,
        passed,
        reason if measured is None else "",
    )


_ZERO_WHEN_ABSENT = re.compile(
    r"^(errors\.[a-z0-9_]+|requests\.dropped|[a-z_]+\.overflow|tokens\.(prompt|output)_requested)$"
)


def read_figure(model: ModelFigures, figure: str) -> tuple[float | None, str]:
    """(value, "") or (None, why it is not measured)."""
    figures = model.figures
    value = figures.get(figure)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), ""
    total = figures.get("requests.total")
    if not total:
        if model.warmup_only:
            return None, "not measured: only warm-up requests were recorded for this model"
        return None, "not measured: no request was recorded for this model"
    if _ZERO_WHEN_ABSENT.match(figure):
        return 0.0, ""
    succeeded = figures.get("requests.succeeded")
    head = figure.split(".", 1)[0]
    if head in HISTOGRAM_UNITS:
        if not succeeded:
            return None, f"not measured: no request succeeded ({total} failed)"
        return None, f"not measured: no {head} value was recorded"
    if figure.startswith("cost."):
        return None, _missing_cost(figures, figure)
    if figure.endswith("_per_s") or figure.endswith(".tokens_per_s"):
        return None, "not measured: the run's requests took no measurable time"
    return None, f"not measured: report.json has no figure {figure}"


def _missing_cost(figures: Mapping[str, Any], figure: str) -> str:
    prefix = figure.rsplit("_", 1)[0] + "_"
    currency = figure.rsplit("_", 1)[-1].upper()
    others = sorted(
        name.removeprefix(prefix).upper()
        for name in figures
        if name.startswith(prefix) and name != figure
    )
    if "per_1m_output_tokens" in figure and figures.get(f"cost.total_{currency.lower()}"):
        return "not measured: no output token was counted"
    if others:
        return f"not measured: cost was reported in {', '.join(others)}, not {currency}"
    return "not measured: the API reported no cost"


def gates_section(report: Mapping[str, Any]) -> dict[str, Any]:
    """report.json's ``gates``: the scenario's thresholds judged, and any early abort."""
    texts = list((report.get("scenario") or {}).get("thresholds") or ())
    outcomes = evaluate_thresholds(report, texts)
    stop_reason = str(report.get("stop_reason", ""))
    return {
        "passed": all(outcome.passed for outcome in outcomes),
        "aborted": stop_reason if stop_reason.startswith(ABORT_PREFIX) else None,
        "thresholds": [outcome.to_json() for outcome in outcomes],
    }


# --- the early abort ------------------------------------------------------------------

# Figures that only ever grow during a run, read from the live counters.
_GROWING = (
    "requests.total",
    "requests.failed",
    "requests.succeeded",
    "tokens.output",
    "tokens.prompt",
)


@dataclass
class _Counts:
    """The counters of a model's measured groups that the watch reads.

    Histograms are left out: merging them at every record would cost far more
    than the check is worth.
    """

    requests: int = 0
    succeeded: int = 0
    output_tokens: int = 0
    prompt_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    cost: dict[str, Decimal] = field(default_factory=dict)

    def add(self, group: GroupMetrics) -> None:
        self.requests += group.requests
        self.succeeded += group.succeeded
        self.output_tokens += group.output_tokens
        self.prompt_tokens += group.prompt_tokens
        for error_class, count in group.errors.items():
            self.errors[error_class] = self.errors.get(error_class, 0) + count
        for currency, amount in group.cost.items():
            key = _currency_key(currency)
            self.cost[key] = self.cost.get(key, Decimal(0)) + amount

    def value(self, figure: str) -> float | None:
        """A growing figure's value so far; None for a figure that is not one."""
        simple = {
            "requests.total": self.requests,
            "requests.failed": self.requests - self.succeeded,
            "requests.succeeded": self.succeeded,
            "tokens.output": self.output_tokens,
            "tokens.prompt": self.prompt_tokens,
        }
        if figure in simple:
            return float(simple[figure])
        if figure.startswith("errors."):
            return float(self.errors.get(figure.removeprefix("errors."), 0))
        if figure.startswith("cost.total_"):
            return float(self.cost.get(figure.removeprefix("cost.total_"), Decimal(0)))
        return None


def _currency_key(currency: str) -> str:
    # As GroupMetrics.figures names currencies.
    return re.sub(r"[^a-z0-9]+", "_", currency.lower()).strip("_") or "unknown"


class AbortWatch:
    """Decides, record by record, whether a threshold is already certain to fail.

    `request_budget` is the number of measured (non-warm-up) requests a model can
    have at most, or None when the run is not bounded by a count. With several
    worker processes each watches its own share: its counts are at most the
    run's, and the run's budget bounds the whole, so its verdicts stay certain.
    """

    def __init__(self, thresholds: Sequence[Threshold], request_budget: int | None) -> None:
        self.thresholds = [t for t in thresholds if _watchable(t, request_budget)]
        self.request_budget = request_budget

    @classmethod
    def for_scenario(
        cls, thresholds: Sequence[str], request_limit: int | None, warmup_requests: int
    ) -> AbortWatch | None:
        """A watch over a scenario's thresholds; None when none can be decided early.

        `request_limit` is the scenario's requests per model (warm-up included),
        `warmup_requests` the warm-up's share of them.
        """
        budget = None if request_limit is None else max(0, request_limit - warmup_requests)
        try:
            parsed = parse_thresholds(thresholds)
        except ScenarioError:
            return None
        watch = cls(parsed, budget)
        return watch if watch.thresholds else None

    def reason(self, groups: Mapping[GroupKey, GroupMetrics], model: str) -> str | None:
        """Why `model`'s results can no longer pass a threshold, or None."""
        counts: _Counts | None = None
        for threshold in self.thresholds:
            if threshold.model is not None and threshold.model != model:
                continue
            if counts is None:
                counts = _Counts()
                for key, group in groups.items():
                    if key.model == model and key.stage != WARMUP_STAGE:
                        counts.add(group)
            verdict = self._certain_failure(threshold, counts)
            if verdict is not None:
                return f"{ABORT_PREFIX}{threshold.text!r} for {model}: {verdict}"
        return None

    def _certain_failure(self, threshold: Threshold, counts: _Counts) -> str | None:
        if threshold.figure == "error_rate":
            assert self.request_budget is not None
            failed = counts.requests - counts.succeeded
            # The final rate is failed_final / total_final >= failed / budget.
            lowest = failed / self.request_budget
            if not _beyond(threshold, lowest):
                return None
            return (
                f"{failed} of at most {self.request_budget} requests failed, so the error "
                f"rate will be at least {lowest:.2%}"
            )
        value = counts.value(threshold.figure)
        if value is None or not _beyond(threshold, value):
            return None
        return f"{threshold.figure} is already {value:g} and can only grow"


def _beyond(threshold: Threshold, lowest: float) -> bool:
    """Whether every final value >= `lowest` fails `threshold` (an upper limit)."""
    if threshold.op == "==":
        return lowest > threshold.value
    return not compare(threshold.op, lowest, threshold.value)


def _watchable(threshold: Threshold, budget: int | None) -> bool:
    if threshold.op not in ("<", "<=", "=="):
        return False
    if threshold.figure == "error_rate":
        return budget is not None and budget > 0
    return threshold.figure in _GROWING or threshold.figure.startswith(("errors.", "cost.total_"))
