from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from app.core.money import CURRENCIES, CurrencyCode, exponent


class Priced(BaseModel):
    currency: CurrencyCode


class TestCurrencyTable:
    @pytest.mark.parametrize(
        ("code", "expected"),
        [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("CLF", 4)],
    )
    def test_exponents(self, code: str, expected: int) -> None:
        assert exponent(code) == expected

    def test_codes_are_three_upper_letters(self) -> None:
        for code in CURRENCIES:
            assert len(code) == 3, code
            assert code.isalpha(), code
            assert code.isupper(), code

    @pytest.mark.parametrize("code", ["XAU", "XTS", "XXX", "HRK"])
    def test_unusable_codes_absent(self, code: str) -> None:
        assert code not in CURRENCIES


class TestCurrencyCode:
    def test_lower_case_names_fix(self) -> None:
        with pytest.raises(
            ValidationError, match="'eur' must be upper-case: send 'EUR'"
        ):
            Priced.model_validate({"currency": "eur"})

    def test_unknown(self) -> None:
        with pytest.raises(ValidationError, match="'ABC' is not an ISO 4217"):
            Priced.model_validate({"currency": "ABC"})

    def test_model_field(self) -> None:
        assert Priced(currency="JPY").currency == "JPY"

    def test_json_schema_lists_codes(self) -> None:
        schema = Priced.model_json_schema()["properties"]["currency"]

        assert schema["enum"] == sorted(CURRENCIES)

    def test_model_field_rejects_number(self) -> None:
        with pytest.raises(ValidationError):
            Priced.model_validate({"currency": 978})
