"""Concurrent edits of one sequence, on separate connections that really commit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from app.core.errors import InvalidInput, PreconditionFailed
from app.models import Enrollment, SequenceStep
from app.models import Sequence as SequenceRow
from app.nurture.errors import SequenceArchived
from app.nurture.holidays import holiday_calendar_service
from app.nurture.schedule_schemas import (
    HolidayCalendarCreate,
    HolidayCalendarUpdate,
    SendWindowSpec,
)
from app.nurture.schemas import EmailStepCreate, EnrollmentCreate, SequenceUpdate
from app.nurture.service import enrollment_service
from app.nurture.versions import archive_sequence, update_sequence
from tests.nurture.conftest import Committed


async def edit(
    committed: Committed, sequence_id: uuid.UUID, subject: str, if_match: str | None
) -> str:
    async with committed.database.session() as session:
        try:
            await update_sequence(
                session,
                committed.principal,
                sequence_id,
                SequenceUpdate(steps=[EmailStepCreate(subject=subject, body_text="x")]),
                if_match=if_match,
            )
        except PreconditionFailed:
            return "412"
        await session.commit()
    return "saved"


class TestConcurrentEdits:
    async def test_same_etag_saves_once(self, committed: Committed) -> None:
        sequence_id = await committed.sequence()

        outcomes = await asyncio.gather(
            *(edit(committed, sequence_id, f"Edit {n}", '"1"') for n in range(4))
        )

        assert sorted(outcomes) == ["412", "412", "412", "saved"]
        async with committed.database.session() as session:
            sequence = await session.get(SequenceRow, sequence_id)
            versions = await session.scalar(
                select(func.count(func.distinct(SequenceStep.sequence_version))).where(
                    SequenceStep.sequence_id == sequence_id
                )
            )
        assert sequence is not None
        assert sequence.latest_version == 2
        assert versions == 2

    async def test_without_etag_each_adds_version(self, committed: Committed) -> None:
        sequence_id = await committed.sequence()

        outcomes = await asyncio.gather(
            *(edit(committed, sequence_id, f"Edit {n}", None) for n in range(3))
        )

        assert outcomes == ["saved", "saved", "saved"]
        async with committed.database.session() as session:
            sequence = await session.get(SequenceRow, sequence_id)
            numbers = (
                await session.scalars(
                    select(SequenceStep.sequence_version)
                    .where(SequenceStep.sequence_id == sequence_id)
                    .order_by(SequenceStep.sequence_version)
                )
            ).all()
        assert sequence is not None
        assert sequence.latest_version == 4
        assert list(numbers) == [1, 2, 3, 4]


async def lock_waits(committed: Committed) -> int:
    """Count the backends of this database that wait on a lock."""
    async with committed.database.session() as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(waiting or 0)


async def wait_for_lock_wait(committed: Committed) -> None:
    """Return once some backend of this database waits on a lock, or fail after 10 s."""
    for _ in range(200):
        if await lock_waits(committed):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second transaction never waited for the first")


class TestArchiveRace:
    async def test_enroll_during_archive_rejected(self, committed: Committed) -> None:
        sequence_id = await committed.sequence()
        lead_id = await committed.lead()

        async def enroll() -> None:
            async with committed.database.session() as session:
                await enrollment_service.enroll(
                    session,
                    committed.principal,
                    sequence_id,
                    EnrollmentCreate(lead_id=lead_id),
                )
                await session.commit()

        async with committed.database.session() as archiving:
            await archive_sequence(
                archiving, committed.principal, sequence_id, if_match=None
            )
            racing = asyncio.create_task(enroll())
            await wait_for_lock_wait(committed)
            await archiving.commit()

        with pytest.raises(SequenceArchived):
            await asyncio.wait_for(racing, timeout=10)
        async with committed.database.session() as session:
            enrollments = await session.scalar(
                select(func.count())
                .select_from(Enrollment)
                .where(Enrollment.sequence_id == sequence_id)
            )
        assert enrollments == 0


class TestCalendarRace:
    async def test_assign_during_calendar_edit_rejected(
        self, committed: Committed
    ) -> None:
        async with committed.database.session() as session:
            calendar = await holiday_calendar_service.create(
                session,
                committed.principal,
                HolidayCalendarCreate(name="Mondays", dates=[]),
            )
            await session.commit()
        sequence_id = await committed.sequence()
        window = SendWindowSpec.model_validate(
            {"weekdays": ["mon"], "start": "09:00", "end": "17:00"}
        )
        async with committed.database.session() as session:
            await update_sequence(
                session,
                committed.principal,
                sequence_id,
                SequenceUpdate(send_window=window),
                if_match=None,
            )
            await session.commit()
        today = datetime.now(UTC).date()
        mondays = [
            (today + timedelta(days=day)).isoformat()
            for day in range(800)
            if (today + timedelta(days=day)).weekday() == 0
        ]

        async def assign_calendar() -> None:
            async with committed.database.session() as session:
                await update_sequence(
                    session,
                    committed.principal,
                    sequence_id,
                    SequenceUpdate(holiday_calendar_id=calendar.id),
                    if_match=None,
                )
                await session.commit()

        async with committed.database.session() as editing:
            await holiday_calendar_service.update(
                editing,
                committed.principal,
                calendar.id,
                HolidayCalendarUpdate(dates=mondays),
                if_match=None,
            )
            racing = asyncio.create_task(assign_calendar())
            await wait_for_lock_wait(committed)
            await editing.commit()

        with pytest.raises(InvalidInput):
            await asyncio.wait_for(racing, timeout=10)
        async with committed.database.session() as session:
            sequence = await session.get(SequenceRow, sequence_id)
        assert sequence is not None
        assert sequence.holiday_calendar_id is None
