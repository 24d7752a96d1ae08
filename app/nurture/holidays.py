"""Holiday calendars, and the checks that a sequence's schedule can ever send."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

import structlog
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.core.pagination import paginate
from app.models import HolidayCalendar
from app.models import Sequence as SequenceRow
from app.nurture.errors import HolidayCalendarInUse, HolidayCalendarNotFound
from app.nurture.schedule import ScheduleRules, SendWindow, check_sendable, pick_zone
from app.nurture.schedule_schemas import HolidayCalendar as HolidayCalendarSchema
from app.nurture.schedule_schemas import (
    HolidayCalendarCreate,
    HolidayCalendarUpdate,
    SendWindowSpec,
)

log = structlog.get_logger(__name__)

# A sequence list in an error names at most this many ids.
MAX_LISTED_SEQUENCES = 20
# An alias outside the classes, whose ``list`` methods shadow the builtin there.
Dates = list[date]


def holiday_calendar_data(calendar: HolidayCalendar) -> dict[str, Any]:
    """Serialize a calendar as the API shows it, for events."""
    return HolidayCalendarSchema.model_validate(calendar).model_dump(mode="json")


def schedule_problem(
    timezone: str | None, window: dict[str, Any] | None, holidays: Sequence[date]
) -> str | None:
    """Return why a window and holidays leave no day to send on, or None when fine.

    Checked from now on, because past holidays cannot block a step any more.
    """
    zone, source = pick_zone(None, timezone, None)
    rules = ScheduleRules(
        zone=zone,
        zone_source=source,
        window=SendWindow.from_json(window) if window is not None else None,
        holidays=frozenset(holidays),
    )
    return check_sendable(rules, utcnow())


class HolidayCalendarRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> HolidayCalendarRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        calendar_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> HolidayCalendar | None:
        statement = select(HolidayCalendar).where(
            HolidayCalendar.workspace_id == workspace_id,
            HolidayCalendar.id == calendar_id,
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def list(
        self, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[HolidayCalendar], str | None, bool]:
        statement: Select[Any] = select(HolidayCalendar).where(
            HolidayCalendar.workspace_id == workspace_id
        )
        return await paginate(
            self.session, statement, HolidayCalendar.id, limit=limit, cursor=cursor
        )

    async def sequences_using(self, calendar_id: uuid.UUID) -> Sequence[SequenceRow]:
        """Lock and return the sequences that use the calendar, oldest first."""
        rows = await self.session.scalars(
            select(SequenceRow)
            .where(SequenceRow.holiday_calendar_id == calendar_id)
            .order_by(SequenceRow.id)
            .with_for_update()
        )
        return rows.all()


class HolidayCalendarService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: HolidayCalendarCreate,
    ) -> HolidayCalendar:
        calendar = HolidayCalendar(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            name=payload.name,
            description=payload.description,
            dates=payload.dates,
        )
        session.add(calendar)
        await session.flush()
        await session.refresh(calendar)

        await self._emit(session, calendar, "holiday_calendar.created", principal)
        log.info("holiday_calendar.created", holiday_calendar_id=str(calendar.id))
        return calendar

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        calendar_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> HolidayCalendar:
        calendar = await HolidayCalendarRepository.from_session(session).get(
            workspace_id, calendar_id, for_update=for_update
        )
        if calendar is None:
            raise HolidayCalendarNotFound(
                f"No holiday calendar with id "
                f"{ids.encode('holiday_calendar', calendar_id)} exists in this "
                "workspace."
            )
        return calendar

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[HolidayCalendar], str | None, bool]:
        return await HolidayCalendarRepository.from_session(session).list(
            workspace_id, limit=limit, cursor=cursor
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        calendar_id: uuid.UUID,
        payload: HolidayCalendarUpdate,
        *,
        if_match: str | None,
    ) -> HolidayCalendar:
        calendar = await self.get(
            session, principal.workspace_id, calendar_id, for_update=True
        )
        check_if_match(if_match, calendar.version)

        changes = payload.model_dump(exclude_unset=True)
        for name in ("name", "dates"):
            if name in changes and changes[name] is None:
                raise InvalidInput(
                    f"{name} cannot be null. Omit it to keep the current value.",
                    errors=[FieldError(name, "cannot be null", "null_not_allowed")],
                )
        if "dates" in changes:
            await self._check_sequences(session, calendar, changes["dates"])

        for name, value in changes.items():
            setattr(calendar, name, value)
        if not session.is_modified(calendar):
            return calendar
        await session.flush()
        await session.refresh(calendar)

        await self._emit(session, calendar, "holiday_calendar.updated", principal)
        log.info("holiday_calendar.updated", holiday_calendar_id=str(calendar.id))
        return calendar

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        calendar_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        calendar = await self.get(
            session, principal.workspace_id, calendar_id, for_update=True
        )
        check_if_match(if_match, calendar.version)
        users = await HolidayCalendarRepository.from_session(session).sequences_using(
            calendar.id
        )
        if users:
            sequence_ids = [
                ids.encode("sequence", row.id) for row in users[:MAX_LISTED_SEQUENCES]
            ]
            raise HolidayCalendarInUse(
                f"Holiday calendar {ids.encode('holiday_calendar', calendar.id)} is "
                f"used by {len(users)} sequence(s), such as {sequence_ids[0]}. "
                "Give those sequences another calendar first.",
                sequence_ids=sequence_ids,
            )
        data = holiday_calendar_data(calendar)

        # The sequence foreign key is ON DELETE RESTRICT, so a sequence that took
        # the calendar after the check above makes this fail with a 409 instead.
        await session.delete(calendar)
        await session.flush()
        await emit(
            session,
            workspace_id=calendar.workspace_id,
            type="holiday_calendar.deleted",
            object_type="holiday_calendar",
            object_id=calendar.id,
            data=data,
            actor=principal.actor,
        )
        log.info("holiday_calendar.deleted", holiday_calendar_id=str(calendar.id))

    async def check_sequence_settings(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        timezone: str | None,
        send_window: SendWindowSpec | None,
        holiday_calendar_id: uuid.UUID | None,
    ) -> None:
        """Raise ``InvalidInput`` when the calendar is unknown or nothing could send."""
        holidays: Dates = []
        if holiday_calendar_id is not None:
            # Locked, so a concurrent edit of its dates, which checks the sequences
            # using it, runs wholly before or after this check.
            calendar = await HolidayCalendarRepository.from_session(session).get(
                workspace_id, holiday_calendar_id, for_update=True
            )
            if calendar is None:
                calendar_id = ids.encode("holiday_calendar", holiday_calendar_id)
                raise InvalidInput(
                    f"holiday_calendar_id: no holiday calendar {calendar_id} exists "
                    "in this workspace. Create it with POST /v1/holiday-calendars.",
                    errors=[
                        FieldError(
                            "holiday_calendar_id",
                            "holiday calendar not found",
                            "not_found",
                        )
                    ],
                )
            holidays = list(calendar.dates)
        window = send_window.model_dump() if send_window is not None else None
        problem = schedule_problem(timezone, window, holidays)
        if problem is not None:
            field, fix = "send_window", "Allow more weekdays or remove holidays."
            if send_window is None:
                # Without a window every day is allowed, so the calendar is at fault.
                field, fix = "holiday_calendar_id", "Remove dates from the calendar."
            raise InvalidInput(
                f"{field}: {problem}. {fix}",
                errors=[FieldError(field, problem, "no_sendable_time")],
            )

    async def _check_sequences(
        self, session: AsyncSession, calendar: HolidayCalendar, dates: Dates
    ) -> None:
        users = await HolidayCalendarRepository.from_session(session).sequences_using(
            calendar.id
        )
        for sequence in users:
            problem = schedule_problem(sequence.timezone, sequence.send_window, dates)
            if problem is not None:
                sequence_id = ids.encode("sequence", sequence.id)
                raise InvalidInput(
                    f"dates: sequence {sequence_id} would never send: {problem}. "
                    "Remove some dates or widen that sequence's send window.",
                    errors=[FieldError("dates", problem, "no_sendable_time")],
                    sequence_id=sequence_id,
                )

    async def _emit(
        self,
        session: AsyncSession,
        calendar: HolidayCalendar,
        type: str,
        principal: Principal,
    ) -> None:
        await emit(
            session,
            workspace_id=calendar.workspace_id,
            type=type,
            object_type="holiday_calendar",
            object_id=calendar.id,
            data=holiday_calendar_data(calendar),
            actor=principal.actor,
        )


holiday_calendar_service = HolidayCalendarService()
