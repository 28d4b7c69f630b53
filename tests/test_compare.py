"""Baseline comparison: its calibration measured on synthetic data, and the real CLI."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from onybench.cli import EXIT_GATE_FAILED, EXIT_OK, EXIT_USAGE, app
from onybench.gates.compare import (
    MIN_TAIL_REPLICATES,
    Comparison,
    ModelSample,
    RunSide,
    compare,
    load_side,
    needed_resamples,
    parse_gate,
    parse_metric,
)
from onybench.gates.resample import interval_index

runner = CliRunner()

# --- calibration, in pure code ----------------------------------------------------------

# TTFT of a steady service: lognormal around 200 ms with a 10 % spread (sigma 0.1 of
# the log). With 200 requests a side, p95's own sampling error is ~3 %, so a +20 %
# shift stands clear of a +10 % margin; with a spread much wider no test on 200
# requests could tell +20 % from +10 % (the docs say so).
MEDIAN_MS = 200.0
SIGMA = 0.1
REQUESTS = 200
PAIRS = 1_000
# 1,000 resamples rather than the CLI's 2,000: the interval's tail then rests on
# 25 replicates (2.5 % of 1,001), whose Monte-Carlo wobble (about ±0.4 points of
# the interval's level) is far below the rates measured; it halves the runtime.
RESAMPLES = 1_000


def side(values: list[float]) -> RunSide:
    return RunSide("synthetic", "records", {"m": ModelSample(values={"ttft": values})})


def draw(rng: random.Random, scale: float = 1.0) -> list[float]:
    return [scale * rng.lognormvariate(math.log(MEDIAN_MS), SIGMA) for _ in range(REQUESTS)]


def gate_failure_rate(scale: float, seed: int, gate: str = "ttft.p95 > +10%") -> float:
    rng = random.Random(seed)
    gates = [parse_gate(gate)]
    metrics = [parse_metric("ttft.p95")]
    failed = 0
    for pair in range(PAIRS):
        result = compare(
            side(draw(rng)),
            side(draw(rng, scale)),
            gates=gates,
            metrics=metrics,
            resamples=RESAMPLES,
            seed=pair,
        )
        failed += not result.passed
    return failed / PAIRS


@pytest.mark.slow
def test_a_10_percent_gate_fails_on_noise_rarely_and_on_a_20_percent_shift_almost_always() -> None:
    started = time.perf_counter()
    same = gate_failure_rate(1.0, seed=11)
    at_margin = gate_failure_rate(1.10, seed=12)
    shifted = gate_failure_rate(1.20, seed=13)
    print(
        f"\ncalibration over {PAIRS} pairs of {REQUESTS} requests a side "
        f"(lognormal, sigma {SIGMA}), gate 'ttft.p95 > +10%', {RESAMPLES} resamples:\n"
        f"  same distribution:      fails {same:.1%}\n"
        f"  true +10 % (at margin): fails {at_margin:.1%}\n"
        f"  true +20 % shift:       fails {shifted:.1%}\n"
        f"  ({time.perf_counter() - started:.1f} s)"
    )
    assert same <= 0.07
    # At the margin itself a false failure is what the interval bounds: alpha / 2 (one
    # side of a 95 % interval), give or take the bootstrap's and this sample's error.
    assert at_margin <= 0.07
    assert shifted >= 0.90


@pytest.mark.slow
def test_holm_holds_the_family_wise_error_over_many_metrics_and_models() -> None:
    # Two models × four statistics, no real change: how often is *any* row flagged?
    rng = random.Random(21)
    metrics = [parse_metric(m) for m in ("ttft.p50", "ttft.p90", "ttft.p95", "ttft.p99")]
    pairs = 400
    flagged = 0
    for pair in range(pairs):

        def two_models(scale: float = 1.0) -> RunSide:
            return RunSide(
                "synthetic",
                "records",
                {model: ModelSample(values={"ttft": draw(rng, scale)}) for model in ("a", "b")},
            )

        result = compare(
            two_models(), two_models(), metrics=metrics, resamples=RESAMPLES, seed=pair
        )
        flagged += any(change.significant for change in result.changes)
    rate = flagged / pairs
    print(f"\nfamily-wise false flags over 8 rows, {pairs} null pairs: {rate:.1%}")
    assert rate <= 0.09  # alpha 5 %, plus this estimate's own error (±2 points)


def test_the_same_seed_gives_the_same_comparison_and_another_seed_another() -> None:
    rng = random.Random(3)
    base, cur = draw(rng), draw(rng, 1.15)
    gates = [parse_gate("ttft.p95 > +10%")]

    def run(seed: int) -> Comparison:
        return compare(side(base), side(cur), gates=gates, resamples=500, seed=seed)

    assert run(1) == run(1)
    # (The interval's bounds are order statistics, so they may coincide; p never does.)
    assert run(1).gates[0].p_value != run(2).gates[0].p_value


def test_a_sample_compared_with_itself_shows_no_change_and_passes() -> None:
    values = draw(random.Random(4))
    result = compare(side(values), side(values), gates=[parse_gate("ttft.p50 > +1%")])
    assert result.passed
    [change] = [c for c in result.changes if c.metric.name == "ttft.p95"]
    assert change.relative == 0.0
    assert not change.significant


def test_resamples_are_raised_when_many_comparisons_need_a_deeper_tail() -> None:
    # alpha / m / 2 of the replicates must still be MIN_TAIL_REPLICATES of them.
    assert needed_resamples(2_000, 9, 0.05) == 2_000
    for family in (1, 10, 40, 200):
        resamples = needed_resamples(100, family, 0.05)
        assert interval_index(0.05 / family, resamples) >= MIN_TAIL_REPLICATES
    rng = random.Random(5)
    metrics = [parse_metric(f"ttft.{s}") for s in ("p50", "p90", "p95", "p99", "p99.9")]
    models = {f"m{i}": ModelSample(values={"ttft": draw(rng)}) for i in range(8)}
    both = RunSide("x", "records", models)
    result = compare(both, both, metrics=metrics, resamples=200)
    assert result.resamples == needed_resamples(200, 40, 0.05)
    assert not any(change.significant for change in result.changes)


# --- the real CLI against the mock ----------------------------------------------------------

SCENARIO = """
[target]
base_url = "mock"
[load]
concurrency = 8
requests = 64
[mock]
ttft_ms = {ttft}
itl_ms = 1.0
output_tokens = 4
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A baseline run, and one whose mock answers 20 % slower in TTFT."""
    tmp = tmp_path_factory.mktemp("compare")
    out = []
    # TTFT long beside the client's own overhead (a few ms, more on a busy machine),
    # so the +20 % the mock adds shows as nearly +20 % in what the client measures.
    for name, ttft in (("base", 150.0), ("slow", 180.0)):
        scenario = tmp / f"{name}.toml"
        scenario.write_text(SCENARIO.format(ttft=ttft))
        result = runner.invoke(app, ["run", str(scenario), "--out", str(tmp / name)])
        assert result.exit_code == EXIT_OK, result.output
        out.append(tmp / name)
    return out[0], out[1]


def test_a_run_compared_with_itself_passes(runs: tuple[Path, Path]) -> None:
    base, _ = runs
    result = runner.invoke(
        app,
        [
            "compare",
            str(base),
            str(base),
            "--fail-on",
            "ttft.p50 > +10%",
            "--fail-on",
            "e2e.p95 > +10%",
        ],
    )
    assert result.exit_code == EXIT_OK, result.output
    assert "gates: all 2 passed" in result.stdout
    assert " yes" not in result.stdout  # nothing is significant


def test_a_20_percent_slower_ttft_is_flagged_and_exits_1(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    base, slow = runs
    markdown = tmp_path / "compare.md"
    result = runner.invoke(
        app,
        [
            "compare",
            str(base),
            str(slow),
            "--fail-on",
            "ttft.p50 > +10%",
            "--fail-on",
            "error_rate > +1pp",
            "--markdown",
            str(markdown),
        ],
    )
    assert result.exit_code == EXIT_GATE_FAILED, result.output
    assert "error: 1 of 2 regression gates failed" in result.stderr
    gate_line = next(
        line for line in result.stdout.splitlines() if line.startswith("ttft.p50 > +10%")
    )
    assert "FAIL" in gate_line
    error_gate = next(
        line for line in result.stdout.splitlines() if line.startswith("error_rate > +1pp")
    )
    assert error_gate.split()[-1] == "pass"
    row = next(line for line in result.stdout.splitlines() if " ttft.p50 " in line)
    assert row.split()[-1] == "yes"
    text = markdown.read_text()
    assert "**Regression: 1 of 2 gates failed.**" in text
    assert "| ttft.p50 &gt; +10% | openai/gpt-4o-mini |" in text


def test_report_json_files_alone_are_compared_through_their_histograms(
    runs: tuple[Path, Path],
) -> None:
    base, slow = runs
    assert load_side(base / "report.json").source == "histograms"
    assert load_side(base).source == "records"
    result = runner.invoke(
        app,
        [
            "compare",
            str(base / "report.json"),
            str(slow / "report.json"),
            "--fail-on",
            "ttft.p50 > +10%",
        ],
    )
    assert result.exit_code == EXIT_GATE_FAILED, result.output
    assert "bootstrap from histograms vs histograms" in result.stdout


def test_compare_values_agree_with_the_report_figures(runs: tuple[Path, Path]) -> None:
    base, slow = runs
    from_histograms = compare(load_side(base / "report.json"), load_side(slow / "report.json"))
    report = orjson.loads((slow / "report.json").read_bytes())
    figures = report["groups"][0]["figures"]
    [p95] = [c for c in from_histograms.changes if c.metric.name == "ttft.p95"]
    assert p95.current == figures["ttft.p95_ms"]
    from_records = compare(load_side(base), load_side(slow))
    [raw] = [c for c in from_records.changes if c.metric.name == "ttft.p95"]
    assert raw.current == pytest.approx(figures["ttft.p95_ms"], rel=0.001)  # HDR's precision


def test_bad_compare_arguments_are_usage_errors(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = runs
    for args in (
        [str(base), str(tmp_path / "nope")],
        [str(base), str(base), "--fail-on", "ttft.p95 >= 10%"],
        [str(base), str(base), "--metric", "ttft.max"],
        [str(base), str(base), "--confidence", "1.5"],
    ):
        result = runner.invoke(app, ["compare", *args])
        assert result.exit_code == EXIT_USAGE, (args, result.output)
