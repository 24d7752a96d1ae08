"""The per-lead frequency cap: at most N marketing emails per rolling M hours.

The cap counts a lead's email step runs across all sequences of the workspace: those
sent within the window and those being sent now (``running``), so two enrolments of
one lead that are due at once cannot both pass it. The count runs under a
transaction-level advisory lock on the lead, which the claim transaction holds until it
commits the new ``running`` row, so the second claim waits and then counts the first.

A step that the cap stops is postponed to when the oldest counted email leaves the
window; it is neither skipped nor sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Enrollment, SequenceStep, StepRun

log = structlog.get_logger(__name__)

# The first key of the two-key advisory lock, so these locks never collide with
# another feature's; the second key is a hash of the lead id.
LOCK_NAMESPACE = 0x4E55_5254  # "NURT"
DEFAULT_WINDOW_HOURS = 24


@dataclass(frozen=True)
class Cap:
    """A workspace's cap: ``count`` emails within ``window``."""

    count: int
    window: timedelta


def cap_from(count: int | None, window_hours: int | None) -> Cap | None:
    """Build the cap from the stored settings; None when ``count`` is null."""
    if count is None:
        return None
    hours = DEFAULT_WINDOW_HOURS if window_hours is None else window_hours
    return Cap(count, timedelta(hours=hours))


async def lock_lead(session: AsyncSession, lead_id: uuid.UUID) -> None:
    """Take the lead's cap lock until the transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:lead))"),
        {"namespace": LOCK_NAMESPACE, "lead": str(lead_id)},
    )


async def counted_emails(
    session: AsyncSession, lead_id: uuid.UUID, since: datetime, limit: int
) -> list[datetime]:
    """Return when each email the cap counts was sent or started, newest first.

    Counts at most ``limit`` of them, which is all the cap needs.
    """
    moment = func.coalesce(StepRun.finished_at, StepRun.started_at)
    rows = await session.scalars(
        select(moment)
        .join(Enrollment, Enrollment.id == StepRun.enrollment_id)
        .join(SequenceStep, SequenceStep.id == StepRun.step_id)
        .where(
            Enrollment.lead_id == lead_id,
            SequenceStep.kind == "email",
            StepRun.status.in_(("sent", "running")),
            moment > since,
        )
        .order_by(moment.desc())
        .limit(limit)
    )
    return list(rows)


async def postponed_under(
    session: AsyncSession, cap: Cap | None, lead_id: uuid.UUID, now: datetime
) -> datetime | None:
    """Return when ``cap`` frees for this lead, or None when an email may go now.

    Takes the lead's cap lock when there is a cap; the caller inserts its ``running``
    step run in the same transaction.
    """
    if cap is None:
        return None
    await lock_lead(session, lead_id)
    counted = await counted_emails(session, lead_id, now - cap.window, cap.count)
    if len(counted) < cap.count:
        return None
    # ``counted`` contains the newest ``cap.count`` emails. Once the oldest of them
    # leaves the window, one fewer than the cap remains in it.
    return counted[-1] + cap.window
