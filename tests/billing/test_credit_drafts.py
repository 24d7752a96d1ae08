"""Credit note amounts for any lines and any split: credited tax adds up exactly."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from app.billing.credit_drafts import (
    CreditableLine,
    Credited,
    DraftLine,
    EarlierCredits,
    credit_lines,
    credit_lump,
    round_ratio,
)
from app.billing.credit_schemas import CreditNoteLineCreate
from app.billing.totals import LineInput, line_totals
from app.core import ids, money
from app.models import Invoice
from tests.billing.test_money import half_even, half_up

ORACLES = {money.Rounding.HALF_UP: half_up, money.Rounding.HALF_EVEN: half_even}
modes = st.sampled_from(list(money.Rounding))
tax_rates = st.decimals(
    min_value=Decimal(0),
    max_value=Decimal(30),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)


def make_line(
    quantity: int, unit_amount: int, tax_rate: Decimal, mode: money.Rounding
) -> CreditableLine:
    totals = line_totals(
        LineInput(
            quantity=Decimal(quantity),
            unit_amount=Decimal(unit_amount),
            tax_rate=tax_rate,
        ),
        mode,
    )
    return CreditableLine(
        id=ids.new_uuid(),
        description="Item",
        quantity=Decimal(quantity),
        unit_amount=Decimal(unit_amount),
        tax_rate=tax_rate,
        amount=totals.amount,
        tax_amount=totals.tax_amount,
    )


def make_invoice(mode: money.Rounding) -> Invoice:
    return Invoice(id=ids.new_uuid(), currency="USD", rounding=mode.value)


def add(earlier: EarlierCredits, drafts: list[DraftLine]) -> EarlierCredits:
    """Count ``drafts`` as issued, as ``earlier_credits`` would read them back."""
    by_line: dict[uuid.UUID, Credited] = defaultdict(Credited, earlier.by_line)
    by_rate: dict[Decimal, Credited] = defaultdict(Credited, earlier.by_rate)
    for draft in drafts:
        rate = by_rate[draft.tax_rate.normalize()]
        by_rate[draft.tax_rate.normalize()] = Credited(
            amount=rate.amount + draft.amount,
            tax_amount=rate.tax_amount + draft.tax_amount,
        )
        if draft.invoice_line_id is not None:
            done = by_line[draft.invoice_line_id]
            by_line[draft.invoice_line_id] = Credited(
                quantity=done.quantity + (draft.quantity or 0),
                amount=done.amount + draft.amount,
                tax_amount=done.tax_amount + draft.tax_amount,
            )
    return EarlierCredits(by_line=dict(by_line), by_rate=dict(by_rate))


@st.composite
def splits(draw: st.DrawFn, total: int) -> list[int]:
    """Split ``total`` into up to six positive parts."""
    cuts = draw(
        st.lists(st.integers(min_value=1, max_value=total - 1), max_size=5, unique=True)
        if total > 1
        else st.just([])
    )
    points = [0, *sorted(cuts), total]
    return [high - low for low, high in zip(points, points[1:], strict=False)]


class TestRoundRatio:
    @given(
        st.integers(min_value=0, max_value=10**30),
        st.integers(min_value=1, max_value=10**18),
        modes,
    )
    def test_matches_exact_rounding(
        self, numerator: int, denominator: int, mode: money.Rounding
    ) -> None:
        expected = ORACLES[mode](Fraction(numerator, denominator))

        assert round_ratio(numerator, denominator, mode) == expected


class TestCreditByQuantity:
    @given(
        st.integers(min_value=1, max_value=40),
        st.integers(min_value=1, max_value=10**7),
        tax_rates,
        modes,
        st.data(),
    )
    def test_all_parts_credit_exact_tax(
        self,
        quantity: int,
        unit_amount: int,
        tax_rate: Decimal,
        mode: money.Rounding,
        data: st.DataObject,
    ) -> None:
        line = make_line(quantity, unit_amount, tax_rate, mode)
        invoice = make_invoice(mode)
        earlier = EarlierCredits(by_line={}, by_rate={})
        parts = data.draw(splits(quantity))

        for part in parts:
            request = CreditNoteLineCreate(
                invoice_line_id=line.id, quantity=Decimal(part)
            )
            drafts = credit_lines(invoice, [line], earlier, [request])
            assert drafts[0].tax_amount >= 0
            earlier = add(earlier, drafts)
            assert earlier.by_line[line.id].tax_amount <= line.tax_amount

        done = earlier.by_line[line.id]
        assert done.quantity == line.quantity
        assert done.amount == line.amount
        assert done.tax_amount == line.tax_amount


class TestCreditLump:
    @given(
        st.lists(
            st.tuples(
                st.integers(min_value=1, max_value=20),
                st.integers(min_value=1, max_value=10**6),
                st.sampled_from(
                    [Decimal(0), Decimal(7), Decimal("19"), Decimal("5.5")]
                ),
            ),
            min_size=1,
            max_size=6,
        ),
        modes,
        st.data(),
    )
    def test_parts_add_up_to_invoice(
        self,
        specs: list[tuple[int, int, Decimal]],
        mode: money.Rounding,
        data: st.DataObject,
    ) -> None:
        lines = [make_line(*spec, mode) for spec in specs]
        invoice = make_invoice(mode)
        total = sum(line.amount + line.tax_amount for line in lines)
        earlier = EarlierCredits(by_line={}, by_rate={})
        parts = data.draw(splits(total))

        for part in parts:
            drafts = credit_lump(invoice, lines, earlier, part)
            assert sum(item.amount + item.tax_amount for item in drafts) == part
            assert all(item.amount >= 0 and item.tax_amount >= 0 for item in drafts)
            earlier = add(earlier, drafts)

        tax_by_rate: dict[Decimal, int] = defaultdict(int)
        for line in lines:
            tax_by_rate[line.tax_rate.normalize()] += line.tax_amount
        assert {
            rate: credited.tax_amount for rate, credited in earlier.by_rate.items()
        } == {rate: tax for rate, tax in tax_by_rate.items() if rate in earlier.by_rate}
        assert sum(item.gross for item in earlier.by_rate.values()) == total
