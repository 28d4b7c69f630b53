"""Prices, for runs whose server reports no cost and for self-hosted deployments.

A scenario's ``[pricing]`` section, in exact decimals::

    [pricing]
    currency = "USD"            # the default for the models below and for price_per_hour
    price_per_hour = "4.20"     # optional: what the deployment costs per hour, whatever it serves

    [pricing."openai/gpt-4o-mini"]
    input_per_mtok = "0.15"     # per 1,000,000 prompt tokens
    output_per_mtok = "0.60"    # per 1,000,000 output tokens
    currency = "USD"            # optional, defaults to [pricing].currency

Amounts are strings or integers; a TOML float is taken at its shortest repr
(``0.15`` is the literal written, not the nearest binary fraction). Every cost
is a `Money` (Decimal amount, currency): amounts in different currencies are
never added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any, NamedTuple

from onybench.decimals import decimal_text
from onybench.errors import ScenarioError
from onybench.metrics.record import RequestRecord

MTOK = 1_000_000
SECONDS_PER_HOUR = 3600
DEFAULT_CURRENCY = "USD"


class Money(NamedTuple):
    """An exact amount in one currency."""

    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Per-token prices of one model, per 1M tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class Pricing:
    """The price table: per-model token prices and/or a deployment's price per hour."""

    models: Mapping[str, ModelPrice] = field(default_factory=dict)
    price_per_hour: Decimal | None = None
    currency: str = DEFAULT_CURRENCY

    def token_cost(self, model: str, prompt_tokens: int, output_tokens: int) -> Money | None:
        """What `prompt_tokens` in and `output_tokens` out cost on `model`; None if unpriced."""
        price = self.models.get(model)
        if price is None:
            return None
        amount = (
            prompt_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok
        ) / MTOK
        return Money(amount, price.currency)

    def hourly(self) -> Money | None:
        """The deployment's price per hour, if given."""
        if self.price_per_hour is None:
            return None
        return Money(self.price_per_hour, self.currency)

    def to_json(self) -> dict[str, Any]:
        """Exact decimal strings (no exponent), for run.json and report.json."""
        return {
            "models": {
                model: {
                    "input_per_mtok": decimal_text(price.input_per_mtok),
                    "output_per_mtok": decimal_text(price.output_per_mtok),
                    "currency": price.currency,
                }
                for model, price in self.models.items()
            },
            "price_per_hour": None
            if self.price_per_hour is None
            else decimal_text(self.price_per_hour),
            "currency": self.currency,
        }


def per_mtok_at_rate(hourly: Money, tokens_per_s: float) -> Money | None:
    """An hourly price as cost per 1M tokens at a throughput; None when nothing flows.

    The throughput is a measured float; the result is rounded to 12 significant
    digits, far below a cent on any bill.
    """
    if tokens_per_s <= 0:
        return None
    with localcontext() as context:
        context.prec = 12
        amount = hourly.amount * MTOK / (Decimal(repr(tokens_per_s)) * SECONDS_PER_HOUR)
    return Money(amount.normalize(), hourly.currency)


def with_estimated_cost(record: RequestRecord, pricing: Pricing | None) -> RequestRecord:
    """`record` with its cost from the price table (``cost_source`` "pricing") when it
    succeeded without a cost from the server, and the model is in the table; else
    `record` (a failed stream may lack the cost only because it ended early).

    Prompt tokens are the server's usage, or the prompt's own estimate without it."""
    if pricing is None or record.cost_amount is not None or not record.succeeded:
        return record
    prompt_tokens = record.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = record.prompt_tokens_requested or 0
    money = pricing.token_cost(record.model, prompt_tokens, record.output_token_count)
    if money is None:
        return record
    return replace(
        record, cost_amount=money.amount, cost_currency=money.currency, cost_source="pricing"
    )


def parse_pricing(value: Any, key_path: str = "pricing") -> Pricing:
    """The ``[pricing]`` table; `ScenarioError` naming the key for anything wrong."""
    if not isinstance(value, dict):
        raise ScenarioError(f"expected a [pricing] table, found {value!r}", key_path)
    currency = _currency(value.get("currency", DEFAULT_CURRENCY), f"{key_path}.currency")
    price_per_hour = None
    models: dict[str, ModelPrice] = {}
    for key, item in value.items():
        where = f"{key_path}.{key}"
        if key == "currency":
            continue
        if key == "price_per_hour":
            price_per_hour = parse_price(item, where)
        elif isinstance(item, dict):
            models[key] = _model_price(item, where, currency)
        else:
            raise ScenarioError(
                "expected currency, price_per_hour or a model's table, e.g. "
                f'[pricing."{key}"] input_per_mtok = "0.15", output_per_mtok = "0.60"',
                where,
            )
    if not models and price_per_hour is None:
        raise ScenarioError(
            'give model prices ([pricing."MODEL"] input_per_mtok, output_per_mtok) '
            "or price_per_hour",
            key_path,
        )
    return Pricing(models=models, price_per_hour=price_per_hour, currency=currency)


def parse_price(value: Any, key_path: str) -> Decimal:
    """A price >= 0: a decimal string, an integer, or a float taken at its shortest repr."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ScenarioError(f'expected a price such as "0.15", found {value!r}', key_path)
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ScenarioError(f'{value!r} is not a number; write e.g. "0.15"', key_path) from None
    if not amount.is_finite() or amount < 0:
        raise ScenarioError(f"must be a finite amount >= 0, got {value!r}", key_path)
    return amount


def _model_price(item: dict[str, Any], key_path: str, default_currency: str) -> ModelPrice:
    known = {"input_per_mtok", "output_per_mtok", "currency"}
    for key in item:
        if key not in known:
            raise ScenarioError(
                f"unknown key; a model's price has {', '.join(sorted(known))}", f"{key_path}.{key}"
            )
    for key in ("input_per_mtok", "output_per_mtok"):
        if key not in item:
            raise ScenarioError(f'missing {key}, e.g. {key} = "0.15"', f"{key_path}.{key}")
    return ModelPrice(
        input_per_mtok=parse_price(item["input_per_mtok"], f"{key_path}.input_per_mtok"),
        output_per_mtok=parse_price(item["output_per_mtok"], f"{key_path}.output_per_mtok"),
        currency=_currency(item.get("currency", default_currency), f"{key_path}.currency"),
    )


def _currency(value: Any, key_path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScenarioError(f'expected a currency code such as "USD", found {value!r}', key_path)
    return value.strip()
