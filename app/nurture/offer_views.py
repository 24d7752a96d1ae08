"""Shaping offer and offer code rows into their API representations and event data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core import money
from app.core.clock import utcnow
from app.models import Offer, OfferCode
from app.nurture.offer_schemas import Offer as OfferSchema
from app.nurture.offer_schemas import OfferCode as OfferCodeSchema
from app.nurture.offer_schemas import OfferStats


def offer_view(offer: Offer, stats: OfferStats | None = None) -> OfferSchema:
    return OfferSchema(
        id=offer.id,
        name=offer.name,
        status=offer.status,
        discount_kind=offer.discount_kind,
        percent_off=(
            money.format_decimal(offer.percent_off)
            if offer.percent_off is not None
            else None
        ),
        amount_off=offer.amount_off,
        currency=offer.currency,
        expires_at=offer.expires_at,
        valid_for_days=offer.valid_for_days,
        single_use=offer.single_use,
        max_redemptions=offer.max_redemptions,
        code_prefix=offer.code_prefix,
        stats=stats,
        archived_at=offer.archived_at,
        version=offer.version,
        created_at=offer.created_at,
        updated_at=offer.updated_at,
    )


def offer_data(offer: Offer) -> dict[str, Any]:
    return offer_view(offer).model_dump(mode="json", exclude={"stats"})


def code_status(code: OfferCode, now: datetime) -> str:
    """Return the stored status, or ``expired`` for an issued code past its expiry."""
    if code.status == "issued" and code.expires_at is not None:
        if code.expires_at <= now:
            return "expired"
    return code.status


def code_view(code: OfferCode, now: datetime | None = None) -> OfferCodeSchema:
    return OfferCodeSchema(
        id=code.id,
        offer_id=code.offer_id,
        lead_id=code.lead_id,
        enrollment_id=code.enrollment_id,
        code=code.code,
        status=code_status(code, now or utcnow()),
        issued_at=code.issued_at,
        expires_at=code.expires_at,
        redeemed_at=code.redeemed_at,
        invoice_id=code.invoice_id,
        discount_amount=code.discount_amount,
        currency=code.currency,
    )


def code_data(code: OfferCode) -> dict[str, Any]:
    return code_view(code).model_dump(mode="json")


def format_discount(offer: Offer) -> str:
    """Write the discount for an email: ``15%``, ``25.00 EUR`` or ``1000 JPY``."""
    if offer.percent_off is not None:
        return f"{money.format_decimal(offer.percent_off)}%"
    assert offer.amount_off is not None and offer.currency is not None
    major = money.from_minor(offer.amount_off, offer.currency)
    places = money.exponent(offer.currency)
    return f"{major:.{places}f} {offer.currency}"
