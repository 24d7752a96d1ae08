"""Erasing a lead's personal data, and exporting everything stored about a lead.

Erasure keeps the row, its status, source, owner, timestamps and ids, so funnel
figures still count it. The normalized email becomes a tombstone unique to the lead,
which keeps the partial unique index of open emails valid without naming anyone.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.lifecycle import erase_activities, export_activities
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.events import emit
from app.leads.attribution_lifecycle import (
    erase_touches,
    export_consents,
    export_touches,
)
from app.leads.privacy_rows import row_data
from app.leads.scoring import lead_scoring
from app.leads.scoring_lifecycle import erase_engagements, export_engagements
from app.leads.serialize import lead_data
from app.leads.service import lead_service
from app.models import Enrollment, Event, Lead, StepRun
from app.nurture.email_event_lifecycle import erase_email_events, export_email_events

log = structlog.get_logger(__name__)

# Columns of a lead that describe the person. Erasure sets them to None.
PERSONAL_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "phone_normalized",
    "company_domain",
    "timezone",
    "notes",
    "status_reason",
)
TOMBSTONE_DOMAIN = "erased.invalid"

# Rows of other tables that hold personal data about a lead: a table that stores some
# adds one function that removes it.
Eraser = Callable[[AsyncSession, Lead], Awaitable[None]]
ERASERS: tuple[Eraser, ...] = (
    erase_touches,
    erase_activities,
    erase_engagements,
    erase_email_events,
)


def tombstone_email(lead_id: uuid.UUID) -> str:
    """Return the address an erased lead keeps: unique, and in a reserved domain."""
    return f"erased-{lead_id.hex}@{TOMBSTONE_DOMAIN}"


def scrub(data: dict[str, Any], erased: dict[str, Any]) -> dict[str, Any]:
    """Replace the personal values of a lead's event data with the erased ones."""
    scrubbed = dict(data)
    for name in (*PERSONAL_FIELDS, "email", "email_normalized", "tags"):
        if name in scrubbed:
            scrubbed[name] = erased.get(name)
    if isinstance(scrubbed.get("attributes"), dict):
        scrubbed["attributes"] = dict.fromkeys(scrubbed["attributes"])
    return scrubbed


def without_personal_data(data: dict[str, Any], lead_id: uuid.UUID) -> dict[str, Any]:
    """Return a lead's event data with its personal values erased, as an erased lead
    ``lead_id`` has them.

    Use it for copies that erasure cannot find because they name another object, such
    as a test event's data.
    """
    tombstone = tombstone_email(lead_id)
    erased = {"email": tombstone, "email_normalized": tombstone, "tags": []}
    return scrub(data, erased)


async def erase_lead(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    *,
    if_match: str | None,
) -> Lead:
    """Erase the personal data of a lead and of its earlier events.

    Erasing an erased lead changes nothing and emits nothing.
    """
    # NOTE: copies outside the lead's own row and events stay: the customer and contact
    # of a conversion, the email suppression of an unsubscribe, SMTP error texts on
    # step runs, and stored idempotent responses until their keys expire.
    lead = await lead_service.get(
        session, principal.workspace_id, lead_id, for_update=True
    )
    check_if_match(if_match, lead.version)
    if lead.erased_at is not None:
        return lead

    tombstone = tombstone_email(lead.id)
    lead.email = tombstone
    lead.email_normalized = tombstone
    for name in PERSONAL_FIELDS:
        setattr(lead, name, None)
    lead.attributes = dict.fromkeys(lead.attributes)
    lead.tags = []
    lead.erased_at = utcnow()
    lead.erased_by = principal.actor
    for eraser in ERASERS:
        await eraser(session, lead)
    await session.flush()
    await session.refresh(lead)
    erased = lead_data(lead)

    events = await session.scalars(
        select(Event)
        .where(Event.workspace_id == lead.workspace_id, Event.object_id == lead.id)
        .with_for_update()
    )
    for event in events:
        event.data = scrub(event.data, erased)
    await emit(
        session,
        workspace_id=lead.workspace_id,
        type="lead.erased",
        object_type="lead",
        object_id=lead.id,
        data=erased,
        actor=principal.actor,
    )
    # Rules on the erased fields and attributes no longer count.
    await lead_scoring.score_lead(session, lead, principal.actor)
    log.info("lead.erased", lead_id=str(lead.id))

    # The leads merged into this one describe the same person.
    merged = (
        await session.scalars(
            select(Lead.id).where(
                Lead.workspace_id == lead.workspace_id,
                Lead.merged_into_id == lead.id,
                Lead.erased_at.is_(None),
            )
        )
    ).all()
    for merged_id in merged:
        await erase_lead(session, principal, merged_id, if_match=None)
    return lead


async def _export_lead(session: AsyncSession, lead: Lead) -> Any:
    return row_data(lead)


async def _export_events(session: AsyncSession, lead: Lead) -> Any:
    rows = await session.scalars(
        select(Event)
        .where(Event.workspace_id == lead.workspace_id, Event.object_id == lead.id)
        .order_by(Event.sequence)
    )
    return [row_data(row) for row in rows]


async def _export_enrollments(session: AsyncSession, lead: Lead) -> Any:
    enrollments = (
        await session.scalars(
            select(Enrollment)
            .where(
                Enrollment.workspace_id == lead.workspace_id,
                Enrollment.lead_id == lead.id,
            )
            .order_by(Enrollment.id)
        )
    ).all()
    runs = (
        await session.scalars(
            select(StepRun)
            .where(StepRun.enrollment_id.in_([row.id for row in enrollments]))
            .order_by(StepRun.id)
        )
    ).all()
    return [
        {
            **row_data(enrollment),
            "step_runs": [
                row_data(run) for run in runs if run.enrollment_id == enrollment.id
            ],
        }
        for enrollment in enrollments
    ]


# One exporter per section of the export: a table that stores data about a lead adds
# one (name, function) pair.
Exporter = Callable[[AsyncSession, Lead], Awaitable[Any]]
EXPORTERS: tuple[tuple[str, Exporter], ...] = (
    ("lead", _export_lead),
    ("events", _export_events),
    ("enrollments", _export_enrollments),
    ("touches", export_touches),
    ("consents", export_consents),
    ("engagements", export_engagements),
    ("activities", export_activities),
    ("email_events", export_email_events),
)


async def export_lead(session: AsyncSession, lead: Lead) -> dict[str, Any]:
    """Collect every stored datum about ``lead``, section by section."""
    return {name: await exporter(session, lead) for name, exporter in EXPORTERS}
