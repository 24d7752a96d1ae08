"""Exit rules: the facts about a lead that end its running enrollments.

Each sequence lists in ``exit_rules`` the reasons it honours (all by default). The
code where a fact happens calls in here, in that fact's transaction. The facts are a
lead status change (``converted``, ``disqualified``), an opportunity created from the
lead, a paid invoice of the customer the lead was converted into, and a replied,
bounced or unsubscribed engagement. ``unsubscribed`` and ``bounced`` exit every
sequence whatever its rules, because the address must get no more mail.

Enrollment rows are locked in id order, as everywhere else, so two exits of one lead
cannot deadlock. The worker claims a step under the same row lock, so once an exit
commits no further step of the enrollment starts. A step already being sent still
finishes, and its result is recorded without moving the enrollment on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.events import emit
from app.leads.serialize import lead_data
from app.models import Enrollment, Lead
from app.models import Sequence as SequenceRow
from app.models.lead import OPEN_LEAD_STATUSES
from app.nurture.service import exit_enrollment, suppress_address
from app.nurture.states import ALWAYS_EXIT_REASONS, RUNNING_STATUSES

log = structlog.get_logger(__name__)

# The lead statuses that exit an enrollment when its sequence lists them.
STATUS_REASONS = {"converted": "converted", "disqualified": "disqualified"}
# The engagement types that end enrollments, and the exit reason each gives.
ENGAGEMENT_REASONS = {
    "replied": "replied",
    "email_bounced": "bounced",
    "unsubscribed": "unsubscribed",
}


async def exit_for(
    session: AsyncSession, lead: Lead, reason: str, actor: str | None
) -> Sequence[uuid.UUID]:
    """Exit every running enrollment of ``lead`` whose sequence honours ``reason``."""
    return await exit_lead(session, lead.workspace_id, lead.id, reason, actor)


def _running(workspace_id: uuid.UUID, lead_id: uuid.UUID, reason: str) -> Select[Any]:
    """Select the lead's running enrollments whose sequence honours ``reason``."""
    statement = (
        select(Enrollment)
        .join(SequenceRow, SequenceRow.id == Enrollment.sequence_id)
        .where(
            Enrollment.workspace_id == workspace_id,
            Enrollment.lead_id == lead_id,
            Enrollment.status.in_(RUNNING_STATUSES),
        )
        .order_by(Enrollment.id)
    )
    if reason not in ALWAYS_EXIT_REASONS:
        statement = statement.where(SequenceRow.exit_rules.contains([reason]))
    return statement


async def exits_due(
    session: AsyncSession, workspace_id: uuid.UUID, lead_id: uuid.UUID, reason: str
) -> Sequence[uuid.UUID]:
    """Return the ids of the enrollments ``exit_lead`` would exit, changing nothing."""
    statement = _running(workspace_id, lead_id, reason).with_only_columns(Enrollment.id)
    return (await session.scalars(statement)).all()


async def exit_lead(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    lead_id: uuid.UUID,
    reason: str,
    actor: str | None,
) -> Sequence[uuid.UUID]:
    """Exit the lead's running enrollments that honour ``reason``; return their ids."""
    statement = (
        _running(workspace_id, lead_id, reason)
        .with_for_update(of=Enrollment)
        .execution_options(populate_existing=True)
    )
    enrollments = (await session.scalars(statement)).all()

    for enrollment in enrollments:
        await exit_enrollment(session, enrollment, reason, actor)
    if enrollments:
        log.info(
            "enrollment.exit_rule_applied",
            lead_id=str(lead_id),
            exit_reason=reason,
            exited=len(enrollments),
        )
    return [enrollment.id for enrollment in enrollments]


async def exit_for_status(
    session: AsyncSession, lead: Lead, actor: str | None
) -> Sequence[uuid.UUID]:
    """Apply the exit rule of the lead's new status, if that status has one."""
    reason = STATUS_REASONS.get(lead.status)
    if reason is None:
        return []
    return await exit_for(session, lead, reason, actor)


async def exit_for_customer(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    customer_id: uuid.UUID,
    reason: str,
    actor: str | None,
) -> Sequence[uuid.UUID]:
    """Apply ``reason`` to every lead that was converted into the customer."""
    lead_ids = (
        await session.scalars(
            select(Lead.id)
            .where(Lead.workspace_id == workspace_id, Lead.customer_id == customer_id)
            .order_by(Lead.id)
        )
    ).all()
    exited: list[uuid.UUID] = []
    for lead_id in lead_ids:
        exited.extend(await exit_lead(session, workspace_id, lead_id, reason, actor))
    return exited


async def exit_for_engagement(
    session: AsyncSession,
    lead: Lead,
    engagement_type: str,
    enrollment_id: uuid.UUID | None,
    actor: str | None,
) -> Sequence[uuid.UUID]:
    """Apply the exit rule of a recorded engagement; the caller holds the lead's lock.

    A bounce or an unsubscribe also suppresses the address, as the unsubscribe link
    and a bounce from the mail server do, so no later enrollment mails it. The
    enrollments are locked before the suppression is inserted, in the order the
    worker uses when the mail server reports a bounce, so the two cannot deadlock.
    """
    reason = ENGAGEMENT_REASONS.get(engagement_type)
    if reason is None:
        return []
    exited = await exit_for(session, lead, reason, actor)
    if reason in ALWAYS_EXIT_REASONS:
        added = await suppress_address(session, lead, reason, enrollment_id)
        if added and reason == "unsubscribed":
            await emit(
                session,
                workspace_id=lead.workspace_id,
                type="lead.unsubscribed",
                object_type="lead",
                object_id=lead.id,
                data=lead_data(lead),
                actor=actor,
            )
        log.info(
            "lead.address_suppressed",
            lead_id=str(lead.id),
            suppression_reason=reason,
            repeated=not added,
        )
    return exited


def claim_exit_reason(
    lead: Lead, exit_rules: list[str], suppressed: bool
) -> str | None:
    """Return why the worker must exit an enrollment instead of running its step.

    ``exit_rules`` are the sequence's, and ``suppressed`` is true when the lead's
    address is suppressed or the lead unsubscribed.

    A safety net behind the triggers above, for facts recorded before the sequence
    was enrolled or by a path that does not call them. A converted or disqualified
    lead keeps running a sequence whose rules omit that status, while junk and merged
    leads always exit.
    """
    reason = STATUS_REASONS.get(lead.status)
    if reason is not None:
        if reason in exit_rules:
            return reason
    elif lead.status not in OPEN_LEAD_STATUSES:
        return "lead_closed"
    return "unsubscribed" if suppressed else None
