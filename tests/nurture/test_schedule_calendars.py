"""The holiday calendar resource under /v1/holiday-calendars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Event, HolidayCalendar
from tests.conftest import make_workspace_key
from tests.nurture.conftest import JsonObject

BASE = "/v1/holiday-calendars"


async def create_calendar(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    dates: list[str] | None = None,
    **fields: object,
) -> httpx.Response:
    body = {"name": "Germany 2026", "dates": dates or ["2026-12-25"], **fields}
    return await client.post(BASE, json=body, headers=auth)


async def created(client: httpx.AsyncClient, auth: dict[str, str]) -> JsonObject:
    response = await create_calendar(client, auth)
    assert response.status_code == 201, response.text
    data: JsonObject = response.json()
    return data


async def events(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(Event.type)
        .where(Event.object_type == "holiday_calendar")
        .order_by(Event.created_at, Event.sequence)
    )
    return list(rows)


class TestCreateHolidayCalendar:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await create_calendar(
            client,
            auth,
            ["2026-12-26", "2026-12-25", "2026-12-26"],
            description="Public holidays in Berlin",
        )

        assert response.status_code == 201, response.text
        calendar = response.json()
        assert calendar["id"].startswith("hcal_")
        assert calendar["object"] == "holiday_calendar"
        assert calendar["dates"] == ["2026-12-25", "2026-12-26"]
        assert calendar["description"] == "Public holidays in Berlin"
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"{BASE}/{calendar['id']}"
        assert await events(session) == ["holiday_calendar.created"]

    async def test_invalid_date(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await create_calendar(
            client, auth, ["2026-12-25", "2026-13-01", "25/12/2026", "2026-12-25T00:00"]
        )

        assert response.status_code == 422
        fields = [error["field"] for error in response.json()["errors"]]
        assert fields == ["dates.1", "dates.2", "dates.3"]
        count = select(func.count()).select_from(HolidayCalendar)
        assert await session.scalar(count) == 0

    async def test_too_many_dates(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC).date()
        dates = [(start + timedelta(days=n)).isoformat() for n in range(1_001)]

        response = await create_calendar(client, auth, dates)

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "dates"

    async def test_read_scope_cannot_create(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, reader = await make_workspace_key(session, scopes=("nurture:read",))

        response = await create_calendar(client, reader)

        assert response.status_code == 403


class TestReadHolidayCalendar:
    async def test_get_and_list(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        calendar = await created(client, auth)

        fetched = await client.get(f"{BASE}/{calendar['id']}", headers=auth)
        listed = await client.get(BASE, headers=auth)

        assert fetched.status_code == 200
        assert fetched.json() == calendar
        assert [item["id"] for item in listed.json()["data"]] == [calendar["id"]]

    async def test_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        calendar = await created(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.get(f"{BASE}/{calendar['id']}", headers=other)
        listed = await client.get(BASE, headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "holiday_calendar_not_found"
        assert listed.json()["data"] == []


class TestUpdateHolidayCalendar:
    async def test_replaces_dates(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        calendar = await created(client, auth)

        response = await client.patch(
            f"{BASE}/{calendar['id']}",
            json={"dates": ["2027-01-01"], "description": "Next year"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert response.json()["dates"] == ["2027-01-01"]
        assert response.json()["description"] == "Next year"
        assert response.json()["version"] == 2
        assert await events(session) == [
            "holiday_calendar.created",
            "holiday_calendar.updated",
        ]

    async def test_stale_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        calendar = await created(client, auth)

        response = await client.patch(
            f"{BASE}/{calendar['id']}",
            json={"name": "Renamed"},
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412

    async def test_null_name(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        calendar = await created(client, auth)

        response = await client.patch(
            f"{BASE}/{calendar['id']}", json={"name": None}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "name"

    async def test_dates_leaving_no_sendable_day(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        calendar = await created(client, auth)
        sequence = await client.post(
            "/v1/sequences",
            json={
                "name": "Sundays",
                "send_window": {"weekdays": ["sun"], "start": "09:00", "end": "12:00"},
                "holiday_calendar_id": calendar["id"],
                "steps": [{"subject": "Hi", "body_text": "Hello"}],
            },
            headers=auth,
        )
        assert sequence.status_code == 201, sequence.text
        today = datetime.now(UTC).date()
        first_sunday = today + timedelta(days=(6 - today.weekday()) % 7)
        sundays = [
            (first_sunday + timedelta(weeks=week)).isoformat() for week in range(110)
        ]

        response = await client.patch(
            f"{BASE}/{calendar['id']}", json={"dates": sundays}, headers=auth
        )

        assert response.status_code == 422
        body = response.json()
        assert body["errors"][0]["field"] == "dates"
        assert body["sequence_id"] == sequence.json()["id"]


class TestDeleteHolidayCalendar:
    async def test_deleted(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        calendar = await created(client, auth)

        response = await client.delete(
            f"{BASE}/{calendar['id']}", headers={**auth, "If-Match": '"1"'}
        )
        fetched = await client.get(f"{BASE}/{calendar['id']}", headers=auth)

        assert response.status_code == 204
        assert fetched.status_code == 404
        assert await events(session) == [
            "holiday_calendar.created",
            "holiday_calendar.deleted",
        ]

    async def test_in_use(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        calendar = await created(client, auth)
        sequence = await client.post(
            "/v1/sequences",
            json={
                "name": "Uses it",
                "holiday_calendar_id": calendar["id"],
                "steps": [{"subject": "Hi", "body_text": "Hello"}],
            },
            headers=auth,
        )
        assert sequence.status_code == 201, sequence.text

        response = await client.delete(f"{BASE}/{calendar['id']}", headers=auth)

        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "holiday_calendar_in_use"
        assert body["sequence_ids"] == [sequence.json()["id"]]
        row = await session.get(
            HolidayCalendar, ids.decode("holiday_calendar", calendar["id"])
        )
        assert row is not None
