"""Invoice totals: any lines, any rounding mode, the parts add up to the total."""

from __future__ import annotations

import decimal
from decimal import Decimal
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.billing.errors import AmountTooLarge
from app.billing.totals import LineInput, invoice_totals
from app.core import money
from tests.billing.test_money import half_even, half_up

quantities = st.decimals(
    min_value=Decimal("0.000001"),
    max_value=Decimal("1000000"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)
unit_amounts = st.one_of(
    st.integers(min_value=0, max_value=10_000_000).map(Decimal),
    st.decimals(
        min_value=Decimal(0),
        max_value=Decimal("10000000"),
        places=12,
        allow_nan=False,
        allow_infinity=False,
    ),
)
tax_rates = st.decimals(
    min_value=Decimal(0),
    max_value=Decimal(100),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)
lines = st.lists(
    st.builds(
        LineInput, quantity=quantities, unit_amount=unit_amounts, tax_rate=tax_rates
    ),
    max_size=25,
)
modes = st.sampled_from(list(money.Rounding))

ORACLES = {money.Rounding.HALF_UP: half_up, money.Rounding.HALF_EVEN: half_even}


class TestInvoiceTotals:
    @given(lines, modes)
    def test_parts_add_up(self, items: list[LineInput], mode: money.Rounding) -> None:
        totals = invoice_totals(items, mode)

        assert totals.subtotal + totals.tax_total == totals.total
        assert totals.subtotal == sum(line.amount for line in totals.lines)
        assert totals.tax_total == sum(line.tax_amount for line in totals.lines)
        assert len(totals.lines) == len(items)

    @given(lines, modes)
    def test_each_line_matches_exact_oracle(
        self, items: list[LineInput], mode: money.Rounding
    ) -> None:
        oracle = ORACLES[mode]

        totals = invoice_totals(items, mode)

        for item, line in zip(items, totals.lines, strict=True):
            exact_amount = Fraction(item.quantity) * Fraction(item.unit_amount)
            assert line.amount == oracle(exact_amount)
            exact_tax = Fraction(line.amount) * Fraction(item.tax_rate) / 100
            assert line.tax_amount == oracle(exact_tax)

    @given(lines)
    def test_rounding_error_bounded(self, items: list[LineInput]) -> None:
        totals = invoice_totals(items)

        exact = sum(
            (Fraction(item.quantity) * Fraction(item.unit_amount) for item in items),
            Fraction(0),
        )
        assert abs(totals.subtotal - exact) <= Fraction(len(items), 2)

    @given(lines, modes)
    def test_amounts_are_integers(
        self, items: list[LineInput], mode: money.Rounding
    ) -> None:
        totals = invoice_totals(items, mode)

        for line in totals.lines:
            assert type(line.amount) is int
            assert type(line.tax_amount) is int
            assert line.amount >= 0
            assert line.tax_amount >= 0
        assert type(totals.total) is int

    def test_empty(self) -> None:
        totals = invoice_totals([])

        assert (totals.subtotal, totals.tax_total, totals.total) == (0, 0, 0)

    def test_precision_beyond_default_context(self) -> None:
        # The exact product is 80191452801753.499999999999995169 (32 digits); the
        # 28 digits of Python's default decimal context round it to ...753.5, and
        # half-up would then give ...754.
        item = LineInput(
            quantity=Decimal("0.108713"),
            unit_amount=Decimal("737643637851531.095637136313"),
            tax_rate=Decimal(0),
        )

        with decimal.localcontext(decimal.Context(prec=28)):
            totals = invoice_totals([item])

        assert totals.subtotal == 80191452801753

    def test_half_up_tie(self) -> None:
        item = LineInput(
            quantity=Decimal("0.5"), unit_amount=Decimal(5), tax_rate=Decimal(10)
        )

        up = invoice_totals([item], money.Rounding.HALF_UP)
        even = invoice_totals([item], money.Rounding.HALF_EVEN)

        assert up.lines[0].amount == 3
        assert even.lines[0].amount == 2

    def test_tax_on_rounded_line(self) -> None:
        item = LineInput(
            quantity=Decimal(1), unit_amount=Decimal("0.5"), tax_rate=Decimal(100)
        )

        totals = invoice_totals([item])

        assert totals.lines[0].amount == 1
        assert totals.lines[0].tax_amount == 1
        assert totals.total == 2

    def test_too_large(self) -> None:
        item = LineInput(
            quantity=Decimal(10),
            unit_amount=Decimal(money.MAX_AMOUNT),
            tax_rate=Decimal(0),
        )

        with pytest.raises(AmountTooLarge) as raised:
            invoice_totals([item])

        assert raised.value.errors[0]["field"] == "lines.0"

    def test_sum_too_large(self) -> None:
        half = Decimal(money.MAX_AMOUNT // 2 + 1)
        item = LineInput(quantity=Decimal(1), unit_amount=half, tax_rate=Decimal(0))

        with pytest.raises(AmountTooLarge) as raised:
            invoice_totals([item, item])

        assert raised.value.errors[0]["field"] == "lines"


def test_oracles_agree_on_non_ties() -> None:
    assert half_up(Fraction(7, 3)) == half_even(Fraction(7, 3)) == floor(Fraction(7, 3))
