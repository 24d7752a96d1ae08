"""Invoice totals, computed exactly in ``Decimal`` and rounded once per amount.

Each line's amount is quantity x unit amount (in minor units), rounded to a whole minor
unit. Its tax is that rounded amount x the line's tax rate, rounded again. The subtotal
and tax total are sums of those integers and the total is their sum, so the parts shown
on an invoice always add up to the total shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from app.billing.errors import AmountTooLarge
from app.core import money
from app.core.errors import FieldError


@dataclass(frozen=True)
class LineInput:
    """Inputs of one line's amounts; ``unit_amount`` is in minor units."""

    quantity: Decimal
    unit_amount: Decimal
    tax_rate: Decimal


@dataclass(frozen=True)
class LineTotals:
    amount: int
    tax_amount: int


@dataclass(frozen=True)
class InvoiceTotals:
    lines: tuple[LineTotals, ...]
    subtotal: int
    tax_total: int
    total: int


def line_totals(line: LineInput, rounding: money.Rounding) -> LineTotals:
    """Return the rounded amount and tax of one line."""
    with localcontext(money.exact()):
        exact_amount = line.quantity * line.unit_amount
    amount = money.round_minor(exact_amount, rounding)
    with localcontext(money.exact()):
        exact_tax = Decimal(amount) * line.tax_rate.scaleb(-2)
    return LineTotals(amount=amount, tax_amount=money.round_minor(exact_tax, rounding))


def invoice_totals(
    lines: Sequence[LineInput], rounding: money.Rounding = money.Rounding.HALF_UP
) -> InvoiceTotals:
    """Compute every line and the invoice totals; raise ``AmountTooLarge`` past the cap."""
    computed = []
    for index, line in enumerate(lines):
        totals = line_totals(line, rounding)
        if totals.amount + totals.tax_amount > money.MAX_AMOUNT:
            raise _too_large(f"lines.{index}", totals.amount + totals.tax_amount)
        computed.append(totals)
    subtotal = sum(line.amount for line in computed)
    tax_total = sum(line.tax_amount for line in computed)
    total = subtotal + tax_total
    if total > money.MAX_AMOUNT:
        raise _too_large("lines", total)
    return InvoiceTotals(
        lines=tuple(computed), subtotal=subtotal, tax_total=tax_total, total=total
    )


def _too_large(field: str, amount: int) -> AmountTooLarge:
    return AmountTooLarge(
        f"The amount {amount} (minor units) exceeds the maximum of {money.MAX_AMOUNT}. "
        "Split the invoice, or lower the quantity or unit amount.",
        errors=[
            FieldError(field, f"exceeds {money.MAX_AMOUNT} minor units", "too_large")
        ],
    )
