"""Merging a duplicate lead into the lead that survives.

Rows that belong to the duplicate move to the survivor through ``MOVERS``: a table
that references leads adds one mover function to the tuple.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.lifecycle import move_activities
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.leads.attribution_lifecycle import move_touches
from app.leads.errors import LeadNotFound, LeadNotMergeable
from app.leads.scoring_lifecycle import move_engagements
from app.leads.serialize import lead_data
from app.leads.survivorship import (
    absorb,
    audit_owner,
    drop_inactive_owner,
    lead_values,
)
from app.models import Lead
from app.nurture.email_event_lifecycle import move_email_events
from app.nurture.moving import move_enrollments

log = structlog.get_logger(__name__)

# A mover gets the session, the duplicate, the survivor and the actor. Both leads are
# locked. It moves or closes the duplicate's rows and emits their events.
Mover = Callable[[AsyncSession, Lead, Lead, str | None], Awaitable[None]]

MOVERS: tuple[Mover, ...] = (
    move_enrollments,
    move_touches,
    move_engagements,
    move_activities,
    move_email_events,
)

UNMERGEABLE_STATUSES = frozenset({"converted", "merged"})


async def lock_pair(
    session: AsyncSession, workspace_id: uuid.UUID, lead_ids: tuple[uuid.UUID, ...]
) -> dict[uuid.UUID, Lead]:
    """Lock the leads in id order, so two merges of the same pair cannot deadlock."""
    rows = await session.scalars(
        select(Lead)
        .where(Lead.workspace_id == workspace_id, Lead.id.in_(lead_ids))
        .order_by(Lead.id)
        .with_for_update()
    )
    return {lead.id: lead for lead in rows}


async def merge_leads(
    session: AsyncSession,
    principal: Principal,
    survivor_id: uuid.UUID,
    duplicate_id: uuid.UUID,
    *,
    if_match: str | None,
) -> Lead:
    """Merge the duplicate into the survivor and return the survivor."""
    if survivor_id == duplicate_id:
        raise InvalidInput(
            "A lead cannot be merged into itself. Send the id of another lead as "
            "duplicate_id.",
            errors=[FieldError("duplicate_id", "is the survivor itself", "same_lead")],
        )
    leads = await lock_pair(
        session, principal.workspace_id, tuple(sorted((survivor_id, duplicate_id)))
    )
    survivor = _found(leads, survivor_id)
    duplicate = _found(leads, duplicate_id)
    check_if_match(if_match, survivor.version)
    _check_mergeable(survivor, "survivor")
    _check_mergeable(duplicate, "duplicate")

    previous_owner = survivor.owner_id
    absorb(survivor, lead_values(duplicate), source_wins=False)
    await drop_inactive_owner(session, survivor, previous_owner)
    duplicate.status = "merged"
    duplicate.status_reason = None
    duplicate.status_changed_at = utcnow()
    duplicate.merged_into_id = survivor.id
    survivor_changed = session.is_modified(survivor)
    # The duplicate leaves the open statuses first, which frees its email.
    await session.flush()
    for mover in MOVERS:
        await mover(session, duplicate, survivor, principal.actor)
    survivor_changed = survivor_changed or session.is_modified(survivor)
    await session.flush()
    await session.refresh(duplicate)
    await session.refresh(survivor)

    await emit(
        session,
        workspace_id=duplicate.workspace_id,
        type="lead.merged",
        object_type="lead",
        object_id=duplicate.id,
        data=lead_data(duplicate),
        actor=principal.actor,
    )
    if survivor_changed:
        await emit(
            session,
            workspace_id=survivor.workspace_id,
            type="lead.updated",
            object_type="lead",
            object_id=survivor.id,
            data=lead_data(survivor),
            actor=principal.actor,
        )
    await audit_owner(session, principal, survivor, previous_owner)
    log.info("lead.merged", lead_id=str(duplicate.id), merged_into_id=str(survivor.id))
    return survivor


def _found(leads: dict[uuid.UUID, Lead], lead_id: uuid.UUID) -> Lead:
    lead = leads.get(lead_id)
    if lead is None:
        raise LeadNotFound(
            f"No lead with id {ids.encode('lead', lead_id)} exists in this workspace."
        )
    return lead


def _check_mergeable(lead: Lead, role: str) -> None:
    encoded = ids.encode("lead", lead.id)
    if lead.status in UNMERGEABLE_STATUSES:
        raise LeadNotMergeable(
            f"The {role} {encoded} is {lead.status}, and a {lead.status} lead cannot "
            "be merged. Merge open, disqualified or junk leads only.",
            lead_id=encoded,
            current_status=lead.status,
        )
    if lead.erased_at is not None:
        raise LeadNotMergeable(
            f"The {role} {encoded} was erased, so it has no personal data to merge. Merge leads that are not erased.",
            lead_id=encoded,
            current_status=lead.status,
        )
