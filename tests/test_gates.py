"""Thresholds judged as gates: against report dicts, in the early abort, and through the CLI."""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from onybench.cli import EXIT_GATE_FAILED, EXIT_NOTHING_SUCCEEDED, EXIT_OK, EXIT_USAGE, app
from onybench.errors import ScenarioError
from onybench.gates.compare import ERROR_RATE, Metric, parse_gate, parse_metric
from onybench.gates.evaluate import (
    ABORT_PREFIX,
    AbortWatch,
    evaluate_thresholds,
    gates_section,
    parse_thresholds,
)
from onybench.gates.resample import (
    ClusteredValues,
    WeightedValues,
    binomial,
    holm,
    p_value_above,
    percentile_interval,
    percentile_rank,
)
from onybench.metrics.record import RequestRecord
from onybench.metrics.summary import WARMUP_STAGE, GroupKey, GroupMetrics
from tests.report.schema_check import assert_valid_report

runner = CliRunner()


def report_of(*groups: dict[str, Any], thresholds: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"scenario": {"thresholds": list(thresholds)}, "stop_reason": "", "groups": list(groups)}


def figures_group(model: str, **figures: float) -> dict[str, Any]:
    named = {name.replace("__", "."): value for name, value in figures.items()}
    return {"model": model, "figures": named}


ONE_MODEL = figures_group(
    "acme/fast",
    requests__total=200,
    requests__succeeded=198,
    requests__failed=2,
    errors__http_500=2,
    error_rate=0.01,
    ttft__p95_ms=812.5,
    itl__p99_ms=50.0,
    e2e__p50_ms=3999.0,
    output_throughput__tokens_per_s=512.0,
    cost__total_usd=0.5,
    cost__per_1m_output_tokens_usd=1.99,
)


def outcome_table(
    report: dict[str, Any], *texts: str
) -> list[tuple[str, str | None, float | None, bool]]:
    return [(o.text, o.model, o.measured, o.passed) for o in evaluate_thresholds(report, texts)]


def test_each_threshold_of_the_issue_reads_its_exact_figure_and_compares_it() -> None:
    report = report_of(ONE_MODEL)
    assert outcome_table(
        report,
        "ttft.p95 < 800ms",
        "itl.p99 <= 50ms",
        "e2e.p50 < 4s",
        "error_rate < 1%",
        "output_tokens_per_s > 500",
        "cost.total < 0.50 USD",
        "cost.per_1m_output_tokens < 2 USD",
    ) == [
        ("ttft.p95 < 800ms", "acme/fast", 812.5, False),
        ("itl.p99 <= 50ms", "acme/fast", 50.0, True),
        ("e2e.p50 < 4s", "acme/fast", 3999.0, True),
        ("error_rate < 1%", "acme/fast", 0.01, False),  # 1 % is not below 1 %
        ("output_tokens_per_s > 500", "acme/fast", 512.0, True),
        ("cost.total < 0.50 USD", "acme/fast", 0.5, False),
        ("cost.per_1m_output_tokens < 2 USD", "acme/fast", 1.99, True),
    ]


def test_a_threshold_without_a_selector_judges_every_model_and_a_selector_one() -> None:
    slow = figures_group(
        "acme/slow", requests__total=10, requests__succeeded=10, ttft__p95_ms=900.0
    )
    report = report_of(ONE_MODEL, slow)
    assert outcome_table(report, "ttft.p95 < 850ms") == [
        ("ttft.p95 < 850ms", "acme/fast", 812.5, True),
        ("ttft.p95 < 850ms", "acme/slow", 900.0, False),
    ]
    assert outcome_table(report, "ttft.p95{model=acme/slow} < 1s") == [
        ("ttft.p95{model=acme/slow} < 1s", "acme/slow", 900.0, True)
    ]


def test_a_selector_naming_a_model_not_in_the_run_fails_as_not_measured() -> None:
    [outcome] = evaluate_thresholds(report_of(ONE_MODEL), ["ttft.p95{model=acme/gone} < 1s"])
    assert not outcome.passed
    assert outcome.measured is None
    assert outcome.reason == (
        "not measured: model 'acme/gone' is not in this run (its models: acme/fast)"
    )


@pytest.mark.parametrize(
    ("figures", "threshold", "reason"),
    [
        (
            {"requests__total": 5, "requests__succeeded": 0, "requests__failed": 5},
            "ttft.p95 < 1s",
            "not measured: no request succeeded (5 failed)",
        ),
        (
            {"requests__total": 5, "requests__succeeded": 5},
            "connect.p50 < 1s",
            "not measured: no connect value was recorded",
        ),
        (
            {"requests__total": 5, "requests__succeeded": 5, "cost__total_eur": 1.0},
            "cost.total < 1 USD",
            "not measured: cost was reported in EUR, not USD",
        ),
        (
            {"requests__total": 5, "requests__succeeded": 5},
            "cost.total < 1 USD",
            "not measured: the API reported no cost",
        ),
        ({}, "error_rate < 1%", "not measured: no request was recorded for this model"),
        (
            {"requests__total": 1, "requests__succeeded": 1},
            "output_tokens_per_s > 1",
            "not measured: the run's requests took no measurable time",
        ),
    ],
)
def test_a_missing_figure_fails_with_the_reason_it_is_missing(
    figures: dict[str, float], threshold: str, reason: str
) -> None:
    [outcome] = evaluate_thresholds(report_of(figures_group("m", **figures)), [threshold])
    assert (outcome.passed, outcome.measured, outcome.reason) == (False, None, reason)


def test_counters_left_out_when_zero_read_as_zero() -> None:
    report = report_of(ONE_MODEL)
    assert outcome_table(report, "errors.http_429 < 1", "requests.dropped == 0") == [
        ("errors.http_429 < 1", "acme/fast", 0.0, True),
        ("requests.dropped == 0", "acme/fast", 0.0, True),
    ]
    assert outcome_table(report, "errors.http_500 < 1") == [
        ("errors.http_500 < 1", "acme/fast", 2.0, False)
    ]


def test_a_run_without_any_model_fails_every_threshold() -> None:
    [outcome] = evaluate_thresholds(report_of(), ["error_rate < 1%"])
    assert (outcome.model, outcome.passed, outcome.reason) == (
        None,
        False,
        "not measured: the run recorded no request",
    )


def test_an_invalid_threshold_in_a_report_fails_instead_of_raising() -> None:
    [outcome] = evaluate_thresholds(report_of(ONE_MODEL), ["ttft.p95 < 800"])
    assert not outcome.passed
    assert outcome.reason.startswith("invalid: threshold 'ttft.p95 < 800': ttft.p95 is a latency")


def test_threshold_flags_are_parsed_up_front_and_bad_ones_raise() -> None:
    with pytest.raises(ScenarioError, match="unknown metric"):
        parse_thresholds(["ttft.p95 < 1s", "latncy.p95 < 1s"])


def record(
    model: str,
    ttft_ms: float,
    *,
    stage: str | None = None,
    error: str | None = None,
    index: int = 0,
) -> RequestRecord:
    start = 1_000_000_000 + index * 1_000_000
    first = start + int(ttft_ms * 1e6)
    return RequestRecord(
        index=index,
        model=model,
        start_ns=start,
        end_ns=first + 2_000_000,
        token_times_ns=(first, first + 1_000_000),
        output_tokens=2,
        stage=stage,
        error_class=error,
        cost_amount=Decimal("0.01"),
        cost_currency="USD",
    )


def report_from_groups(groups: dict[GroupKey, GroupMetrics], *thresholds: str) -> dict[str, Any]:
    return report_of(
        *(
            {
                "model": key.model,
                **({"stage": key.stage} if key.stage is not None else {}),
                "figures": group.figures(),
                "metrics": group.to_json(),
            }
            for key, group in groups.items()
        ),
        thresholds=thresholds,
    )


def test_warmup_never_counts_and_stages_are_merged_per_model() -> None:
    groups: dict[GroupKey, GroupMetrics] = {}
    for key, ttfts in [
        (GroupKey("m", WARMUP_STAGE), [5000.0] * 10),
        (GroupKey("m", "1: target 1"), [100.0] * 50),
        (GroupKey("m", "2: target 2"), [300.0] * 50),
    ]:
        group = groups.setdefault(key, GroupMetrics())
        for number, ttft in enumerate(ttfts):
            group.add(record("m", ttft, stage=key.stage, index=number))
    report = report_from_groups(groups)
    # Over both stages (100 values), p50 is the 50th value: 100 ms; p95 is 300 ms;
    # the 5 s warm-up is nowhere.
    assert outcome_table(
        report, "ttft.p50 <= 100.1ms", "ttft.max < 301ms", "requests.total == 100"
    ) == [
        ("ttft.p50 <= 100.1ms", "m", 100.031, True),
        ("ttft.max < 301ms", "m", 300.031, True),
        ("requests.total == 100", "m", 100.0, True),
    ]


def test_a_model_with_only_warmup_requests_is_not_measured() -> None:
    group = GroupMetrics()
    group.add(record("m", 10.0, stage=WARMUP_STAGE))
    report = report_from_groups({GroupKey("m", WARMUP_STAGE): group})
    [outcome] = evaluate_thresholds(report, ["error_rate < 1%"])
    assert outcome.reason == "not measured: only warm-up requests were recorded for this model"


def test_the_gates_section_names_an_early_abort_and_passes_without_thresholds() -> None:
    report = report_of(ONE_MODEL, thresholds=("ttft.p95 < 1s",))
    report["stop_reason"] = ABORT_PREFIX + "'error_rate < 1%' for m: …"
    section = gates_section(report)
    assert section["passed"] is True
    assert section["aborted"] == report["stop_reason"]
    assert section["thresholds"][0]["measured"] == 812.5
    assert gates_section(report_of(ONE_MODEL)) == {
        "passed": True,
        "aborted": None,
        "thresholds": [],
    }


# --- the early abort -----------------------------------------------------------------


def fold(records: list[RequestRecord]) -> dict[GroupKey, GroupMetrics]:
    groups: dict[GroupKey, GroupMetrics] = {}
    for r in records:
        groups.setdefault(GroupKey(r.model, r.stage), GroupMetrics()).add(r)
    return groups


def test_error_rate_aborts_once_the_failures_exceed_what_the_budget_allows() -> None:
    watch = AbortWatch.for_scenario(["error_rate < 5%"], request_limit=110, warmup_requests=10)
    assert watch is not None
    failures = [record("m", 1.0, error="http_500", index=i) for i in range(4)]
    assert watch.reason(fold(failures), "m") is None  # 4 of at most 100: 4 % may pass
    failures.append(record("m", 1.0, error="http_500", index=5))
    assert watch.reason(fold(failures), "m") == (
        f"{ABORT_PREFIX}'error_rate < 5%' for m: 5 of at most 100 requests failed, "
        "so the error rate will be at least 5.00%"
    )


def test_warmup_failures_do_not_abort() -> None:
    watch = AbortWatch.for_scenario(["error_rate < 5%"], request_limit=20, warmup_requests=10)
    assert watch is not None
    warm = [record("m", 1.0, error="http_500", stage=WARMUP_STAGE, index=i) for i in range(10)]
    assert watch.reason(fold(warm), "m") is None


def test_cost_and_counts_abort_once_beyond_an_upper_limit_and_only_then() -> None:
    watch = AbortWatch.for_scenario(
        ["cost.total < 0.05 USD", "errors.http_429 == 0", "requests.total > 5"], None, 0
    )
    assert watch is not None
    assert [t.text for t in watch.thresholds] == ["cost.total < 0.05 USD", "errors.http_429 == 0"]
    four = [record("m", 1.0, index=i) for i in range(4)]
    assert watch.reason(fold(four), "m") is None
    five = [*four, record("m", 1.0, index=5)]
    assert watch.reason(fold(five), "m") == (
        f"{ABORT_PREFIX}'cost.total < 0.05 USD' for m: cost.total_usd is already 0.05 "
        "and can only grow"
    )
    limited = [*four[:1], record("m", 1.0, error="http_429", index=9)]
    reason = watch.reason(fold(limited), "m")
    assert reason is not None
    assert "errors.http_429 is already 1" in reason


def test_no_watch_without_a_budget_for_error_rate_or_with_lower_limits_only() -> None:
    assert AbortWatch.for_scenario(["error_rate < 1%"], None, 0) is None
    assert AbortWatch.for_scenario(["ttft.p95 < 1s", "output_tokens_per_s > 5"], 100, 0) is None


def test_a_selector_limits_the_abort_to_its_model() -> None:
    watch = AbortWatch.for_scenario(["requests.failed{model=a} < 1"], None, 0)
    assert watch is not None
    failing_b = fold([record("b", 1.0, error="http_500")])
    assert watch.reason(failing_b, "b") is None
    assert watch.reason(fold([record("a", 1.0, error="http_500")]), "a") is not None


# --- the gate grammar -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "model", "direction", "margin", "relative"),
    [
        ("ttft.p95 > +10%", Metric("ttft", "p95"), None, 1, 0.10, True),
        ("ttft.p95 > 10%", Metric("ttft", "p95"), None, 1, 0.10, True),
        ("itl.p99.9{model=acme/x} > +5 %", Metric("itl", "p99_9"), "acme/x", 1, 0.05, True),
        ("e2e.p50 > +50ms", Metric("e2e", "p50"), None, 1, 50.0, False),
        ("e2e.p50 > +0.5s", Metric("e2e", "p50"), None, 1, 500.0, False),
        ("error_rate > +1pp", ERROR_RATE, None, 1, 0.01, False),
        ("error_rate > +50%", ERROR_RATE, None, 1, 0.5, True),
        (
            "request_output_tokens_per_s.p50 < -10%",
            Metric("request_output_tokens_per_s", "p50"),
            None,
            -1,
            0.10,
            True,
        ),
        ("ttft.mean_ms > +2%", Metric("ttft", "mean"), None, 1, 0.02, True),
    ],
)
def test_gates_parse_into_metric_direction_and_margin(
    text: str, metric: Metric, model: str | None, direction: int, margin: float, relative: bool
) -> None:
    gate = parse_gate(text)
    assert (gate.metric, gate.model, gate.direction, gate.relative) == (
        metric,
        model,
        direction,
        relative,
    )
    assert gate.margin == pytest.approx(margin)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft.p95 >= +10%", "'>=' is not a gate operator"),
        ("ttft.p95 > -10%", "mixes directions"),
        ("ttft.p95 > 10", "needs a unit"),
        ("ttft.max > +10%", "cannot judge max"),
        ("ttft.count > +10%", "a count"),
        ("output_tokens_per_s > +10%", "whole-run figure"),
        ("ttfx.p95 > +10%", "did you mean ttft.p95"),
        ("ttft.p95 > +1pp", "pp (percentage points) is for error_rate"),
        ("error_rate > +5ms", "error_rate"),
        ("ttft.p95{mdl=x} > +10%", "did you mean model"),
        ("> +10%", "not a metric"),
    ],
)
def test_a_bad_gate_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_gate(text)


def test_metric_names_resolve_like_thresholds() -> None:
    assert parse_metric("ttft.p99.9") == Metric("ttft", "p99_9")
    with pytest.raises(ScenarioError, match=re.escape("did you mean tpot.p50")):
        parse_metric("tpot.median")


# --- resampling and Holm -----------------------------------------------------------------


def test_holm_rejects_step_by_step_and_gives_agreeing_levels() -> None:
    # m = 4: steps 0.0125, 0.0167, 0.025, 0.05.
    decisions = holm([0.01, 0.04, 0.015, 0.03], alpha=0.05)
    assert [d.rejected for d in decisions] == [True, False, True, False]
    assert [d.level for d in decisions] == pytest.approx([0.0125, 0.025, 0.05 / 3, 0.025])
    assert [d.adjusted_p for d in decisions] == pytest.approx([0.04, 0.06, 0.045, 0.06])


def test_a_later_small_p_value_is_not_rejected_once_holm_stopped() -> None:
    # p(1) = 0.03 > 0.025 stops the procedure, although p(2) = 0.04 <= 0.05.
    decisions = holm([0.03, 0.04], alpha=0.05)
    assert [d.rejected for d in decisions] == [False, False]
    assert [d.level for d in decisions] == [0.025, 0.025]


def test_an_interval_and_its_p_value_always_agree() -> None:
    rng = random.Random(5)
    for _ in range(300):
        replicates = sorted(
            rng.gauss(rng.uniform(-0.2, 0.3), 0.1) for _ in range(rng.choice([199, 999]))
        )
        margin = rng.uniform(-0.1, 0.3)
        level = rng.choice([0.05, 0.025, 0.01, 0.05 / 7])
        lower, _ = percentile_interval(replicates, level)
        assert (lower > margin) == (p_value_above(replicates, margin) <= level)


def test_percentiles_use_hdr_ranks_so_histograms_reproduce_report_figures() -> None:
    rng = random.Random(1)
    group = GroupMetrics()
    for number in range(997):
        group.add(record("m", rng.lognormvariate(4, 0.5), index=number))
    from onybench.gates.compare import histogram_population

    population = histogram_population(group, "ttft")
    assert population is not None
    figures = group.figures()
    for stat in ("p50", "p90", "p95", "p99", "p99_9"):
        assert population.statistic(stat) == figures[f"ttft.{stat}_ms"]
    assert population.statistic("mean") == pytest.approx(figures["ttft.mean_ms"], rel=1e-9)
    assert percentile_rank(95, 200) == 190
    assert percentile_rank(99.9, 1000) == 999


def test_order_statistic_draws_match_a_full_resample_and_sort() -> None:
    values = WeightedValues.of([random.Random(2).expovariate(1) for _ in range(101)])
    fast = sorted(values.replicates("p90", random.Random(3), 4000))
    rng = random.Random(4)
    slow = sorted(sorted(rng.choices(values.highs, k=101))[90] for _ in range(4000))
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert fast[int(q * 4000)] == pytest.approx(slow[int(q * 4000)], rel=0.03)


def test_binomial_draws_have_the_right_mean_and_spread() -> None:
    rng = random.Random(6)
    for trials, chance in [(1000, 0.01), (200, 0.3), (50, 0.9)]:
        draws = [binomial(trials, chance, rng) for _ in range(4000)]
        mean = sum(draws) / len(draws)
        variance = sum((d - mean) ** 2 for d in draws) / len(draws)
        assert mean == pytest.approx(trials * chance, rel=0.05)
        assert variance == pytest.approx(trials * chance * (1 - chance), rel=0.1)


def test_pooled_gaps_are_resampled_by_request_so_shared_slowness_widens_the_interval() -> None:
    rng = random.Random(7)
    # 200 requests of 50 gaps; each request has its own speed (a shared server state).
    clustered = []
    for _ in range(200):
        speed = rng.lognormvariate(0, 0.3)
        clustered.append([speed * rng.lognormvariate(0, 0.05) for _ in range(50)])
    by_request = ClusteredValues(clustered)
    as_if_independent = WeightedValues.of([v for group in clustered for v in group])
    assert by_request.statistic("p50") == as_if_independent.statistic("p50")

    def spread(replicates: list[float]) -> float:
        ordered = sorted(replicates)
        return ordered[974] - ordered[24]

    wide = spread(by_request.replicates("p50", random.Random(8), 1000))
    narrow = spread(as_if_independent.replicates("p50", random.Random(8), 1000))
    assert wide > 3 * narrow
    # The cluster bootstrap's p50 replicates centre on the pooled p50.
    middle = sorted(by_request.replicates("p50", random.Random(9), 1000))[500]
    assert middle == pytest.approx(by_request.statistic("p50"), rel=0.03)
    mean = sorted(by_request.replicates("mean", random.Random(9), 1000))[500]
    assert mean == pytest.approx(by_request.statistic("mean"), rel=0.03)
    assert not math.isnan(mean)


# --- through the real CLI -----------------------------------------------------------------

FAST_MOCK = "[target]\nbase_url = 'mock'\n[mock]\nttft_ms = 1.0\nitl_ms = 1.0\noutput_tokens = 4\n"


def scenario(tmp_path: Path, extra: str = "", head: str = "") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(head + FAST_MOCK + extra)
    return path


def test_run_with_a_failing_threshold_exits_1_and_says_which(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "run",
            str(scenario(tmp_path)),
            "--base-url",
            "mock",
            "-n",
            "6",
            "-c",
            "1",
            "--threshold",
            "ttft.p50 < 0.001ms",
            "-t",
            "error_rate < 1%",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == EXIT_GATE_FAILED, result.output
    assert "error: 1 of 2 thresholds failed" in result.stderr
    lines = result.stdout.splitlines()
    failing = next(line for line in lines if line.startswith("ttft.p50 < 0.001ms"))
    assert failing.split()[-1] == "FAIL"
    passing = next(line for line in lines if line.startswith("error_rate < 1%"))
    assert "0.00 %" in passing
    assert passing.split()[-1] == "pass"
    report = orjson.loads((out / "report.json").read_bytes())
    assert_valid_report(report)
    assert report["scenario"]["thresholds"] == ["ttft.p50 < 0.001ms", "error_rate < 1%"]
    assert report["gates"]["passed"] is False
    assert [t["passed"] for t in report["gates"]["thresholds"]] == [False, True]
    summary = (out / "summary.md").read_text()
    assert "**1 of 2 thresholds failed.**" in summary
    assert "| ttft.p50 &lt; 0.001ms | openai/gpt-4o-mini |" in summary


def test_run_whose_thresholds_pass_exits_0(tmp_path: Path) -> None:
    path = scenario(tmp_path, head='thresholds = ["ttft.p95 < 10s"]\n')
    result = runner.invoke(
        app, ["run", str(path), "-n", "3", "-t", "error_rate <= 0", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == EXIT_OK, result.output
    assert "thresholds: all 2 passed" in result.stdout


def test_a_bad_threshold_flag_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", str(scenario(tmp_path)), "-t", "ttft.p95 < 800", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == EXIT_USAGE
    assert "write a time unit" in result.stderr
    assert not (tmp_path / "r").exists()


def test_nothing_succeeded_outranks_a_failed_gate(tmp_path: Path) -> None:
    path = scenario(tmp_path, "http_500_rate = 1.0\n")
    result = runner.invoke(
        app, ["run", str(path), "-n", "3", "-t", "ttft.p95 < 1s", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == EXIT_NOTHING_SUCCEEDED, result.output
    assert "not measured: no request succeeded (3 failed)" in result.stdout


def test_a_threshold_certain_to_fail_stops_the_run_early_and_says_why(tmp_path: Path) -> None:
    path = scenario(
        tmp_path, "http_500_rate = 0.5\nseed = 3\n", head='thresholds = ["error_rate < 5%"]\n'
    )
    out = tmp_path / "r"
    result = runner.invoke(app, ["run", str(path), "-n", "100", "-c", "1", "--out", str(out)])
    assert result.exit_code == EXIT_GATE_FAILED, result.output
    report = orjson.loads((out / "report.json").read_bytes())
    assert_valid_report(report)
    figures = report["groups"][0]["figures"]
    # Concurrency 1: the run stops at the record that made the 5th failure.
    assert figures["requests.failed"] == 5
    assert figures["requests.total"] < 100
    expected = (
        f"{ABORT_PREFIX}'error_rate < 5%' for openai/gpt-4o-mini: 5 of at most 100 requests "
        "failed, so the error rate will be at least 5.00%"
    )
    assert report["stop_reason"] == expected
    assert report["gates"]["aborted"] == expected
    assert f"stopped early: {expected}" in result.stdout
    assert "Stopped early" in (out / "summary.md").read_text()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("check")
    out = tmp_path / "run"
    path = scenario(tmp_path, head='thresholds = ["ttft.p95 < 10s", "requests.total == 4"]\n')
    result = runner.invoke(
        app, ["run", str(path), "-n", "4", "-m", "a/one", "-m", "b/two", "--out", str(out)]
    )
    assert result.exit_code == EXIT_OK, result.output
    return out


def test_check_judges_the_scenario_thresholds_per_model(finished_run: Path) -> None:
    result = runner.invoke(app, ["check", str(finished_run)])
    assert result.exit_code == EXIT_OK, result.output
    rows = [line.split()[:2] for line in result.stdout.splitlines()[1:5]]
    assert rows == [
        ["ttft.p95", "<"],
        ["ttft.p95", "<"],
        ["requests.total", "=="],
        ["requests.total", "=="],
    ]
    lines = result.stdout.splitlines()[1:5]
    models = [next(m for m in ("a/one", "b/two") if f" {m} " in line) for line in lines]
    assert models == ["a/one", "b/two", "a/one", "b/two"]
    assert "thresholds: all 4 passed" in result.stdout


def test_check_exits_1_on_a_failing_flag_and_reads_a_report_file_too(finished_run: Path) -> None:
    result = runner.invoke(
        app,
        ["check", str(finished_run / "report.json"), "-t", "ttft.p50{model=b/two} < 0.001ms"],
    )
    assert result.exit_code == EXIT_GATE_FAILED, result.output
    assert "thresholds: 1 of 5 failed" in result.stdout
    assert "error: 1 of 5 thresholds failed" in result.stderr


def test_check_without_any_threshold_or_with_a_bad_one_is_a_usage_error(
    finished_run: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["check", str(finished_run), "--no-scenario-thresholds"])
    assert result.exit_code == EXIT_USAGE
    assert "nothing to check" in result.stderr
    result = runner.invoke(app, ["check", str(finished_run), "-t", "ttft < 1s"])
    assert result.exit_code == EXIT_USAGE
    assert "needs a statistic" in result.stderr
    result = runner.invoke(app, ["check", str(tmp_path / "missing")])
    assert result.exit_code == EXIT_USAGE


def test_check_rebuilds_a_killed_runs_figures_from_its_records(
    finished_run: Path, tmp_path: Path
) -> None:
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("run.json", "records.jsonl"):
        (killed / name).write_bytes((finished_run / name).read_bytes())
    result = runner.invoke(app, ["check", str(killed), "-t", "requests.total{model=a/one} == 4"])
    assert result.exit_code == EXIT_OK, result.output
    assert "thresholds: all 5 passed" in result.stdout


def test_the_readme_exit_code_table_is_the_cli_s_single_table() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Exit codes (every command)", 1)[1].split("\n\n", 2)[1]
    table = {
        int(row.split("|")[1]): row.split("|")[2].strip()
        for row in section.splitlines()
        if row.startswith("| ") and row.split("|")[1].strip().isdigit()
    }
    assert table[EXIT_GATE_FAILED] == "a threshold or comparison gate failed"
    from onybench import cli

    constants = {
        value
        for name, value in vars(cli).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }
    assert set(table) == constants
    for code in constants:
        assert f"{code} " in cli.EXIT_CODES_HELP


def test_exit_1_through_the_installed_command_in_a_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "onybench"]
    run = subprocess.run(
        [
            *command,
            "run",
            "--base-url",
            "mock",
            "-n",
            "2",
            "-t",
            "ttft.p50 < 0.001ms",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == EXIT_GATE_FAILED, run.stderr
    assert "error: 1 of 1 thresholds failed" in run.stderr
    check = subprocess.run(
        [*command, "check", str(out)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == EXIT_GATE_FAILED, check.stderr
    passing = subprocess.run(
        [*command, "check", str(out), "--no-scenario-thresholds", "-t", "requests.total == 2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert passing.returncode == EXIT_OK, passing.stderr
