"""Exact decimal amounts as text: one spelling for the mock's costs and the price tables."""

from __future__ import annotations

from decimal import Decimal


def decimal_text(amount: Decimal) -> str:
    """`amount` as a plain literal without exponent or trailing zeros (``0.0000128``)."""
    return format(amount.normalize(), "f")
