"""Amounts of priced lines (line items and proposal lines), with billing's rounding.

A line's ``amount`` is quantity x unit amount, rounded once to minor units by
``app.billing.totals.line_totals``. A discount takes a whole number of minor units off
it: a fixed ``discount_amount``, or ``discount_percent`` of the amount rounded with the
same mode. Tax is charged on what remains and computed by ``invoice_totals`` on one
line of quantity 1 at that net amount. An invoice line of quantity 1 at the net amount,
or of the original quantity and unit amount when there is no discount, therefore gets
exactly the same amount and tax on the invoice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from app.billing.errors import AmountTooLarge
from app.billing.totals import LineInput, invoice_totals, line_totals
from app.core import money
from app.core.errors import FieldError, InvalidInput

ROUNDING = money.Rounding.HALF_UP


@dataclass(frozen=True)
class LineTerms:
    """The terms a line is priced from, with ``unit_amount`` in minor units."""

    quantity: Decimal
    unit_amount: Decimal
    discount_percent: Decimal | None
    discount_amount: int | None
    tax_rate: Decimal


@dataclass(frozen=True)
class LineAmounts:
    """A line's amounts in minor units: ``total = amount - discount + tax_amount``."""

    amount: int
    discount: int
    tax_amount: int
    total: int

    @property
    def net(self) -> int:
        return self.amount - self.discount


@dataclass(frozen=True)
class DocumentTotals:
    """The sums over every line; ``total = subtotal + tax_total``."""

    lines: tuple[LineAmounts, ...]
    subtotal: int
    discount_total: int
    tax_total: int
    total: int


def price_lines(
    lines: Sequence[LineTerms], *, prefixes: Sequence[str] | None = None
) -> DocumentTotals:
    """Price every line and sum them; raise a 422 naming the invalid field of a line.

    ``prefixes`` gives each line's path in the request, such as ``"lines.1."``, or
    ``""`` for a request body that is the line itself; by default ``lines.<index>.``.
    ``subtotal`` sums the net amounts (after discounts), so it is what tax is charged
    on, as on an invoice.
    """
    if prefixes is None:
        prefixes = [f"lines.{index}." for index in range(len(lines))]
    gross: list[int] = []
    discounts: list[int] = []
    for line, prefix in zip(lines, prefixes, strict=True):
        amount = line_totals(
            LineInput(line.quantity, line.unit_amount, Decimal(0)), ROUNDING
        ).amount
        if amount > money.MAX_AMOUNT:
            raise _too_large(f"{prefix}quantity", amount)
        gross.append(amount)
        discounts.append(_discount(line, amount, f"{prefix}discount_amount"))
    # invoice_totals taxes each net amount as billing does and enforces the cap.
    taxed = invoice_totals(
        [
            LineInput(Decimal(1), Decimal(amount - discount), line.tax_rate)
            for line, amount, discount in zip(lines, gross, discounts, strict=True)
        ],
        ROUNDING,
    )
    computed = tuple(
        LineAmounts(
            amount=amount,
            discount=discount,
            tax_amount=totals.tax_amount,
            total=amount - discount + totals.tax_amount,
        )
        for amount, discount, totals in zip(gross, discounts, taxed.lines, strict=True)
    )
    return DocumentTotals(
        lines=computed,
        subtotal=taxed.subtotal,
        discount_total=sum(discounts),
        tax_total=taxed.tax_total,
        total=taxed.total,
    )


def _discount(line: LineTerms, amount: int, field: str) -> int:
    if line.discount_percent is not None:
        with localcontext(money.exact()):
            exact = Decimal(amount) * line.discount_percent.scaleb(-2)
        return money.round_minor(exact, ROUNDING)
    if line.discount_amount is None:
        return 0
    if line.discount_amount > amount:
        raise InvalidInput(
            f"The discount of {line.discount_amount} (minor units) exceeds the line "
            f"amount of {amount}. Lower discount_amount to at most {amount}.",
            errors=[
                FieldError(
                    field,
                    f"exceeds the line amount of {amount}",
                    "discount_exceeds_amount",
                )
            ],
        )
    return line.discount_amount


def _too_large(field: str, amount: int) -> AmountTooLarge:
    return AmountTooLarge(
        f"The line amount {amount} (minor units), quantity x unit price, exceeds the "
        f"maximum of {money.MAX_AMOUNT}. Lower the quantity or the unit price.",
        errors=[
            FieldError(
                field,
                f"makes the line amount {amount}, above {money.MAX_AMOUNT} minor units",
                "too_large",
            )
        ],
    )
