"""Activities of a lead through a merge, an erasure and a data export."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.leads.privacy_rows import blank_event_fields, row_data
from app.models import Activity, Lead


async def move_activities(
    session: AsyncSession, duplicate: Lead, survivor: Lead, actor: str | None
) -> None:
    """Link the duplicate's activities to the survivor; the callers lock both leads."""
    await session.execute(
        update(Activity)
        .where(
            Activity.workspace_id == duplicate.workspace_id,
            Activity.lead_id == duplicate.id,
        )
        .values(lead_id=survivor.id)
    )


async def erase_activities(session: AsyncSession, lead: Lead) -> None:
    """Remove the subject, body and outcome of the activities that only the lead has.

    Kind, times and duration stay for activity figures.
    """
    # NOTE: an activity also linked to a contact, customer or opportunity keeps its
    # text, because it belongs to that record as well.
    erased = (
        await session.scalars(
            update(Activity)
            .where(
                Activity.workspace_id == lead.workspace_id,
                Activity.lead_id == lead.id,
                Activity.contact_id.is_(None),
                Activity.customer_id.is_(None),
                Activity.opportunity_id.is_(None),
            )
            .values(subject=None, body=None, outcome=None)
            .returning(Activity.id)
        )
    ).all()
    await blank_event_fields(
        session,
        lead.workspace_id,
        erased,
        {"subject": None, "body": None, "outcome": None},
    )


async def export_activities(session: AsyncSession, lead: Lead) -> Any:
    rows = await session.scalars(
        select(Activity)
        .where(Activity.workspace_id == lead.workspace_id, Activity.lead_id == lead.id)
        .order_by(Activity.occurred_at, Activity.id)
    )
    return [row_data(row) for row in rows]
