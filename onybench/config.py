"""The Scenario: everything a run needs, from a TOML file and/or flags, validated.

Validation happens before any request is sent; every problem is a
`ScenarioError` naming the key path, what was found and what is expected.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from onybench.errors import ScenarioError
from onybench.mock.config import MockConfig

DEFAULT_BASE_URL = "https://api.onysoft.com/v1"
MOCK_BASE_URL = "mock"
DEFAULT_MODEL = "openai/gpt-4o-mini"
DEFAULT_PROMPT = "Write a short paragraph about the history of the printing press."
DEFAULT_REQUESTS = 50


@dataclass(frozen=True)
class Scenario:
    """A whole run, typed and validated. Durations in seconds."""

    name: str = "adhoc"
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = "ONYSOFT_API_KEY"
    headers: tuple[tuple[str, str], ...] = ()
    include_usage: bool = True
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    prompt: str = DEFAULT_PROMPT
    max_tokens: int | None = 128
    concurrency: int = 1
    requests: int | None = None
    duration_s: float | None = None
    grace_s: float = 10.0
    max_cost: Decimal | None = None
    mock: MockConfig = field(default_factory=MockConfig)

    @property
    def uses_mock(self) -> bool:
        return self.base_url == MOCK_BASE_URL

    @property
    def request_limit(self) -> int | None:
        """Requests per model; the default applies when no stop condition is given."""
        if self.requests is None and self.duration_s is None:
            return DEFAULT_REQUESTS
        return self.requests

    def with_overrides(self, **changes: Any) -> Scenario:
        """This scenario with flag values (those not None) laid over it, validated."""
        scenario = replace(self, **{k: v for k, v in changes.items() if v is not None})
        validate(scenario)
        return scenario

    def to_json(self) -> dict[str, Any]:
        """The scenario as run, for run.json: header values are withheld (they may be secrets)."""
        return {
            "name": self.name,
            "target": {
                "base_url": self.base_url,
                "api_key_env": self.api_key_env,
                "headers": {name: "<withheld>" for name, _ in self.headers},
                "include_usage": self.include_usage,
                "connect_timeout_s": self.connect_timeout_s,
                "read_timeout_s": self.read_timeout_s,
            },
            "request": {
                "models": list(self.models),
                "prompt": self.prompt,
                "max_tokens": self.max_tokens,
            },
            "load": {
                "concurrency": self.concurrency,
                "requests": self.request_limit,
                "duration_s": self.duration_s,
                "grace_s": self.grace_s,
                "max_cost": str(self.max_cost) if self.max_cost is not None else None,
            },
            "mock": self.mock.to_json() if self.uses_mock else None,
        }


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


def validate(scenario: Scenario) -> None:
    """Raise ScenarioError for the first setting that cannot work."""
    if scenario.concurrency < 1:
        raise ScenarioError(f"must be at least 1, got {scenario.concurrency}", "load.concurrency")
    if scenario.requests is not None and scenario.requests < 1:
        raise ScenarioError(f"must be at least 1, got {scenario.requests}", "load.requests")
    if scenario.max_tokens is not None and scenario.max_tokens < 1:
        raise ScenarioError(f"must be at least 1, got {scenario.max_tokens}", "request.max_tokens")
    if not scenario.models or any(not m.strip() for m in scenario.models):
        raise ScenarioError("give at least one non-empty model name", "request.models")
    if scenario.grace_s < 0:
        raise ScenarioError(f"must not be negative, got {scenario.grace_s}", "load.grace")
    if not (scenario.uses_mock or re.match(r"https?://", scenario.base_url)):
        raise ScenarioError(
            f"{scenario.base_url!r} is not an http(s) URL; use e.g. {DEFAULT_BASE_URL} "
            f"or {MOCK_BASE_URL!r} for the built-in mock",
            "target.base_url",
        )


# --- TOML ------------------------------------------------------------------

Converter = Callable[[Any, str], Any]


def _typed(kind: type | tuple[type, ...], expected: str) -> Converter:
    def convert(value: Any, key_path: str) -> Any:
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ScenarioError(f"expected {expected}, found {value!r}", key_path)
        if not isinstance(value, kind):
            raise ScenarioError(f"expected {expected}, found {value!r}", key_path)
        return value

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


# section -> key -> (Scenario field, converter). The file's names are the flags' names.
_SCHEMA: dict[str, dict[str, tuple[str, Converter]]] = {
    "": {"name": ("name", _typed(str, "a string"))},
    "target": {
        "base_url": ("base_url", _typed(str, "a URL string")),
        "api_key_env": ("api_key_env", _typed(str, "an environment variable name")),
        "headers": ("headers", _headers),
        "include_usage": ("include_usage", _typed(bool, "true or false")),
        "connect_timeout": ("connect_timeout_s", parse_duration),
        "read_timeout": ("read_timeout_s", parse_duration),
    },
    "request": {
        "models": ("models", _string_list),
        "prompt": ("prompt", _typed(str, "a string")),
        "max_tokens": ("max_tokens", _typed(int, "a whole number")),
    },
    "load": {
        "concurrency": ("concurrency", _typed(int, "a whole number")),
        "requests": ("requests", _typed(int, "a whole number")),
        "duration": ("duration_s", parse_duration),
        "grace": ("grace_s", parse_duration),
        "max_cost": ("max_cost", parse_amount),
    },
}


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: invalid TOML: {exc}") from None
    try:
        scenario = scenario_from_dict(document, default_name=path.stem)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return scenario


def scenario_from_dict(document: Mapping[str, Any], *, default_name: str = "adhoc") -> Scenario:
    values: dict[str, Any] = {"name": default_name}
    for key, value in document.items():
        if key == "mock":
            values["mock"] = _mock_config(value)
        elif key in _SCHEMA and key != "":
            if not isinstance(value, dict):
                raise ScenarioError(f"expected a [{key}] table, found {value!r}", key)
            for sub_key, sub_value in value.items():
                field_name, convert = _lookup(key, sub_key)
                values[field_name] = convert(sub_value, f"{key}.{sub_key}")
        else:
            field_name, convert = _lookup("", key)
            values[field_name] = convert(value, key)
    scenario = Scenario(**values)
    validate(scenario)
    return scenario


def _lookup(section: str, key: str) -> tuple[str, Converter]:
    known = _SCHEMA[section]
    if key in known:
        return known[key]
    candidates = list(known) + (
        [name for name in _SCHEMA if name] + ["mock"] if not section else []
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
