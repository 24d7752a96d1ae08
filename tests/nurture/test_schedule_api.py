"""Schedules through the real stack: enrolment, runner, resume and the preview."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import redis.asyncio as aioredis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Enrollment, Lead, Sequence, StepRun
from app.nurture.schedule import (
    Delay,
    ScheduleRules,
    SendWindow,
    next_run_at,
    next_sendable,
)
from app.settings import Settings
from tests.conftest import make_workspace_key
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from workers.tasks import run_enrollment_step

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
OFFICE_HOURS = {
    "weekdays": ["mon", "tue", "wed", "thu", "fri"],
    "start": "09:00",
    "end": "17:00",
}
OFFICE_WINDOW = SendWindow(
    weekdays=frozenset(range(5)), start=time(9, 0), end=time(17, 0)
)


def step(amount: int, unit: str, subject: str = "Hi {{ first_name }}") -> JsonObject:
    return {
        "delay": {"amount": amount, "unit": unit},
        "subject": subject,
        "body_text": "Hello {{ first_name }}.",
    }


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def post_sequence(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> httpx.Response:
    body = {"name": "Scheduled", "steps": [step(0, "minutes")], **fields}
    return await client.post("/v1/sequences", json=body, headers=auth)


async def create_calendar(
    client: httpx.AsyncClient, auth: dict[str, str], dates: list[str]
) -> JsonObject:
    response = await client.post(
        "/v1/holiday-calendars",
        json={"name": "Company holidays", "dates": dates},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    data: JsonObject = response.json()
    return data


async def get_schedule(
    client: httpx.AsyncClient, auth: dict[str, str], enrollment: JsonObject
) -> httpx.Response:
    return await client.get(
        f"/v1/enrollments/{enrollment['id']}/schedule", headers=auth
    )


async def next_run(session: AsyncSession, enrollment: JsonObject) -> datetime:
    value = await session.scalar(
        select(Enrollment.next_run_at).where(
            Enrollment.id == ids.decode("enrollment", str(enrollment["id"]))
        )
    )
    assert value is not None
    return value


def office_rules(
    zone: ZoneInfo, holidays: frozenset[date] = frozenset()
) -> ScheduleRules:
    return ScheduleRules(
        zone=zone, zone_source="lead", window=OFFICE_WINDOW, holidays=holidays
    )


class TestEnrollDueTime:
    async def test_first_step_in_lead_window(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = (
            await post_sequence(
                client,
                auth,
                timezone="America/New_York",
                send_window=OFFICE_HOURS,
                steps=[step(2, "business_days")],
            )
        ).json()
        lead = await create_lead(client, auth, timezone="Asia/Tokyo")

        before = datetime.now(UTC)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        after = datetime.now(UTC)

        due = parse_time(enrollment["next_run_at"])
        rules = office_rules(TOKYO)
        delay = Delay(2, "business_days")
        # The due time is monotonic in the enrolment time, so it lies between the
        # due times of the instants just before and just after the request.
        assert next_run_at(before, delay, rules) <= due
        assert due <= next_run_at(after, delay, rules)
        wall = due.astimezone(TOKYO)
        assert wall.weekday() < 5
        assert time(9, 0) <= wall.time() < time(17, 0)
        assert await next_run(session, enrollment) == due

    async def test_holiday_calendar_skips_dates(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        today = datetime.now(UTC).astimezone(NEW_YORK).date()
        holidays = [(today + timedelta(days=n)).isoformat() for n in range(1, 6)]
        calendar = await create_calendar(client, auth, holidays)
        sequence = (
            await post_sequence(
                client,
                auth,
                timezone="America/New_York",
                holiday_calendar_id=calendar["id"],
                steps=[step(1, "days")],
            )
        ).json()
        lead = await create_lead(client, auth)

        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        due = parse_time(enrollment["next_run_at"])
        assert due.astimezone(NEW_YORK).date() == today + timedelta(days=6)
        assert due.astimezone(NEW_YORK).time() == time(0, 0)

    async def test_invalid_lead_zone_falls_back(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = (
            await post_sequence(
                client, auth, timezone="America/New_York", send_window=OFFICE_HOURS
            )
        ).json()
        lead = await create_lead(client, auth)
        await session.execute(
            update(Lead)
            .where(Lead.id == ids.decode("lead", lead["id"]))
            .values(timezone="Mars/Olympus_Mons")
        )
        await session.commit()

        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        schedule = (await get_schedule(client, auth, enrollment)).json()

        assert schedule["steps"][0]["timezone"] == "America/New_York"
        assert schedule["steps"][0]["timezone_source"] == "sequence"
        wall = parse_time(enrollment["next_run_at"]).astimezone(NEW_YORK)
        assert time(9, 0) <= wall.time() < time(17, 0)


class TestRunnerDueTime:
    async def test_following_step_after_delay(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
        smtp_settings: Settings,
    ) -> None:
        sequence = (
            await post_sequence(
                client,
                auth,
                timezone="Asia/Tokyo",
                steps=[step(0, "minutes", "First"), step(1, "days", "Second")],
            )
        ).json()
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        outcome = await run_enrollment_step(
            job_context, str(ids.decode("enrollment", enrollment["id"]))
        )

        assert outcome == "sent"
        assert [message["Subject"] for message in smtp_server.messages] == ["First"]
        sent_at = await session.scalar(
            select(StepRun.finished_at).where(
                StepRun.enrollment_id == ids.decode("enrollment", enrollment["id"])
            )
        )
        assert sent_at is not None
        rules = ScheduleRules(zone=TOKYO, zone_source="sequence")
        assert await next_run(session, enrollment) == next_run_at(
            sent_at, Delay(1, "days"), rules
        )


class TestResume:
    async def test_overdue_step_waits_for_window(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
    ) -> None:
        sequence = (await post_sequence(client, auth, send_window=OFFICE_HOURS)).json()
        lead = await create_lead(client, auth, timezone="Asia/Tokyo")
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        paused = await client.post(
            f"/v1/enrollments/{enrollment['id']}/pause", headers=auth
        )
        assert paused.status_code == 200, paused.text
        await session.execute(
            update(Enrollment)
            .where(Enrollment.id == ids.decode("enrollment", enrollment["id"]))
            .values(next_run_at=datetime.now(UTC) - timedelta(days=3))
        )
        await session.commit()

        before = datetime.now(UTC)
        resumed = await client.post(
            f"/v1/enrollments/{enrollment['id']}/resume", headers=auth
        )
        after = datetime.now(UTC)

        assert resumed.status_code == 200, resumed.text
        due = parse_time(resumed.json()["next_run_at"])
        rules = office_rules(TOKYO)
        assert next_sendable(before, rules) <= due <= next_sendable(after, rules)

    async def test_future_step_keeps_time(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = (
            await post_sequence(
                client, auth, send_window=OFFICE_HOURS, steps=[step(3, "days")]
            )
        ).json()
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        await client.post(f"/v1/enrollments/{enrollment['id']}/pause", headers=auth)

        resumed = await client.post(
            f"/v1/enrollments/{enrollment['id']}/resume", headers=auth
        )

        assert resumed.json()["next_run_at"] == enrollment["next_run_at"]


class TestSchedulePreview:
    async def test_lists_coming_steps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = (
            await post_sequence(
                client,
                auth,
                send_window=OFFICE_HOURS,
                steps=[
                    step(0, "minutes"),
                    step(1, "days"),
                    step(2, "business_days"),
                    step(90, "minutes"),
                ],
            )
        ).json()
        lead = await create_lead(client, auth, timezone="America/New_York")
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        response = await get_schedule(client, auth, enrollment)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "enrollment_schedule"
        assert body["enrollment_id"] == enrollment["id"]
        steps = body["steps"]
        assert [item["position"] for item in steps] == [0, 1, 2, 3]
        assert [item["step_id"] for item in steps] == [
            item["id"] for item in sequence["steps"]
        ]
        assert {item["kind"] for item in steps} == {"email"}
        assert {item["timezone"] for item in steps} == {"America/New_York"}
        assert {item["timezone_source"] for item in steps} == {"lead"}
        assert steps[0]["due_at"] == enrollment["next_run_at"]
        rules = office_rules(NEW_YORK)
        due = parse_time(steps[0]["due_at"])
        for item, delay in zip(
            steps[1:],
            [Delay(1, "days"), Delay(2, "business_days"), Delay(90, "minutes")],
            strict=True,
        ):
            due = next_run_at(due, delay, rules)
            assert parse_time(item["due_at"]) == due
            local = datetime.fromisoformat(item["local_due_at"])
            assert local == due
            assert local.utcoffset() == due.astimezone(NEW_YORK).utcoffset()

    async def test_business_days_skip_holidays(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        today = datetime.now(UTC).astimezone(NEW_YORK).date()
        holidays = {today + timedelta(days=n) for n in range(1, 4)}
        calendar = await create_calendar(
            client, auth, sorted(day.isoformat() for day in holidays)
        )
        sequence = (
            await post_sequence(
                client,
                auth,
                timezone="America/New_York",
                send_window=OFFICE_HOURS,
                holiday_calendar_id=calendar["id"],
                steps=[step(0, "minutes"), step(2, "business_days")],
            )
        ).json()
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        steps = (await get_schedule(client, auth, enrollment)).json()["steps"]

        first, second = (parse_time(item["due_at"]) for item in steps)
        rules = office_rules(NEW_YORK, frozenset(holidays))
        assert second == next_run_at(first, Delay(2, "business_days"), rules)
        wall = second.astimezone(NEW_YORK)
        assert wall.date() not in holidays
        assert wall.weekday() < 5
        start = first.astimezone(NEW_YORK).date()
        counted = [
            start + timedelta(days=n)
            for n in range(1, (wall.date() - start).days + 1)
            if (start + timedelta(days=n)).weekday() < 5
            and start + timedelta(days=n) not in holidays
        ]
        assert len(counted) == 2

    async def test_finished_is_empty(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        exited = await client.post(
            f"/v1/enrollments/{enrollment['id']}/exit", headers=auth
        )
        assert exited.status_code == 200, exited.text

        response = await get_schedule(client, auth, enrollment)

        assert response.status_code == 200
        assert response.json()["steps"] == []

    async def test_workspace_fallback(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        steps = (await get_schedule(client, auth, enrollment)).json()["steps"]

        assert steps[0]["timezone"] == "UTC"
        assert steps[0]["timezone_source"] == "workspace"
        assert steps[0]["local_due_at"].endswith("+00:00")

    async def test_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        _, other = await make_workspace_key(session)

        response = await get_schedule(client, other, enrollment)

        assert response.status_code == 404
        assert response.json()["code"] == "enrollment_not_found"


class TestSequenceScheduleInput:
    async def test_settings_round_trip(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        calendar = await create_calendar(client, auth, ["2026-12-25"])
        window = {"weekdays": ["fri", "mon"], "start": "08:30", "end": "12:00"}

        response = await post_sequence(
            client,
            auth,
            timezone="Europe/Berlin",
            send_window=window,
            holiday_calendar_id=calendar["id"],
        )

        assert response.status_code == 201, response.text
        sequence = response.json()
        assert sequence["timezone"] == "Europe/Berlin"
        assert sequence["send_window"] == {**window, "weekdays": ["mon", "fri"]}
        assert sequence["holiday_calendar_id"] == calendar["id"]
        assert sequence["steps"][0]["delay"] == {"amount": 0, "unit": "minutes"}

    async def test_unknown_timezone(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(client, auth, timezone="Europe/Atlantis")

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "timezone"

    async def test_window_end_before_start(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        window = {"weekdays": ["mon"], "start": "17:00", "end": "09:00"}

        response = await post_sequence(client, auth, send_window=window)

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "send_window"

    async def test_window_without_weekdays(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        window = {"weekdays": [], "start": "09:00", "end": "17:00"}

        response = await post_sequence(client, auth, send_window=window)

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "send_window.weekdays"

    async def test_window_bad_values(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        window = {"weekdays": ["monday"], "start": "9am", "end": "24:00"}

        response = await post_sequence(client, auth, send_window=window)

        assert response.status_code == 422
        fields = {error["field"] for error in response.json()["errors"]}
        assert fields == {
            "send_window.weekdays.0",
            "send_window.start",
            "send_window.end",
        }

    async def test_unknown_calendar(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        missing = ids.encode("holiday_calendar", ids.new_uuid())

        response = await post_sequence(client, auth, holiday_calendar_id=missing)

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "holiday_calendar_id"

    async def test_window_only_on_holidays(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        today = datetime.now(UTC).date()
        first_sunday = today + timedelta(days=(6 - today.weekday()) % 7)
        sundays = [
            (first_sunday + timedelta(weeks=week)).isoformat() for week in range(110)
        ]
        calendar = await create_calendar(client, auth, sundays)
        window = {"weekdays": ["sun"], "start": "09:00", "end": "17:00"}

        response = await post_sequence(
            client, auth, send_window=window, holiday_calendar_id=calendar["id"]
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "send_window"
        assert error["code"] == "no_sendable_time"

    async def test_calendar_covering_every_day(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        today = datetime.now(UTC).date()
        every_day = [(today + timedelta(days=day)).isoformat() for day in range(1000)]
        calendar = await create_calendar(client, auth, every_day)

        response = await post_sequence(client, auth, holiday_calendar_id=calendar["id"])

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "holiday_calendar_id"
        assert error["code"] == "no_sendable_time"
        assert await session.scalar(select(func.count()).select_from(Sequence)) == 0

    async def test_unknown_delay_unit(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(client, auth, steps=[step(1, "weeks")])

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps.0.delay.unit"

    async def test_delay_limit_per_unit(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_sequence(
            client,
            auth,
            steps=[step(262, "business_days"), step(263, "business_days")],
        )

        assert response.status_code == 422
        errors = response.json()["errors"]
        assert [error["field"] for error in errors] == ["steps.1.delay.amount"]
        assert errors[0]["code"] == "less_than_equal"
        assert "262 business_days" in errors[0]["message"]

    async def test_delay_amount_must_be_integer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        body = step(1, "days")
        body["delay"]["amount"] = "1"

        response = await post_sequence(client, auth, steps=[body])

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps.0.delay.amount"
