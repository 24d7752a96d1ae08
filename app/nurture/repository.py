from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import EmailSuppression, Enrollment, SequenceStep, StepRun
from app.models import Sequence as SequenceRow
from app.nurture.states import RUNNING_STATUSES

# Aliases outside the classes, whose ``list`` methods shadow the builtin there.
StepsBySequence = dict[uuid.UUID, list[SequenceStep]]
RunsByEnrollment = dict[uuid.UUID, list[tuple[StepRun, int]]]
DueEnrollments = list[tuple[uuid.UUID, int, datetime, int]]
_ENROLLMENTS = cast(Table, Enrollment.__table__)


def _insert_unless_run(run: StepRun) -> Insert:
    """Build the INSERT of ``run`` that does nothing when its step has a run."""
    return (
        insert(StepRun)
        .values(
            id=run.id,
            workspace_id=run.workspace_id,
            enrollment_id=run.enrollment_id,
            step_id=run.step_id,
            status=run.status,
            attempts=run.attempts,
            claimed_until=run.claimed_until,
            started_at=run.started_at,
            finished_at=run.finished_at,
            message_id=run.message_id,
        )
        .on_conflict_do_nothing(index_elements=["enrollment_id", "step_id"])
    )


class SequenceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> SequenceRepository:
        return cls(session)

    async def get(
        self, workspace_id: uuid.UUID, sequence_id: uuid.UUID
    ) -> SequenceRow | None:
        return await self.session.scalar(
            select(SequenceRow).where(
                SequenceRow.workspace_id == workspace_id, SequenceRow.id == sequence_id
            )
        )

    async def list(
        self, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[SequenceRow], str | None, bool]:
        statement: Select[Any] = select(SequenceRow).where(
            SequenceRow.workspace_id == workspace_id
        )
        return await paginate(
            self.session, statement, SequenceRow.id, limit=limit, cursor=cursor
        )

    async def steps_by_sequence(
        self, sequence_ids: Iterable[uuid.UUID]
    ) -> StepsBySequence:
        """Load the latest version's steps of several sequences in one query, in order."""
        keys = list(sequence_ids)
        grouped: StepsBySequence = defaultdict(list)
        if not keys:
            return grouped
        rows = await self.session.scalars(
            select(SequenceStep)
            .join(SequenceRow, SequenceRow.id == SequenceStep.sequence_id)
            .where(
                SequenceStep.sequence_id.in_(keys),
                SequenceStep.sequence_version == SequenceRow.latest_version,
            )
            .order_by(SequenceStep.sequence_id, SequenceStep.position)
        )
        for step in rows:
            grouped[step.sequence_id].append(step)
        return grouped

    async def step_at(
        self, sequence_id: uuid.UUID, sequence_version: int, position: int
    ) -> SequenceStep | None:
        return await self.session.scalar(
            select(SequenceStep).where(
                SequenceStep.sequence_id == sequence_id,
                SequenceStep.sequence_version == sequence_version,
                SequenceStep.position == position,
            )
        )

    async def version_steps(
        self, sequence_id: uuid.UUID, sequence_version: int
    ) -> Sequence[SequenceStep]:
        """Load the steps of one version of a sequence, in order."""
        rows = await self.session.scalars(
            select(SequenceStep)
            .where(
                SequenceStep.sequence_id == sequence_id,
                SequenceStep.sequence_version == sequence_version,
            )
            .order_by(SequenceStep.position)
        )
        return rows.all()

    async def lock(
        self, workspace_id: uuid.UUID, sequence_id: uuid.UUID
    ) -> SequenceRow | None:
        return await self.session.scalar(
            select(SequenceRow)
            .where(
                SequenceRow.workspace_id == workspace_id, SequenceRow.id == sequence_id
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )


class EnrollmentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> EnrollmentRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        enrollment_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Enrollment | None:
        statement = select(Enrollment).where(
            Enrollment.workspace_id == workspace_id, Enrollment.id == enrollment_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def get_running(
        self, sequence_id: uuid.UUID, lead_id: uuid.UUID
    ) -> Enrollment | None:
        return await self.session.scalar(
            select(Enrollment).where(
                Enrollment.sequence_id == sequence_id,
                Enrollment.lead_id == lead_id,
                Enrollment.status.in_(RUNNING_STATUSES),
            )
        )

    async def latest_for_lead(
        self,
        sequence_id: uuid.UUID,
        lead_id: uuid.UUID,
        *,
        except_status: str | None = None,
    ) -> Enrollment | None:
        """Return the lead's newest enrollment in the sequence, skipping one status."""
        statement = select(Enrollment).where(
            Enrollment.sequence_id == sequence_id, Enrollment.lead_id == lead_id
        )
        if except_status is not None:
            statement = statement.where(Enrollment.status != except_status)
        return await self.session.scalar(
            statement.order_by(Enrollment.id.desc()).limit(1)
        )

    async def running_for_lead(
        self, workspace_id: uuid.UUID, lead_id: uuid.UUID
    ) -> Sequence[Enrollment]:
        """Lock and return the lead's active and paused enrollments, oldest first."""
        rows = await self.session.scalars(
            select(Enrollment)
            .where(
                Enrollment.workspace_id == workspace_id,
                Enrollment.lead_id == lead_id,
                Enrollment.status.in_(RUNNING_STATUSES),
            )
            .order_by(Enrollment.id)
            .with_for_update()
        )
        return rows.all()

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        lead_id: uuid.UUID | None = None,
        sequence_id: uuid.UUID | None = None,
        status: str | None = None,
    ) -> tuple[Sequence[Enrollment], str | None, bool]:
        statement: Select[Any] = select(Enrollment).where(
            Enrollment.workspace_id == workspace_id
        )
        if lead_id is not None:
            statement = statement.where(Enrollment.lead_id == lead_id)
        if sequence_id is not None:
            statement = statement.where(Enrollment.sequence_id == sequence_id)
        if status is not None:
            statement = statement.where(Enrollment.status == status)
        return await paginate(
            self.session, statement, Enrollment.id, limit=limit, cursor=cursor
        )

    async def step_runs_by_enrollment(
        self, enrollment_ids: Iterable[uuid.UUID]
    ) -> RunsByEnrollment:
        """Load the step runs of several enrollments with each step's position."""
        keys = list(enrollment_ids)
        grouped: RunsByEnrollment = defaultdict(list)
        if not keys:
            return grouped
        rows = await self.session.execute(
            select(StepRun, SequenceStep.position)
            .join(SequenceStep, SequenceStep.id == StepRun.step_id)
            .where(StepRun.enrollment_id.in_(keys))
            .order_by(StepRun.enrollment_id, SequenceStep.position)
            .execution_options(populate_existing=True)
        )
        for run, position in rows:
            grouped[run.enrollment_id].append((run, position))
        return grouped

    async def get_step_run(
        self, enrollment_id: uuid.UUID, step_id: uuid.UUID, *, for_update: bool
    ) -> StepRun | None:
        statement = select(StepRun).where(
            StepRun.enrollment_id == enrollment_id, StepRun.step_id == step_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(
            statement.execution_options(populate_existing=True)
        )

    async def insert_step_run(self, run: StepRun) -> bool:
        """Insert ``run`` unless its step already has a run, and return whether it did."""
        inserted = await self.session.scalar(
            _insert_unless_run(run).returning(StepRun.id)
        )
        return inserted is not None

    async def start_step_run(self, run: StepRun, until: datetime) -> bool:
        """Insert ``run`` and lease its enrollment until ``until``, in one statement.

        Does neither when the step already has a run, and returns whether it did.
        """
        inserted = (
            _insert_unless_run(run).returning(StepRun.enrollment_id).cte("inserted")
        )
        leased = await self.session.scalar(
            update(_ENROLLMENTS)
            .where(_ENROLLMENTS.c.id == inserted.c.enrollment_id)
            .values(claimed_until=until)
            .returning(_ENROLLMENTS.c.id)
        )
        return leased is not None

    async def set_claim(self, enrollment_id: uuid.UUID, until: datetime | None) -> None:
        """Write the lease without bumping ``version``: clients never see it."""
        await self.session.execute(
            update(Enrollment)
            .where(Enrollment.id == enrollment_id)
            .values(claimed_until=until)
            .execution_options(synchronize_session=False)
        )

    async def claim_due(
        self, now: datetime, until: datetime, limit: int
    ) -> DueEnrollments:
        """Lease up to ``limit`` due, unclaimed enrollments.

        Returns the id, next position and due time of each, with the attempts its
        due step has had so far (0 before the first).

        ``SKIP LOCKED`` lets several workers sweep at once: each takes rows the others
        have not locked, and a row a request or a step is changing right now waits
        for the next sweep.
        """
        due = (
            select(Enrollment.id)
            .where(
                Enrollment.status == "active",
                Enrollment.next_run_at <= now,
                (Enrollment.claimed_until.is_(None)) | (Enrollment.claimed_until < now),
            )
            .order_by(Enrollment.next_run_at, Enrollment.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
            .prefix_with("MATERIALIZED")
        )
        attempts = (
            select(func.coalesce(func.max(StepRun.attempts), 0))
            .join(SequenceStep, SequenceStep.id == StepRun.step_id)
            .where(
                StepRun.enrollment_id == Enrollment.id,
                SequenceStep.position == Enrollment.next_position,
            )
            .correlate(Enrollment)
            .scalar_subquery()
        )
        rows = await self.session.execute(
            update(Enrollment)
            .where(Enrollment.id == due.c.id)
            .values(claimed_until=until)
            .returning(
                Enrollment.id,
                Enrollment.next_position,
                Enrollment.next_run_at,
                attempts.label("attempts"),
            )
            .execution_options(synchronize_session=False)
        )
        return [
            (row.id, row.next_position, row.next_run_at, row.attempts) for row in rows
        ]

    async def is_suppressed(
        self, workspace_id: uuid.UUID, email_normalized: str, lead_id: uuid.UUID
    ) -> bool:
        """Tell whether the address is suppressed, or the lead unsubscribed.

        A lead that unsubscribed stays unsubscribed after its email changes, but a
        bounce suppresses only the address that bounced.
        """
        found = await self.session.scalar(
            select(func.count())
            .select_from(EmailSuppression)
            .where(
                EmailSuppression.workspace_id == workspace_id,
                or_(
                    EmailSuppression.email_normalized == email_normalized,
                    and_(
                        EmailSuppression.lead_id == lead_id,
                        EmailSuppression.reason == "unsubscribed",
                    ),
                ),
            )
        )
        return bool(found)

    async def suppress(self, suppression: EmailSuppression) -> bool:
        """Insert ``suppression`` unless the address is suppressed, and return whether it did.

        An unsubscribe of an address that only bounced so far replaces the bounce, so
        the lead stays unsubscribed when its email changes later, and counts as new.
        """
        statement = insert(EmailSuppression).values(
            id=suppression.id,
            workspace_id=suppression.workspace_id,
            email_normalized=suppression.email_normalized,
            reason=suppression.reason,
            lead_id=suppression.lead_id,
            enrollment_id=suppression.enrollment_id,
        )
        inserted = await self.session.scalar(
            statement.on_conflict_do_update(
                index_elements=["workspace_id", "email_normalized"],
                set_={
                    "reason": statement.excluded.reason,
                    "lead_id": statement.excluded.lead_id,
                    "enrollment_id": statement.excluded.enrollment_id,
                },
                where=and_(
                    statement.excluded.reason == "unsubscribed",
                    EmailSuppression.reason != "unsubscribed",
                ),
            ).returning(EmailSuppression.id)
        )
        return inserted is not None
