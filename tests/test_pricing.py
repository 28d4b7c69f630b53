"""The [pricing] section and the cost of token counts under it, exactly."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from onybench.config import load_scenario, scenario_from_dict
from onybench.errors import ScenarioError
from onybench.pricing import Money, parse_pricing, per_mtok_at_rate

TABLE = {
    "currency": "USD",
    "price_per_hour": "4.20",
    "openai/gpt-4o-mini": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"},
    "acme/euro": {"input_per_mtok": 1, "output_per_mtok": 2.5, "currency": "EUR"},
}


def test_token_cost_is_exact_per_million_tokens_in_the_models_currency() -> None:
    pricing = parse_pricing(TABLE)
    assert pricing.token_cost("openai/gpt-4o-mini", 1_000, 2_000) == Money(
        Decimal("0.00135"), "USD"
    )
    # A float price is taken at its shortest repr (2.5), an int as is, the currency its own.
    assert pricing.token_cost("acme/euro", 3, 7) == Money(Decimal("0.0000205"), "EUR")
    assert pricing.token_cost("not/priced", 1, 1) is None
    assert pricing.hourly() == Money(Decimal("4.20"), "USD")


def test_a_float_price_is_the_literal_written_not_its_binary_neighbour() -> None:
    pricing = parse_pricing({"m": {"input_per_mtok": 0.1, "output_per_mtok": 0.3}})
    assert pricing.token_cost("m", 1_000_000, 1_000_000) == Money(Decimal("0.4"), "USD")


def test_price_per_hour_becomes_cost_per_million_tokens_at_a_throughput() -> None:
    # 2.40 per hour at 500 tokens/s: 1.8M tokens an hour -> 1.333... per 1M tokens.
    per_mtok = per_mtok_at_rate(Money(Decimal("2.40"), "EUR"), 500.0)
    assert per_mtok == Money(Decimal("1.33333333333"), "EUR")
    assert per_mtok_at_rate(Money(Decimal("2.40"), "EUR"), 0.0) is None


def test_to_json_keeps_exact_decimal_strings() -> None:
    assert parse_pricing(TABLE).to_json() == {
        "models": {
            "openai/gpt-4o-mini": {
                "input_per_mtok": "0.15",
                "output_per_mtok": "0.6",
                "currency": "USD",
            },
            "acme/euro": {"input_per_mtok": "1", "output_per_mtok": "2.5", "currency": "EUR"},
        },
        "price_per_hour": "4.2",
        "currency": "USD",
    }


@pytest.mark.parametrize(
    ("table", "key_path", "fragment"),
    [
        ({}, "pricing", "give model prices"),
        ({"m": {"input_per_mtok": "0.1"}}, "pricing.m.output_per_mtok", "missing"),
        ({"m": {"input_per_mtok": "x", "output_per_mtok": 1}}, "pricing.m.input_per_mtok", "x"),
        ({"m": {"input_per_mtok": -1, "output_per_mtok": 1}}, "pricing.m.input_per_mtok", ">= 0"),
        (
            {"m": {"input_per_mtok": 1, "output_per_mtok": 1, "cost": 1}},
            "pricing.m.cost",
            "unknown",
        ),
        ({"price_per_hour": True}, "pricing.price_per_hour", "expected a price"),
        ({"price_per_hour": "1", "currency": ""}, "pricing.currency", "currency code"),
        ({"m": 0.15}, "pricing.m", "input_per_mtok"),
    ],
)
def test_a_bad_pricing_table_names_the_key(
    table: dict[str, object], key_path: str, fragment: str
) -> None:
    with pytest.raises(ScenarioError, match=fragment) as caught:
        parse_pricing(table)
    assert caught.value.key_path == key_path


def test_a_scenario_file_carries_its_pricing_into_run_json(tmp_path: Path) -> None:
    path = tmp_path / "priced.toml"
    path.write_text(
        '[pricing]\nprice_per_hour = "3"\ncurrency = "EUR"\n\n'
        '[pricing."openai/gpt-4o-mini"]\ninput_per_mtok = "0.15"\noutput_per_mtok = 0.6\n',
        encoding="utf-8",
    )
    scenario = load_scenario(path)
    assert scenario.pricing is not None
    assert scenario.pricing.hourly() == Money(Decimal("3"), "EUR")
    # The model's currency defaults to the table's.
    assert scenario.pricing.token_cost("openai/gpt-4o-mini", 0, 1_000_000) == Money(
        Decimal("0.6"), "EUR"
    )
    assert scenario.to_json()["pricing"]["models"]["openai/gpt-4o-mini"] == {
        "input_per_mtok": "0.15",
        "output_per_mtok": "0.6",
        "currency": "EUR",
    }
    assert scenario_from_dict({}).to_json()["pricing"] is None


def test_a_misspelt_pricing_section_gets_a_suggestion() -> None:
    with pytest.raises(ScenarioError, match="did you mean 'pricing'"):
        scenario_from_dict({"priceing": {}})
