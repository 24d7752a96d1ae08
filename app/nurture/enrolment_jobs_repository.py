from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import EnrollmentJob

UNFINISHED = ("queued", "running")


class EnrollmentJobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> EnrollmentJobRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID | None,
        job_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> EnrollmentJob | None:
        """Load a job; ``workspace_id`` None is for the worker, whose ids are its own."""
        statement = select(EnrollmentJob).where(EnrollmentJob.id == job_id)
        if workspace_id is not None:
            statement = statement.where(EnrollmentJob.workspace_id == workspace_id)
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(
            statement.execution_options(populate_existing=True)
        )

    async def claim(
        self, job_id: uuid.UUID, now: datetime, lease: timedelta
    ) -> EnrollmentJob | None:
        """Lease an unfinished job whose lease is free; return it, or None."""
        claimed: EnrollmentJob | None = await self.session.scalar(
            update(EnrollmentJob)
            .where(
                EnrollmentJob.id == job_id,
                EnrollmentJob.status.in_(UNFINISHED),
                or_(
                    EnrollmentJob.claimed_until.is_(None),
                    EnrollmentJob.claimed_until < now,
                ),
            )
            .values(
                status="running",
                claimed_until=now + lease,
                attempts=EnrollmentJob.attempts + 1,
                started_at=text("coalesce(started_at, now())"),
            )
            .returning(EnrollmentJob)
            .execution_options(populate_existing=True)
        )
        return claimed

    async def due(self, now: datetime, limit: int) -> Sequence[EnrollmentJob]:
        """Return unfinished jobs whose lease is free, oldest first."""
        rows = await self.session.scalars(
            select(EnrollmentJob)
            .where(
                EnrollmentJob.status.in_(UNFINISHED),
                or_(
                    EnrollmentJob.claimed_until.is_(None),
                    EnrollmentJob.claimed_until < now,
                ),
            )
            .order_by(EnrollmentJob.id)
            .limit(limit)
        )
        return rows.all()
