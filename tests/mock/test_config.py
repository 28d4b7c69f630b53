from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from onybench.errors import ScenarioError
from onybench.mock import FAULTS, MockConfig


def test_defaults_are_the_documented_ones() -> None:
    config = MockConfig()
    assert (config.ttft_ms, config.itl_ms, config.timing, config.jitter_ms) == (
        100.0,
        10.0,
        "fixed",
        0.0,
    )
    assert (config.output_tokens, config.tokens_per_chunk, config.cut_after_chunks) == (128, 1, 3)
    assert (config.role_chunk, config.emit_cost, config.always_usage) == (True, True, None)
    assert config.dialect == "onysoft"
    assert config.cost_per_prompt_token == Decimal("0.0000001")
    assert config.cost_per_output_token == Decimal("0.000001")
    assert config.currency == "USD"
    assert all(config.fault_rate(fault) == 0.0 for fault in FAULTS)
    assert (config.require_api_key, config.seed, config.send_log, config.stamp_chunks) == (
        None,
        0,
        None,
        False,
    )


@pytest.mark.parametrize(
    ("changes", "key_path"),
    [
        ({"ttft_ms": -1.0}, "mock.ttft_ms"),
        ({"itl_ms": float("nan")}, "mock.itl_ms"),
        ({"jitter_ms": float("inf")}, "mock.jitter_ms"),
        ({"ttft_ms": True}, "mock.ttft_ms"),
        ({"timing": "gamma"}, "mock.timing"),
        ({"output_tokens": 0}, "mock.output_tokens"),
        ({"output_tokens": 2.0}, "mock.output_tokens"),
        ({"tokens_per_chunk": 0}, "mock.tokens_per_chunk"),
        ({"cut_after_chunks": -1}, "mock.cut_after_chunks"),
        ({"role_chunk": 1}, "mock.role_chunk"),
        ({"cost_per_prompt_token": 0.1}, "mock.cost_per_prompt_token"),
        ({"cost_per_output_token": Decimal("-1")}, "mock.cost_per_output_token"),
        ({"cost_per_output_token": Decimal("NaN")}, "mock.cost_per_output_token"),
        ({"currency": ""}, "mock.currency"),
        ({"http_429_rate": 1.5}, "mock.http_429_rate"),
        ({"cut_rate": -0.1}, "mock.cut_rate"),
        ({"http_500_rate": 0.6, "no_done_rate": 0.5}, "mock"),
        ({"require_api_key": ""}, "mock.require_api_key"),
        ({"send_log": ""}, "mock.send_log"),
    ],
)
def test_a_bad_value_raises_scenario_error_naming_the_setting(
    changes: dict[str, Any], key_path: str
) -> None:
    with pytest.raises(ScenarioError) as caught:
        MockConfig(**changes)
    assert caught.value.key_path == key_path


def test_fault_rates_summing_to_one_up_to_float_rounding_are_accepted() -> None:
    config = MockConfig(http_429_rate=0.7, http_500_rate=0.2, cut_rate=0.1)
    assert config.cut_rate == 0.1


def test_to_json_is_plain_json_and_from_json_gives_back_an_equal_config() -> None:
    config = MockConfig(
        ttft_ms=5.0,
        timing="normal",
        jitter_ms=1.5,
        cost_per_prompt_token=Decimal("0.00000012345"),
        cut_rate=0.25,
        require_api_key="sk-ony-test",
        send_log="/tmp/x.jsonl",
        stamp_chunks=True,
    )
    data = json.loads(json.dumps(config.to_json()))
    assert data["cost_per_prompt_token"] == "0.00000012345"
    assert MockConfig.from_json(data) == config


def test_from_json_takes_defaults_for_missing_fields() -> None:
    assert MockConfig.from_json({"output_tokens": 7}) == MockConfig(output_tokens=7)


def test_from_json_refuses_an_unknown_field() -> None:
    with pytest.raises(ScenarioError) as caught:
        MockConfig.from_json({"ttft": 5})
    assert caught.value.key_path == "mock.ttft"


def test_from_json_refuses_a_cost_that_is_not_a_decimal_number() -> None:
    with pytest.raises(ScenarioError) as caught:
        MockConfig.from_json({"cost_per_output_token": "cheap"})
    assert caught.value.key_path == "mock.cost_per_output_token"
