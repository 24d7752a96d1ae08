"""When nurture steps run: delays, send windows, holidays and time zones.

``next_run_at`` and ``next_sendable`` are pure: they take instants in UTC and the
``ScheduleRules`` of one enrolment and return an instant in UTC. The async helpers at
the bottom load those rules from the database, so the service and the runner call
one function each.

Local times are resolved with these rules, which keep a step from running twice or
never:

- a local time in a skipped hour (spring forward) becomes the first valid minute
  after the gap, such as 03:00 for 02:30 on the night New York skips 02:00-03:00;
- a local time in a repeated hour (fall back) becomes its first occurrence
  (``fold=0``);
- a day whose send window opens in a skipped hour opens at the first valid minute.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Enrollment, HolidayCalendar, Lead, SequenceStep, Workspace
from app.models import Sequence as SequenceRow

log = structlog.get_logger(__name__)

DelayUnit = Literal["minutes", "hours", "days", "business_days"]
ZoneSource = Literal["lead", "sequence", "workspace"]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BUSINESS_WEEKDAYS = frozenset(range(5))
# How far ahead the search for an allowed day goes before it gives up, so a window
# whose every day is a holiday raises instead of looping for ever.
SEARCH_DAYS = 2 * 366
# The widest gap in the tz database is one day: Pacific/Apia skipped 2011-12-30.
MAX_GAP_MINUTES = 25 * 60
_ZONES = frozenset(available_timezones())


class NoSendableTime(ValueError):
    """No allowed moment exists within ``SEARCH_DAYS`` of the start of the search."""


@dataclass(frozen=True)
class Delay:
    """How long to wait before a step: a count of one unit."""

    amount: int
    unit: DelayUnit


@dataclass(frozen=True)
class SendWindow:
    """The local weekdays (0 is Monday) and hours, ``start`` inclusive and ``end`` not."""

    weekdays: frozenset[int]
    start: time
    end: time

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SendWindow:
        """Build a window from its stored form, as ``SendWindowSpec`` validated it."""
        return cls(
            weekdays=frozenset(WEEKDAYS.index(day) for day in data["weekdays"]),
            start=time.fromisoformat(data["start"]),
            end=time.fromisoformat(data["end"]),
        )


@dataclass(frozen=True)
class ScheduleRules:
    """Everything that decides a step's due time except the delay itself."""

    zone: ZoneInfo
    zone_source: ZoneSource
    window: SendWindow | None = None
    holidays: frozenset[date] = frozenset()


def zone_or_none(name: str | None) -> ZoneInfo | None:
    """Return the IANA zone ``name``, or None when it is empty or not a known zone."""
    if not name or name not in _ZONES:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def pick_zone(
    lead_zone: str | None, sequence_zone: str | None, workspace_zone: str | None
) -> tuple[ZoneInfo, ZoneSource]:
    """Pick the first valid zone of lead, sequence and workspace, or UTC when none is."""
    for name, source in (
        (lead_zone, "lead"),
        (sequence_zone, "sequence"),
        (workspace_zone, "workspace"),
    ):
        zone = zone_or_none(name)
        if zone is not None:
            return zone, source  # type: ignore[return-value]
    return ZoneInfo("UTC"), "workspace"


def resolve_local(local: datetime, zone: ZoneInfo) -> datetime:
    """Turn a naive local time into a UTC instant by the rules in the module docstring."""
    if _exists(local, zone):
        return local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    candidate = local.replace(second=0, microsecond=0)
    for _ in range(MAX_GAP_MINUTES):
        candidate += timedelta(minutes=1)
        if _exists(candidate, zone):
            return candidate.replace(tzinfo=zone, fold=0).astimezone(UTC)
    raise NoSendableTime(f"{local.isoformat()} is in a gap longer than a day in {zone}")


def _exists(local: datetime, zone: ZoneInfo) -> bool:
    aware = local.replace(tzinfo=zone, fold=0)
    back = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return back == local


def add_delay(previous: datetime, delay: Delay, rules: ScheduleRules) -> datetime:
    """Return ``previous`` plus ``delay``, before any send window applies.

    Minutes and hours are elapsed time. Days keep the local wall time of ``previous``
    on a later calendar date, and business days count only Monday to Friday dates
    that are not holidays.
    """
    if delay.unit == "minutes":
        return previous + timedelta(minutes=delay.amount)
    if delay.unit == "hours":
        return previous + timedelta(hours=delay.amount)
    local = previous.astimezone(rules.zone).replace(tzinfo=None, fold=0)
    if delay.unit == "days":
        return resolve_local(local + timedelta(days=delay.amount), rules.zone)
    day = local.date()
    remaining = delay.amount
    for _ in range(delay.amount + SEARCH_DAYS):
        if remaining == 0:
            return resolve_local(datetime.combine(day, local.time()), rules.zone)
        day += timedelta(days=1)
        if day.weekday() in BUSINESS_WEEKDAYS and day not in rules.holidays:
            remaining -= 1
    raise NoSendableTime(
        f"fewer than {delay.amount} business days in the {SEARCH_DAYS} days after "
        f"{local.date().isoformat()}: the holiday calendar covers all of them"
    )


def next_sendable(instant: datetime, rules: ScheduleRules) -> datetime:
    """Return the first moment at or after ``instant`` that the window and holidays allow.

    Without a window every hour of every day is allowed except on holidays, where
    the step waits until local midnight of the next non-holiday date.
    """
    _require_aware(instant)
    first_day = instant.astimezone(rules.zone).date()
    for offset in range(SEARCH_DAYS):
        day = first_day + timedelta(days=offset)
        if day in rules.holidays:
            continue
        window = rules.window
        if window is None:
            opens = resolve_local(datetime.combine(day, time()), rules.zone)
            return max(opens, instant)
        if day.weekday() not in window.weekdays:
            continue
        opens = resolve_local(datetime.combine(day, window.start), rules.zone)
        closes = resolve_local(datetime.combine(day, window.end), rules.zone)
        # A window inside a skipped hour is empty that day, and a window that has
        # closed already cannot take the step.
        if closes <= opens or closes <= instant:
            continue
        return max(opens, instant)
    raise NoSendableTime(
        f"no day in the {SEARCH_DAYS} days from {first_day.isoformat()} is both an "
        "allowed weekday of the send window and not a holiday"
    )


def next_run_at(previous: datetime, delay: Delay, rules: ScheduleRules) -> datetime:
    """Compute when a step is due: ``delay`` after ``previous``, moved into the window.

    ``previous`` is when the previous step ran, or the enrolment time for the first
    step. Raises ``NoSendableTime`` when the holidays leave no allowed day within
    ``SEARCH_DAYS``.
    """
    _require_aware(previous)
    return next_sendable(add_delay(previous, delay, rules), rules)


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("the instant must carry a UTC offset")


def check_sendable(rules: ScheduleRules, start: datetime) -> str | None:
    """Return why no step could ever be sent from ``start`` on, or None when one can."""
    try:
        next_sendable(start, rules)
    except NoSendableTime as error:
        return str(error)
    return None


# Loading the rules of an enrolment from the database.


async def load_rules(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    sequence_id: uuid.UUID,
    lead_id: uuid.UUID,
) -> ScheduleRules:
    """Load the zones, window and holidays that schedule a lead's steps in a sequence.

    One query reads them all. It runs without autoflush, so that a caller's pending
    change to the enrollment is flushed once, by the caller, and bumps its version once.
    """
    statement = (
        select(
            Lead.timezone,
            SequenceRow.timezone,
            Workspace.timezone,
            SequenceRow.send_window,
            HolidayCalendar.dates,
        )
        .select_from(SequenceRow)
        .join(Workspace, Workspace.id == SequenceRow.workspace_id)
        .join(Lead, Lead.id == lead_id)
        .outerjoin(
            HolidayCalendar, HolidayCalendar.id == SequenceRow.holiday_calendar_id
        )
        .where(SequenceRow.id == sequence_id, SequenceRow.workspace_id == workspace_id)
    )
    with session.no_autoflush:
        row = (await session.execute(statement)).one_or_none()
    if row is None:
        raise LookupError(f"sequence {sequence_id} or lead {lead_id} does not exist")
    lead_zone, sequence_zone, workspace_zone, window, holidays = row
    return rules_from(lead_zone, sequence_zone, workspace_zone, window, holidays)


def rules_from(
    lead_zone: str | None,
    sequence_zone: str | None,
    workspace_zone: str | None,
    window: dict[str, Any] | None,
    holidays: Iterable[date] | None,
) -> ScheduleRules:
    """Build the rules from the stored zones, send window and holiday dates."""
    zone, source = pick_zone(lead_zone, sequence_zone, workspace_zone)
    return ScheduleRules(
        zone=zone,
        zone_source=source,
        window=SendWindow.from_json(window) if window is not None else None,
        holidays=frozenset(holidays or ()),
    )


def step_delay(step: SequenceStep) -> Delay:
    return Delay(amount=step.delay_amount, unit=step.delay_unit)  # type: ignore[arg-type]


def due_with_fallback(
    previous: datetime, step: SequenceStep, rules: ScheduleRules
) -> datetime:
    """Compute the step's due time, ignoring window and holidays if no day is allowed.

    Saving a sequence or a holiday calendar rejects rules without an allowed day, so
    the fallback runs only when time has moved past the dates that were checked.
    """
    try:
        return next_run_at(previous, step_delay(step), rules)
    except NoSendableTime as error:
        log.error("schedule.no_sendable_time", step_id=str(step.id), error=str(error))
        plain = ScheduleRules(zone=rules.zone, zone_source=rules.zone_source)
        return add_delay(previous, step_delay(step), plain)


async def first_due_at(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    sequence_id: uuid.UUID,
    lead_id: uuid.UUID,
    step: SequenceStep,
    enrolled_at: datetime,
) -> datetime:
    """Compute when the first step of a new enrolment is due."""
    rules = await load_rules(session, workspace_id, sequence_id, lead_id)
    return due_with_fallback(enrolled_at, step, rules)


async def following_due_at(
    session: AsyncSession, enrollment: Enrollment, step: SequenceStep, ran_at: datetime
) -> datetime:
    """Compute when ``step`` is due, the previous step having run at ``ran_at``."""
    rules = await load_rules(
        session, enrollment.workspace_id, enrollment.sequence_id, enrollment.lead_id
    )
    return due_with_fallback(ran_at, step, rules)


async def resume_at(
    session: AsyncSession, enrollment: Enrollment, now: datetime
) -> datetime:
    """Keep a future due time, and move a step that fell due while paused into the window."""
    due = enrollment.next_run_at
    if due is not None and due >= now:
        return due
    rules = await load_rules(
        session, enrollment.workspace_id, enrollment.sequence_id, enrollment.lead_id
    )
    try:
        return next_sendable(now, rules)
    except NoSendableTime as error:
        log.error(
            "schedule.no_sendable_time",
            enrollment_id=str(enrollment.id),
            error=str(error),
        )
        return now


def reopens_under(
    rules: ScheduleRules, enrollment_id: uuid.UUID, now: datetime
) -> datetime | None:
    """Return when ``rules`` let a due step run, or None if they let it run now.

    A step's time was computed when the step before it ran, so a send window,
    holiday calendar or lead time zone changed since then, a frequency-cap
    postponement or a retry can leave it due at a moment the rules forbid.
    """
    try:
        allowed = next_sendable(now, rules)
    except NoSendableTime as error:
        log.error(
            "schedule.no_sendable_time",
            enrollment_id=str(enrollment_id),
            error=str(error),
        )
        return None
    return allowed if allowed > now else None
