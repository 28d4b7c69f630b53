"""The Scenario: everything a run needs, from a TOML file and/or flags, validated.

Validation happens before any request is sent; every problem is a
`ScenarioError` naming the key path (and the file's line where it can be
found), what was found and what is expected. The format is documented in
scenarios/README.md; each section's keys are the `_SCHEMA` table below.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from onybench.errors import ScenarioError
from onybench.load.arrivals import Stage
from onybench.load.datasets import LengthDistribution
from onybench.mock.config import MockConfig
from onybench.pricing import Pricing, parse_pricing
from onybench.sweep_plan import SWEEP_MODES, SweepPlan
from onybench.thresholds import parse_threshold

DEFAULT_BASE_URL = "https://api.onysoft.com/v1"
MOCK_BASE_URL = "mock"
DEFAULT_MODEL = "openai/gpt-4o-mini"
DEFAULT_PROMPT = "Write a short paragraph about the history of the printing press."
DEFAULT_REQUESTS = 50

Arrival = Literal["constant", "poisson", "gamma"]
PromptSourceKind = Literal["inline", "text", "jsonl", "sharegpt", "synthetic"]
RampKind = Literal["concurrency", "rate"]
ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson", "gamma")
PROMPT_SOURCES: tuple[PromptSourceKind, ...] = ("inline", "text", "jsonl", "sharegpt", "synthetic")
RAMP_KINDS: tuple[RampKind, ...] = ("concurrency", "rate")


@dataclass(frozen=True)
class PromptSource:
    """Where prompts come from; `path` is resolved against the scenario file's folder."""

    kind: PromptSourceKind = "inline"
    prompts: tuple[str, ...] = ()
    path: Path | None = None
    input_tokens: LengthDistribution | None = None
    output_tokens: LengthDistribution | None = None
    count: int = 100
    unique_prefix: bool = False
    shuffle: bool = False


@dataclass(frozen=True)
class Scenario:
    """A whole run, typed and validated. Durations in seconds."""

    name: str = "adhoc"
    # target
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = "ONYSOFT_API_KEY"
    headers: tuple[tuple[str, str], ...] = ()
    http2: bool = False
    connect_timeout_s: float = 10.0
    first_token_timeout_s: float | None = None
    read_timeout_s: float = 60.0  # the longest silence between two chunks
    total_timeout_s: float | None = None
    # Attempts after a 429, 502-504 or a lost connection (0: never retried, each counted).
    retries: int = 0
    # request
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    prompt: str = DEFAULT_PROMPT
    prompt_source: PromptSource | None = None
    max_tokens: int | None = 128
    temperature: float | None = None
    include_usage: bool = True
    ignore_eos: bool = False
    min_tokens: int | None = None
    extra_body: tuple[tuple[str, Any], ...] = ()
    # load
    concurrency: int | None = None
    think_time_s: float = 0.0
    rate: float | None = None
    arrival: Arrival = "poisson"
    burstiness: float = 1.0
    max_in_flight: int | None = None
    stages: tuple[Stage, ...] = ()
    ramp: RampKind = "concurrency"
    requests: int | None = None
    duration_s: float | None = None
    grace_s: float = 10.0
    warmup_requests: int = 0
    warmup_s: float = 0.0
    seed: int = 0
    max_cost: Decimal | None = None
    thresholds: tuple[str, ...] = ()
    report_dir: Path = Path("reports")
    mock: MockConfig = field(default_factory=MockConfig)
    # Token prices and/or a deployment's price per hour (see onybench/pricing.py).
    pricing: Pricing | None = None
    # onybench sweep's plan from the [sweep] section.
    sweep: SweepPlan | None = None

    @property
    def uses_mock(self) -> bool:
        return self.base_url == MOCK_BASE_URL

    @property
    def open_loop(self) -> bool:
        return self.rate is not None or (bool(self.stages) and self.ramp == "rate")

    @property
    def closed_loop_concurrency(self) -> int:
        return self.concurrency if self.concurrency is not None else 1

    @property
    def request_limit(self) -> int | None:
        """Requests per model; the default applies when no stop condition is given."""
        if self.requests is None and self.duration_s is None and not self.stages:
            return DEFAULT_REQUESTS
        return self.requests

    def with_overrides(self, **changes: Any) -> Scenario:
        """This scenario with flag values (those not None) laid over it, validated."""
        scenario = replace(self, **{k: v for k, v in changes.items() if v is not None})
        validate(scenario)
        return scenario

    def to_json(self) -> dict[str, Any]:
        """The scenario as run, for run.json: header values are withheld (they may be secrets)."""
        source = self.prompt_source
        return {
            "name": self.name,
            "target": {
                "base_url": self.base_url,
                "api_key_env": self.api_key_env,
                "headers": {name: "<withheld>" for name, _ in self.headers},
                "http2": self.http2,
                "connect_timeout_s": self.connect_timeout_s,
                "first_token_timeout_s": self.first_token_timeout_s,
                "idle_timeout_s": self.read_timeout_s,
                "total_timeout_s": self.total_timeout_s,
                "retries": self.retries,
            },
            "request": {
                "models": list(self.models),
                "prompt": self.prompt if source is None else None,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "include_usage": self.include_usage,
                "ignore_eos": self.ignore_eos,
                "min_tokens": self.min_tokens,
                "extra_body": dict(self.extra_body),
            },
            "prompts": None
            if source is None
            else {
                "source": source.kind,
                "count": len(source.prompts) if source.kind == "inline" else source.count,
                "path": str(source.path) if source.path else None,
                "unique_prefix": source.unique_prefix,
                "shuffle": source.shuffle,
            },
            "load": {
                "mode": "open" if self.open_loop else "closed",
                "concurrency": self.closed_loop_concurrency if not self.open_loop else None,
                "think_time_s": self.think_time_s,
                "rate": self.rate,
                "arrival": self.arrival if self.open_loop else None,
                "burstiness": self.burstiness if self.arrival == "gamma" else None,
                "max_in_flight": self.max_in_flight,
                "stages": [{"duration_s": s.duration_s, "target": s.target} for s in self.stages],
                "ramp": self.ramp if self.stages else None,
                "requests": self.request_limit,
                "duration_s": self.duration_s,
                "grace_s": self.grace_s,
                "warmup_requests": self.warmup_requests,
                "warmup_s": self.warmup_s,
                "seed": self.seed,
                "max_cost": str(self.max_cost) if self.max_cost is not None else None,
            },
            "thresholds": list(self.thresholds),
            "mock": self.mock.to_json() if self.uses_mock else None,
            "pricing": self.pricing.to_json() if self.pricing is not None else None,
            "sweep": self.sweep.to_json() if self.sweep is not None else None,
        }


# --- values ------------------------------------------------------------------


def parse_duration(text: str | float, key_path: str = "duration") -> float:
    """`"30s"`, `"5m"`, `"1h"`, `"250ms"` or a number of seconds -> seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(str(text).strip())
        if not match:
            raise ScenarioError(
                f"{text!r} is not a duration; write a number with a unit, e.g. 30s, 5m, 1h, 250ms",
                key_path,
            )
        seconds = float(match["value"]) * _DURATION_UNITS[match["unit"] or "s"]
    if seconds <= 0:
        raise ScenarioError(f"must be positive, got {text!r}", key_path)
    return seconds


_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_amount(text: str | float, key_path: str = "max_cost") -> Decimal:
    try:
        amount = Decimal(str(text))
    except InvalidOperation:
        raise ScenarioError(f"{text!r} is not a number; write e.g. 0.50", key_path) from None
    if not amount.is_finite() or amount <= 0:
        raise ScenarioError(f"must be a positive amount, got {text!r}", key_path)
    return amount


def parse_warmup(text: str | int, key_path: str = "load.warmup") -> tuple[int, float]:
    """`20` (requests) or `"30s"` (a duration) -> (requests, seconds)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ScenarioError(f"must not be negative, got {text}", key_path)
        return text, 0.0
    if isinstance(text, str) and text.strip().isdigit():
        return int(text), 0.0
    return 0, parse_duration(text, key_path)


def validate(scenario: Scenario) -> None:
    """Raise ScenarioError for the first setting that cannot work, or that conflicts."""
    s = scenario
    _at_least(s.concurrency, 1, "load.concurrency")
    _at_least(s.requests, 1, "load.requests")
    _at_least(s.max_tokens, 1, "request.max_tokens")
    _at_least(s.max_in_flight, 1, "load.max_in_flight")
    _at_least(s.min_tokens, 0, "request.min_tokens")
    _at_least(s.retries, 0, "target.retries")
    if not s.models or any(not m.strip() for m in s.models):
        raise ScenarioError("give at least one non-empty model name", "request.models")
    if s.grace_s < 0:
        raise ScenarioError(f"must not be negative, got {s.grace_s}", "load.grace")
    if s.think_time_s < 0:
        raise ScenarioError(f"must not be negative, got {s.think_time_s}", "load.think_time")
    if s.rate is not None and s.rate <= 0:
        raise ScenarioError(f"must be a positive number of requests/s, got {s.rate}", "load.rate")
    if s.burstiness <= 0:
        raise ScenarioError(f"must be positive, got {s.burstiness}", "load.burstiness")
    if s.arrival not in ARRIVALS:
        raise ScenarioError(
            f"{s.arrival!r} is not an arrival process; use one of {', '.join(ARRIVALS)}",
            "load.arrival",
        )
    if s.temperature is not None and s.temperature < 0:
        raise ScenarioError(f"must not be negative, got {s.temperature}", "request.temperature")
    if not (s.uses_mock or re.match(r"https?://", s.base_url)):
        raise ScenarioError(
            f"{s.base_url!r} is not an http(s) URL; use e.g. {DEFAULT_BASE_URL} "
            f"or {MOCK_BASE_URL!r} for the built-in mock",
            "target.base_url",
        )
    _check_conflicts(s)
    for threshold in s.thresholds:
        parse_threshold(threshold)


def _at_least(value: int | None, minimum: int, key_path: str) -> None:
    if value is not None and value < minimum:
        raise ScenarioError(f"must be at least {minimum}, got {value}", key_path)


def _check_conflicts(s: Scenario) -> None:
    if s.stages and s.duration_s is not None:
        raise ScenarioError(
            "load.stages set the run's length; remove load.duration (or the stages)",
            "load.duration",
        )
    if s.stages and s.ramp == "rate" and s.rate is not None:
        raise ScenarioError(
            "rate stages set the rate; remove load.rate (or use ramp = 'concurrency')", "load.rate"
        )
    if s.open_loop:
        if s.concurrency is not None:
            raise ScenarioError(
                "concurrency is for closed-loop runs; with a rate, cap requests in flight "
                "with load.max_in_flight instead",
                "load.concurrency",
            )
        if s.think_time_s:
            raise ScenarioError(
                "think_time is for closed-loop runs; an open loop sends at its rate",
                "load.think_time",
            )
    else:
        if s.max_in_flight is not None:
            raise ScenarioError(
                "max_in_flight caps open-loop runs; a closed loop holds load.concurrency",
                "load.max_in_flight",
            )
        if s.stages and s.concurrency is not None:
            raise ScenarioError(
                "concurrency stages set the concurrency; remove load.concurrency",
                "load.concurrency",
            )


# --- TOML ------------------------------------------------------------------

Converter = Callable[[Any, str], Any]


def _typed(kind: type | tuple[type, ...], expected: str) -> Converter:
    kinds = kind if isinstance(kind, tuple) else (kind,)

    def convert(value: Any, key_path: str) -> Any:
        if isinstance(value, bool) and bool not in kinds:
            raise ScenarioError(f"expected {expected}, found {value!r}", key_path)
        if not isinstance(value, kinds):
            raise ScenarioError(f"expected {expected}, found {value!r}", key_path)
        return float(value) if float in kinds and isinstance(value, int) else value

    return convert


def _choice(choices: tuple[str, ...]) -> Converter:
    def convert(value: Any, key_path: str) -> str:
        if value not in choices:
            suggestion = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"; did you mean {suggestion[0]!r}?" if suggestion else ""
            raise ScenarioError(f"{value!r} is not one of {', '.join(choices)}{hint}", key_path)
        return str(value)

    return convert


def _string_list(value: Any, key_path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(f"expected a list of strings, found {value!r}", key_path)
    return tuple(value)


def _headers(value: Any, key_path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ScenarioError('expected a table of strings, e.g. { "X-Team" = "bench" }', key_path)
    return tuple(value.items())


def _table(value: Any, key_path: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, dict):
        raise ScenarioError(f"expected a table, found {value!r}", key_path)
    return tuple(value.items())


def _stages(value: Any, key_path: str) -> tuple[Stage, ...]:
    if not isinstance(value, list) or not value:
        raise ScenarioError(
            'expected a non-empty list of stages, e.g. [{ duration = "30s", target = 10 }]',
            key_path,
        )
    stages = []
    for number, item in enumerate(value):
        where = f"{key_path}[{number}]"
        if not isinstance(item, dict) or set(item) != {"duration", "target"}:
            raise ScenarioError(
                f'each stage is {{ duration = "30s", target = 10 }}, found {item!r}', where
            )
        target = _typed((int, float), "a number")(item["target"], f"{where}.target")
        if target < 0:
            raise ScenarioError(f"must not be negative, got {target}", f"{where}.target")
        stages.append(Stage(parse_duration(item["duration"], f"{where}.duration"), float(target)))
    return tuple(stages)


def _thresholds(value: Any, key_path: str) -> tuple[str, ...]:
    thresholds = _string_list(value, key_path)
    for number, text in enumerate(thresholds):
        try:
            parse_threshold(text)
        except ScenarioError as exc:
            raise ScenarioError(str(exc), f"{key_path}[{number}]") from None
    return thresholds


def _distribution(value: Any, key_path: str) -> LengthDistribution:
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"distribution": "fixed", "mean": value}
    if not isinstance(value, dict) or not set(value) <= {"distribution", "mean", "spread"}:
        raise ScenarioError(
            'expected a number or { distribution = "normal", mean = 512, spread = 64 }, '
            f"found {value!r}",
            key_path,
        )
    kind = _choice(("fixed", "uniform", "normal"))(
        value.get("distribution", "fixed"), f"{key_path}.distribution"
    )
    mean = _typed(int, "a whole number of tokens")(value.get("mean"), f"{key_path}.mean")
    spread = _typed(int, "a whole number of tokens")(value.get("spread", 0), f"{key_path}.spread")
    if mean < 1 or spread < 0:
        raise ScenarioError("mean must be at least 1 and spread not negative", key_path)
    return LengthDistribution(kind, mean, spread)


def _path(value: Any, key_path: str) -> Path:
    return Path(_typed(str, "a file path")(value, key_path))


def _warmup(value: Any, key_path: str) -> tuple[int, float]:
    return parse_warmup(value, key_path)


def parse_optional_duration(value: Any, key_path: str) -> float:
    """A duration, or 0 / "0s" for none."""
    if isinstance(value, str | int | float) and re.fullmatch(
        r"0+(\.0*)?\s*(ms|s|m|h)?", str(value)
    ):
        return 0.0
    return parse_duration(value, key_path)


def _levels(value: Any, key_path: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ScenarioError(f"expected a non-empty list of numbers, found {value!r}", key_path)
    number = _typed((int, float), "a number")
    return tuple(number(item, f"{key_path}[{n}]") for n, item in enumerate(value))


def _percent(value: Any, key_path: str) -> float:
    """A percentage (90) as a fraction (0.9)."""
    return float(_typed((int, float), "a percentage, e.g. 90")(value, key_path)) / 100


# section -> key -> (field, converter). The file's names are the flags' names.
_SCHEMA: dict[str, dict[str, tuple[str, Converter]]] = {
    "": {
        "name": ("name", _typed(str, "a string")),
        "thresholds": ("thresholds", _thresholds),
    },
    "target": {
        "base_url": ("base_url", _typed(str, "a URL string")),
        "api_key_env": ("api_key_env", _typed(str, "an environment variable name")),
        "headers": ("headers", _headers),
        "http2": ("http2", _typed(bool, "true or false")),
        "connect_timeout": ("connect_timeout_s", parse_duration),
        "first_token_timeout": ("first_token_timeout_s", parse_duration),
        "idle_timeout": ("read_timeout_s", parse_duration),
        "total_timeout": ("total_timeout_s", parse_duration),
        "retries": ("retries", _typed(int, "a whole number")),
    },
    "request": {
        "models": ("models", _string_list),
        "prompt": ("prompt", _typed(str, "a string")),
        "max_tokens": ("max_tokens", _typed(int, "a whole number")),
        "temperature": ("temperature", _typed((int, float), "a number")),
        "include_usage": ("include_usage", _typed(bool, "true or false")),
        "ignore_eos": ("ignore_eos", _typed(bool, "true or false")),
        "min_tokens": ("min_tokens", _typed(int, "a whole number")),
        "extra_body": ("extra_body", _table),
    },
    "prompts": {
        "source": ("kind", _choice(PROMPT_SOURCES)),
        "prompts": ("prompts", _string_list),
        "path": ("path", _path),
        "input_tokens": ("input_tokens", _distribution),
        "output_tokens": ("output_tokens", _distribution),
        "count": ("count", _typed(int, "a whole number")),
        "unique_prefix": ("unique_prefix", _typed(bool, "true or false")),
        "shuffle": ("shuffle", _typed(bool, "true or false")),
    },
    "load": {
        "concurrency": ("concurrency", _typed(int, "a whole number")),
        "think_time": ("think_time_s", parse_duration),
        "rate": ("rate", _typed((int, float), "a number of requests per second")),
        "arrival": ("arrival", _choice(ARRIVALS)),
        "burstiness": ("burstiness", _typed((int, float), "a number")),
        "max_in_flight": ("max_in_flight", _typed(int, "a whole number")),
        "stages": ("stages", _stages),
        "ramp": ("ramp", _choice(RAMP_KINDS)),
        "requests": ("requests", _typed(int, "a whole number")),
        "duration": ("duration_s", parse_duration),
        "grace": ("grace_s", parse_duration),
        "warmup": ("warmup", _warmup),
        "seed": ("seed", _typed(int, "a whole number")),
        "max_cost": ("max_cost", parse_amount),
    },
    "report": {"dir": ("report_dir", _path)},
    # onybench sweep's plan (sweep_plan.py); `onybench run` ignores it.
    "sweep": {
        "mode": ("mode", _choice(SWEEP_MODES)),
        "levels": ("levels", _levels),
        "start": ("start", _typed((int, float), "a number")),
        "max": ("maximum", _typed((int, float), "a number")),
        "factor": ("factor", _typed((int, float), "a number")),
        "hold": ("hold_s", parse_duration),
        "warmup": ("warmup_s", parse_optional_duration),
        "search": ("search", _typed(bool, "true or false")),
        "resolution": ("resolution", _typed((int, float), "a number")),
        "slos": ("slos", _thresholds),
        "target": ("target", _percent),
        "knee_gain": ("knee_gain", _typed((int, float), "a number")),
        "knee_ttft_factor": ("knee_ttft_factor", _typed((int, float), "a number")),
    },
}


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; errors name the file and, where found, the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from None
    try:
        return scenario_from_dict(document, default_name=path.stem, base_dir=path.parent)
    except ScenarioError as exc:
        line = _line_of(text, exc.key_path)
        where = f"{path}:{line}" if line else str(path)
        raise ScenarioError(f"{where}: {exc}") from None


def _line_of(text: str, key_path: str | None) -> int | None:
    """The line that sets `key_path` (e.g. load.rate), found by a plain text search."""
    if not key_path:
        return None
    parts = re.sub(r"\[\d+\]", "", key_path).split(".")
    section, key = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[([^\[\]]+)\]", stripped)
        if header:
            current = header[1].strip()
            if not section or current != section:
                continue
            if key == section:
                return number
        elif current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


def scenario_from_dict(
    document: Mapping[str, Any], *, default_name: str = "adhoc", base_dir: Path = Path()
) -> Scenario:
    values: dict[str, Any] = {"name": default_name}
    prompt_values: dict[str, Any] | None = None
    sweep_values: dict[str, Any] | None = None
    for key, value in document.items():
        if key == "mock":
            values["mock"] = _mock_config(value)
        elif key == "pricing":
            values["pricing"] = parse_pricing(value)
        elif key in _SCHEMA and key != "":
            if not isinstance(value, dict):
                raise ScenarioError(f"expected a [{key}] table, found {value!r}", key)
            for sub_key, sub_value in value.items():
                field_name, convert = _lookup(key, sub_key)
                converted = convert(sub_value, f"{key}.{sub_key}")
                if key == "prompts":
                    prompt_values = prompt_values or {}
                    prompt_values[field_name] = converted
                elif key == "sweep":
                    sweep_values = sweep_values or {}
                    sweep_values[field_name] = converted
                elif field_name == "warmup":
                    values["warmup_requests"], values["warmup_s"] = converted
                else:
                    values[field_name] = converted
        else:
            field_name, convert = _lookup("", key)
            values[field_name] = convert(value, key)
    if prompt_values is not None:
        values["prompt_source"] = _prompt_source(prompt_values, base_dir)
    if sweep_values is not None:
        values["sweep"] = SweepPlan(**sweep_values)
    scenario = Scenario(**values)
    validate(scenario)
    return scenario


def _prompt_source(values: dict[str, Any], base_dir: Path) -> PromptSource:
    source = PromptSource(**values)
    needs_path = source.kind in ("text", "jsonl", "sharegpt")
    if needs_path and source.path is None:
        raise ScenarioError(
            f"source {source.kind!r} reads a file: set prompts.path", "prompts.path"
        )
    if source.kind == "inline" and not source.prompts:
        raise ScenarioError('give the prompts: prompts = ["...", ...]', "prompts.prompts")
    if source.kind == "synthetic" and source.input_tokens is None:
        raise ScenarioError(
            'synthetic prompts need input_tokens, e.g. { distribution = "normal", '
            "mean = 512, spread = 64 }",
            "prompts.input_tokens",
        )
    if source.count < 1:
        raise ScenarioError(f"must be at least 1, got {source.count}", "prompts.count")
    if source.path is not None and not source.path.is_absolute():
        source = replace(source, path=base_dir / source.path)
    return source


def _lookup(section: str, key: str) -> tuple[str, Converter]:
    known = _SCHEMA[section]
    if key in known:
        return known[key]
    candidates = list(known) + (
        [name for name in _SCHEMA if name] + ["mock", "pricing"] if not section else []
    )
    suggestion = difflib.get_close_matches(key, candidates, n=1)
    hint = f"; did you mean {suggestion[0]!r}?" if suggestion else ""
    where = f"[{section}]" if section else "the top level"
    raise ScenarioError(
        f"unknown key in {where}{hint} (known: {', '.join(sorted(candidates))})",
        f"{section}.{key}" if section else key,
    )


def _mock_config(value: Any) -> MockConfig:
    if not isinstance(value, dict):
        raise ScenarioError(f"expected a [mock] table, found {value!r}", "mock")
    # TOML has no decimal type; a price written as a float is taken at its
    # shortest repr, which is the literal the user wrote.
    values = {
        k: repr(v) if isinstance(v, float) and k.startswith("cost_") else v
        for k, v in value.items()
    }
    return MockConfig.from_json(values)
