"""API shapes of step delays, send windows, holiday calendars and schedule previews."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.core.schemas import (
    CalendarDate,
    EnrollmentId,
    HolidayCalendarId,
    InputModel,
    OutputModel,
    SequenceStepId,
)
from app.nurture.schedule import WEEKDAYS, DelayUnit, ZoneSource

# The most of each unit that fits in 366 calendar days, which hold at most 262
# Mondays to Fridays.
MAX_DELAY: dict[str, int] = {
    "minutes": 366 * 24 * 60,
    "hours": 366 * 24,
    "days": 366,
    "business_days": 262,
}
MAX_HOLIDAYS = 1_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d", re.ASCII)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class StepDelay(InputModel):
    """How long a step waits after enrolment (first step) or after the previous step."""

    unit: DelayUnit = Field(
        default="minutes",
        description="minutes and hours are elapsed time. days keeps the local wall "
        "time on a later date. business_days counts Monday to Friday dates that are "
        "not in the sequence's holiday calendar.",
    )
    amount: int = Field(
        default=0,
        ge=0,
        le=MAX_DELAY["minutes"],
        description="How many units to wait: at most 527040 minutes, 8784 hours, "
        "366 days or 262 business_days.",
    )

    @field_validator("amount")
    @classmethod
    def _check_amount_for_unit(cls, value: int, info: ValidationInfo) -> int:
        unit = info.data.get("unit")
        if unit is None:
            return value
        limit = MAX_DELAY[unit]
        if value > limit:
            raise PydanticCustomError(
                "less_than_equal",
                "{amount} {unit} is longer than 366 days; use at most {limit} {unit}",
                {"amount": value, "unit": unit, "limit": limit},
            )
        return value


def _check_clock(value: Any) -> Any:
    if isinstance(value, str) and not _CLOCK.fullmatch(value):
        raise ValueError(f"{value!r} is not a 24-hour local time such as '09:00'")
    return value


ClockTime = Annotated[
    str,
    BeforeValidator(_check_clock),
    Field(description="Local time HH:MM, 24-hour.", examples=["09:00"]),
]


class SendWindowSpec(InputModel):
    """The local weekdays and hours in which steps may run."""

    weekdays: list[Weekday] = Field(
        min_length=1, max_length=7, description="Days on which steps may run."
    )
    start: ClockTime
    end: ClockTime = Field(description="Local time HH:MM after start, itself excluded.")

    @field_validator("weekdays")
    @classmethod
    def _sort_weekdays(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("weekdays must not repeat a day")
        return sorted(value, key=WEEKDAYS.index)

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if time.fromisoformat(self.start) >= time.fromisoformat(self.end):
            raise ValueError(
                f"start {self.start} must be before end {self.end}, because a window cannot "
                "cross midnight"
            )
        return self


class SendWindow(OutputModel):
    weekdays: list[Weekday]
    start: str
    end: str


def _parse_date(value: Any) -> Any:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("expected a date string YYYY-MM-DD")
    return date.fromisoformat(value)


HolidayDate = Annotated[CalendarDate, BeforeValidator(_parse_date)]
HolidayDates = Annotated[list[HolidayDate], Field(max_length=MAX_HOLIDAYS)]
CalendarName = Annotated[str, Field(min_length=1, max_length=200)]
CalendarDescription = Annotated[str, Field(max_length=2_000)]


def _unique_sorted(dates: list[date] | None) -> list[date] | None:
    return None if dates is None else sorted(set(dates))


class HolidayCalendarCreate(InputModel):
    name: CalendarName
    dates: HolidayDates = Field(
        default_factory=list,
        description="Local dates YYYY-MM-DD on which steps do not run; duplicates "
        f"are dropped, at most {MAX_HOLIDAYS}.",
    )
    description: CalendarDescription | None = None

    @field_validator("dates")
    @classmethod
    def _dedupe(cls, value: list[date]) -> list[date] | None:
        return _unique_sorted(value)


class HolidayCalendarUpdate(InputModel):
    name: CalendarName | None = None
    dates: HolidayDates | None = Field(
        default=None, description="Replaces every date of the calendar."
    )
    description: CalendarDescription | None = Field(
        default=None, description="Send null to clear it."
    )

    @field_validator("dates")
    @classmethod
    def _dedupe(cls, value: list[date] | None) -> list[date] | None:
        return _unique_sorted(value)


class HolidayCalendar(OutputModel):
    object: Literal["holiday_calendar"] = "holiday_calendar"
    id: HolidayCalendarId
    name: str
    description: str | None
    dates: list[date] = Field(description="The holidays, sorted.")
    version: int
    created_at: datetime
    updated_at: datetime


class ScheduledStep(OutputModel):
    object: Literal["scheduled_step"] = "scheduled_step"
    position: int
    step_id: SequenceStepId
    kind: str
    due_at: datetime = Field(description="When the step is due, in UTC.")
    local_due_at: str = Field(
        description="The same instant as local time with its UTC offset, RFC 3339.",
        examples=["2026-12-07T09:00:00-05:00"],
    )
    timezone: str = Field(description="The IANA zone of local_due_at.")
    timezone_source: ZoneSource = Field(
        description="Where the zone came from: the lead's timezone, else the "
        "sequence's, else the workspace's."
    )


class EnrollmentSchedule(OutputModel):
    object: Literal["enrollment_schedule"] = "enrollment_schedule"
    enrollment_id: EnrollmentId
    steps: list[ScheduledStep] = Field(
        description="The steps still to run, assuming each runs when due; empty once "
        "the enrollment completed, exited or failed."
    )
