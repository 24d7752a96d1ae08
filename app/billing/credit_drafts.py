"""Computing a credit note's lines and amounts from an invoice, before any write.

Credit by lines takes a quantity or a net amount of each invoice line, with the line's
tax in proportion. A lump amount includes tax and is split over the invoice's tax
rates in proportion to what each can still be credited. Tax is rounded on the running
total credited so far, by the invoice's rounding, so crediting everything in any
number of notes credits exactly the invoice's tax.
"""

from __future__ import annotations

import decimal
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import InvoiceAmounts, invoice_amounts
from app.billing.credit_errors import (
    CreditExceedsInvoice,
    InvalidCreditNote,
    InvoiceNotCreditable,
)
from app.billing.credit_schemas import CreditNoteCreate, CreditNoteLineCreate
from app.core import ids, money
from app.core.errors import FieldError
from app.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine

# Invoice statuses that may be credited: a draft can still be edited, and a void
# invoice requests no money.
CREDITABLE_STATUSES = frozenset({"open", "paid", "uncollectible"})


@dataclass(frozen=True)
class CreditableLine:
    """An invoice line as credit notes read it; amounts in minor units."""

    id: uuid.UUID
    description: str
    quantity: Decimal
    unit_amount: Decimal
    tax_rate: Decimal
    # Net of any discount, before tax.
    amount: int
    tax_amount: int


def creditable_lines(lines: Sequence[InvoiceLine]) -> list[CreditableLine]:
    """Read invoice lines for crediting; the one place that reads their columns."""
    return [
        CreditableLine(
            id=line.id,
            description=line.description,
            quantity=Decimal(line.quantity),
            unit_amount=Decimal(line.unit_amount),
            tax_rate=Decimal(line.tax_rate),
            amount=line.taxable_amount,
            tax_amount=line.tax_amount,
        )
        for line in lines
    ]


@dataclass
class Credited:
    """The quantity, amount and tax that earlier credit notes took from one line or rate."""

    quantity: Decimal = Decimal(0)
    amount: int = 0
    tax_amount: int = 0

    @property
    def gross(self) -> int:
        return self.amount + self.tax_amount


@dataclass(frozen=True)
class EarlierCredits:
    by_line: dict[uuid.UUID, Credited]
    by_rate: dict[Decimal, Credited]


@dataclass(frozen=True)
class DraftLine:
    invoice_line_id: uuid.UUID | None
    description: str
    quantity: Decimal | None
    tax_rate: Decimal
    amount: int
    tax_amount: int


@dataclass(frozen=True)
class Draft:
    """The amounts of a credit note before it is written."""

    lines: tuple[DraftLine, ...]
    subtotal: int
    tax_total: int
    total: int
    amount_reduced: int
    amount_credited: int
    refund_amount: int


def round_ratio(numerator: int, denominator: int, rounding: money.Rounding) -> int:
    """Round the non-negative fraction ``numerator / denominator`` to an integer.

    Integer arithmetic, so a value exactly half-way is detected without any
    precision limit.
    """
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator:
        return quotient + 1
    if twice == denominator and (
        rounding is money.Rounding.HALF_UP or quotient % 2 == 1
    ):
        return quotient + 1
    return quotient


def _proportional_tax(
    earlier: Credited, amount: int, base: int, tax: int, rounding: money.Rounding
) -> int:
    """Tax on ``amount`` more of ``base``, rounded on the cumulative credited amount.

    Rounding the running total rather than each credit means that crediting all of
    a line, in any number of notes, credits exactly all of its tax.
    """
    if base == 0 or tax == 0:
        return 0
    cumulative = round_ratio((earlier.amount + amount) * tax, base, rounding)
    return min(max(cumulative - earlier.tax_amount, 0), tax - earlier.tax_amount)


async def earlier_credits(
    session: AsyncSession, invoice_id: uuid.UUID
) -> EarlierCredits:
    """Sum the lines of the invoice's credit notes that are not void."""
    rows = await session.execute(
        select(
            CreditNoteLine.invoice_line_id,
            CreditNoteLine.tax_rate,
            CreditNoteLine.quantity,
            CreditNoteLine.amount,
            CreditNoteLine.tax_amount,
        )
        .join(CreditNote, CreditNote.id == CreditNoteLine.credit_note_id)
        .where(CreditNote.invoice_id == invoice_id, CreditNote.status == "issued")
    )
    by_line: dict[uuid.UUID, Credited] = defaultdict(Credited)
    by_rate: dict[Decimal, Credited] = defaultdict(Credited)
    for line_id, rate, quantity, amount, tax_amount in rows.all():
        rate_total = by_rate[Decimal(rate).normalize()]
        rate_total.amount += amount
        rate_total.tax_amount += tax_amount
        if line_id is not None:
            line_total = by_line[line_id]
            line_total.quantity += Decimal(quantity or 0)
            line_total.amount += amount
            line_total.tax_amount += tax_amount
    return EarlierCredits(by_line=dict(by_line), by_rate=dict(by_rate))


def credit_lines(
    invoice: Invoice,
    lines: Sequence[CreditableLine],
    earlier: EarlierCredits,
    requested: Sequence[CreditNoteLineCreate],
) -> list[DraftLine]:
    """Compute the credited amount and tax of each requested invoice line."""
    rounding = money.Rounding(invoice.rounding)
    by_id = {line.id: line for line in lines}
    # A lump credit takes from a tax rate without naming a line, so a line is also
    # limited by what its rate has left, or the notes would credit more tax at that
    # rate than the invoice charged.
    rate_left: dict[Decimal, int] = defaultdict(int)
    for creditable in lines:
        rate_left[creditable.tax_rate.normalize()] += (
            creditable.amount + creditable.tax_amount
        )
    for rate, done_at_rate in earlier.by_rate.items():
        rate_left[rate] -= done_at_rate.gross
    seen: set[uuid.UUID] = set()
    drafts = []
    for index, item in enumerate(requested):
        field = f"lines.{index}"
        line = by_id.get(item.invoice_line_id)
        if line is None:
            raise invalid_credit_note(
                f"{ids.encode('invoice_line', item.invoice_line_id)} is not a line of "
                f"invoice {ids.encode('invoice', invoice.id)}. Send the id of one of "
                "its lines.",
                f"{field}.invoice_line_id",
                "not a line of this invoice",
                "unknown_line",
            )
        if line.id in seen:
            raise invalid_credit_note(
                "Each invoice line may appear once in a credit note. Merge the "
                "entries for the same line.",
                f"{field}.invoice_line_id",
                "appears more than once",
                "duplicate_line",
            )
        seen.add(line.id)
        done = earlier.by_line.get(line.id, Credited())
        line_left = line.amount - done.amount
        if item.quantity is not None:
            quantity_left = line.quantity - done.quantity
            if item.quantity > quantity_left:
                raise CreditExceedsInvoice(
                    f"Line {ids.encode('invoice_line', line.id)} has "
                    f"{money.format_decimal(quantity_left)} units left to credit, "
                    f"fewer than the {money.format_decimal(item.quantity)} sent.",
                    errors=[
                        FieldError(
                            f"{field}.quantity", "exceeds what is left", "too_large"
                        )
                    ],
                    quantity_creditable=money.format_decimal(quantity_left),
                )
            if item.quantity == quantity_left:
                amount = line_left
            else:
                # The line's share of its billed net amount, so discounts and taxes
                # included in the price are credited as they were billed.
                with localcontext(money.exact()) as context:
                    context.traps[decimal.Inexact] = False
                    context.traps[decimal.Rounded] = False
                    share = item.quantity * Decimal(line.amount) / line.quantity
                amount = money.round_minor(share, rounding)
        else:
            assert item.amount is not None
            amount = item.amount
        if amount > line_left:
            raise CreditExceedsInvoice(
                f"Line {ids.encode('invoice_line', line.id)} has {line_left} "
                f"{invoice.currency} (minor units) left to credit, less than the "
                f"{amount} requested.",
                errors=[FieldError(field, "exceeds what is left", "too_large")],
                line_creditable=line_left,
            )
        tax = _proportional_tax(done, amount, line.amount, line.tax_amount, rounding)
        rate = line.tax_rate.normalize()
        if amount + tax > rate_left[rate]:
            left_at_rate = max(rate_left[rate], 0)
            raise CreditExceedsInvoice(
                f"Line {ids.encode('invoice_line', line.id)} is taxed at "
                f"{money.format_decimal(rate)}%, and that rate has {left_at_rate} "
                f"{invoice.currency} (minor units) left to credit after earlier "
                f"credits, less than the {amount + tax} this line would credit. "
                "Credit a smaller amount of the line.",
                errors=[
                    FieldError(field, "exceeds what its tax rate has left", "too_large")
                ],
                rate_creditable=left_at_rate,
            )
        rate_left[rate] -= amount + tax
        if amount + tax == 0:
            raise invalid_credit_note(
                f"The credit of line {ids.encode('invoice_line', line.id)} rounds to "
                f"0 {invoice.currency}. Credit a larger quantity or amount.",
                field,
                "rounds to zero",
                "zero_credit",
            )
        drafts.append(
            DraftLine(
                invoice_line_id=line.id,
                description=line.description,
                quantity=item.quantity,
                tax_rate=line.tax_rate,
                amount=amount,
                tax_amount=tax,
            )
        )
    return drafts


def credit_lump(
    invoice: Invoice,
    lines: Sequence[CreditableLine],
    earlier: EarlierCredits,
    gross: int,
) -> list[DraftLine]:
    """Split a lump amount including tax over the invoice's tax rates.

    Each rate gets a share in proportion to what it can still be credited (largest
    remainder, so the shares add up to ``gross`` exactly), and its tax is that
    share's part of the rate's tax, rounded by the invoice's rounding.
    """
    rounding = money.Rounding(invoice.rounding)
    groups: dict[Decimal, Credited] = defaultdict(Credited)
    for line in lines:
        group = groups[line.tax_rate.normalize()]
        group.amount += line.amount
        group.tax_amount += line.tax_amount
    rates = sorted(groups)
    left = {
        rate: groups[rate].gross - earlier.by_rate.get(rate, Credited()).gross
        for rate in rates
    }
    available = sum(max(value, 0) for value in left.values())
    if gross > available:
        raise _exceeds(invoice, gross, available)

    weights = {rate: max(left[rate], 0) for rate in rates}
    shares = {rate: gross * weights[rate] // available for rate in rates}
    by_remainder = sorted(
        rates,
        key=lambda rate: (-(gross * weights[rate] % available), rates.index(rate)),
    )
    for rate in by_remainder[: gross - sum(shares.values())]:
        shares[rate] += 1

    drafts = []
    for rate in rates:
        share = shares[rate]
        if share == 0:
            continue
        group = groups[rate]
        done = earlier.by_rate.get(rate, Credited())
        cumulative = round_ratio(
            (done.gross + share) * group.tax_amount, group.gross, rounding
        )
        tax = min(
            max(cumulative - done.tax_amount, 0),
            share,
            group.tax_amount - done.tax_amount,
        )
        tax = max(tax, 0)
        drafts.append(
            DraftLine(
                invoice_line_id=None,
                description=f"Credit at {money.format_decimal(rate)}% tax",
                quantity=None,
                tax_rate=rate,
                amount=share - tax,
                tax_amount=tax,
            )
        )
    return drafts


def distribute(
    invoice: Invoice, amounts: InvoiceAmounts, payload: CreditNoteCreate, total: int
) -> tuple[int, int, int]:
    """Split ``total`` into the parts reduced, credited and refunded, and check them."""
    encoded = ids.encode("invoice", invoice.id)
    if payload.distribution_sent:
        reduce = payload.amount_to_reduce or 0
        credit = payload.amount_to_credit or 0
        refund = payload.refund_amount or 0
        if reduce + credit + refund != total:
            raise InvalidCreditNote(
                f"amount_to_reduce, amount_to_credit and refund_amount sum to "
                f"{reduce + credit + refund}, but the credit note totals {total} "
                f"{invoice.currency} (minor units). Send parts that sum to {total}; "
                "the preview shows the total.",
                errors=[
                    FieldError(name, f"the parts must sum to {total}", "sum_mismatch")
                    for name in (
                        "amount_to_reduce",
                        "amount_to_credit",
                        "refund_amount",
                    )
                ],
                total=total,
            )
    else:
        reduce = min(total, amounts.amount_remaining)
        credit = total - reduce
        refund = 0

    if reduce > amounts.amount_remaining:
        raise CreditExceedsInvoice(
            f"Invoice {encoded} has {amounts.amount_remaining} {invoice.currency} "
            f"(minor units) left to pay, so amount_to_reduce can be at most that. "
            "Credit the rest to the customer or refund it.",
            errors=[
                FieldError("amount_to_reduce", "exceeds what is owed", "too_large")
            ],
            amount_remaining=amounts.amount_remaining,
        )
    returnable = amounts.amount_returnable
    if credit + refund > returnable:
        raise CreditExceedsInvoice(
            f"Invoice {encoded} has {returnable} {invoice.currency} (minor units) paid "
            "that is not yet credited or refunded, so amount_to_credit plus "
            "refund_amount can be at most that. Reduce the amount due instead.",
            # Only the parts that take money back, so a refund alone names only
            # refund_amount.
            errors=[
                FieldError(name, "exceeds what was paid", "too_large")
                for name, part in (
                    ("amount_to_credit", credit),
                    ("refund_amount", refund),
                )
                if part > 0
            ],
            amount_returnable=returnable,
        )
    return reduce, credit, refund


def build_draft(
    invoice: Invoice,
    lines: Sequence[CreditableLine],
    earlier: EarlierCredits,
    payload: CreditNoteCreate,
) -> Draft:
    """Compute and check a credit note for ``invoice``, which the caller has loaded."""
    encoded = ids.encode("invoice", invoice.id)
    if invoice.status not in CREDITABLE_STATUSES:
        raise InvoiceNotCreditable(
            f"Invoice {encoded} is {invoice.status}; only an open, paid or "
            "uncollectible invoice can be credited. Edit a draft instead.",
            current_status=invoice.status,
        )
    amounts = invoice_amounts(invoice)
    if payload.lines is not None:
        drafts = credit_lines(invoice, lines, earlier, payload.lines)
    else:
        assert payload.amount is not None
        if payload.amount > amounts.creditable:
            raise _exceeds(invoice, payload.amount, amounts.creditable)
        drafts = credit_lump(invoice, lines, earlier, payload.amount)
    subtotal = sum(line.amount for line in drafts)
    tax_total = sum(line.tax_amount for line in drafts)
    total = subtotal + tax_total
    if total > amounts.creditable:
        raise _exceeds(invoice, total, amounts.creditable)
    reduce, credit, refund = distribute(invoice, amounts, payload, total)
    if payload.refund_payment_id is not None and refund == 0:
        raise invalid_credit_note(
            "refund_payment_id is sent but nothing is refunded. Send refund_amount, "
            "or drop refund_payment_id.",
            "refund_payment_id",
            "no refund to link",
            "no_refund",
        )
    return Draft(
        lines=tuple(drafts),
        subtotal=subtotal,
        tax_total=tax_total,
        total=total,
        amount_reduced=reduce,
        amount_credited=credit,
        refund_amount=refund,
    )


def _exceeds(invoice: Invoice, requested: int, creditable: int) -> CreditExceedsInvoice:
    return CreditExceedsInvoice(
        f"Invoice {ids.encode('invoice', invoice.id)} can be credited "
        f"{creditable} {invoice.currency} (minor units) more, less than the "
        f"{requested} requested. Credit at most {creditable}.",
        creditable=creditable,
    )


def invalid_credit_note(
    detail: str, field: str, message: str, code: str
) -> InvalidCreditNote:
    return InvalidCreditNote(detail, errors=[FieldError(field, message, code)])
