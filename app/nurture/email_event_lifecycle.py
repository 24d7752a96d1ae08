"""The email events of a lead through a merge, its data export and its erasure."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.leads.privacy_rows import row_data
from app.models import EmailEvent, Lead


async def move_email_events(
    session: AsyncSession, duplicate: Lead, survivor: Lead, actor: str | None
) -> None:
    """Give the survivor the email events matched to the duplicate."""
    await session.execute(
        update(EmailEvent)
        .where(
            EmailEvent.workspace_id == duplicate.workspace_id,
            EmailEvent.lead_id == duplicate.id,
        )
        .values(lead_id=survivor.id)
    )


async def erase_email_events(session: AsyncSession, lead: Lead) -> None:
    """Remove the address and metadata of the email events matched to the lead."""
    await session.execute(
        update(EmailEvent)
        .where(
            EmailEvent.workspace_id == lead.workspace_id, EmailEvent.lead_id == lead.id
        )
        .values(email=None, details={})
    )


async def export_email_events(session: AsyncSession, lead: Lead) -> Any:
    rows = await session.scalars(
        select(EmailEvent)
        .where(
            EmailEvent.workspace_id == lead.workspace_id, EmailEvent.lead_id == lead.id
        )
        .order_by(EmailEvent.occurred_at, EmailEvent.id)
    )
    return [row_data(row) for row in rows]
