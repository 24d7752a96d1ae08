"""Stripe's amount rules: exponents, steps, limits, in both directions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.billing.providers.amounts import (
    STRIPE_MAX_AMOUNT,
    STRIPE_THREE_DECIMAL,
    STRIPE_ZERO_DECIMAL,
    ProviderAmountInvalid,
    ProviderCurrencyUnsupported,
    from_stripe_amount,
    stripe_currency,
    to_stripe_amount,
)
from app.core import money


class TestStripeCurrency:
    def test_three_decimal_step_ten(self) -> None:
        for code in STRIPE_THREE_DECIMAL:
            rules = stripe_currency(code)
            assert (rules.exponent, rules.step) == (3, 10)

    def test_zero_decimal_list(self) -> None:
        for code in STRIPE_ZERO_DECIMAL:
            assert stripe_currency(code).exponent == 0

    def test_isk_two_decimal_whole_kronur(self) -> None:
        rules = stripe_currency("ISK")

        assert (rules.exponent, rules.step, rules.shift) == (2, 100, -2)

    def test_mga_zero_decimal_against_iso(self) -> None:
        assert stripe_currency("MGA").shift == 2

    def test_huf_twd_two_decimal_for_charges(self) -> None:
        assert stripe_currency("HUF").exponent == 2
        assert stripe_currency("TWD").exponent == 2

    def test_four_decimal_unsupported(self) -> None:
        with pytest.raises(ProviderCurrencyUnsupported):
            stripe_currency("CLF")


class TestToStripeAmount:
    def test_kwd_last_digit_zero(self) -> None:
        assert to_stripe_amount(5120, "KWD") == 5120

    def test_kwd_last_digit_rejected(self) -> None:
        with pytest.raises(ProviderAmountInvalid) as raised:
            to_stripe_amount(5124, "KWD")

        assert raised.value.extra["nearest_lower"] == 5120
        assert raised.value.extra["nearest_higher"] == 5130

    def test_isk_scaled_up(self) -> None:
        assert to_stripe_amount(500, "ISK") == 50000

    def test_mga_whole_ariary_only(self) -> None:
        assert to_stripe_amount(150000, "MGA") == 1500
        with pytest.raises(ProviderAmountInvalid):
            to_stripe_amount(150050, "MGA")

    def test_jpy_unchanged(self) -> None:
        assert to_stripe_amount(500, "JPY") == 500

    def test_usd_minimum(self) -> None:
        assert to_stripe_amount(50, "USD") == 50
        with pytest.raises(ProviderAmountInvalid) as raised:
            to_stripe_amount(49, "USD")
        assert raised.value.errors[0]["code"] == "below_minimum"

    def test_refund_below_minimum(self) -> None:
        assert to_stripe_amount(1, "USD", charge=False) == 1
        with pytest.raises(ProviderAmountInvalid) as raised:
            to_stripe_amount(0, "USD", charge=False)
        assert raised.value.errors[0]["code"] == "below_minimum"

    def test_maximum_eight_digits(self) -> None:
        assert to_stripe_amount(STRIPE_MAX_AMOUNT, "EUR") == STRIPE_MAX_AMOUNT
        with pytest.raises(ProviderAmountInvalid) as raised:
            to_stripe_amount(STRIPE_MAX_AMOUNT + 1, "EUR")
        assert raised.value.errors[0]["code"] == "above_maximum"

    def test_zero_rejected(self) -> None:
        with pytest.raises(ProviderAmountInvalid):
            to_stripe_amount(0, "EUR")


class TestFromStripeAmount:
    def test_kwd_not_multiple_of_ten(self) -> None:
        with pytest.raises(ValueError, match="multiple of 10"):
            from_stripe_amount(5125, "KWD")

    def test_isk_fraction_rejected(self) -> None:
        with pytest.raises(ValueError):
            from_stripe_amount(50050, "ISK")


supported = sorted(
    code
    for code in money.CURRENCIES
    if code in STRIPE_ZERO_DECIMAL
    or code in STRIPE_THREE_DECIMAL
    or code == "ISK"
    or money.exponent(code) == 2
)


@given(st.sampled_from(supported), st.integers(1, STRIPE_MAX_AMOUNT))
def test_round_trip(currency: str, stripe_amount: int) -> None:
    rules = stripe_currency(currency)
    stripe_amount -= stripe_amount % rules.step
    if rules.shift < 0:
        stripe_amount -= stripe_amount % 10**-rules.shift
    if stripe_amount <= 0 or stripe_amount < (rules.minimum or 0):
        return

    minor = from_stripe_amount(stripe_amount, currency)

    assert to_stripe_amount(minor, currency) == stripe_amount
