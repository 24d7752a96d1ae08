"""The caller's workspace: reading it, changing it, and its zone in nurture schedules."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import create_api_key
from app.models import Event, Workspace
from tests.conftest import make_workspace_key
from tests.nurture.conftest import create_lead, create_sequence, enroll

OFFICE_HOURS = {
    "weekdays": ["mon", "tue", "wed", "thu", "fri"],
    "start": "09:00",
    "end": "17:00",
}


async def patch_workspace(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: object
) -> httpx.Response:
    return await client.patch("/v1/workspace", json=fields, headers=auth)


class TestGetWorkspace:
    async def test_shows_own_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], workspace: Workspace
    ) -> None:
        response = await client.get("/v1/workspace", headers=auth)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "workspace"
        assert body["id"] == ids.encode("workspace", workspace.id)
        assert body["name"] == "Acme Test"
        assert body["timezone"] == "UTC"
        assert body["default_currency"] == "USD"
        assert body["version"] == 1
        assert {"created_at", "updated_at"} <= body.keys()
        assert response.headers["ETag"] == '"1"'

    async def test_any_scope(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        other, headers = await make_workspace_key(session, scopes=("events:read",))

        response = await client.get("/v1/workspace", headers=headers)

        assert response.status_code == 200, response.text
        assert response.json()["id"] == ids.encode("workspace", other.id)

    async def test_publishable_key_rejected(
        self, client: httpx.AsyncClient, session: AsyncSession, workspace: Workspace
    ) -> None:
        key = await create_api_key(
            session,
            workspace_id=workspace.id,
            name="site",
            scopes=["leads:read"],
            kind="publishable",
        )
        await session.commit()

        response = await client.get(
            "/v1/workspace", headers={"Authorization": f"Bearer {key.secret}"}
        )

        assert response.status_code == 403

    async def test_needs_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/workspace")

        assert response.status_code == 401


class TestUpdateWorkspace:
    async def test_name(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await patch_workspace(client, auth, name="Acme GmbH")

        assert response.status_code == 200, response.text
        assert response.json()["name"] == "Acme GmbH"
        assert response.json()["version"] == 2
        assert response.headers["ETag"] == '"2"'
        fetched = await client.get("/v1/workspace", headers=auth)
        assert fetched.json()["name"] == "Acme GmbH"

    async def test_timezone(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await patch_workspace(client, auth, timezone="Europe/Berlin")

        assert response.status_code == 200, response.text
        assert response.json()["timezone"] == "Europe/Berlin"

    async def test_default_currency(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await patch_workspace(client, auth, default_currency="EUR")

        assert response.status_code == 200, response.text
        assert response.json()["default_currency"] == "EUR"

    async def test_same_values_keep_version(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await patch_workspace(client, auth, name="Acme Test")

        assert response.status_code == 200, response.text
        assert response.json()["version"] == 1
        types = (await session.scalars(select(Event.type))).all()
        assert "workspace.updated" not in types

    async def test_bad_values(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        cases: list[tuple[dict[str, object], str]] = [
            ({"timezone": "Mars/Base"}, "timezone"),
            ({"timezone": "utc+2"}, "timezone"),
            ({"name": ""}, "name"),
            ({"name": "x" * 201}, "name"),
            ({"default_currency": "XYZ"}, "default_currency"),
            ({"default_currency": "eur"}, "default_currency"),
            ({"owner": "me"}, "owner"),
        ]
        for body, field in cases:
            response = await client.patch("/v1/workspace", json=body, headers=auth)

            assert response.status_code == 422, body
            assert response.json()["errors"][0]["field"] == field, body
        fetched = (await client.get("/v1/workspace", headers=auth)).json()
        assert (fetched["timezone"], fetched["version"]) == ("UTC", 1)

    async def test_null_is_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for field in ("name", "timezone", "default_currency"):
            response = await client.patch(
                "/v1/workspace", json={field: None}, headers=auth
            )

            assert response.status_code == 422, field
            errors = response.json()["errors"]
            assert [error["field"] for error in errors] == [field]
            assert errors[0]["code"] == "null_not_allowed"

    async def test_stale_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await client.patch(
            "/v1/workspace",
            json={"name": "First"},
            headers={**auth, "If-Match": '"1"'},
        )
        second = await client.patch(
            "/v1/workspace",
            json={"name": "Second"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert first.status_code == 200, first.text
        assert second.status_code == 412
        fetched = (await client.get("/v1/workspace", headers=auth)).json()
        assert fetched["name"] == "First"

    async def test_needs_write_scope(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, headers = await make_workspace_key(session, scopes=("leads:read",))

        response = await patch_workspace(client, headers, name="Renamed")

        assert response.status_code == 403
        assert response.json()["missing_scope"] == "workspace:write"

    async def test_other_workspace_untouched(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        other, headers = await make_workspace_key(session)

        response = await patch_workspace(client, headers, name="Other GmbH")

        assert response.status_code == 200, response.text
        assert response.json()["id"] == ids.encode("workspace", other.id)
        mine = (await client.get("/v1/workspace", headers=auth)).json()
        assert mine["name"] == "Acme Test"

    async def test_emits_event(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        response = await patch_workspace(
            client, auth, name="Acme KK", timezone="Asia/Tokyo"
        )

        assert response.status_code == 200, response.text
        event = await session.scalar(
            select(Event).where(Event.type == "workspace.updated")
        )
        assert event is not None
        assert event.object_type == "workspace"
        assert event.object_id == workspace.id
        assert event.data == response.json()


class TestScheduleZone:
    async def test_falls_back_to_workspace_zone(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        changed = await patch_workspace(client, auth, timezone="Asia/Tokyo")
        assert changed.status_code == 200, changed.text
        created = await client.post(
            "/v1/sequences",
            json={
                "name": "Office hours",
                "send_window": OFFICE_HOURS,
                "steps": [
                    {
                        "delay": {"amount": 0, "unit": "minutes"},
                        "subject": "Hi {{ first_name }}",
                        "body_text": "Hello {{ first_name }}.",
                    }
                ],
            },
            headers=auth,
        )
        assert created.status_code == 201, created.text
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, created.json()["id"], lead["id"])

        response = await client.get(
            f"/v1/enrollments/{enrollment['id']}/schedule", headers=auth
        )

        assert response.status_code == 200, response.text
        step = response.json()["steps"][0]
        assert step["timezone"] == "Asia/Tokyo"
        assert step["timezone_source"] == "workspace"
        assert step["local_due_at"].endswith("+09:00")

    async def test_default_sequence_uses_workspace_zone(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await patch_workspace(client, auth, timezone="America/New_York")
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        response = await client.get(
            f"/v1/enrollments/{enrollment['id']}/schedule", headers=auth
        )

        step = response.json()["steps"][0]
        assert step["timezone"] == "America/New_York"
        assert step["timezone_source"] == "workspace"
