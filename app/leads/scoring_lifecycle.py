"""Engagements of a lead through a merge and its data export."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.leads.privacy_rows import blank_event_fields, row_data
from app.leads.scoring import lead_scoring
from app.models import Lead, LeadEngagement


async def move_engagements(
    session: AsyncSession, duplicate: Lead, survivor: Lead, actor: str | None
) -> None:
    """Give the survivor the duplicate's engagements and rescore it with them.

    The callers lock both leads. A merged lead is not open, so its own score stays as
    it was when it was merged.
    """
    await session.execute(
        update(LeadEngagement)
        .where(
            LeadEngagement.workspace_id == duplicate.workspace_id,
            LeadEngagement.lead_id == duplicate.id,
        )
        .values(lead_id=survivor.id)
    )
    await lead_scoring.score_lead(session, survivor, actor)


async def erase_engagements(session: AsyncSession, lead: Lead) -> None:
    """Remove the metadata of the lead's engagements, which may hold addresses."""
    erased = (
        await session.scalars(
            update(LeadEngagement)
            .where(
                LeadEngagement.workspace_id == lead.workspace_id,
                LeadEngagement.lead_id == lead.id,
            )
            .values(details={})
            .returning(LeadEngagement.id)
        )
    ).all()
    await blank_event_fields(session, lead.workspace_id, erased, {"metadata": {}})


async def export_engagements(session: AsyncSession, lead: Lead) -> Any:
    rows = await session.scalars(
        select(LeadEngagement)
        .where(
            LeadEngagement.workspace_id == lead.workspace_id,
            LeadEngagement.lead_id == lead.id,
        )
        .order_by(LeadEngagement.occurred_at, LeadEngagement.id)
    )
    return [row_data(row) for row in rows]
