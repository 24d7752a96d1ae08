"""The pure scheduling rules: delays, send windows, holidays and DST transitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.nurture.schedule import (
    Delay,
    DelayUnit,
    NoSendableTime,
    ScheduleRules,
    SendWindow,
    add_delay,
    next_run_at,
    next_sendable,
    pick_zone,
    resolve_local,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SYDNEY = ZoneInfo("Australia/Sydney")
OFFICE_HOURS = SendWindow(
    weekdays=frozenset(range(5)), start=time(9, 0), end=time(17, 0)
)
EVERY_DAY = frozenset(range(7))


def wall(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """Build a naive local wall time, the input of ``resolve_local``."""
    return datetime(year, month, day, hour, minute)  # noqa: DTZ001


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(
    zone: ZoneInfo,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    *,
    fold: int = 0,
) -> datetime:
    """Build an aware local time and return it in UTC."""
    wall_time = datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold)
    return wall_time.astimezone(UTC)


def rules(
    zone: ZoneInfo,
    window: SendWindow | None = None,
    holidays: frozenset[date] = frozenset(),
) -> ScheduleRules:
    return ScheduleRules(
        zone=zone, zone_source="sequence", window=window, holidays=holidays
    )


class TestResolveLocal:
    @pytest.mark.parametrize(
        ("zone", "naive", "expected"),
        [
            # New York skips 02:00-03:00 on 2026-03-08; 03:00 EDT is 07:00 UTC.
            (NEW_YORK, wall(2026, 3, 8, 2, 30), utc(2026, 3, 8, 7, 0)),
            # Berlin skips 02:00-03:00 on 2026-03-29; 03:00 CEST is 01:00 UTC.
            (BERLIN, wall(2026, 3, 29, 2, 30), utc(2026, 3, 29, 1, 0)),
            # Sydney skips 02:00-03:00 on 2026-10-04; 03:00 AEDT is 16:00 UTC.
            (SYDNEY, wall(2026, 10, 4, 2, 30), utc(2026, 10, 3, 16, 0)),
        ],
    )
    def test_skipped_hour_moves_to_gap_end(
        self, zone: ZoneInfo, naive: datetime, expected: datetime
    ) -> None:
        assert resolve_local(naive, zone) == expected

    @pytest.mark.parametrize(
        ("zone", "naive", "expected"),
        [
            # New York repeats 01:00-02:00 on 2026-11-01; the first 01:30 is EDT.
            (NEW_YORK, wall(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30)),
            # Berlin repeats 02:00-03:00 on 2026-10-25; the first 02:30 is CEST.
            (BERLIN, wall(2026, 10, 25, 2, 30), utc(2026, 10, 25, 0, 30)),
            # Sydney repeats 02:00-03:00 on 2026-04-05; the first 02:30 is AEDT.
            (SYDNEY, wall(2026, 4, 5, 2, 30), utc(2026, 4, 4, 15, 30)),
        ],
    )
    def test_repeated_hour_takes_first(
        self, zone: ZoneInfo, naive: datetime, expected: datetime
    ) -> None:
        assert resolve_local(naive, zone) == expected

    def test_half_hour_gap(self) -> None:
        # Lord Howe Island moves its clocks by 30 minutes: 02:00 becomes 02:30.
        zone = ZoneInfo("Australia/Lord_Howe")

        resolved = resolve_local(wall(2026, 10, 4, 2, 10), zone)

        assert resolved.astimezone(zone).replace(tzinfo=None) == wall(
            2026, 10, 4, 2, 30
        )

    def test_ordinary_time(self) -> None:
        assert resolve_local(wall(2026, 6, 1, 9, 0), BERLIN) == utc(2026, 6, 1, 7, 0)


class TestAddDelay:
    def test_minutes_are_elapsed_time(self) -> None:
        # 01:30 EST plus one hour crosses the gap and is 03:30 EDT.
        start = local(NEW_YORK, 2026, 3, 8, 1, 30)

        due = add_delay(start, Delay(60, "minutes"), rules(NEW_YORK))

        assert due == start + timedelta(hours=1)
        assert due.astimezone(NEW_YORK).hour == 3

    def test_hours_are_elapsed_time(self) -> None:
        start = local(BERLIN, 2026, 10, 25, 1, 30)

        due = add_delay(start, Delay(2, "hours"), rules(BERLIN))

        assert due - start == timedelta(hours=2)

    @pytest.mark.parametrize(
        ("zone", "start", "elapsed"),
        [
            (NEW_YORK, wall(2026, 3, 7, 9, 0), timedelta(hours=23)),
            (NEW_YORK, wall(2026, 10, 31, 9, 0), timedelta(hours=25)),
            (BERLIN, wall(2026, 3, 28, 9, 0), timedelta(hours=23)),
            (BERLIN, wall(2026, 10, 24, 9, 0), timedelta(hours=25)),
            (SYDNEY, wall(2026, 10, 3, 9, 0), timedelta(hours=23)),
            (SYDNEY, wall(2026, 4, 4, 9, 0), timedelta(hours=25)),
        ],
    )
    def test_day_keeps_wall_time_across_dst(
        self, zone: ZoneInfo, start: datetime, elapsed: timedelta
    ) -> None:
        previous = start.replace(tzinfo=zone).astimezone(UTC)

        due = add_delay(previous, Delay(1, "days"), rules(zone))

        assert due.astimezone(zone).time() == time(9, 0)
        assert due - previous == elapsed

    def test_day_into_skipped_hour(self) -> None:
        previous = local(NEW_YORK, 2026, 3, 7, 2, 30)

        due = add_delay(previous, Delay(1, "days"), rules(NEW_YORK))

        assert due == utc(2026, 3, 8, 7, 0)

    def test_day_into_repeated_hour(self) -> None:
        previous = local(NEW_YORK, 2026, 10, 31, 1, 30)

        due = add_delay(previous, Delay(1, "days"), rules(NEW_YORK))

        assert due == utc(2026, 11, 1, 5, 30)

    def test_business_day_after_friday(self) -> None:
        friday = local(BERLIN, 2026, 12, 4, 10, 0)

        due = add_delay(friday, Delay(1, "business_days"), rules(BERLIN))

        assert due == local(BERLIN, 2026, 12, 7, 10, 0)

    def test_business_day_after_saturday(self) -> None:
        saturday = local(BERLIN, 2026, 12, 5, 10, 0)

        due = add_delay(saturday, Delay(1, "business_days"), rules(BERLIN))

        assert due == local(BERLIN, 2026, 12, 7, 10, 0)

    def test_business_days_skip_holidays(self) -> None:
        christmas_eve = local(BERLIN, 2026, 12, 24, 10, 0)
        holidays = frozenset({date(2026, 12, 25), date(2026, 12, 28)})

        due = add_delay(
            christmas_eve, Delay(2, "business_days"), rules(BERLIN, holidays=holidays)
        )

        # Friday 25th and Monday 28th are holidays, so Tuesday and Wednesday count.
        assert due == local(BERLIN, 2026, 12, 30, 10, 0)

    def test_zero_business_days(self) -> None:
        sunday = local(BERLIN, 2026, 12, 6, 10, 0)

        due = add_delay(sunday, Delay(0, "business_days"), rules(BERLIN))

        assert due == sunday

    def test_business_days_all_holidays(self) -> None:
        start = date(2026, 1, 1)
        holidays = frozenset(start + timedelta(days=n) for n in range(800))

        with pytest.raises(NoSendableTime):
            add_delay(
                local(BERLIN, 2026, 1, 1, 9, 0),
                Delay(1, "business_days"),
                rules(BERLIN, holidays=holidays),
            )


class TestNextSendable:
    def test_inside_window(self) -> None:
        tuesday = local(NEW_YORK, 2026, 12, 8, 11, 15)

        assert next_sendable(tuesday, rules(NEW_YORK, OFFICE_HOURS)) == tuesday

    def test_before_opening(self) -> None:
        early = local(NEW_YORK, 2026, 12, 8, 6, 0)

        due = next_sendable(early, rules(NEW_YORK, OFFICE_HOURS))

        assert due == local(NEW_YORK, 2026, 12, 8, 9, 0)

    def test_at_closing(self) -> None:
        closing = local(NEW_YORK, 2026, 12, 8, 17, 0)

        due = next_sendable(closing, rules(NEW_YORK, OFFICE_HOURS))

        assert due == local(NEW_YORK, 2026, 12, 9, 9, 0)

    def test_friday_evening_waits_for_monday(self) -> None:
        friday = local(NEW_YORK, 2026, 12, 4, 18, 0)

        due = next_sendable(friday, rules(NEW_YORK, OFFICE_HOURS))

        assert due == local(NEW_YORK, 2026, 12, 7, 9, 0)

    def test_holiday_is_skipped(self) -> None:
        friday = local(NEW_YORK, 2026, 12, 4, 18, 0)
        holidays = frozenset({date(2026, 12, 7)})

        due = next_sendable(friday, rules(NEW_YORK, OFFICE_HOURS, holidays))

        assert due == local(NEW_YORK, 2026, 12, 8, 9, 0)

    def test_window_in_lead_zone(self) -> None:
        # 09:00 in Berlin is 08:00 UTC in winter, 03:00 in New York.
        instant = utc(2026, 12, 8, 8, 0)

        assert next_sendable(instant, rules(BERLIN, OFFICE_HOURS)) == instant
        assert next_sendable(instant, rules(NEW_YORK, OFFICE_HOURS)) == utc(
            2026, 12, 8, 14, 0
        )

    def test_holiday_without_window(self) -> None:
        evening = local(BERLIN, 2026, 12, 24, 20, 0)
        holidays = frozenset({date(2026, 12, 25), date(2026, 12, 26)})

        due = next_sendable(evening, rules(BERLIN, holidays=holidays))

        assert due == evening
        assert next_sendable(
            local(BERLIN, 2026, 12, 25, 8, 0), rules(BERLIN, holidays=holidays)
        ) == local(BERLIN, 2026, 12, 27, 0, 0)

    @pytest.mark.parametrize(
        ("zone", "day", "opens"),
        [
            (NEW_YORK, date(2026, 3, 8), utc(2026, 3, 8, 7, 0)),
            (BERLIN, date(2026, 3, 29), utc(2026, 3, 29, 1, 0)),
            (SYDNEY, date(2026, 10, 4), utc(2026, 10, 3, 16, 0)),
        ],
    )
    def test_window_opening_in_skipped_hour(
        self, zone: ZoneInfo, day: date, opens: datetime
    ) -> None:
        window = SendWindow(weekdays=EVERY_DAY, start=time(2, 30), end=time(5, 0))
        midnight = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)

        assert next_sendable(midnight, rules(zone, window)) == opens

    def test_window_inside_skipped_hour_is_closed(self) -> None:
        window = SendWindow(weekdays=EVERY_DAY, start=time(2, 10), end=time(2, 50))
        midnight = local(NEW_YORK, 2026, 3, 8, 0, 0)

        due = next_sendable(midnight, rules(NEW_YORK, window))

        assert due == local(NEW_YORK, 2026, 3, 9, 2, 10)

    @pytest.mark.parametrize(
        ("zone", "day", "first"),
        [
            (NEW_YORK, date(2026, 11, 1), utc(2026, 11, 1, 5, 30)),
            (BERLIN, date(2026, 10, 25), utc(2026, 10, 25, 0, 30)),
            (SYDNEY, date(2026, 4, 5), utc(2026, 4, 4, 15, 30)),
        ],
    )
    def test_window_opening_in_repeated_hour(
        self, zone: ZoneInfo, day: date, first: datetime
    ) -> None:
        start = time(1, 30) if zone is NEW_YORK else time(2, 30)
        window = SendWindow(weekdays=EVERY_DAY, start=start, end=time(12, 0))
        midnight = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)

        assert next_sendable(midnight, rules(zone, window)) == first

    def test_repeated_hour_runs_once(self) -> None:
        # The window 01:00-01:30 ends at the first 01:30, so the repeated
        # 01:00-01:30 after it belongs to no window and waits for the next day.
        window = SendWindow(weekdays=EVERY_DAY, start=time(1, 0), end=time(1, 30))
        second_pass = local(NEW_YORK, 2026, 11, 1, 1, 10, fold=1)

        due = next_sendable(second_pass, rules(NEW_YORK, window))

        assert due == local(NEW_YORK, 2026, 11, 2, 1, 0)

    def test_window_only_on_holidays(self) -> None:
        saturdays = frozenset(
            date(2026, 12, 5) + timedelta(weeks=week) for week in range(110)
        )
        window = SendWindow(weekdays=frozenset({5}), start=time(9), end=time(17))

        with pytest.raises(NoSendableTime, match="not a holiday"):
            next_sendable(utc(2026, 12, 4), rules(BERLIN, window, saturdays))

    def test_naive_instant_rejected(self) -> None:
        with pytest.raises(ValueError, match="UTC offset"):
            next_sendable(wall(2026, 12, 4), rules(BERLIN))


class TestNextRunAt:
    def test_delay_then_window(self) -> None:
        # Thursday 16:30 plus one hour is after closing, so Friday 09:00.
        thursday = local(NEW_YORK, 2026, 12, 3, 16, 30)

        due = next_run_at(thursday, Delay(1, "hours"), rules(NEW_YORK, OFFICE_HOURS))

        assert due == local(NEW_YORK, 2026, 12, 4, 9, 0)

    def test_two_business_days_over_weekend(self) -> None:
        thursday = local(BERLIN, 2026, 12, 3, 10, 0)

        due = next_run_at(
            thursday, Delay(2, "business_days"), rules(BERLIN, OFFICE_HOURS)
        )

        assert due == local(BERLIN, 2026, 12, 7, 10, 0)

    def test_day_delay_into_skipped_hour_window(self) -> None:
        window = SendWindow(weekdays=EVERY_DAY, start=time(2, 0), end=time(4, 0))
        previous = local(BERLIN, 2026, 3, 28, 2, 15)

        due = next_run_at(previous, Delay(1, "days"), rules(BERLIN, window))

        assert due == utc(2026, 3, 29, 1, 0)


class TestPickZone:
    def test_lead_first(self) -> None:
        zone, source = pick_zone("Europe/Berlin", "America/New_York", "UTC")

        assert (zone.key, source) == ("Europe/Berlin", "lead")

    def test_invalid_lead_zone_falls_back(self) -> None:
        zone, source = pick_zone("Mars/Olympus_Mons", "America/New_York", "UTC")

        assert (zone.key, source) == ("America/New_York", "sequence")

    def test_workspace_last(self) -> None:
        zone, source = pick_zone("", None, "Australia/Sydney")

        assert (zone.key, source) == ("Australia/Sydney", "workspace")

    def test_nothing_valid(self) -> None:
        zone, source = pick_zone("nope", "../etc/passwd", "Bad/Zone")

        assert (zone.key, source) == ("UTC", "workspace")


ZONES = st.sampled_from(
    [
        "UTC",
        "America/New_York",
        "Europe/Berlin",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "America/St_Johns",
        "Asia/Kolkata",
        "Pacific/Chatham",
    ]
).map(ZoneInfo)
INSTANTS = st.datetimes(min_value=wall(2025, 1, 1), max_value=wall(2029, 12, 31)).map(
    lambda naive: naive.replace(tzinfo=UTC)
)
UNITS: st.SearchStrategy[DelayUnit] = st.sampled_from(
    ["minutes", "hours", "days", "business_days"]
)


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    weekdays = draw(st.frozensets(st.integers(0, 6), min_size=1))
    start = draw(st.integers(0, 23 * 60 + 58))
    end = draw(st.integers(start + 1, 23 * 60 + 59))
    return SendWindow(
        weekdays=weekdays,
        start=time(start // 60, start % 60),
        end=time(end // 60, end % 60),
    )


@st.composite
def schedule_rules(draw: st.DrawFn) -> ScheduleRules:
    zone = draw(ZONES)
    window = draw(st.none() | windows())
    holidays = draw(
        st.frozensets(
            st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 12, 31)),
            max_size=40,
        )
    )
    return ScheduleRules(
        zone=zone, zone_source="sequence", window=window, holidays=holidays
    )


def is_allowed(instant: datetime, rules: ScheduleRules) -> bool:
    wall = instant.astimezone(rules.zone)
    if wall.date() in rules.holidays:
        return False
    window = rules.window
    if window is None:
        return True
    if wall.weekday() not in window.weekdays:
        return False
    opens = resolve_local(datetime.combine(wall.date(), window.start), rules.zone)
    closes = resolve_local(datetime.combine(wall.date(), window.end), rules.zone)
    return opens <= instant < closes


class TestScheduleProperties:
    @settings(max_examples=300, deadline=None)
    @given(instant=INSTANTS, rules=schedule_rules())
    def test_result_is_allowed(self, instant: datetime, rules: ScheduleRules) -> None:
        due = next_sendable(instant, rules)

        assert due >= instant
        assert is_allowed(due, rules)

    @settings(max_examples=300, deadline=None)
    @given(instant=INSTANTS, rules=schedule_rules())
    def test_no_earlier_allowed_minute(
        self, instant: datetime, rules: ScheduleRules
    ) -> None:
        due = next_sendable(instant, rules)
        earlier = due - timedelta(minutes=1)

        if earlier >= instant:
            assert not is_allowed(earlier, rules)

    @settings(max_examples=200, deadline=None)
    @given(instant=INSTANTS, rules=schedule_rules())
    def test_idempotent(self, instant: datetime, rules: ScheduleRules) -> None:
        due = next_sendable(instant, rules)

        assert next_sendable(due, rules) == due

    @settings(max_examples=200, deadline=None)
    @given(
        first=INSTANTS,
        gap=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20)),
        rules=schedule_rules(),
    )
    def test_monotonic(
        self, first: datetime, gap: timedelta, rules: ScheduleRules
    ) -> None:
        assert next_sendable(first, rules) <= next_sendable(first + gap, rules)

    @settings(max_examples=300, deadline=None)
    @given(
        previous=INSTANTS,
        amount=st.integers(0, 400),
        unit=UNITS,
        rules=schedule_rules(),
    )
    def test_never_before_delay(
        self, previous: datetime, amount: int, unit: DelayUnit, rules: ScheduleRules
    ) -> None:
        delay = Delay(amount, unit)

        due = next_run_at(previous, delay, rules)

        assert due >= add_delay(previous, delay, rules)
        assert due >= previous
        assert is_allowed(due, rules)

    @settings(max_examples=300, deadline=None)
    @given(previous=INSTANTS, amount=st.integers(0, 366), zone=ZONES)
    def test_days_keep_wall_time(
        self, previous: datetime, amount: int, zone: ZoneInfo
    ) -> None:
        wall = previous.astimezone(zone).replace(tzinfo=None)
        target = wall + timedelta(days=amount)

        due = add_delay(previous, Delay(amount, "days"), rules(zone))

        assert due.astimezone(zone).date() == target.date()
        if resolve_local(target, zone).astimezone(zone).replace(tzinfo=None) == target:
            assert due.astimezone(zone).replace(tzinfo=None) == target

    @settings(max_examples=300, deadline=None)
    @given(
        previous=INSTANTS,
        amount=st.integers(0, 30),
        zone=ZONES,
        holidays=st.frozensets(
            st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 12, 31)),
            max_size=40,
        ),
    )
    def test_business_days_count(
        self,
        previous: datetime,
        amount: int,
        zone: ZoneInfo,
        holidays: frozenset[date],
    ) -> None:
        start = previous.astimezone(zone).date()

        due = add_delay(
            previous, Delay(amount, "business_days"), rules(zone, holidays=holidays)
        )

        end = due.astimezone(zone).date()
        between = [start + timedelta(days=n) for n in range(1, (end - start).days + 1)]
        counted = [d for d in between if d.weekday() < 5 and d not in holidays]
        assert len(counted) == amount
        if amount:
            assert end.weekday() < 5
            assert end not in holidays
