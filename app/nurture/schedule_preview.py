"""The schedule preview of an enrolment: when each remaining step will be due."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.nurture import schedule
from app.nurture.repository import SequenceRepository
from app.nurture.schedule_schemas import EnrollmentSchedule, ScheduledStep
from app.nurture.service import enrollment_service
from app.nurture.states import RUNNING_STATUSES


async def preview_schedule(
    session: AsyncSession, workspace_id: uuid.UUID, enrollment_id: uuid.UUID
) -> EnrollmentSchedule:
    """Compute the due time of every step still to run, each after the one before.

    The first is ``next_run_at``, or for a paused enrolment the time a resume now
    would give it, moved into the send window as the rules are now. Each later one
    assumes the step before it runs when due.
    """
    enrollment = await enrollment_service.get_row(session, workspace_id, enrollment_id)
    if enrollment.status not in RUNNING_STATUSES or enrollment.next_run_at is None:
        return EnrollmentSchedule(enrollment_id=enrollment.id, steps=[])
    steps = await SequenceRepository.from_session(session).version_steps(
        enrollment.sequence_id, enrollment.sequence_version
    )
    remaining = [step for step in steps if step.position >= enrollment.next_position]
    rules = await schedule.load_rules(
        session, enrollment.workspace_id, enrollment.sequence_id, enrollment.lead_id
    )

    due: datetime = enrollment.next_run_at
    if enrollment.status == "paused":
        due = await schedule.resume_at(session, enrollment, utcnow())
    # The claim moves a step that the rules changed since into the window, and so
    # does the preview.
    try:
        due = schedule.next_sendable(due, rules)
    except schedule.NoSendableTime:
        pass
    scheduled = []
    for index, step in enumerate(remaining):
        if index > 0:
            due = schedule.due_with_fallback(due, step, rules)
        local = due.astimezone(rules.zone)
        scheduled.append(
            ScheduledStep(
                position=step.position,
                step_id=step.id,
                kind=step.kind,
                due_at=due,
                local_due_at=local.isoformat(),
                timezone=rules.zone.key,
                timezone_source=rules.zone_source,
            )
        )
    return EnrollmentSchedule(enrollment_id=enrollment.id, steps=scheduled)
