"""What a lead's merge, erasure and data export do to the rows that describe it."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Event, LeadConsent, LeadEngagement, LeadTouch
from tests.leads.factories import create_form, create_publishable_key

ORIGIN = "https://www.example.com"


async def post_lead(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = await client.post("/v1/leads", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def capture_with_consent(
    client: httpx.AsyncClient, auth: dict[str, str], email: str
) -> None:
    form = await create_form(
        client, auth, consent_text="Email me about Acme.", consent_version="v1"
    )
    key = await create_publishable_key(client, auth, form["id"])
    response = await client.post(
        f"/v1/capture/{form['id']}",
        json={"email": email, "consent": True},
        headers={
            "Authorization": f"Bearer {key}",
            "Origin": ORIGIN,
            "Referer": f"{ORIGIN}/signup?email={email}",
            "User-Agent": "Browser/1.0",
        },
    )
    assert response.status_code == 200, response.text


class TestMergeMovesTouches:
    async def test_touches_and_consents_move(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        duplicate = await post_lead(
            client, auth, email="ada@old.example", attribution={"utm_source": "ads"}
        )
        await capture_with_consent(client, auth, "ada@old.example")
        survivor = await post_lead(client, auth, email="ada@new.example")

        response = await client.post(
            f"/v1/leads/{survivor['id']}/merge",
            json={"duplicate_id": duplicate["id"]},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        merged = response.json()
        touches = (
            await client.get(f"/v1/leads/{survivor['id']}/touches", headers=auth)
        ).json()["data"]
        assert len(touches) == 3
        assert merged["first_touch_id"] == duplicate["first_touch_id"]
        assert merged["last_touch_id"] == survivor["first_touch_id"]
        consent = await session.scalar(select(LeadConsent))
        assert consent is not None
        assert ids.encode("lead", consent.lead_id) == survivor["id"]
        moved = await client.get(f"/v1/leads/{duplicate['id']}/touches", headers=auth)
        assert moved.json()["data"] == []


class TestEraseScrubsTouches:
    async def test_referrer_and_device_removed(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await capture_with_consent(client, auth, "ada@example.com")
        lead_id = (await client.get("/v1/leads", headers=auth)).json()["data"][0]["id"]

        response = await client.post(f"/v1/leads/{lead_id}/erase", headers=auth)

        assert response.status_code == 200, response.text
        touch = await session.scalar(select(LeadTouch))
        consent = await session.scalar(select(LeadConsent))
        assert touch is not None
        assert consent is not None
        await session.refresh(touch)
        await session.refresh(consent)
        assert touch.referrer is None
        assert touch.landing_page is None
        assert touch.channel == "web_form"
        assert consent.ip_address is None
        assert consent.user_agent is None
        assert consent.consent_version == "v1"


class TestExportIncludesTouches:
    async def test_sections(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await capture_with_consent(client, auth, "ada@example.com")
        lead_id = (await client.get("/v1/leads", headers=auth)).json()["data"][0]["id"]

        response = await client.get(f"/v1/leads/{lead_id}/export", headers=auth)

        assert response.status_code == 200, response.text
        export = response.json()["data"]
        assert [touch["channel"] for touch in export["touches"]] == ["web_form"]
        assert export["consents"][0]["consent_text"] == "Email me about Acme."
        assert export["consents"][0]["user_agent"] == "Browser/1.0"


class TestEraseActivities:
    async def test_text_removed_and_exported(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, email="ada@example.com")
        created = await client.post(
            "/v1/activities",
            json={"kind": "note", "lead_id": lead["id"], "body": "Met at the fair"},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        exported = await client.get(f"/v1/leads/{lead['id']}/export", headers=auth)
        assert exported.json()["data"]["activities"][0]["body"] == "Met at the fair"

        response = await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        assert response.status_code == 200, response.text
        activity = await client.get(
            f"/v1/activities/{created.json()['id']}", headers=auth
        )
        assert activity.json()["body"] is None
        assert activity.json()["kind"] == "note"


class TestUpdateErased:
    async def test_personal_field_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, email="ada@example.com")
        await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        response = await client.patch(
            f"/v1/leads/{lead['id']}", json={"first_name": "Back"}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "lead_erased"
        fetched = await client.get(f"/v1/leads/{lead['id']}", headers=auth)
        assert fetched.json()["first_name"] is None

    async def test_status_still_changes(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, email="ada@example.com")
        await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        response = await client.patch(
            f"/v1/leads/{lead['id']}", json={"status": "working"}, headers=auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "working"


class TestMergeMovesActivities:
    async def test_activity_follows_survivor(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        duplicate = await post_lead(client, auth, email="ada@old.example")
        survivor = await post_lead(client, auth, email="ada@new.example")
        created = await client.post(
            "/v1/activities",
            json={"kind": "call", "lead_id": duplicate["id"], "subject": "Intro"},
            headers=auth,
        )
        assert created.status_code == 201, created.text

        await client.post(
            f"/v1/leads/{survivor['id']}/merge",
            json={"duplicate_id": duplicate["id"]},
            headers=auth,
        )

        activity = await client.get(
            f"/v1/activities/{created.json()['id']}", headers=auth
        )
        assert activity.json()["lead_id"] == survivor["id"]


class TestEraseEverywhere:
    async def test_tags_engagements_and_events(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await post_lead(
            client, auth, email="zqx@example.com", first_name="Zqx", tags=["zqx"]
        )
        engaged = await client.post(
            f"/v1/leads/{lead['id']}/engagements",
            json={"type": "page_visited", "metadata": {"url": "https://x/?e=zqx"}},
            headers=auth,
        )
        assert engaged.status_code == 201, engaged.text

        response = await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        assert response.status_code == 200, response.text
        assert response.json()["tags"] == []
        engagement = await session.scalar(select(LeadEngagement))
        assert engagement is not None
        await session.refresh(engagement)
        assert engagement.details == {}
        for event in (await session.scalars(select(Event))).all():
            await session.refresh(event)
            assert "zqx" not in str(event.data).lower(), event.type

    async def test_merged_duplicate_erased_too(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        duplicate = await post_lead(client, auth, email="ada@old.example", notes="x")
        survivor = await post_lead(client, auth, email="ada@new.example")
        await client.post(
            f"/v1/leads/{survivor['id']}/merge",
            json={"duplicate_id": duplicate["id"]},
            headers=auth,
        )

        await client.post(f"/v1/leads/{survivor['id']}/erase", headers=auth)

        merged = (await client.get(f"/v1/leads/{duplicate['id']}", headers=auth)).json()
        assert merged["erased_at"] is not None
        assert merged["notes"] is None
        assert "ada@old" not in merged["email"]

    async def test_no_new_engagement_or_conversion(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, email="ada@example.com")
        await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        engaged = await client.post(
            f"/v1/leads/{lead['id']}/engagements",
            json={"type": "email_opened"},
            headers=auth,
        )
        converted = await client.post(f"/v1/leads/{lead['id']}/convert", headers=auth)

        assert engaged.status_code == 409
        assert engaged.json()["code"] == "lead_erased"
        assert converted.status_code == 409
        assert converted.json()["code"] == "lead_erased"
