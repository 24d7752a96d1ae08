"""Offer discounts on invoices, and the hooks billing calls when a draft changes.

A redeemed offer is an invoice-level discount with source ``offer_code``: a percent
of, or an amount capped at, what the lines come to after their own discounts and the
manual invoice discounts. ``app.billing.lines.recompute_invoice`` spreads it over the
lines in proportion to their amounts by the largest-remainder method before tax.
Each part of it is therefore taxed at the rate of what it discounts, and the parts
shown still add up to the total shown.

Invoices discounted before this model carry negative discount lines instead. Charge
lines never have a negative unit amount (the API rejects one), so those are exactly
the lines whose unit amount is below zero; redeeming or repricing replaces them.

This module imports no billing service, so ``app.billing.service`` can call it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

import structlog
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.lines import recompute_invoice
from app.core import ids, money
from app.core.clock import utcnow
from app.core.events import emit
from app.models import (
    Customer,
    Invoice,
    InvoiceLine,
    Lead,
    Offer,
    OfferCode,
    OfferRedemption,
)
from app.nurture.offer_errors import OfferCurrencyMismatch, OfferNotForCustomer
from app.nurture.offer_views import code_data

log = structlog.get_logger(__name__)


def is_discount_line(line: InvoiceLine) -> bool:
    return Decimal(line.unit_amount) < 0


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
    """Set ``offer`` as the invoice's offer-code discount and recompute its totals.

    The offer becomes the last invoice-level discount (source ``offer_code``), applied
    after the manual ones and spread over the lines pro rata before tax. Discount lines
    of the earlier model (negative unit amounts) are deleted. Returns the invoice's
    lines and the discount in minor units.
    """
    charges = [line for line in lines if not is_discount_line(line)]
    for line in lines:
        if is_discount_line(line):
            if inspect(line).persistent:
                await session.delete(line)
            else:
                session.expunge(line)
    await session.flush()

    entries = [
        entry
        for entry in invoice.discounts or []
        if entry.get("source") != "offer_code"
    ]
    entries.append(
        {
            "source": "offer_code",
            "offer_code": code,
            "percent_off": (
                money.format_decimal(offer.percent_off)
                if offer.percent_off is not None
                else None
            ),
            "amount_off": offer.amount_off if offer.percent_off is None else None,
            "amount": 0,
        }
    )
    invoice.discounts = entries
    recompute_invoice(invoice, charges)
    discount = int(invoice.discounts[-1]["amount"])
    return charges, discount


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


async def check_offer_customer(session: AsyncSession, invoice: Invoice) -> None:
    """Raise ``OfferNotForCustomer`` when a draft's offer is not for its new customer.

    Called by ``InvoiceService.update`` with the invoice locked, after its customer
    changed. The offer code stays only on an invoice of the customer converted from
    the lead the code was issued to, as redeeming requires.
    """
    redemption = await applied_redemption(session, invoice.id)
    if redemption is None:
        return
    code = await session.get_one(OfferCode, redemption.offer_code_id)
    customer = await session.get_one(Customer, invoice.customer_id)
    lead = await session.get_one(Lead, code.lead_id)
    if customer.source_lead_id == lead.id or lead.customer_id == customer.id:
        return
    raise OfferNotForCustomer(
        f"Invoice {ids.encode('invoice', invoice.id)} carries offer code {code.code}, "
        f"which was issued to lead {ids.encode('lead', lead.id)}, and customer "
        f"{ids.encode('customer', customer.id)} was not converted from that lead. "
        "Keep the invoice's customer, or create a new draft for the other customer.",
        lead_id=ids.encode("lead", lead.id),
    )


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
