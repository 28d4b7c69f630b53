from decimal import Decimal

import pytest

from onybench.decimals import decimal_text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("0.0000053"), "0.0000053"),
        (Decimal("0.0000010"), "0.000001"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("0E-7"), "0"),
        (Decimal("1E+2"), "100"),
        (Decimal("12.50"), "12.5"),
    ],
)
def test_decimal_text_is_a_plain_literal_without_exponent_or_trailing_zeros(
    amount: Decimal, text: str
) -> None:
    assert decimal_text(amount) == text
