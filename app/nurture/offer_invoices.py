"""Offer discounts as invoice lines, and the hooks billing calls when a draft changes.

A redeemed offer adds negative lines to the invoice: one per tax rate of its charge
lines, so each part of the discount is taxed at the rate of what it discounts. The
discount is computed on the pre-tax subtotal of the charge lines (percent: in
``Decimal``, rounded once by the invoice's rounding policy, half-up by default;
amount: capped at that subtotal) and split across the tax rates in proportion to
their amounts by the largest-remainder method, so the parts add up to it exactly.
The invoice totals are then recomputed by ``app.billing.totals`` over every line, so
the parts shown still add up to the total shown.

Charge lines never have a negative unit amount (the API rejects one), so discount
lines are exactly the lines whose unit amount is below zero.

This module imports no billing service, so ``app.billing.service`` can call it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal, localcontext

import structlog
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.totals import LineInput, invoice_totals
from app.core import ids, money
from app.core.clock import utcnow
from app.core.events import emit
from app.models import Invoice, InvoiceLine, Offer, OfferCode, OfferRedemption
from app.nurture.offer_errors import OfferCurrencyMismatch
from app.nurture.offer_views import code_data

log = structlog.get_logger(__name__)

# Bounds the loop that shrinks a discount whose negative taxes, rounded per line,
# would take the total below zero. Each step raises the total by at least one unit.
MAX_DISCOUNT_ADJUSTMENTS = 1000


def is_discount_line(line: InvoiceLine) -> bool:
    return Decimal(line.unit_amount) < 0


def discount_total(
    offer: Offer, subtotal: int, rounding: money.Rounding = money.Rounding.HALF_UP
) -> int:
    """Return the minor units ``offer`` takes off a pre-tax ``subtotal``."""
    if subtotal <= 0:
        return 0
    if offer.percent_off is not None:
        with localcontext(money.exact()):
            exact = Decimal(subtotal) * offer.percent_off / Decimal(100)
        return min(money.round_minor(exact, rounding), subtotal)
    assert offer.amount_off is not None
    return min(offer.amount_off, subtotal)


def split_by_rate(discount: int, amounts: dict[Decimal, int]) -> dict[Decimal, int]:
    """Split ``discount`` over tax rates in proportion to ``amounts``, summing exactly.

    Each rate gets the floor of its share; the units left over go to the rates with
    the largest remainders, ties to the higher rate. No share exceeds its amount while
    ``discount`` is at most the sum of ``amounts``.
    """
    total = sum(amounts.values())
    if discount <= 0 or total <= 0:
        return {}
    shares: dict[Decimal, int] = {}
    remainders: list[tuple[int, Decimal]] = []
    for rate, amount in amounts.items():
        share, remainder = divmod(discount * amount, total)
        shares[rate] = share
        remainders.append((remainder, rate))
    left = discount - sum(shares.values())
    for _, rate in sorted(remainders, reverse=True)[:left]:
        shares[rate] += 1
    return {rate: share for rate, share in shares.items() if share > 0}


def _rate_text(rate: Decimal) -> str:
    return money.format_decimal(rate)


async def apply_discount(
    session: AsyncSession,
    invoice: Invoice,
    lines: Sequence[InvoiceLine],
    offer: Offer,
    code: str,
) -> tuple[list[InvoiceLine], int]:
    """Replace the invoice's discount lines by ones for ``offer``; recompute totals.

    Returns the invoice's lines, charge lines first, and the discount in minor units.
    """
    charges = [line for line in lines if not is_discount_line(line)]
    for line in lines:
        if is_discount_line(line):
            if inspect(line).persistent:
                await session.delete(line)
            else:
                session.expunge(line)
    # The deletes go first: the new lines may reuse their positions.
    await session.flush()

    rounding = money.Rounding(invoice.rounding)
    amounts: dict[Decimal, int] = defaultdict(int)
    for line in charges:
        amounts[Decimal(line.tax_rate)] += line.amount
    discount = discount_total(offer, sum(amounts.values()), rounding)
    for _ in range(MAX_DISCOUNT_ADJUSTMENTS):
        discounts = _discount_lines(invoice, charges, split_by_rate(discount, amounts))
        totals = invoice_totals(
            [
                LineInput(
                    quantity=Decimal(line.quantity),
                    unit_amount=Decimal(line.unit_amount),
                    tax_rate=Decimal(line.tax_rate),
                )
                for line in [*charges, *discounts]
            ],
            rounding,
        )
        if totals.total >= 0:
            break
        discount -= 1
    else:  # pragma: no cover - each step raises the total by at least one unit
        raise RuntimeError(f"cannot keep invoice {invoice.id} at a total of zero")

    all_lines = [*charges, *discounts]
    for line, computed in zip(all_lines, totals.lines, strict=True):
        line.amount = computed.amount
        line.tax_amount = computed.tax_amount
    for line, description in zip(
        discounts, _descriptions(code, offer, list(discounts)), strict=True
    ):
        line.description = description
    invoice.subtotal = totals.subtotal
    invoice.tax_total = totals.tax_total
    invoice.total = totals.total
    session.add_all(discounts)
    return all_lines, discount


def _discount_lines(
    invoice: Invoice, charges: Sequence[InvoiceLine], shares: dict[Decimal, int]
) -> list[InvoiceLine]:
    position = max((line.position for line in charges), default=0)
    created = []
    for rate in sorted(shares, reverse=True):
        position += 1
        created.append(
            InvoiceLine(
                id=ids.new_uuid(),
                workspace_id=invoice.workspace_id,
                invoice_id=invoice.id,
                position=position,
                description="",
                quantity=Decimal(1),
                unit_amount=Decimal(-shares[rate]),
                tax_rate=rate,
                amount=-shares[rate],
                tax_amount=0,
            )
        )
    return created


def _descriptions(code: str, offer: Offer, lines: list[InvoiceLine]) -> list[str]:
    label = f"Offer {code}"
    if offer.percent_off is not None:
        label = f"{label} ({money.format_decimal(offer.percent_off)}% off)"
    if len(lines) == 1:
        return [label]
    return [f"{label}, {_rate_text(Decimal(line.tax_rate))}% tax" for line in lines]


async def applied_redemption(
    session: AsyncSession, invoice_id: uuid.UUID, *, for_update: bool = False
) -> OfferRedemption | None:
    statement = select(OfferRedemption).where(
        OfferRedemption.invoice_id == invoice_id,
        OfferRedemption.status == "applied",
    )
    if for_update:
        statement = statement.with_for_update()
    return await session.scalar(statement)


async def reprice_invoice(
    session: AsyncSession, invoice: Invoice, lines: list[InvoiceLine]
) -> list[InvoiceLine]:
    """Recompute the offer discount of a draft whose lines, rounding or currency changed.

    Called by ``InvoiceService.update`` with the invoice locked. An amount offer in
    another currency than the invoice's new one raises ``OfferCurrencyMismatch``.
    """
    redemption = await applied_redemption(session, invoice.id, for_update=True)
    if redemption is None:
        return lines
    offer = await session.get_one(Offer, redemption.offer_id)
    code = await session.get_one(
        OfferCode, redemption.offer_code_id, with_for_update=True
    )
    if offer.currency is not None and offer.currency != invoice.currency:
        raise OfferCurrencyMismatch(
            f"Invoice {ids.encode('invoice', invoice.id)} carries offer code "
            f"{code.code}, whose discount is in {offer.currency}. Keep the invoice "
            f"in {offer.currency}, or create a new draft in {invoice.currency}.",
            currency=offer.currency,
        )

    lines, discount = await apply_discount(session, invoice, lines, offer, code.code)
    redemption.discount_amount = discount
    redemption.currency = invoice.currency
    if code.invoice_id == invoice.id:
        code.discount_amount = discount
        code.currency = invoice.currency
    await session.flush()
    log.info(
        "offer_code.repriced",
        offer_code_id=str(code.id),
        invoice_id=str(invoice.id),
        discount_amount=discount,
    )
    return lines


async def release_invoice(
    session: AsyncSession, invoice: Invoice, *, actor: str | None
) -> None:
    """Release the code redeemed on an invoice that was voided, so it can be used again.

    The redemption is kept as ``released``. The code returns to ``issued``, or to
    ``void`` when its offer was archived meanwhile. A code of an offer that is not
    single use may still have redemptions on other invoices, and then names the
    latest of them instead.
    """
    redemption = await applied_redemption(session, invoice.id, for_update=True)
    if redemption is None:
        return
    code = await session.get_one(
        OfferCode, redemption.offer_code_id, with_for_update=True
    )
    now = utcnow()
    redemption.status = "released"
    redemption.released_at = now
    await session.flush()

    latest = await session.scalar(
        select(OfferRedemption)
        .where(
            OfferRedemption.offer_code_id == code.id,
            OfferRedemption.status == "applied",
        )
        .order_by(OfferRedemption.redeemed_at.desc())
        .limit(1)
    )
    if latest is None:
        offer = await session.get_one(Offer, code.offer_id)
        code.status = "issued" if offer.status == "active" else "void"
        code.redeemed_at = None
        code.invoice_id = None
        code.discount_amount = None
        code.currency = None
    else:
        code.redeemed_at = latest.redeemed_at
        code.invoice_id = latest.invoice_id
        code.discount_amount = latest.discount_amount
        code.currency = latest.currency
    await session.flush()

    await emit(
        session,
        workspace_id=code.workspace_id,
        type="offer_code.released",
        object_type="offer_code",
        object_id=code.id,
        data=code_data(code),
        actor=actor,
    )
    log.info(
        "offer_code.released",
        offer_code_id=str(code.id),
        invoice_id=str(invoice.id),
    )
