"""Field survivorship: which values a lead keeps when another lead's values join it."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal
from app.core.errors import Conflict
from app.core.events import emit
from app.leads import assignment
from app.leads.attribution import record_touch
from app.leads.attribution_schemas import LeadAttribution
from app.leads.repository import LeadRepository
from app.leads.scoring import lead_scoring
from app.leads.serialize import lead_data
from app.models import Lead
from app.models.lead import OPEN_LEAD_STATUSES
from app.users.repository import UserRepository

log = structlog.get_logger(__name__)

# Plain fields that merge one by one. phone_normalized goes with phone.
MERGED_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "title",
    "company_domain",
    "timezone",
    "owner_id",
    "notes",
)


async def drop_inactive_owner(
    session: AsyncSession, lead: Lead, previous: uuid.UUID | None
) -> None:
    """Undo an owner a merge gave ``lead`` when that user is not active any more."""
    if lead.owner_id == previous or lead.owner_id is None:
        return
    # No autoflush: the merged values go out in one update, after this check.
    with session.no_autoflush:
        user = await UserRepository.from_session(session).get(
            lead.workspace_id, lead.owner_id
        )
    if user is None or not user.active:
        lead.owner_id = previous


async def audit_owner(
    session: AsyncSession, principal: Principal, lead: Lead, previous: uuid.UUID | None
) -> None:
    """Audit an owner a merge gave ``lead``; call it after the lead's own event."""
    if lead.owner_id != previous:
        await assignment.record_change(
            session, principal, lead, previous, assignment.Decision(lead.owner_id)
        )


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def absorb(target: Lead, source: dict[str, Any], *, source_wins: bool) -> None:
    """Copy ``source`` values into ``target`` where they survive.

    An empty value never replaces anything. Between two non-empty values the source's
    wins only when ``source_wins``. Attributes merge key by key by the same rule.
    """

    def survives(current: Any, incoming: Any) -> bool:
        return not is_empty(incoming) and (source_wins or is_empty(current))

    for name in MERGED_FIELDS:
        if survives(getattr(target, name), source.get(name)):
            setattr(target, name, source[name])
    if survives(target.phone, source.get("phone")):
        target.phone = source["phone"]
        target.phone_normalized = source.get("phone_normalized")

    incoming_tags = [tag for tag in source.get("tags") or () if tag not in target.tags]
    if incoming_tags:
        target.tags = [*target.tags, *incoming_tags]

    attributes = dict(target.attributes)
    for key, value in (source.get("attributes") or {}).items():
        if survives(attributes.get(key), value):
            attributes[key] = value
    if attributes != target.attributes:
        target.attributes = attributes


def lead_values(lead: Lead) -> dict[str, Any]:
    """Return the fields of ``lead`` that ``absorb`` reads."""
    names = (*MERGED_FIELDS, "phone", "phone_normalized", "attributes", "tags")
    return {name: getattr(lead, name) for name in names}


async def merge_capture(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    values: dict[str, Any],
    *,
    attribution: LeadAttribution | None = None,
) -> Lead:
    """Update the open lead ``lead_id`` with the non-empty ``values`` of a create.

    The capture is recorded as a touch of that lead, as every capture is.
    """
    repository = LeadRepository.from_session(session)
    lead = await repository.get(principal.workspace_id, lead_id, for_update=True)
    if (
        lead is None
        or lead.status not in OPEN_LEAD_STATUSES
        or lead.email_normalized != values["email_normalized"]
    ):
        # The lead changed between the lookup and the lock.
        raise Conflict(
            "The request conflicts with data written meanwhile. Fetch the object "
            "again and retry."
        )

    # The touch is written first: its insert flushes, and the lead's changes then
    # go out in one update with one version.
    await record_touch(
        session, lead, channel=values.get("source") or "api", attribution=attribution
    )
    previous_owner = lead.owner_id
    absorb(lead, values, source_wins=True)
    await drop_inactive_owner(session, lead, previous_owner)
    if not session.is_modified(lead):
        return lead
    await session.flush()
    await session.refresh(lead)

    await emit(
        session,
        workspace_id=lead.workspace_id,
        type="lead.updated",
        object_type="lead",
        object_id=lead.id,
        data=lead_data(lead),
        actor=principal.actor,
    )
    await audit_owner(session, principal, lead, previous_owner)
    await lead_scoring.score_lead(session, lead, principal.actor)
    log.info("lead.capture_merged", lead_id=str(lead.id))
    return lead
