"""Invoice totals, computed exactly in ``Decimal`` and rounded once per amount.

Each line's amount is quantity x unit amount (in minor units), rounded to a whole minor
unit. Its tax is that rounded amount x the line's tax rate, rounded again. The subtotal
and tax total are sums of those integers and the total is their sum, so the parts shown
on an invoice always add up to the total shown.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from enum import StrEnum

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


# Invoice documents: line and invoice discounts, several tax rates per line (inclusive
# or exclusive), and a tax calculation policy.


class TaxCalculation(StrEnum):
    """The rounding point of tax: each line, or once per tax rate on the document."""

    LINE = "line"
    DOCUMENT = "document"


@dataclass(frozen=True)
class TaxSpec:
    """A tax rate as applied to a line: ``rate`` is a percentage such as 19 or 7.5.

    Lines that carry equal specs (same name, rate and inclusiveness) share one entry of
    the document's tax breakdown, and under the document policy one rounding.
    """

    name: str
    rate: Decimal
    inclusive: bool = False

    @property
    def key(self) -> tuple[str, Decimal, bool]:
        return (self.name, self.rate, self.inclusive)


@dataclass(frozen=True)
class DiscountSpec:
    """A percentage (0 to 100) or an amount in minor units; exactly one is set."""

    percent_off: Decimal | None = None
    amount_off: int | None = None


@dataclass(frozen=True)
class LineSpec:
    """Inputs of one invoice line; ``unit_amount`` is in minor units, fractions allowed.

    With inclusive taxes, ``quantity x unit_amount`` is the gross price and the tax is
    extracted from it. A line's taxes are all inclusive or all exclusive.
    """

    quantity: Decimal
    unit_amount: Decimal
    taxes: tuple[TaxSpec, ...] = ()
    discount: DiscountSpec | None = None


@dataclass(frozen=True)
class TaxAmount:
    """One tax of one line, or of the document when summed over lines."""

    spec: TaxSpec
    taxable_amount: int
    amount: int


@dataclass(frozen=True)
class LineResult:
    """A line's computed amounts in minor units.

    ``amount`` is quantity x unit amount rounded. ``discount_amount`` is its own
    discount plus its share of the invoice discounts. ``taxable_amount`` is what
    remains without tax: ``amount - discount_amount - inclusive taxes``. ``total`` is
    ``taxable_amount + tax_amount``.
    """

    amount: int
    discount_amount: int
    taxable_amount: int
    taxes: tuple[TaxAmount, ...]
    tax_amount: int
    total: int


@dataclass(frozen=True)
class DocumentResult:
    """The invoice sums. ``total = total_excluding_tax + tax_total`` and
    ``total_excluding_tax = subtotal - total_discount - inclusive_tax_total``."""

    lines: tuple[LineResult, ...]
    invoice_discounts: tuple[int, ...]
    subtotal: int
    total_discount: int
    total_excluding_tax: int
    taxes: tuple[TaxAmount, ...]
    tax_total: int
    inclusive_tax_total: int
    total: int


def allocate(exact: Sequence[Decimal], total: int) -> list[int]:
    """Round ``exact`` shares to integers that sum to ``total`` (largest remainder).

    ``total`` must lie between the sums of the floors and the ceilings of the shares,
    as a correctly rounded sum of them does. Each share gets its floor. The units
    left over go to the shares with the largest fractional parts, the earlier line
    first on a tie, so a share moves by less than one unit.
    """
    floors = [
        int(value.to_integral_value(rounding=decimal.ROUND_FLOOR)) for value in exact
    ]
    left = total - sum(floors)
    fractions = sorted(
        range(len(exact)),
        key=lambda index: (-(exact[index] - floors[index]), index),
    )
    candidates = [index for index in fractions if exact[index] != floors[index]]
    if left < 0 or left > len(candidates):
        raise ValueError(f"cannot allocate {total} over shares summing to {sum(exact)}")
    for index in candidates[:left]:
        floors[index] += 1
    return floors


def pro_rata(amount: int, weights: Sequence[int]) -> list[int]:
    """Split ``amount`` over non-negative ``weights`` in proportion, summing exactly."""
    base = sum(weights)
    if base == 0:
        return [0 for _ in weights]
    with localcontext(money.exact()) as context:
        context.traps[decimal.Inexact] = False
        context.prec = 60
        shares = [Decimal(amount) * weight / base for weight in weights]
    return allocate(shares, amount)


def compute_document(
    lines: Sequence[LineSpec],
    *,
    discounts: Sequence[DiscountSpec] = (),
    tax_calculation: TaxCalculation = TaxCalculation.LINE,
    rounding: money.Rounding = money.Rounding.HALF_UP,
) -> DocumentResult:
    """Compute every line and the document totals of an invoice.

    Order: amounts, line discounts, invoice discounts (each on what the previous ones
    left, spread over the lines pro rata by largest remainder), then taxes rounded by
    ``tax_calculation``. Every sum shown is a sum of the integers shown beside it, so
    the parts add up exactly. Raise ``AmountTooLarge`` past ``money.MAX_AMOUNT``.
    """
    amounts = []
    for index, line in enumerate(lines):
        with localcontext(money.exact()):
            exact_amount = line.quantity * line.unit_amount
        amount = money.round_minor(exact_amount, rounding)
        if abs(amount) > money.MAX_AMOUNT:
            raise _too_large(f"lines.{index}", amount)
        amounts.append(amount)
    line_discounts = [
        _discount_of(line.discount, amount, rounding)
        for line, amount in zip(lines, amounts, strict=True)
    ]

    remaining = [
        amount - discount
        for amount, discount in zip(amounts, line_discounts, strict=True)
    ]
    invoice_discounts = []
    for spec in discounts:
        weights = [max(value, 0) for value in remaining]
        discounted = _discount_of(spec, sum(weights), rounding)
        invoice_discounts.append(discounted)
        for index, share in enumerate(pro_rata(discounted, weights)):
            remaining[index] -= share

    tax_lists = _taxes(lines, remaining, tax_calculation, rounding)

    results = []
    for index, amount in enumerate(amounts):
        taxes = tax_lists[index]
        inclusive = sum(tax.amount for tax in taxes if tax.spec.inclusive)
        tax_amount = sum(tax.amount for tax in taxes)
        taxable = remaining[index] - inclusive
        total = taxable + tax_amount
        if abs(total) > money.MAX_AMOUNT:
            raise _too_large(f"lines.{index}", total)
        results.append(
            LineResult(
                amount=amount,
                discount_amount=amount - remaining[index],
                taxable_amount=taxable,
                taxes=tuple(taxes),
                tax_amount=tax_amount,
                total=total,
            )
        )

    summed: dict[tuple[str, Decimal, bool], list[int]] = {}
    specs: dict[tuple[str, Decimal, bool], TaxSpec] = {}
    for result in results:
        for tax in result.taxes:
            pair = summed.setdefault(tax.spec.key, [0, 0])
            pair[0] += tax.taxable_amount
            pair[1] += tax.amount
            specs.setdefault(tax.spec.key, tax.spec)
    document_taxes = tuple(
        TaxAmount(spec=specs[key], taxable_amount=pair[0], amount=pair[1])
        for key, pair in summed.items()
    )
    total = sum(result.total for result in results)
    if abs(total) > money.MAX_AMOUNT:
        raise _too_large("lines", total)
    return DocumentResult(
        lines=tuple(results),
        invoice_discounts=tuple(invoice_discounts),
        subtotal=sum(amounts),
        total_discount=sum(result.discount_amount for result in results),
        total_excluding_tax=sum(result.taxable_amount for result in results),
        taxes=document_taxes,
        tax_total=sum(result.tax_amount for result in results),
        inclusive_tax_total=sum(
            tax.amount for tax in document_taxes if tax.spec.inclusive
        ),
        total=total,
    )


def _discount_of(spec: DiscountSpec | None, base: int, rounding: money.Rounding) -> int:
    """Return what ``spec`` takes off ``base``: never more than it, never below 0."""
    if spec is None or base <= 0:
        return 0
    if spec.percent_off is not None:
        with localcontext(money.exact()):
            exact = Decimal(base) * spec.percent_off.scaleb(-2)
        return min(money.round_minor(exact, rounding), base)
    return min(spec.amount_off or 0, base)


def _exact_taxes(line: LineSpec, base: int) -> list[tuple[TaxSpec, Decimal]]:
    """Return each tax of a line before rounding, on ``base`` after discounts.

    Exclusive: ``base x rate / 100``. Inclusive: the tax inside a gross ``base``,
    ``base x rate / (100 + sum of the line's inclusive rates)``.
    """
    inclusive_sum = sum((tax.rate for tax in line.taxes if tax.inclusive), Decimal(0))
    exact = []
    with localcontext(money.exact()) as context:
        context.traps[decimal.Inexact] = False
        context.prec = 60
        for tax in line.taxes:
            if tax.inclusive:
                value = Decimal(base) * tax.rate / (Decimal(100) + inclusive_sum)
            else:
                value = Decimal(base) * tax.rate / Decimal(100)
            exact.append((tax, value))
    return exact


def _taxable_of(line: LineSpec, base: int, taxes: Sequence[int]) -> int:
    """Return the net amount a line's taxes are charged on, given their rounded amounts."""
    inclusive = sum(
        amount for tax, amount in zip(line.taxes, taxes, strict=True) if tax.inclusive
    )
    return base - inclusive


def _taxes(
    lines: Sequence[LineSpec],
    bases: Sequence[int],
    policy: TaxCalculation,
    rounding: money.Rounding,
) -> list[list[TaxAmount]]:
    exact = [_exact_taxes(line, base) for line, base in zip(lines, bases, strict=True)]
    rounded: list[list[int]] = [
        [money.round_minor(value, rounding) for _, value in pairs] for pairs in exact
    ]
    if policy is TaxCalculation.DOCUMENT:
        # One rounding per tax spec over the whole document. The rounded sum is then
        # allocated back to the lines by largest remainder of their exact shares.
        groups: dict[tuple[str, Decimal, bool], list[tuple[int, int]]] = {}
        for line_index, pairs in enumerate(exact):
            for tax_index, (spec, _) in enumerate(pairs):
                groups.setdefault(spec.key, []).append((line_index, tax_index))
        for members in groups.values():
            shares = [exact[i][j][1] for i, j in members]
            with localcontext(money.exact()) as context:
                context.traps[decimal.Inexact] = False
                context.prec = 80
                group_total = money.round_minor(sum(shares, Decimal(0)), rounding)
            for (line_index, tax_index), value in zip(
                members, allocate(shares, group_total), strict=True
            ):
                rounded[line_index][tax_index] = value

    results = []
    for line, base, pairs, amounts in zip(lines, bases, exact, rounded, strict=True):
        taxable = _taxable_of(line, base, amounts)
        results.append(
            [
                TaxAmount(
                    spec=spec,
                    taxable_amount=taxable,
                    amount=amount,
                )
                for (spec, _), amount in zip(pairs, amounts, strict=True)
            ]
        )
    return results
