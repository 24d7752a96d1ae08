"""The arq job that runs an enrollment's due step, and its job ids."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.db import defer_job
from app.models import Enrollment

STEP_JOB = "run_enrollment_step"


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def scheduled_job_id(enrollment_id: uuid.UUID, position: int, due: datetime) -> str:
    """Name the job that runs step ``position`` at ``due``.

    A new due time (a retry, a resume after the time passed) gives a new id, so arq,
    which keeps a finished job's id for ``keep_result`` seconds, never drops it as a
    duplicate of the previous run.
    """
    return f"enrollment-step:{ids.encode('enrollment', enrollment_id)}:{position}:{_millis(due)}"


def sweep_job_id(enrollment_id: uuid.UUID, position: int, attempts: int) -> str:
    """Name the job a sweep queues for step ``position`` after ``attempts`` attempts.

    Every sweep that finds the step in the same state queues the same id, so arq drops
    the job while an earlier one is still queued, or for ``keep_result`` seconds after
    it finished. A worker that died mid-step counted an attempt, which gives its
    retry a new id.
    """
    return (
        f"enrollment-step:{ids.encode('enrollment', enrollment_id)}:{position}:"
        f"sweep:{attempts}"
    )


def defer_step(session: AsyncSession, enrollment: Enrollment) -> None:
    """Queue the job of the enrollment's next step for its due time, after commit."""
    if enrollment.status != "active" or enrollment.next_run_at is None:
        return
    defer_job(
        session,
        STEP_JOB,
        str(enrollment.id),
        job_id=scheduled_job_id(
            enrollment.id, enrollment.next_position, enrollment.next_run_at
        ),
        _defer_until=enrollment.next_run_at,
    )
