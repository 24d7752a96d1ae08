"""Erasure of a lead's personal data, and the export of everything stored about it."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.leads import privacy
from app.models import Event
from tests.conftest import make_workspace_key
from tests.nurture.conftest import create_sequence, enroll

PERSONAL = {
    "email": "ada@acme.com",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines",
    "title": "CTO",
    "phone": "+4930123456",
    "notes": "Met at the fair",
    "attributes": {"linkedin": "ada-l", "size": 50},
}


async def post_lead(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = await client.post("/v1/leads", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def contains_personal(value: Any) -> bool:
    text = str(value)
    return (
        any(
            needle in text
            for needle in (
                "ada@acme.com",
                "Lovelace",
                "Analytical",
                "+4930123456",
                "fair",
            )
        )
        or "ada-l" in text
    )


class TestEraseLead:
    async def test_removes_personal_data(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL, source="web_form")

        response = await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        assert response.status_code == 200, response.text
        erased = response.json()
        assert not contains_personal(erased)
        assert erased["email"].endswith("@erased.invalid")
        assert erased["first_name"] is None
        assert erased["phone_normalized"] is None
        assert erased["company_domain"] is None
        assert erased["attributes"] == {"linkedin": None, "size": None}
        assert erased["erased_at"] is not None
        assert erased["status"] == lead["status"]
        assert erased["source"] == "web_form"
        assert erased["created_at"] == lead["created_at"]

    async def test_scrubs_earlier_events(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)
        await client.patch(
            f"/v1/leads/{lead['id']}", json={"title": "CEO"}, headers=auth
        )

        await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        events = (
            await session.execute(select(Event.type, Event.data).order_by(Event.id))
        ).all()
        assert [event.type for event in events] == [
            "lead.created",
            "lead.updated",
            "lead.erased",
        ]
        for event in events:
            assert not contains_personal(event.data), event.type
            assert event.data["status"] == "new"

    async def test_records_actor(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)

        await client.post(
            f"/v1/leads/{lead['id']}/erase", headers={**auth, "On-Behalf-Of": "rep-7"}
        )

        exported = await client.get(f"/v1/leads/{lead['id']}/export", headers=auth)
        assert "rep-7" in str(exported.json()["data"]["lead"]["erased_by"])

    async def test_twice_changes_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)
        first = await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        second = await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        assert second.status_code == 200
        assert second.json() == first.json()
        types = (await session.scalars(select(Event.type))).all()
        assert types.count("lead.erased") == 1

    async def test_email_reusable(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)
        other = await post_lead(client, auth, email="bob@acme.com")
        await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)
        await client.post(f"/v1/leads/{other['id']}/erase", headers=auth)

        response = await client.post(
            "/v1/leads", json={"email": "ada@acme.com"}, headers=auth
        )

        assert response.status_code == 201

    async def test_if_match(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)

        response = await client.post(
            f"/v1/leads/{lead['id']}/erase", headers={**auth, "If-Match": '"9"'}
        )

        assert response.status_code == 412

    async def test_other_workspace_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)
        _, other = await make_workspace_key(session)

        response = await client.post(f"/v1/leads/{lead['id']}/erase", headers=other)

        assert response.status_code == 404

    async def test_erased_lead_not_mergeable(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)
        other = await post_lead(client, auth, email="bob@acme.com")
        await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        response = await client.post(
            f"/v1/leads/{other['id']}/merge",
            json={"duplicate_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "lead_not_mergeable"


class TestExportLead:
    async def test_sections(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)
        sequence = await create_sequence(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        response = await client.get(f"/v1/leads/{lead['id']}/export", headers=auth)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["lead_id"] == lead["id"]
        data = body["data"]
        assert set(data) == {name for name, _ in privacy.EXPORTERS}
        assert data["lead"]["email"] == "ada@acme.com"
        assert data["lead"]["notes"] == "Met at the fair"
        assert data["lead"]["attributes"] == PERSONAL["attributes"]
        assert [event["type"] for event in data["events"]] == ["lead.created"]
        assert len(data["enrollments"]) == 1
        exported = data["enrollments"][0]
        assert exported["id"] == str(ids.decode("enrollment", enrollment["id"]))
        assert exported["status"] == "active"
        assert exported["step_runs"] == []

    async def test_other_workspace_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/leads/{lead['id']}/export", headers=other)

        assert response.status_code == 404

    async def test_after_erasure_no_personal_data(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, **PERSONAL)
        await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        response = await client.get(f"/v1/leads/{lead['id']}/export", headers=auth)

        assert not contains_personal(response.json())
