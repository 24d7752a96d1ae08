"""The ISO 4217 table, rounding and decimal parsing, with property-based checks."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core import money

CODES = sorted(money.CURRENCIES)

finite_decimals = st.decimals(
    min_value=Decimal("-1e15"),
    max_value=Decimal("1e15"),
    allow_nan=False,
    allow_infinity=False,
    places=8,
)


def half_up(value: Fraction) -> int:
    """Round half away from zero, computed on exact fractions as an oracle."""
    magnitude = floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def half_even(value: Fraction) -> int:
    lower = floor(value)
    remainder = value - lower
    if remainder > Fraction(1, 2):
        return lower + 1
    if remainder < Fraction(1, 2):
        return lower
    return lower if lower % 2 == 0 else lower + 1


class TestCurrencyTable:
    def test_codes_are_iso_shaped(self) -> None:
        for code, digits in money.CURRENCIES.items():
            assert len(code) == 3, code
            assert code.isascii(), code
            assert code.isupper(), code
            assert code.isalpha(), code
            assert digits in (0, 2, 3, 4), code

    def test_covers_the_active_list(self) -> None:
        assert len(money.CURRENCIES) >= 160
        for code in ("USD", "EUR", "GBP", "CHF", "CNY", "INR", "BRL", "ZAR", "XCG"):
            assert code in money.CURRENCIES, code

    def test_withdrawn_codes_absent(self) -> None:
        for code in ("HRK", "SLL", "ZWL", "CUC", "ANG", "VEF", "MRO", "LTL"):
            assert code not in money.CURRENCIES, code

    def test_no_minor_unit_codes_absent(self) -> None:
        for code in ("XAU", "XAG", "XPT", "XPD", "XDR", "XTS", "XXX"):
            assert code not in money.CURRENCIES, code

    def test_zero_decimal(self) -> None:
        for code in ("JPY", "KRW", "CLP", "ISK", "VND", "XAF", "XOF", "XPF", "PYG"):
            assert money.exponent(code) == 0, code

    def test_three_decimal(self) -> None:
        for code in ("KWD", "BHD", "JOD", "OMR", "TND", "IQD", "LYD"):
            assert money.exponent(code) == 3, code

    def test_four_decimal(self) -> None:
        assert money.exponent("CLF") == 4
        assert money.exponent("UYW") == 4

    def test_two_decimal(self) -> None:
        assert money.exponent("USD") == 2
        assert money.exponent("EUR") == 2

    def test_read_only(self) -> None:
        with pytest.raises(TypeError):
            money.CURRENCIES["ZZZ"] = 2  # type: ignore[index]

    def test_unknown_exponent_is_422(self) -> None:
        with pytest.raises(money.UnknownCurrency) as raised:
            money.exponent("ABC")

        assert raised.value.status == 422
        assert raised.value.code == "unknown_currency"
        assert raised.value.errors[0]["field"] == "currency"


class TestValidateCurrency:
    def test_upper_cases(self) -> None:
        assert money.validate_currency("usd") == "USD"
        assert money.validate_currency("Jpy") == "JPY"

    @pytest.mark.parametrize("code", ["", "US", "USDD", "U$D", "XYZ", " USD", "123"])
    def test_rejects(self, code: str) -> None:
        with pytest.raises(money.UnknownCurrency) as raised:
            money.validate_currency(code, field="lines.0.currency")

        assert raised.value.errors[0]["field"] == "lines.0.currency"
        assert repr(code) in raised.value.detail

    @given(st.text(max_size=5))
    def test_accepts_only_table_codes(self, text: str) -> None:
        try:
            code = money.validate_currency(text)
        except money.UnknownCurrency:
            assert text.upper() not in money.CURRENCIES or len(text) != 3
        else:
            assert code in money.CURRENCIES
            assert code == text.upper()


class TestRoundMinor:
    @given(finite_decimals)
    def test_half_up_matches_exact_oracle(self, value: Decimal) -> None:
        assert money.round_minor(value) == half_up(Fraction(value))

    @given(finite_decimals)
    def test_half_even_matches_exact_oracle(self, value: Decimal) -> None:
        rounded = money.round_minor(value, money.Rounding.HALF_EVEN)

        assert rounded == half_even(Fraction(value))

    @given(finite_decimals)
    def test_within_half_a_unit(self, value: Decimal) -> None:
        for mode in money.Rounding:
            assert abs(money.round_minor(value, mode) - value) <= Decimal("0.5")

    def test_ties(self) -> None:
        assert money.round_minor(Decimal("2.5")) == 3
        assert money.round_minor(Decimal("-2.5")) == -3
        assert money.round_minor(Decimal("2.5"), money.Rounding.HALF_EVEN) == 2
        assert money.round_minor(Decimal("3.5"), money.Rounding.HALF_EVEN) == 4

    def test_default_is_half_up(self) -> None:
        assert money.round_minor(Decimal("0.5")) == 1

    def test_float_rejected(self) -> None:
        with pytest.raises(TypeError, match="Decimal"):
            money.round_minor(0.5)  # type: ignore[arg-type]

    def test_nan_rejected(self) -> None:
        with pytest.raises(ValueError, match="NaN"):
            money.round_minor(Decimal("NaN"))

    def test_thirty_digits_just_below_tie(self) -> None:
        value = Decimal("123456789012345678.499999999999")

        assert money.round_minor(value) == 123456789012345678


class TestMajorMinor:
    @given(st.integers(min_value=-money.MAX_AMOUNT, max_value=money.MAX_AMOUNT))
    def test_round_trip(self, amount: int) -> None:
        for code in ("USD", "JPY", "KWD", "CLF"):
            assert money.to_minor(money.from_minor(amount, code), code) == amount

    def test_examples(self) -> None:
        assert money.from_minor(1999, "USD") == Decimal("19.99")
        assert money.from_minor(1999, "JPY") == Decimal("1999")
        assert money.from_minor(1999, "KWD") == Decimal("1.999")
        assert money.to_minor(Decimal("19.995"), "USD") == 2000
        assert (
            money.to_minor(Decimal("19.995"), "USD", money.Rounding.HALF_EVEN) == 2000
        )
        assert (
            money.to_minor(Decimal("19.985"), "USD", money.Rounding.HALF_EVEN) == 1998
        )
        assert money.to_minor(Decimal("1.0005"), "KWD") == 1001

    def test_float_rejected(self) -> None:
        with pytest.raises(TypeError):
            money.to_minor(19.99, "USD")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            money.from_minor(True, "USD")


class TestParseDecimal:
    @given(
        st.decimals(
            min_value=Decimal(0),
            max_value=Decimal("99999999999999.999999"),
            places=6,
            allow_nan=False,
            allow_infinity=False,
        )
    )
    def test_round_trip(self, value: Decimal) -> None:
        text = money.format_decimal(value)

        parsed = money.parse_decimal(text, max_integer_digits=14, max_places=6)

        assert parsed == value
        assert "E" not in text
        assert "e" not in text

    @pytest.mark.parametrize(
        "text",
        ["", "1,5", "1e3", "NaN", "Infinity", "+1", "1.", ".5", "1 000", "0x10", "١"],
    )
    def test_rejects(self, text: str) -> None:
        with pytest.raises(ValueError):
            money.parse_decimal(text, max_integer_digits=14, max_places=6)

    def test_negative_only_when_allowed(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            money.parse_decimal("-1", max_integer_digits=3, max_places=0)

        parsed = money.parse_decimal(
            "-1", max_integer_digits=3, max_places=0, allow_negative=True
        )

        assert parsed == -1

    def test_limits(self) -> None:
        assert money.parse_decimal("000123.4500", max_integer_digits=3, max_places=2)
        with pytest.raises(ValueError, match="before the point"):
            money.parse_decimal("1234", max_integer_digits=3, max_places=2)
        with pytest.raises(ValueError, match="after the point"):
            money.parse_decimal("1.234", max_integer_digits=3, max_places=2)

    def test_format(self) -> None:
        assert money.format_decimal(Decimal("100.000")) == "100"
        assert money.format_decimal(Decimal("1.500000")) == "1.5"
        assert money.format_decimal(Decimal("0.000000")) == "0"
        assert money.format_decimal(Decimal("1E+3")) == "1000"
