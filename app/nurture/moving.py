"""Moving a merged lead's enrollments to the lead it was merged into."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Enrollment, Lead
from app.nurture.repository import EnrollmentRepository
from app.nurture.service import exit_enrollment, publish
from app.nurture.states import RUNNING_STATUSES


async def move_enrollments(
    session: AsyncSession, duplicate: Lead, survivor: Lead, actor: str | None
) -> None:
    """Give the survivor every enrollment of the duplicate; the callers lock both leads.

    A running enrollment in a sequence the survivor is already running exits with
    reason ``merged`` and stays with the duplicate, because a lead runs a sequence at
    most once at a time. Every moved enrollment emits ``enrollment.moved``.
    """
    repository = EnrollmentRepository.from_session(session)
    running = await repository.running_for_lead(survivor.workspace_id, survivor.id)
    running_sequences = {enrollment.sequence_id for enrollment in running}
    enrollments = (
        await session.scalars(
            select(Enrollment)
            .where(
                Enrollment.workspace_id == duplicate.workspace_id,
                Enrollment.lead_id == duplicate.id,
            )
            .order_by(Enrollment.id)
            .with_for_update()
        )
    ).all()

    for enrollment in enrollments:
        if (
            enrollment.status in RUNNING_STATUSES
            and enrollment.sequence_id in running_sequences
        ):
            await exit_enrollment(session, enrollment, "merged", actor)
            continue
        enrollment.lead_id = survivor.id
        await session.flush()
        await session.refresh(enrollment)
        await publish(session, enrollment, "enrollment.moved", actor)
