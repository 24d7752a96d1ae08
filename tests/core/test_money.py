from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from app.core.money import (
    CURRENCY_EXPONENTS,
    CurrencyCode,
    UnknownCurrency,
    minor_unit_exponent,
    parse_currency,
)


class Priced(BaseModel):
    currency: CurrencyCode


class TestCurrencyTable:
    @pytest.mark.parametrize(
        ("code", "exponent"),
        [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("CLF", 4)],
    )
    def test_exponents(self, code: str, exponent: int) -> None:
        assert minor_unit_exponent(code) == exponent

    def test_codes_are_three_upper_letters(self) -> None:
        for code in CURRENCY_EXPONENTS:
            assert len(code) == 3, code
            assert code.isalpha(), code
            assert code.isupper(), code

    @pytest.mark.parametrize("code", ["XAU", "XTS", "XXX", "HRK", "BGN", "ANG"])
    def test_unusable_codes_absent(self, code: str) -> None:
        assert code not in CURRENCY_EXPONENTS


class TestParseCurrency:
    def test_active_code(self) -> None:
        assert parse_currency("EUR") == "EUR"

    def test_lower_case_names_fix(self) -> None:
        with pytest.raises(
            UnknownCurrency, match="'eur' must be upper-case: send 'EUR'"
        ):
            parse_currency("eur")

    def test_unknown(self) -> None:
        with pytest.raises(UnknownCurrency, match="'ABC' is not an active ISO 4217"):
            parse_currency("ABC")

    def test_model_field(self) -> None:
        assert Priced(currency="JPY").currency == "JPY"

    def test_json_schema_lists_codes(self) -> None:
        schema = Priced.model_json_schema()["properties"]["currency"]

        assert schema["enum"] == sorted(CURRENCY_EXPONENTS)

    def test_model_field_rejects_number(self) -> None:
        with pytest.raises(ValidationError):
            Priced.model_validate({"currency": 978})
