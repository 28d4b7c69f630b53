import pytest

from onybench.errors import ScenarioError
from onybench.metrics.histogram import STAT_NAMES
from onybench.thresholds import SHAPE, Threshold, compare, parse_threshold


@pytest.mark.parametrize(
    ("text", "figure", "op", "value", "model"),
    [
        ("ttft.p95 < 800ms", "ttft.p95_ms", "<", 800.0, None),
        ("itl.p99 <= 50ms", "itl.p99_ms", "<=", 50.0, None),
        ("e2e.p50 < 4s", "e2e.p50_ms", "<", 4000.0, None),
        ("error_rate < 1%", "error_rate", "<", 0.01, None),
        ("error_rate <= 0.05", "error_rate", "<=", 0.05, None),
        ("output_tokens_per_s > 500", "output_throughput.tokens_per_s", ">", 500.0, None),
        (
            "output_throughput.tokens_per_s >= 500",
            "output_throughput.tokens_per_s",
            ">=",
            500,
            None,
        ),
        ("total_tokens_per_s > 900", "total_throughput.tokens_per_s", ">", 900.0, None),
        ("requests_per_s >= 2.5", "request_throughput.per_s", ">=", 2.5, None),
        ("request_throughput.per_s > 1", "request_throughput.per_s", ">", 1.0, None),
        ("cost.total < 0.50 USD", "cost.total_usd", "<", 0.5, None),
        ("cost.total < 12 try", "cost.total_try", "<", 12.0, None),
        ("cost.per_1m_output_tokens < 2 USD", "cost.per_1m_output_tokens_usd", "<", 2.0, None),
        ("cost.total_eur <= 3", "cost.total_eur", "<=", 3.0, None),
        (
            "ttft.p95{model=openai/gpt-4o-mini} < 1s",
            "ttft.p95_ms",
            "<",
            1000.0,
            "openai/gpt-4o-mini",
        ),
        ('tpot.mean { model = "meta/llama 3" } != 3ms', "tpot.mean_ms", "!=", 3.0, "meta/llama 3"),
        ("ttft.p99.9 < 0.8s", "ttft.p99_9_ms", "<", 800.0, None),
        ("ttft.p99_9 < 0.8s", "ttft.p99_9_ms", "<", 800.0, None),
        ("ttft.p95_ms < 800", "ttft.p95_ms", "<", 800.0, None),
        ("ttft_content.max<2m", "ttft_content.max_ms", "<", 120_000.0, None),
        ("itl_per_token.stdev < 250us", "itl_per_token.stdev_ms", "<", 0.25, None),
        ("connect.min < 250 µs", "connect.min_ms", "<", 0.25, None),
        ("connect.p90 < 1500ns", "connect.p90_ms", "<", 0.0015, None),
        ("e2e.count >= 100", "e2e.count", ">=", 100.0, None),
        ("request_output_tokens_per_s.p50 > 20", "request_output_tokens_per_s.p50", ">", 20, None),
        ("errors.http_429 == 0", "errors.http_429", "==", 0.0, None),
        ("requests.failed <= 3", "requests.failed", "<=", 3.0, None),
        ("requests.total >= 1e3", "requests.total", ">=", 1000.0, None),
        ("tokens.output > 10000", "tokens.output", ">", 10000.0, None),
        ("duration < 10m", "duration_s", "<", 600.0, None),
        ("duration_s < 90", "duration_s", "<", 90.0, None),
    ],
)
def test_a_threshold_names_the_report_figure_and_its_limit_in_the_figure_unit(
    text: str, figure: str, op: str, value: float, model: str | None
) -> None:
    assert parse_threshold(text) == Threshold(text, figure, op, value, model)


def test_every_recorded_statistic_of_every_latency_can_be_named() -> None:
    for histogram in ("ttft", "ttft_content", "itl", "itl_per_token", "tpot", "e2e", "connect"):
        for stat in STAT_NAMES:
            written = stat.replace("_", ".")
            threshold = parse_threshold(f"{histogram}.{written} < 1ms")
            assert threshold.figure == f"{histogram}.{stat}_ms"


def test_unit_conversion_is_exact_in_decimal() -> None:
    assert parse_threshold("e2e.p50 < 0.1s").value == 100.0
    assert parse_threshold("e2e.p50 < 0.3s").value == 300.0
    assert parse_threshold("error_rate < 0.7%").value == 0.007


@pytest.mark.parametrize(
    ("op", "measured", "limit", "holds"),
    [
        ("<", 1.0, 2.0, True),
        ("<", 2.0, 2.0, False),
        ("<=", 2.0, 2.0, True),
        ("<=", 2.5, 2.0, False),
        (">", 3.0, 2.0, True),
        (">", 2.0, 2.0, False),
        (">=", 2.0, 2.0, True),
        (">=", 1.5, 2.0, False),
        ("==", 0.0, 0.0, True),
        ("==", 1.0, 0.0, False),
        ("!=", 1.0, 0.0, True),
        ("!=", 0.0, 0.0, False),
    ],
)
def test_compare_applies_each_operator(op: str, measured: float, limit: float, holds: bool) -> None:
    assert compare(op, measured, limit) is holds


def test_compare_rejects_an_unknown_operator() -> None:
    with pytest.raises(ValueError, match="'=~' is not one of"):
        compare("=~", 1.0, 1.0)


def test_a_threshold_holds_when_its_figure_passes_the_comparison() -> None:
    threshold = parse_threshold("ttft.p95 < 0.8s")
    assert threshold.holds(799.9)
    assert not threshold.holds(800.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "it is empty"),
        ("ttft.p95 800ms", "no comparison operator after 'ttft.p95' (found '800ms'); use one of"),
        ("< 800ms", "no metric before '<'"),
        ("ttf.p95 < 800ms", "unknown metric 'ttf.p95'; did you mean ttft.p95?"),
        ("latency.p95 < 1s", "unknown metric 'latency.p95'; did you mean e2e.p95?"),
        ("output_tokens < 5", "unknown metric 'output_tokens'; did you mean output_tokens_per_s?"),
        ("requests.foo < 3", "unknown metric 'requests.foo'; did you mean requests.total?"),
        ("ttft < 800ms", "ttft needs a statistic, e.g. ttft.p95; one of min mean stdev"),
        ("ttft.p97 < 800ms", "'p97' is not a statistic of ttft (that percentile is not recorded)"),
        ("ttft.avg < 800ms", "'avg' is not a statistic of ttft (did you mean ttft.mean?)"),
        ("ttft.median < 800ms", "'median' is not a statistic of ttft (did you mean ttft.p50?)"),
        ("ttft.p59 < 800ms", "'p59' is not a statistic of ttft"),
        ("ttft. < 800ms", "'ttft.' is cut short; name a statistic after the dot"),
        ("error_rate.p95 < 1%", "error_rate is a single figure and takes no statistic"),
        (
            "ttft.p95 < 800",
            "ttft.p95 is a latency: write a time unit after 800 (ms, s, us, µs or m)",
        ),
        (
            "ttft.p95 < 5 USD",
            "ttft.p95 is a latency: give it a time unit (ms, s, us, µs or m), not a currency (USD)",
        ),
        (
            "ttft.p95 < 5%",
            "ttft.p95 is a latency: give it a time unit (ms, s, us, µs or m), not a percentage (%)",
        ),
        (
            "ttft.p95 < 8 parsecs",
            "ttft.p95 is a latency: give it a time unit (ms, s, us, µs or m), not "
            "'parsecs', which is not a unit onybench knows",
        ),
        ("duration < 10", "duration is a duration: write a time unit after 10"),
        (
            "requests.failed < 3 USD",
            "requests.failed is a count: write the number alone, without a currency (USD)",
        ),
        (
            "errors.http_429 < 1%",
            "errors.http_429 is a count: write the number alone, without a percentage (%)",
        ),
        (
            "output_tokens_per_s > 500 tokens/s",
            "output_tokens_per_s is a rate, per second: write the number alone, without a "
            "rate unit (tokens/s)",
        ),
        (
            "cost.total < 0.5",
            "cost.total is an amount of money: write its currency code after 0.5, e.g. "
            "'cost.total < 0.5 USD'",
        ),
        (
            "cost.total < 1 ms",
            "cost.total is an amount of money: write a currency code (e.g. USD), not a "
            "time unit (ms)",
        ),
        (
            "cost.total < $0.50",
            "write the currency code after the amount, e.g. '< 0.50 USD', not '$0.50'",
        ),
        ("cost.total_usd < 1 EUR", "cost.total_usd is in USD, but the value is in EUR"),
        (
            "error_rate < 1 ms",
            "error_rate is a fraction: write a percentage ('error_rate < 1%') or a "
            "fraction from 0 to 1, not a time unit (ms)",
        ),
        (
            "error_rate < 5",
            "error_rate without a unit is a fraction from 0 to 1, and 5 is more; write "
            "'error_rate < 5%'",
        ),
        ("error_rate < 150%", "150% is more than 100 %"),
        ("ttft.p95 < -5ms", "the limit -5 is negative, and a latency never is"),
        ("requests.failed > -1", "the limit -1 is negative, and this figure never is"),
        ("ttft.p95 <", "no value after '<'"),
        ("ttft.p95 < fast", "expected a number after '<', found 'fast'"),
        ("ttft.p95 < < 800ms", "two operators, '<' and '<'; use one"),
        (
            "ttft.p95 < 100ms < 900ms",
            "two comparisons; write one threshold per bound, e.g. 'ttft.p95 > …' and "
            "'ttft.p95 < …'",
        ),
        ("ttft.p95 < 800ms please", "unexpected 'please' after the value"),
        ("ttft.p95 = 800ms", "'=' is not an operator; write '=='"),
        ("ttft.p95 => 800ms", "'=>' is not an operator; write '>='"),
        ("ttft.p95 ≤ 800ms", "'≤' is not an operator; write '<='"),
        ("800ms > ttft.p95", "it starts with a number; put the metric on the left"),
        ("ttft.p95{model=x < 1s", "the {model=...} selector is not closed; add '}'"),
        ("ttft.p95{} < 1s", "the selector {} is empty; write {model=NAME} or leave it out"),
        ("ttft.p95{model} < 1s", "the selector {model} has no '='; write {model=NAME}"),
        ("ttft.p95{model=} < 1s", "the selector names no model: write {model=NAME}"),
        ("ttft.p95{model==x} < 1s", "the selector takes a single '=': {model=NAME}"),
        ("ttft.p95{region=eu} < 1s", "unknown selector key 'region'; the only key is model"),
        ("ttft.p95{modle=x} < 1s", "unknown selector key 'modle' (did you mean model?)"),
        ("ttft.p95{model=a,model=b} < 1s", "the selector names model twice"),
        ("ttft{model=x}.p95 < 1s", "the {model=...} selector goes after the statistic"),
    ],
)
def test_a_malformed_threshold_names_the_mistake_and_the_expected_shape(
    text: str, message: str
) -> None:
    with pytest.raises(ScenarioError) as error:
        parse_threshold(text)
    assert str(error.value).startswith(f"threshold {text!r}: {message}")
    assert str(error.value).endswith(f"; the shape is {SHAPE}")
