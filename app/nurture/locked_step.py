"""Loading an enrollment under its row lock together with what its step needs, in one
statement each for the runner's claim and record phases.

The enrollment is locked in a materialized CTE and the other tables are joined to the
locked row. PostgreSQL takes a statement's snapshot before the statement waits for a
row lock. When the transaction that held the lock changed the enrollment and
committed meanwhile, ``FOR UPDATE`` returns the new enrollment row, but the joined
rows still come from the older snapshot, which misses what that transaction wrote
(such as the step run it inserted). Each statement therefore also compares the
``xmin`` of the locked row with that of the row its snapshot sees. When they differ,
the statement runs again: the lock is held by then, and the new snapshot sees the
commit. Every transaction that writes a step run of an active or paused enrollment
also updates the enrollment, so a changed ``xmin`` reveals it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    Executable,
    Table,
    and_,
    bindparam,
    exists,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.models import (
    EmailSuppression,
    Enrollment,
    HolidayCalendar,
    Lead,
    NurtureSettings,
    SequenceStep,
    StepRun,
    User,
    Workspace,
)
from app.models import Sequence as SequenceRow

_ENROLLMENTS = cast(Table, Enrollment.__table__)


def _locked_enrollment() -> tuple[CTE, Any]:
    """Return the CTE that locks the enrollment, and its ``fresh`` column."""
    locked = (
        select(_ENROLLMENTS, literal_column("xmin::text").label("locked_xmin"))
        .where(_ENROLLMENTS.c.id == bindparam("enrollment_id"))
        .with_for_update()
        .cte("locked")
        .prefix_with("MATERIALIZED")
    )
    seen_xmin = (
        select(literal_column("xmin::text"))
        .select_from(_ENROLLMENTS)
        .where(_ENROLLMENTS.c.id == locked.c.id)
        .scalar_subquery()
    )
    return locked, (locked.c.locked_xmin == seen_xmin).label("fresh")


def _step_at(step: Any, enrollment: Any, position: Any) -> ColumnElement[bool]:
    """Match ``step`` to the step at ``position`` of the enrollment's version."""
    return and_(
        step.sequence_id == enrollment.sequence_id,
        step.sequence_version == enrollment.sequence_version,
        step.position == position,
    )


def _claim_statement() -> Executable:
    locked, fresh = _locked_enrollment()
    enrollment = aliased(Enrollment, locked)
    # A bounce suppresses the address; an unsubscribe also follows the lead after
    # its email changes, as EnrollmentRepository.is_suppressed decides.
    suppressed = exists().where(
        EmailSuppression.workspace_id == Lead.workspace_id,
        or_(
            EmailSuppression.email_normalized == Lead.email_normalized,
            and_(
                EmailSuppression.lead_id == Lead.id,
                EmailSuppression.reason == "unsubscribed",
            ),
        ),
    )
    return (
        select(
            enrollment,
            SequenceStep,
            StepRun,
            Lead,
            SequenceRow,
            Workspace.name,
            Workspace.timezone,
            HolidayCalendar.dates,
            User.name,
            User.email,
            NurtureSettings.email_cap_count,
            NurtureSettings.email_cap_window_hours,
            suppressed.label("suppressed"),
            fresh,
        )
        .select_from(enrollment)
        .join(
            Lead,
            and_(
                Lead.id == enrollment.lead_id,
                Lead.workspace_id == enrollment.workspace_id,
            ),
        )
        .join(SequenceRow, SequenceRow.id == enrollment.sequence_id)
        .join(Workspace, Workspace.id == enrollment.workspace_id)
        .outerjoin(
            SequenceStep, _step_at(SequenceStep, enrollment, enrollment.next_position)
        )
        .outerjoin(
            StepRun,
            and_(
                StepRun.enrollment_id == enrollment.id,
                StepRun.step_id == SequenceStep.id,
            ),
        )
        .outerjoin(
            HolidayCalendar, HolidayCalendar.id == SequenceRow.holiday_calendar_id
        )
        .outerjoin(User, User.id == Lead.owner_id)
        .outerjoin(
            NurtureSettings, NurtureSettings.workspace_id == enrollment.workspace_id
        )
        .execution_options(populate_existing=True)
    )


def _record_statement() -> Executable:
    locked, fresh = _locked_enrollment()
    enrollment = aliased(Enrollment, locked)
    run_step = aliased(SequenceStep)
    following = aliased(SequenceStep)
    return (
        select(enrollment, StepRun, run_step.position, following, fresh)
        .select_from(enrollment)
        .outerjoin(StepRun, StepRun.enrollment_id == enrollment.id)
        .outerjoin(run_step, run_step.id == StepRun.step_id)
        .outerjoin(
            following, _step_at(following, enrollment, enrollment.next_position + 1)
        )
        .order_by(run_step.position)
        .execution_options(populate_existing=True)
    )


# Built once: building them per call costs about as much CPU as running them.
_CLAIM = _claim_statement()
_RECORD = _record_statement()


@dataclass(frozen=True)
class ClaimRows:
    """An enrollment locked for its claim, its due step and the rows around it.

    ``step`` is None past the last step, and ``run`` is None before the step's first
    attempt. ``cap_count`` is None when the workspace has no frequency cap.
    """

    enrollment: Enrollment
    step: SequenceStep | None
    run: StepRun | None
    lead: Lead
    sequence: SequenceRow
    workspace_name: str
    workspace_timezone: str | None
    holidays: Sequence[date] | None
    owner_name: str | None
    owner_email: str | None
    cap_count: int | None
    cap_window_hours: int | None
    suppressed: bool


@dataclass(frozen=True)
class RecordRows:
    """An enrollment locked to record a send, its step runs and its following step.

    ``runs`` pairs each step run with its step's position, in order, as the API shows
    them. ``following`` is the step after ``next_position``, or None after the last.
    """

    enrollment: Enrollment
    runs: list[tuple[StepRun, int]]
    following: SequenceStep | None


async def lock_for_claim(
    session: AsyncSession, enrollment_id: uuid.UUID
) -> ClaimRows | None:
    """Lock the enrollment and load its claim's rows; None when it does not exist."""
    parameters = {"enrollment_id": enrollment_id}
    row = (await session.execute(_CLAIM, parameters)).one_or_none()
    if row is not None and not row.fresh:
        row = (await session.execute(_CLAIM, parameters)).one_or_none()
    if row is None:
        return None
    (
        enrollment,
        step,
        run,
        lead,
        sequence,
        workspace_name,
        workspace_timezone,
        holidays,
        owner_name,
        owner_email,
        cap_count,
        cap_window_hours,
        suppressed,
        _,
    ) = row
    return ClaimRows(
        enrollment=enrollment,
        step=step,
        run=run,
        lead=lead,
        sequence=sequence,
        workspace_name=workspace_name,
        workspace_timezone=workspace_timezone,
        holidays=holidays,
        owner_name=owner_name,
        owner_email=owner_email,
        cap_count=cap_count,
        cap_window_hours=cap_window_hours,
        suppressed=bool(suppressed),
    )


async def lock_for_record(
    session: AsyncSession, enrollment_id: uuid.UUID
) -> RecordRows | None:
    """Lock the enrollment and load its step runs; None when it does not exist."""
    parameters = {"enrollment_id": enrollment_id}
    rows = (await session.execute(_RECORD, parameters)).all()
    if rows and not rows[0].fresh:
        rows = (await session.execute(_RECORD, parameters)).all()
    if not rows:
        return None
    enrollment, _, _, following, _ = rows[0]
    runs = [(run, position) for _, run, position, _, _ in rows if run is not None]
    return RecordRows(enrollment=enrollment, runs=runs, following=following)
