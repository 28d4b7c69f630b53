"""The `onybench` command: arguments in, library calls, messages and exit codes out.

The only module that prints for humans or decides exit codes.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import orjson
import trio
import typer

from onybench import __version__
from onybench.benchmark import (
    Progress,
    load_prompts,
    new_run_id,
    resolve_api_key,
    resolve_workers,
    target_url,
)
from onybench.benchmark import run as run_benchmark
from onybench.capacity import LevelResult
from onybench.client import Target
from onybench.config import (
    Scenario,
    load_scenario,
    parse_amount,
    parse_duration,
    parse_optional_duration,
    parse_warmup,
    validate,
)
from onybench.errors import OnybenchError, ReportError, ScenarioError
from onybench.gates.compare import (
    DEFAULT_ALPHA,
    DEFAULT_METRICS,
    DEFAULT_RESAMPLES,
    compare,
    load_side,
    parse_gate,
    parse_metric,
)
from onybench.gates.evaluate import ThresholdOutcome, evaluate_thresholds, parse_thresholds
from onybench.gates.render import (
    render_comparison,
    render_comparison_markdown,
    render_threshold_table,
)
from onybench.merge import merge_runs
from onybench.mock.config import MockConfig
from onybench.mock.dialects import DIALECTS
from onybench.mock.lean import LeanServer
from onybench.mock.server import LISTEN_BACKLOG, serve
from onybench.probe import probe as run_probe
from onybench.report.capacity import capacity_facts
from onybench.report.console import render_summary
from onybench.report.junit import (
    JunitSuite,
    comparison_note,
    comparison_suite,
    threshold_suite,
    write_junit,
)
from onybench.report.outputs import rebuild_report, render_run_dir
from onybench.report.probe_console import render_probe
from onybench.rundir import REPORT_FILE, read_json_file
from onybench.sweep import level_scenario, run_sweep, sweep_slos
from onybench.sweep_plan import SweepPlan

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING_SUCCEEDED = 3
EXIT_UNRELIABLE = 4
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = f"""
Exit codes (the same for every command):
{EXIT_OK} completed;
{EXIT_GATE_FAILED} a threshold or comparison gate failed;
{EXIT_USAGE} usage or configuration error;
{EXIT_NOTHING_SUCCEEDED} nothing succeeded;
{EXIT_UNRELIABLE} the run's own figures are unreliable (with --strict);
{EXIT_INTERRUPTED} interrupted (Ctrl-C or SIGTERM; the report of what finished is still written).
"""

app = typer.Typer(
    help="Load-test and benchmark streaming LLM APIs: exact TTFT, ITL, throughput and cost.\n"
    + EXIT_CODES_HELP,
    # Locals in a traceback would show the API key.
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"onybench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Load-test and benchmark streaming LLM APIs."""


@app.command(epilog=EXIT_CODES_HELP)
def run(
    scenario_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="[SCENARIO]", help="A scenario TOML file; flags given too override it."
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="Target base URL (default https://api.onysoft.com/v1); "
            "'mock' starts the built-in mock server (no key, no network)."
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m", help="Model name; repeat for several (load settings apply per model)."
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", help="Requests kept in flight per model (closed loop)."
        ),
    ] = None,
    requests: Annotated[
        int | None,
        typer.Option(
            "--requests", "-n", help="Requests per model (default 50 when no --duration is given)."
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(help="Stop issuing requests after this long, e.g. 30s, 5m."),
    ] = None,
    grace: Annotated[
        str | None,
        typer.Option(
            help="When the run stops, time left to requests in flight before they are cancelled "
            "(default 10s)."
        ),
    ] = None,
    prompt: Annotated[
        str | None, typer.Option(help="The user message sent with every request.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="max_tokens of every request (default 128).")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the API key (default ONYSOFT_API_KEY)."),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="Extra request header 'Name: value'; repeatable."),
    ] = None,
    include_usage: Annotated[
        bool | None,
        typer.Option(
            "--include-usage/--no-include-usage",
            help="Ask for usage with stream_options.include_usage (default on; "
            "turn off for servers that reject it).",
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="Open loop: requests per second (per model), instead of --concurrency."),
    ] = None,
    arrival: Annotated[
        str | None,
        typer.Option(help="Open-loop arrivals: constant, poisson (default) or gamma."),
    ] = None,
    burstiness: Annotated[
        float | None,
        typer.Option(
            help="Gamma arrivals' shape B: gaps have squared coefficient of variation 1/B "
            "(B < 1 burstier, B = 1 Poisson)."
        ),
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option(
            help="Open loop: cap on requests in flight per model; arrivals beyond it are "
            "dropped and counted."
        ),
    ] = None,
    warmup: Annotated[
        str | None,
        typer.Option(
            help="Warm-up left out of the results (but shown): a number of requests per "
            "model, or a duration like 30s."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for arrival schedules and prompt sampling.")
    ] = None,
    max_cost: Annotated[
        str | None,
        typer.Option(
            help="Stop issuing requests once the reported cost reaches this amount "
            "(in the currency the API reports)."
        ),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Send a request again after HTTP 429, 502, 503, 504 or a refused or lost "
            "connection, up to N times, waiting Retry-After (else 0.5 s, doubling). Off by "
            "default: every failure is recorded as it is; retries are counted in the report.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default reports/<run-id>/); must be new or empty."),
    ] = None,
    workers: Annotated[
        str,
        typer.Option(
            help="Client processes sharing the load (each its own event loop); "
            "'auto' = one per core. Use more when a run is flagged client-limited.",
        ),
    ] = "1",
    strict: Annotated[
        bool,
        typer.Option(
            help=f"Exit {EXIT_UNRELIABLE} when onybench was itself the bottleneck "
            "(event-loop lag or CPU saturation distorted the timings)."
        ),
    ] = False,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            "-t",
            help="A pass/fail threshold, e.g. 'ttft.p95 < 800ms' or 'error_rate < 1%'; "
            f"repeatable, added to the scenario's. Any failing one exits {EXIT_GATE_FAILED}.",
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(help="Also write the thresholds as JUnit XML (one test case each)."),
    ] = None,
) -> None:
    """Run a closed-loop benchmark and write report.json and records.jsonl."""
    try:
        scenario = load_scenario(scenario_file) if scenario_file else Scenario(name="adhoc")
        scenario = scenario.with_overrides(
            base_url=base_url,
            models=tuple(model) if model else None,
            concurrency=concurrency,
            requests=requests,
            duration_s=parse_duration(duration, "--duration") if duration else None,
            grace_s=parse_duration(grace, "--grace") if grace else None,
            prompt=prompt,
            max_tokens=max_tokens,
            api_key_env=api_key_env,
            headers=_parse_headers(header) if header else None,
            include_usage=include_usage,
            max_cost=parse_amount(max_cost, "--max-cost") if max_cost else None,
            retries=retries,
            rate=rate,
            arrival=arrival,
            burstiness=burstiness,
            max_in_flight=max_in_flight,
            seed=seed,
            thresholds=scenario.thresholds + tuple(threshold) if threshold else None,
            **_warmup_fields(warmup),
        )
        validate(scenario)
        api_key = resolve_api_key(scenario)
        worker_count = resolve_workers(_parse_workers(workers), scenario)
        out_dir = out or Path("reports") / new_run_id(scenario)
        progress = _print_progress if sys.stderr.isatty() else None
        _err(f"onybench {__version__}: {_describe(scenario)} -> {out_dir}")
        result = run_benchmark(
            scenario, out_dir=out_dir, api_key=api_key, progress=progress, workers=worker_count
        )
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        # Only before the run started: once it runs, signals stop it cleanly.
        _err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if progress is not None:
        _err("")
    typer.echo(render_summary(result.report))
    gates = result.report.get("gates") or {}
    outcomes = [ThresholdOutcome.from_json(o) for o in gates.get("thresholds", ())]
    if outcomes:
        typer.echo("\n" + render_threshold_table(outcomes, gates.get("aborted")))
    typer.echo(f"\nreport: {result.run_dir / 'report.json'}  (also report.html, summary.md)")
    if junit is not None:
        _write_junit(junit, [threshold_suite(outcomes)])
    # When several apply, the first of: interrupted, nothing succeeded, gate failed, unreliable.
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.succeeded == 0:
        _err("error: no request succeeded; see the errors above and records.jsonl")
        raise typer.Exit(EXIT_NOTHING_SUCCEEDED)
    _exit_if_thresholds_failed(outcomes)
    if strict and result.health.verdict().client_limited:
        _err("error: the client was the bottleneck and --strict was given")
        raise typer.Exit(EXIT_UNRELIABLE)


def _exit_if_thresholds_failed(outcomes: list[ThresholdOutcome]) -> None:
    failed = sum(1 for outcome in outcomes if not outcome.passed)
    if failed:
        _err(f"error: {failed} of {len(outcomes)} thresholds failed")
        raise typer.Exit(EXIT_GATE_FAILED)


def _write_junit(path: Path, suites: list[JunitSuite], note: str = "") -> None:
    try:
        write_junit(path, suites, note)
    except OSError as exc:
        _err(f"error: cannot write {path}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None


def _warmup_fields(value: str | None) -> dict[str, float | int]:
    if value is None:
        return {}
    requests, seconds = parse_warmup(value, "--warmup")
    return {"warmup_requests": requests, "warmup_s": seconds}


def _parse_workers(value: str) -> int | None:
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ScenarioError(
            f"{value!r} is not a number of processes (1, 2, ... or auto)", "--workers"
        )
    return int(value)


@app.command(epilog=EXIT_CODES_HELP)
def sweep(
    scenario_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="[SCENARIO]",
            help="A scenario TOML file: target, models, prompts, [mock], [pricing]; its "
            "thresholds are SLOs too. Its load settings are replaced by each level.",
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="Target base URL; 'mock' starts the built-in mock server."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m", help="Model name; repeat for several (levels are per model)."
        ),
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="max_tokens of every request.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key.")
    ] = None,
    rate: Annotated[
        bool | None,
        typer.Option(
            "--rate/--concurrency",
            help="Sweep the request rate (open loop, requests/s per model, the scenario's "
            "arrival process) or the concurrency (the default).",
        ),
    ] = None,
    levels: Annotated[
        str | None,
        typer.Option(help="The levels, e.g. 1,2,4,8 (instead of --start/--max/--factor)."),
    ] = None,
    start: Annotated[
        float | None, typer.Option(help="First level of a geometric sweep (default 1).")
    ] = None,
    max_level: Annotated[
        float | None,
        typer.Option("--max", help="Last level of a geometric sweep, always tried (default 64)."),
    ] = None,
    factor: Annotated[
        float | None, typer.Option(help="Each level = the previous one x this (default 2).")
    ] = None,
    hold: Annotated[
        str | None, typer.Option(help="How long each level is measured (default 10s).")
    ] = None,
    warmup: Annotated[
        str | None,
        typer.Option(
            help="Warm-up before each level's hold, left out of its figures (default 2s)."
        ),
    ] = None,
    search: Annotated[
        bool | None,
        typer.Option(
            "--search/--step",
            help="Bisect between the last level within the SLOs and the first outside them "
            "for the highest level meeting every SLO (--step: only step, the default).",
        ),
    ] = None,
    resolution: Annotated[
        float | None,
        typer.Option(help="--search stops at this bracket width (default 1, or 5 % for rates)."),
    ] = None,
    slo: Annotated[
        list[str] | None,
        typer.Option(
            "--slo",
            help="An SLO in the threshold grammar, e.g. 'ttft.p95 < 500ms'; repeatable, added "
            "to the scenario's thresholds. Latency SLOs also bound each request.",
        ),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(help="SLO attainment target, percent of requests (default 90)."),
    ] = None,
    knee_gain: Annotated[
        float | None,
        typer.Option(
            help="Knee: throughput gain under this share of the load increase (default 0.1); "
            "stepping stops there without --search."
        ),
    ] = None,
    knee_ttft_factor: Annotated[
        float | None,
        typer.Option(help="Knee: TTFT p95 above this multiple of the lowest level's (default 2)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default reports/<run-id>/); must be new or empty."),
    ] = None,
) -> None:
    """Find the load a deployment sustains within its SLOs, and what it costs there.

    Steps the concurrency (or, with --rate, the request rate) through levels, each
    held --hold after --warmup on one connection pool; stops at the first level
    outside the SLOs or when throughput stops growing. Capacity = the highest
    level whose SLO attainment reaches --target, whose figures meet every SLO,
    and (rates) that was sustained: 95 % of the offered rate achieved, nothing
    dropped. Writes report.json (capacity section), summary.md and report.html.
    Exits 1 when no level is within the SLOs.
    """
    try:
        scenario = load_scenario(scenario_file) if scenario_file else Scenario(name="sweep")
        scenario = scenario.with_overrides(
            base_url=base_url,
            models=tuple(model) if model else None,
            max_tokens=max_tokens,
            api_key_env=api_key_env,
        )
        plan = scenario.sweep or SweepPlan()
        geometric: dict[str, Any] = {"start": start, "maximum": max_level, "factor": factor}
        flags: dict[str, Any] = {
            "mode": None if rate is None else "rate" if rate else "concurrency",
            # A geometric series given on the command line replaces the file's level list.
            "levels": _parse_levels(levels) if levels else () if any(geometric.values()) else None,
            **geometric,
            "hold_s": parse_duration(hold, "--hold") if hold else None,
            "warmup_s": parse_optional_duration(warmup, "--warmup") if warmup else None,
            "search": search,
            "resolution": resolution,
            "target": None if target is None else target / 100,
            "knee_gain": knee_gain,
            "knee_ttft_factor": knee_ttft_factor,
        }
        plan = replace(
            plan,
            slos=sweep_slos(scenario, plan.slos, slo or ()),
            **{name: value for name, value in flags.items() if value is not None},
        )
        level_scenario(scenario, plan, plan.steps()[0])  # a level's scenario must validate
        api_key = resolve_api_key(scenario)
        out_dir = out or Path("reports") / new_run_id(scenario)
        target_name = "the built-in mock" if scenario.uses_mock else scenario.base_url
        _err(
            f"onybench {__version__}: sweep {plan.mode} {', '.join(map(plan.label, plan.steps()))}"
            f"{' then bisect' if plan.search else ''} on {target_name} -> {out_dir}"
        )
        result = run_sweep(scenario, plan, out_dir=out_dir, api_key=api_key, on_level=_print_level)
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        _err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    section = result.report["capacity"]
    typer.echo("\n".join(capacity_facts(section)))
    for cost in section["costs_at_capacity"]:
        typer.echo(
            f"cost at capacity ({cost['source']}): {cost['per_hour']} {cost['currency']}/hour, "
            f"{cost['per_month']} {cost['currency']}/month"
        )
    typer.echo(f"\nreport: {result.run_dir / 'report.html'}  (also report.json, summary.md)")
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if not any(r.succeeded for r in result.analysis.levels):
        _err("error: no request succeeded; see records.jsonl")
        raise typer.Exit(EXIT_NOTHING_SUCCEEDED)
    if result.analysis.capacity is None:
        _err("error: no level met every SLO")
        raise typer.Exit(EXIT_GATE_FAILED)


def _parse_levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ScenarioError(f"{text!r} is not a list of numbers like 1,2,4,8", "--levels") from None


def _print_level(result: LevelResult) -> None:
    ttft = result.merged().figures().get("ttft.p95_ms")
    attainment = "-" if result.attainment is None else f"{result.attainment:.1%}"
    verdict = "within SLOs" if result.within_slo else "; ".join(result.slo_failures)
    _err(
        f"  {result.stage}: {result.achieved_per_s:.3g} req/s, "
        f"goodput {result.goodput_per_s:.3g}/s, attainment {attainment}, "
        f"TTFT p95 {'-' if ttft is None else f'{ttft:.0f} ms'}, "
        f"{result.output_tokens_per_s:.4g} tok/s: {verdict}"
    )


@app.command("validate", epilog=EXIT_CODES_HELP)
def validate_scenario(
    scenario_file: Annotated[Path, typer.Argument(metavar="FILE", help="A scenario TOML file.")],
) -> None:
    """Check a scenario file (keys, values, datasets, thresholds) without sending a request."""
    try:
        scenario = load_scenario(scenario_file)
        prompts = load_prompts(scenario)
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(f"ok: {scenario_file}: {_describe(scenario)}; {len(prompts)} prompts")


def _parse_headers(values: list[str]) -> tuple[tuple[str, str], ...]:
    headers = []
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise ScenarioError(f"{value!r} is not 'Name: value'", "--header")
        headers.append((name.strip(), content.strip()))
    return tuple(headers)


def _describe(scenario: Scenario) -> str:
    stop = []
    if scenario.request_limit is not None:
        stop.append(f"{scenario.request_limit} requests")
    if scenario.duration_s is not None:
        stop.append(f"{scenario.duration_s:g}s")
    if scenario.stages:
        stop.append(f"{len(scenario.stages)} stages")
    target = "the built-in mock" if scenario.uses_mock else scenario.base_url
    if scenario.open_loop:
        shape = f"{scenario.arrival} arrivals" + (
            f" at {scenario.rate:g}/s" if scenario.rate is not None else " (rate stages)"
        )
    elif scenario.stages:
        shape = "ramping concurrency"
    else:
        shape = f"concurrency {scenario.closed_loop_concurrency}"
    return f"{', '.join(scenario.models)} at {target}, {shape}, {' or '.join(stop)} per model"


def _print_progress(p: Progress) -> None:
    total = f"/{p.planned}" if p.planned is not None else ""
    ttft = (
        f"ttft p50 {p.ttft_p50_ms:,.0f} ms p99 {p.ttft_p99_ms:,.0f} ms"
        if p.ttft_p50_ms is not None and p.ttft_p99_ms is not None
        else "ttft -"
    )
    line = (
        f"{p.elapsed_s:6.1f}s  done {p.finished}{total}  errors {p.failed}  "
        f"in flight {p.in_flight}  {p.output_tokens_per_s:,.0f} tok/s  {ttft}"
    )
    sys.stderr.write("\r\x1b[2K" + line)
    sys.stderr.flush()


def _err(message: str) -> None:
    typer.echo(message, err=True)


def main() -> None:
    app()


@app.command(epilog=EXIT_CODES_HELP)
def mock(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind; keep it on loopback.")] = "127.0.0.1",
    ttft_ms: Annotated[
        float | None, typer.Option(help="Time to first token (default 100).")
    ] = None,
    itl_ms: Annotated[float | None, typer.Option(help="Gap between chunks (default 10).")] = None,
    timing: Annotated[
        str | None,
        typer.Option(help="fixed, uniform (± jitter), normal (stdev jitter) or exponential."),
    ] = None,
    jitter_ms: Annotated[
        float | None, typer.Option(help="Spread for uniform/normal timing.")
    ] = None,
    batch_slots: Annotated[
        int | None,
        typer.Option(
            help="Server model: requests generated at once; the rest queue first come, "
            "first served, so TTFT grows with the queue (default 0 = no limit)."
        ),
    ] = None,
    itl_load_factor: Annotated[
        float | None,
        typer.Option(
            help="Server model: k in gap = itl * (1 + k * (active - 1)), active = requests "
            "being generated (default 0: ITL independent of load)."
        ),
    ] = None,
    output_tokens: Annotated[
        int | None, typer.Option(help="Tokens per response, capped by max_tokens (default 128).")
    ] = None,
    tokens_per_chunk: Annotated[
        int | None, typer.Option(help="Tokens per chunk (default 1).")
    ] = None,
    role_chunk: Annotated[
        bool | None,
        typer.Option("--role-chunk/--no-role-chunk", help="Send a role-only first chunk."),
    ] = None,
    emit_cost: Annotated[
        bool | None, typer.Option("--cost/--no-cost", help="Send Onysoft's cost object.")
    ] = None,
    always_usage: Annotated[
        bool | None,
        typer.Option(
            "--always-usage/--usage-on-request",
            help="Send usage always (Onysoft) or only with stream_options.include_usage "
            "(OpenAI); default: as the dialect does.",
        ),
    ] = None,
    dialect: Annotated[
        str | None,
        typer.Option(
            help="Whose streaming to imitate: " + ", ".join(DIALECTS) + " (default onysoft). "
            "See the README's 'Server dialects'."
        ),
    ] = None,
    context_tokens: Annotated[
        int | None,
        typer.Option(help="Context window: prompt + max_tokens beyond it is refused."),
    ] = None,
    prompt_cache: Annotated[
        bool | None,
        typer.Option(
            "--prompt-cache/--no-prompt-cache",
            help="Report a repeated prompt as cached (usage.prompt_tokens_details).",
        ),
    ] = None,
    ping_every: Annotated[
        int | None, typer.Option(help="Send ': ping' before every n-th content chunk.")
    ] = None,
    http_429_rate: Annotated[
        float | None, typer.Option(help="Share answered with HTTP 429.")
    ] = None,
    http_500_rate: Annotated[
        float | None, typer.Option(help="Share answered with HTTP 500.")
    ] = None,
    malformed_chunk_rate: Annotated[
        float | None, typer.Option(help="Share with one invalid-JSON chunk.")
    ] = None,
    stream_error_rate: Annotated[
        float | None, typer.Option(help="Share with an in-stream error object.")
    ] = None,
    cut_rate: Annotated[
        float | None, typer.Option(help="Share whose connection is cut mid-stream.")
    ] = None,
    cut_after_chunks: Annotated[int | None, typer.Option(help="Where cut streams stop.")] = None,
    no_done_rate: Annotated[
        float | None, typer.Option(help="Share ending after finish_reason without [DONE].")
    ] = None,
    no_finish_rate: Annotated[
        float | None, typer.Option(help="Share ending with neither finish_reason nor [DONE].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for timing draws and faults.")] = None,
    send_log: Annotated[
        Path | None,
        typer.Option(help="Append one JSON line per request: when each chunk was sent."),
    ] = None,
    stamp_chunks: Annotated[
        bool | None,
        typer.Option("--stamp-chunks/--no-stamp-chunks", help="Add x_sent_ns to every chunk."),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="hypercorn (default: every setting) or lean (one epoll loop, several times "
            "less CPU per chunk, for driving high event rates; no faults, server model, "
            "pings, prompt cache or context window)."
        ),
    ] = None,
) -> None:
    """Serve the built-in OpenAI/Onysoft-compatible mock server until Ctrl-C."""
    settings = {
        name: value
        for name, value in locals().items()
        if name not in ("port", "host") and value is not None
    }
    if send_log is not None:
        settings["send_log"] = str(send_log)
    try:
        config = MockConfig.from_json(settings)
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None

    if config.engine == "lean":
        _serve_lean(config, host, port)
        raise typer.Exit(EXIT_INTERRUPTED)

    async def serve_until_interrupted() -> None:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve, config, host, port)
            _err(f"mock server listening on http://{host}:{bound}/v1 (Ctrl-C to stop)")

    try:
        trio.run(serve_until_interrupted)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except OSError as exc:
        _err(f"error: cannot serve on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None


def _serve_lean(config: MockConfig, host: str, port: int) -> None:
    """The lean mock engine in this process, until Ctrl-C or SIGTERM."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        _err(f"error: cannot serve on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    with listener:
        server = LeanServer(config, listener)
        _err(
            f"mock server (lean engine) listening on "
            f"http://{host}:{listener.getsockname()[1]}/v1 (Ctrl-C to stop)"
        )
        server.serve_forever()


@app.command(epilog=EXIT_CODES_HELP)
def probe(
    base_url: Annotated[
        str,
        typer.Argument(
            help="The API's base URL, e.g. http://127.0.0.1:8000/v1; 'mock' probes the "
            "built-in mock (with --dialect)."
        ),
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name to request.")],
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key, if the server needs one.")
    ] = "ONYSOFT_API_KEY",
    requests: Annotated[
        int, typer.Option(min=1, help="Streams sent asking for usage (then 3 more probes).")
    ] = 3,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of each request.")] = 16,
    dialect: Annotated[
        str, typer.Option(help="With 'mock': the dialect the mock speaks.")
    ] = "onysoft",
    timeout: Annotated[str, typer.Option(help="Total time allowed per request, e.g. 30s.")] = "30s",
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Send a few requests and print how the server streams: usage, cost, chunking,
    [DONE], connection reuse, the request options it accepts, and the scenario
    settings it calls for. Run it before a long benchmark."""
    try:
        total_timeout_s = parse_duration(timeout, "--timeout")
        scenario = Scenario(
            base_url=base_url, api_key_env=api_key_env, mock=MockConfig(dialect=dialect)
        )
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    # Optional here: local servers need no key, and a missing one shows as an HTTP 401.
    api_key = None if scenario.uses_mock else os.environ.get(api_key_env) or None
    try:
        with target_url(scenario) as url:
            target = Target(base_url=url, api_key=api_key, total_timeout_s=total_timeout_s)
            result = trio.run(
                partial(run_probe, target, model, requests=requests, max_tokens=max_tokens)
            )
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    findings = result.to_json()
    if scenario.uses_mock:
        findings["base_url"] = f"mock ({dialect})"
    if as_json:
        typer.echo(orjson.dumps(findings, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(render_probe(findings))
    if not result.succeeded:
        raise typer.Exit(EXIT_NOTHING_SUCCEEDED)


@app.command(epilog=EXIT_CODES_HELP)
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(metavar="RUN_DIR", help="A run directory (run.json and records.jsonl)."),
    ],
) -> None:
    """Re-render every output of a run (report.json included) from records.jsonl and run.json.

    Works on runs killed before their end and on runs of older versions. Client
    health cannot be rebuilt from records: an existing report.json's is kept,
    else it is reported unknown.
    """
    try:
        result, paths = render_run_dir(run_dir)
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    _print_report(result, paths)


@app.command(epilog=EXIT_CODES_HELP)
def merge(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN_DIR", help="Run directories made in parallel."),
    ],
    out: Annotated[Path, typer.Option(help="Directory for the merged run; must be new or empty.")],
) -> None:
    """Combine runs made in parallel (processes or machines) into one run, exactly.

    Records are concatenated with their times put on the first run's clock,
    histograms added, counts and costs summed. Runs with different scenarios
    are merged with a warning.
    """
    try:
        result = merge_runs(run_dirs, out)
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    for warning in result.warnings:
        _err(f"warning: {warning}")
    _print_report(result.report, result.paths)


@app.command(epilog=EXIT_CODES_HELP)
def check(
    report_path: Annotated[
        Path,
        typer.Argument(
            metavar="REPORT",
            help="A run directory (its report.json, else rebuilt from records.jsonl) or a "
            "report.json file.",
        ),
    ],
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold", "-t", help="A threshold to judge, e.g. 'ttft.p95 < 800ms'; repeatable."
        ),
    ] = None,
    scenario_thresholds: Annotated[
        bool,
        typer.Option(
            "--scenario-thresholds/--no-scenario-thresholds",
            help="Judge the thresholds of the run's own scenario too (default on).",
        ),
    ] = True,
    junit: Annotated[
        Path | None,
        typer.Option(help="Also write the thresholds as JUnit XML (one test case each)."),
    ] = None,
) -> None:
    """Judge a finished run against thresholds: its scenario's and any --threshold given.

    A threshold without {model=...} is judged for each model; warm-up never
    counts; load stages are merged per model. A figure that was not measured
    fails. Exits 1 when any threshold fails.
    """
    try:
        extra = list(threshold or ())
        parse_thresholds(extra)
        report = _read_report_for_check(report_path)
        texts = (
            list(report.get("scenario", {}).get("thresholds") or ()) if scenario_thresholds else []
        )
        texts += extra
        if not texts:
            raise ScenarioError(
                "nothing to check: the run's scenario has no thresholds and no --threshold "
                "was given"
            )
        outcomes = evaluate_thresholds(report, texts)
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    gates = report.get("gates") or {}
    typer.echo(render_threshold_table(outcomes, gates.get("aborted")))
    if junit is not None:
        _write_junit(junit, [threshold_suite(outcomes)])
    _exit_if_thresholds_failed(outcomes)


def _read_report_for_check(path: Path) -> dict[str, Any]:
    if path.is_dir():
        report = (
            read_json_file(path / REPORT_FILE)
            if (path / REPORT_FILE).exists()
            else rebuild_report(path)
        )
    elif path.exists():
        report = read_json_file(path)
    else:
        raise ReportError(f"{path} is neither a run directory nor a report.json file")
    if not isinstance(report.get("groups"), list):
        raise ReportError(f"{path} is not an onybench report (it has no groups)")
    return report


@app.command("compare", epilog=EXIT_CODES_HELP)
def compare_runs(
    baseline: Annotated[
        Path,
        typer.Argument(
            metavar="BASELINE", help="The baseline: a run directory or a report.json file."
        ),
    ],
    current: Annotated[
        Path,
        typer.Argument(metavar="CURRENT", help="The run to judge: a run directory or report.json."),
    ],
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            help="A regression gate, e.g. 'ttft.p95 > +10%' (fails when the whole interval of "
            "the change lies above +10 %), 'request_output_tokens_per_s.p50 < -10%', "
            f"'error_rate > +1pp', 'e2e.p50 > +50ms'; repeatable. Exits {EXIT_GATE_FAILED} "
            "when one fails.",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help=f"A metric to compare (repeatable; default {', '.join(DEFAULT_METRICS)}).",
        ),
    ] = None,
    confidence: Annotated[
        float,
        typer.Option(
            help="Family-wise confidence: the chance that no row is wrongly called significant, "
            "and, separately, that no gate fails on noise alone (Holm's method).",
        ),
    ] = 1 - DEFAULT_ALPHA,
    resamples: Annotated[
        int,
        typer.Option(help="Bootstrap resamples (raised when many comparisons need more)."),
    ] = DEFAULT_RESAMPLES,
    seed: Annotated[int, typer.Option(help="Seed of the resampling (results repeat).")] = 0,
    markdown: Annotated[
        Path | None,
        typer.Option(help="Also write the comparison as Markdown (for a PR comment)."),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(help="Also write the gates and comparisons as JUnit XML."),
    ] = None,
) -> None:
    """Compare a run with a baseline, per model and metric, and fail on regressions.

    Values are resampled (bootstrap) from records.jsonl when a run directory
    has it, else from report.json's histograms; intervals of the change are
    adjusted for the number of comparisons by Holm's method. See docs/ci.md.
    """
    try:
        if not 0.5 <= confidence < 1:
            raise ScenarioError(f"must be in [0.5, 1), got {confidence}", "--confidence")
        if resamples < 100:
            raise ScenarioError(f"must be at least 100, got {resamples}", "--resamples")
        gates = [parse_gate(text) for text in fail_on or ()]
        metrics = [parse_metric(text) for text in metric] if metric else None
        result = compare(
            load_side(baseline),
            load_side(current),
            gates=gates,
            metrics=metrics,
            resamples=resamples,
            alpha=1 - confidence,
            seed=seed,
        )
    except OnybenchError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(render_comparison(result))
    if markdown is not None:
        try:
            markdown.write_text(render_comparison_markdown(result), encoding="utf-8")
        except OSError as exc:
            _err(f"error: cannot write {markdown}: {exc.strerror or exc}")
            raise typer.Exit(EXIT_USAGE) from None
    if junit is not None:
        _write_junit(junit, [comparison_suite(result)], comparison_note(result))
    if not result.passed:
        failed = sum(1 for verdict in result.gates if not verdict.passed)
        _err(f"error: {failed} of {len(result.gates)} regression gates failed")
        raise typer.Exit(EXIT_GATE_FAILED)


def _print_report(result: dict[str, Any], paths: list[Path]) -> None:
    if result["groups"]:
        typer.echo(render_summary(result))
    else:
        typer.echo("no request was recorded")
    health = result["client_health"]
    if health["client_limited"] is None:
        typer.echo(f"note: client health unknown: {'; '.join(health['reasons'])}")
    typer.echo("\nwrote: " + ", ".join(path.name for path in paths))
    typer.echo(f"report: {paths[0].parent / 'report.html'}")
