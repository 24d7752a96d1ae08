"""Resuming a failed enrollment, which retries the step that failed.

The retry reuses the step's run row, and so its Message-ID, and sets its ``attempts``
back to 0. The step thus gets ``MAX_ATTEMPTS`` attempts again: a retry that kept the
count would fail at its first transient error, because the run had already used them
all. The row keeps the last error until the retry records its own result.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Enrollment
from app.nurture.errors import EnrollmentExists
from app.nurture.repository import EnrollmentRepository, SequenceRepository

log = structlog.get_logger(__name__)


async def prepare_retry(
    session: AsyncSession, enrollment: Enrollment
) -> dict[str, Any]:
    """Reset the failed step of a locked, failed enrollment for its retry.

    Return the enrollment fields that resuming also changes; return none for an
    enrollment that did not fail.
    """
    if enrollment.status != "failed":
        return {}
    repository = EnrollmentRepository.from_session(session)
    running = await repository.get_running(enrollment.sequence_id, enrollment.lead_id)
    if running is not None:
        running_id = ids.encode("enrollment", running.id)
        raise EnrollmentExists(
            f"The lead was enrolled in this sequence again as {running_id}, which is "
            f"{running.status}, so this failed enrollment cannot resume. Exit "
            f"{running_id} first, or keep it and leave this one failed.",
            existing_id=running_id,
            existing_status=running.status,
        )

    step = await SequenceRepository.from_session(session).step_at(
        enrollment.sequence_id, enrollment.sequence_version, enrollment.next_position
    )
    if step is not None:
        run = await repository.get_step_run(enrollment.id, step.id, for_update=True)
        if run is not None and run.status == "failed":
            run.attempts = 0
            run.claimed_until = None
            await session.flush()
    log.info(
        "enrollment.retry_prepared",
        enrollment_id=str(enrollment.id),
        position=enrollment.next_position,
    )
    return {"failed_at": None, "claimed_until": None}
