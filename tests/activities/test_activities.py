"""Creating, listing, updating and completing activities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event
from tests.activities.factories import create_activity
from tests.conftest import make_workspace_key
from tests.customers.factories import create_contact, create_customer
from tests.leads.test_router import create_lead
from tests.opportunities.factories import create_opportunity
from tests.users.factories import create_user


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


PAST = rfc3339(datetime.now(UTC) - timedelta(days=2))
FUTURE = rfc3339(datetime.now(UTC) + timedelta(days=2))


class TestCreateActivity:
    async def test_logs_call(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        rep = await create_user(client, auth)

        call = await create_activity(
            client,
            auth,
            kind="call",
            subject="Discovery call",
            occurred_at="2026-12-01T10:00:00Z",
            duration_seconds=900,
            outcome="connected",
            lead_id=lead["id"],
            owner_id=rep["id"],
        )

        assert call["id"].startswith("act_")
        assert call["occurred_at"] == "2026-12-01T10:00:00Z"
        assert call["duration_seconds"] == 900
        assert call["owner_id"] == rep["id"]
        assert call["overdue"] is False
        event = await session.scalar(
            select(Event).where(Event.type == "activity.created")
        )
        assert event is not None
        assert event.data["id"] == call["id"]

    async def test_contact_brings_customer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])

        note = await create_activity(
            client, auth, kind="note", body="Prefers email.", contact_id=contact["id"]
        )

        assert note["customer_id"] == customer["id"]
        assert note["contact_id"] == contact["id"]

    async def test_on_behalf_of_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        rep = await create_user(client, auth)

        response = await client.post(
            "/v1/activities",
            json={"kind": "note", "body": "Met at the fair.", "lead_id": lead["id"]},
            headers={**auth, "On-Behalf-Of": rep["id"]},
        )

        assert response.json()["owner_id"] == rep["id"]

    async def test_bad_input(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        customer = await create_customer(client, auth)
        other = await create_customer(client, auth, name="Other")
        contact = await create_contact(client, auth, customer["id"])
        inactive = await create_user(client, auth, active=False)
        on_lead = {"lead_id": lead["id"]}
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"kind": "note", **on_lead}, "body", "missing"),
            ({"kind": "call", **on_lead}, "subject", "missing"),
            (
                {"kind": "call", "subject": "Hi", "due_at": FUTURE, **on_lead},
                "due_at",
                "not_allowed",
            ),
            (
                {"kind": "task", "subject": "Do", "occurred_at": PAST, **on_lead},
                "occurred_at",
                "not_allowed",
            ),
            (
                {"kind": "email", "subject": "Hi", "duration_seconds": 5, **on_lead},
                "duration_seconds",
                "not_allowed",
            ),
            ({"kind": "note", "body": "x"}, "lead_id", "record_missing"),
            (
                {"kind": "note", "body": "x", "lead_id": "lead_" + "0" * 26},
                "lead_id",
                "record_not_found",
            ),
            (
                {
                    "kind": "note",
                    "body": "x",
                    "contact_id": contact["id"],
                    "customer_id": other["id"],
                },
                "contact_id",
                "customer_mismatch",
            ),
            (
                {"kind": "note", "body": "x", "owner_id": inactive["id"], **on_lead},
                "owner_id",
                "inactive",
            ),
            (
                {
                    "kind": "note",
                    "body": "x",
                    "due_at": "2026-12-01T10:00:00",
                    **on_lead,
                },
                "due_at",
                "timezone_aware",
            ),
            ({"kind": "visit", "body": "x", **on_lead}, "kind", "literal_error"),
        ]
        for body, field, code in cases:
            response = await client.post("/v1/activities", json=body, headers=auth)

            assert response.status_code == 422, body
            error = response.json()["errors"][0]
            assert error["field"] == field, body
            assert error["code"] == code, body

    async def test_other_workspace_record(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        _, other_auth = await make_workspace_key(session)

        response = await client.post(
            "/v1/activities",
            json={"kind": "note", "body": "x", "lead_id": lead["id"]},
            headers=other_auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "record_not_found"


class TestTasks:
    async def test_overdue_flag_and_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        late = await create_activity(
            client, auth, kind="task", subject="Call back", due_at=PAST, **_on(lead)
        )
        await create_activity(
            client, auth, kind="task", subject="Send deck", due_at=FUTURE, **_on(lead)
        )
        await create_activity(client, auth, kind="note", body="Hello", **_on(lead))

        overdue = await client.get("/v1/activities?overdue=true", headers=auth)
        rest = await client.get("/v1/activities?overdue=false", headers=auth)

        assert late["overdue"] is True
        assert [a["id"] for a in overdue.json()["data"]] == [late["id"]]
        assert len(rest.json()["data"]) == 2
        assert all(a["overdue"] is False for a in rest.json()["data"])

    async def test_complete(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        task = await create_activity(
            client, auth, kind="task", subject="Call back", due_at=PAST, **_on(lead)
        )

        response = await client.post(
            f"/v1/activities/{task['id']}/complete",
            json={"outcome": "done"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["completed_at"] is not None
        assert body["outcome"] == "done"
        assert body["overdue"] is False
        types = (await session.scalars(select(Event.type))).all()
        assert "activity.completed" in types

    async def test_complete_twice(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        task = await create_activity(
            client, auth, kind="task", subject="Call back", **_on(lead)
        )
        url = f"/v1/activities/{task['id']}/complete"
        await client.post(url, json={}, headers=auth)

        again = await client.post(url, json={}, headers=auth)

        assert again.status_code == 409
        assert again.json()["code"] == "activity_not_completable"

    async def test_complete_note(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        note = await create_activity(client, auth, kind="note", body="x", **_on(lead))

        response = await client.post(
            f"/v1/activities/{note['id']}/complete", json={}, headers=auth
        )

        assert response.status_code == 409


class TestUpdateActivity:
    async def test_changes_fields(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        task = await create_activity(
            client, auth, kind="task", subject="Call", due_at=PAST, **_on(lead)
        )

        response = await client.patch(
            f"/v1/activities/{task['id']}",
            json={"due_at": FUTURE, "subject": "Call again"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert response.json()["subject"] == "Call again"
        assert response.json()["overdue"] is False
        assert response.headers["ETag"] == '"2"'

    async def test_stale_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        note = await create_activity(client, auth, kind="note", body="x", **_on(lead))

        response = await client.patch(
            f"/v1/activities/{note['id']}",
            json={"body": "y"},
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412

    async def test_rejects_due_on_note(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        note = await create_activity(client, auth, kind="note", body="x", **_on(lead))

        response = await client.patch(
            f"/v1/activities/{note['id']}", json={"due_at": FUTURE}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "due_at"


class TestListActivities:
    async def test_filters_by_record(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        opportunity = await create_opportunity(client, auth)
        on_lead = await create_activity(
            client, auth, kind="note", body="lead", **_on(lead)
        )
        on_deal = await create_activity(
            client, auth, kind="note", body="deal", opportunity_id=opportunity["id"]
        )

        by_lead = await client.get(f"/v1/activities?lead_id={lead['id']}", headers=auth)
        by_deal = await client.get(
            f"/v1/activities?opportunity_id={opportunity['id']}", headers=auth
        )
        by_customer = await client.get(
            f"/v1/activities?customer_id={opportunity['customer_id']}", headers=auth
        )

        assert [a["id"] for a in by_lead.json()["data"]] == [on_lead["id"]]
        assert [a["id"] for a in by_deal.json()["data"]] == [on_deal["id"]]
        assert [a["id"] for a in by_customer.json()["data"]] == [on_deal["id"]]

    async def test_filters_by_due_and_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        rep = await create_user(client, auth)
        soon = await create_activity(
            client,
            auth,
            kind="task",
            subject="Soon",
            due_at=FUTURE,
            owner_id=rep["id"],
            **_on(lead),
        )
        await create_activity(
            client, auth, kind="task", subject="Past", due_at=PAST, **_on(lead)
        )

        after = await client.get(
            "/v1/activities",
            params={"due_after": rfc3339(datetime.now(UTC))},
            headers=auth,
        )
        owned = await client.get(f"/v1/activities?owner_id={rep['id']}", headers=auth)

        assert [a["id"] for a in after.json()["data"]] == [soon["id"]]
        assert [a["id"] for a in owned.json()["data"]] == [soon["id"]]


def _on(lead: dict[str, Any]) -> dict[str, Any]:
    return {"lead_id": lead["id"]}
