"""Activities of a lead through a merge, a conversion, an erasure and a data export."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.schemas import Activity as ActivitySchema
from app.core.events import emit
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


def activity_data(activity: Activity) -> dict[str, Any]:
    """Serialize an activity as the API shows it, for events."""
    return ActivitySchema.model_validate(activity).model_dump(mode="json")


def _conversion_targets(lead: Lead) -> Select[Activity]:
    # An activity that already names a customer belongs to that customer's timeline,
    # and stays there.
    return (
        select(Activity)
        .where(
            Activity.workspace_id == lead.workspace_id,
            Activity.lead_id == lead.id,
            Activity.customer_id.is_(None),
        )
        .order_by(Activity.id)
    )


async def count_conversion_activities(session: AsyncSession, lead: Lead) -> int:
    """Count the activities ``link_converted_activities`` would link, changing nothing."""
    statement = _conversion_targets(lead).with_only_columns(func.count(Activity.id))
    return (await session.scalar(statement.order_by(None))) or 0


async def link_converted_activities(
    session: AsyncSession,
    lead: Lead,
    *,
    customer_id: uuid.UUID,
    contact_id: uuid.UUID,
    opportunity_id: uuid.UUID | None,
    actor: str | None,
) -> list[Activity]:
    """Show the converted lead's activities on its customer's and contact's timelines.

    The activities keep their lead, so the lead's timeline stays whole. Open tasks
    move onto the opportunity too, because the work they plan continues there. Each
    linked activity emits ``activity.updated``; the caller locks the lead.
    """
    activities = (
        await session.scalars(
            _conversion_targets(lead)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    for activity in activities:
        activity.customer_id = customer_id
        if activity.contact_id is None:
            activity.contact_id = contact_id
        is_open_task = activity.kind == "task" and activity.completed_at is None
        if opportunity_id is not None and is_open_task:
            if activity.opportunity_id is None:
                activity.opportunity_id = opportunity_id
    if not activities:
        return []
    await session.flush()
    for activity in activities:
        await session.refresh(activity)
        await emit(
            session,
            workspace_id=activity.workspace_id,
            type="activity.updated",
            object_type="activity",
            object_id=activity.id,
            data=activity_data(activity),
            actor=actor,
        )
    return list(activities)


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
