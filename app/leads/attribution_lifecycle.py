"""Touches and consents through a lead's merge, conversion, erasure and data export."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.leads.privacy_rows import row_data
from app.models import Lead, LeadConsent, LeadTouch


async def move_touches(
    session: AsyncSession, duplicate: Lead, survivor: Lead, actor: str | None
) -> None:
    """Give the survivor the duplicate's touches and consents; the callers lock both.

    The survivor's first and latest touch are then the earliest and latest of all its
    touches, so a merged duplicate that was captured first becomes the first touch.
    """
    for model in (LeadTouch, LeadConsent):
        await session.execute(
            update(model)
            .where(
                model.workspace_id == duplicate.workspace_id,
                model.lead_id == duplicate.id,
            )
            .values(lead_id=survivor.id)
        )
    ordered = (
        await session.scalars(
            select(LeadTouch.id)
            .where(
                LeadTouch.workspace_id == survivor.workspace_id,
                LeadTouch.lead_id == survivor.id,
            )
            .order_by(LeadTouch.occurred_at, LeadTouch.id)
        )
    ).all()
    if ordered:
        survivor.first_touch_id = ordered[0]
        survivor.last_touch_id = ordered[-1]


async def count_touches(session: AsyncSession, lead: Lead) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(LeadTouch)
            .where(
                LeadTouch.workspace_id == lead.workspace_id,
                LeadTouch.lead_id == lead.id,
            )
        )
    ) or 0


async def link_converted_touches(
    session: AsyncSession,
    lead: Lead,
    *,
    customer_id: uuid.UUID,
    contact_id: uuid.UUID,
) -> int:
    """Link the converted lead's touches to its customer and contact; return how many.

    The touches keep their lead, so attribution by lead and by campaign is unchanged,
    and the customer's source is readable without going through the lead.
    """
    result = await session.execute(
        update(LeadTouch)
        .where(
            LeadTouch.workspace_id == lead.workspace_id, LeadTouch.lead_id == lead.id
        )
        .values(customer_id=customer_id, contact_id=contact_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def erase_touches(session: AsyncSession, lead: Lead) -> None:
    """Remove what touches and consents hold about the person, keeping the channels.

    Landing pages and referrers may carry an address in their query strings. A
    consent's client address and user agent identify a device. Campaign, partner,
    channel and `utm_*` values stay, because attribution figures count them.
    """
    await session.execute(
        update(LeadTouch)
        .where(
            LeadTouch.workspace_id == lead.workspace_id, LeadTouch.lead_id == lead.id
        )
        .values(landing_page=None, referrer=None)
    )
    await session.execute(
        update(LeadConsent)
        .where(
            LeadConsent.workspace_id == lead.workspace_id,
            LeadConsent.lead_id == lead.id,
        )
        .values(ip_address=None, user_agent=None)
    )


async def export_touches(session: AsyncSession, lead: Lead) -> Any:
    rows = await session.scalars(
        select(LeadTouch)
        .where(
            LeadTouch.workspace_id == lead.workspace_id, LeadTouch.lead_id == lead.id
        )
        .order_by(LeadTouch.occurred_at, LeadTouch.id)
    )
    return [row_data(row) for row in rows]


async def export_consents(session: AsyncSession, lead: Lead) -> Any:
    rows = await session.scalars(
        select(LeadConsent)
        .where(
            LeadConsent.workspace_id == lead.workspace_id,
            LeadConsent.lead_id == lead.id,
        )
        .order_by(LeadConsent.given_at, LeadConsent.id)
    )
    return [row_data(row) for row in rows]
