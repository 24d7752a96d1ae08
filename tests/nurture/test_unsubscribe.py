from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import EmailSuppression, Event
from app.nurture import unsubscribe
from app.nurture.errors import InvalidUnsubscribeToken
from app.settings import Settings
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from workers.tasks import run_enrollment_step

SECRET = "test-secret"


def token_for(enrollment: JsonObject, workspace_id: Any, secret: str) -> str:
    return unsubscribe.sign(
        secret,
        unsubscribe.UnsubscribeToken(
            workspace_id=workspace_id,
            lead_id=ids.decode("lead", str(enrollment["lead_id"])),
            enrollment_id=ids.decode("enrollment", str(enrollment["id"])),
        ),
    )


class TestToken:
    def test_round_trip(self) -> None:
        token = unsubscribe.UnsubscribeToken(
            workspace_id=ids.new_uuid(),
            lead_id=ids.new_uuid(),
            enrollment_id=ids.new_uuid(),
        )

        signed = unsubscribe.sign(SECRET, token)

        assert unsubscribe.verify(SECRET, signed) == token
        assert len(signed) == 87

    def test_other_secret_rejected(self) -> None:
        token = unsubscribe.UnsubscribeToken(
            workspace_id=ids.new_uuid(),
            lead_id=ids.new_uuid(),
            enrollment_id=ids.new_uuid(),
        )
        signed = unsubscribe.sign(SECRET, token)

        with pytest.raises(InvalidUnsubscribeToken):
            unsubscribe.verify("another-secret", signed)

    @pytest.mark.parametrize("index", [0, 1, 20, 60, 86])
    def test_any_changed_character_rejected(self, index: int) -> None:
        token = unsubscribe.UnsubscribeToken(
            workspace_id=ids.new_uuid(),
            lead_id=ids.new_uuid(),
            enrollment_id=ids.new_uuid(),
        )
        signed = unsubscribe.sign(SECRET, token)
        replacement = "A" if signed[index] != "A" else "B"
        tampered = signed[:index] + replacement + signed[index + 1 :]

        with pytest.raises(InvalidUnsubscribeToken):
            unsubscribe.verify(SECRET, tampered)

    @pytest.mark.parametrize(
        "text", ["", "not a token", "abc+/", "A" * 87, "A" * 300, "AQ=="]
    )
    def test_malformed_rejected(self, text: str) -> None:
        with pytest.raises(InvalidUnsubscribeToken):
            unsubscribe.verify(SECRET, text)


class TestUnsubscribeLink:
    async def test_link_from_email_works(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(
            client,
            auth,
            steps=[
                {"subject": "One", "body_text": "First"},
                {
                    "delay": {"amount": 1, "unit": "minutes"},
                    "subject": "Two",
                    "body_text": "Second",
                },
            ],
        )
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        other = await create_sequence(client, auth, name="Other")
        second = await enroll(client, auth, other["id"], lead["id"])
        await run_enrollment_step(
            job_context, str(ids.decode("enrollment", enrollment["id"]))
        )
        link = smtp_server.messages[0]["List-Unsubscribe"].strip("<>")
        path = link.removeprefix("https://api.acme.example")

        response = await client.post(path)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "unsubscribe"
        assert body["lead_id"] == lead["id"]
        assert sorted(body["exited_enrollment_ids"]) == sorted(
            [enrollment["id"], second["id"]]
        )
        for item in (enrollment, second):
            after = (
                await client.get(f"/v1/enrollments/{item['id']}", headers=auth)
            ).json()
            assert after["status"] == "exited"
            assert after["exit_reason"] == "unsubscribed"
        suppression = (await session.scalars(select(EmailSuppression))).one()
        assert suppression.reason == "unsubscribed"
        assert suppression.email_normalized == "ada@example.com"
        assert suppression.enrollment_id == ids.decode("enrollment", enrollment["id"])
        types = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert types.count("enrollment.exited") == 2
        assert types[-1] == "lead.unsubscribed"

    async def test_one_click_post_repeatable(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        settings: Settings,
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        suppressed = await session.scalars(select(EmailSuppression))
        assert suppressed.all() == []
        workspace_id = (await session.scalars(select(Event.workspace_id))).first()
        token = token_for(
            enrollment, workspace_id, settings.signing_secret.get_secret_value()
        )

        first = await client.post(
            f"/v1/unsubscribe/{token}",
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        second = await client.post(
            f"/v1/unsubscribe/{token}",
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

        assert first.status_code == 200, first.text
        assert first.json()["exited_enrollment_ids"] == [enrollment["id"]]
        assert second.status_code == 200
        assert second.json()["exited_enrollment_ids"] == []
        types = list(await session.scalars(select(Event.type)))
        assert types.count("lead.unsubscribed") == 1
        again = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )
        assert again.status_code == 409
        assert again.json()["code"] == "lead_unsubscribed"

    async def test_tampered_token_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        settings: Settings,
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        workspace_id = (await session.scalars(select(Event.workspace_id))).first()
        token = token_for(
            enrollment, workspace_id, settings.signing_secret.get_secret_value()
        )
        tampered = token[:-1] + ("A" if token[-1] != "A" else "B")

        response = await client.get(f"/v1/unsubscribe/{tampered}")
        forged = await client.post(
            f"/v1/unsubscribe/{token_for(enrollment, workspace_id, 'guessed')}"
        )

        assert response.status_code == 404
        assert response.json()["code"] == "invalid_unsubscribe_token"
        assert forged.status_code == 404
        after = (
            await client.get(f"/v1/enrollments/{enrollment['id']}", headers=auth)
        ).json()
        assert after["status"] == "active"
        assert (await session.scalars(select(EmailSuppression))).all() == []

    async def test_needs_no_api_key(
        self, client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
    ) -> None:
        response = await client.get(
            "/v1/unsubscribe/x", headers={"Authorization": "Bearer sk_wrong"}
        )

        assert response.status_code == 404
        assert response.json()["code"] == "invalid_unsubscribe_token"


class TestUnsubscribePage:
    async def test_opening_changes_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        settings: Settings,
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        workspace_id = (await session.scalars(select(Event.workspace_id))).first()
        token = token_for(
            enrollment, workspace_id, settings.signing_secret.get_secret_value()
        )

        response = await client.get(f"/v1/unsubscribe/{token}")

        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-store"
        assert 'method="post"' in response.text
        assert f'action="/v1/unsubscribe/{token}"' in response.text
        assert "a***@example.com" in response.text
        assert "ada@example.com" not in response.text
        after = (
            await client.get(f"/v1/enrollments/{enrollment['id']}", headers=auth)
        ).json()
        assert after["status"] == "active"
        assert (await session.scalars(select(EmailSuppression))).all() == []

    async def test_button_shows_done_page(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        settings: Settings,
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        workspace_id = (await session.scalars(select(Event.workspace_id))).first()
        token = token_for(
            enrollment, workspace_id, settings.signing_secret.get_secret_value()
        )

        response = await client.post(
            f"/v1/unsubscribe/{token}",
            content="List-Unsubscribe=One-Click",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "text/html,application/xhtml+xml",
            },
        )
        page = await client.get(f"/v1/unsubscribe/{token}")

        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert "You are unsubscribed" in response.text
        assert "You are unsubscribed" in page.text
        assert "<form" not in page.text
        suppression = (await session.scalars(select(EmailSuppression))).one()
        assert suppression.reason == "unsubscribed"

    async def test_preview_link_unsubscribes_no_one(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        preview = await client.post(
            f"/v1/sequences/{sequence['id']}/steps/0/preview",
            json={"lead_id": lead["id"]},
            headers=auth,
        )
        assert preview.status_code == 200, preview.text
        link = preview.json()["email"]["headers"]["List-Unsubscribe"].strip("<>")
        path = link.removeprefix("https://api.acme.example")

        response = await client.post(path)

        assert response.status_code == 404
        assert response.json()["code"] == "invalid_unsubscribe_token"
        assert (await session.scalars(select(EmailSuppression))).all() == []


async def change_email(
    client: httpx.AsyncClient, auth: dict[str, str], lead: JsonObject, email: str
) -> None:
    current = await client.get(f"/v1/leads/{lead['id']}", headers=auth)
    response = await client.patch(
        f"/v1/leads/{lead['id']}",
        json={"email": email},
        headers={**auth, "If-Match": current.headers["etag"]},
    )
    assert response.status_code == 200, response.text


async def engage(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    lead: JsonObject,
    engagement_type: str,
) -> None:
    response = await client.post(
        f"/v1/leads/{lead['id']}/engagements",
        json={"type": engagement_type},
        headers=auth,
    )
    assert response.status_code == 201, response.text


class TestSuppressionFollowsLead:
    async def test_unsubscribed_lead_new_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth, email="old@example.com")
        await engage(client, auth, lead, "unsubscribed")
        await change_email(client, auth, lead, "new@example.com")

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "lead_unsubscribed"

    async def test_bounced_lead_new_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth, email="old@example.com")
        await engage(client, auth, lead, "email_bounced")
        await change_email(client, auth, lead, "new@example.com")

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 201, response.text

    async def test_unsubscribe_after_bounce(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth, email="old@example.com")
        await engage(client, auth, lead, "email_bounced")
        await engage(client, auth, lead, "unsubscribed")
        await change_email(client, auth, lead, "new@example.com")

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 409
        [suppression] = (await session.scalars(select(EmailSuppression))).all()
        assert suppression.reason == "unsubscribed"
        events = await session.scalars(
            select(Event.type).where(Event.type == "lead.unsubscribed")
        )
        assert list(events) == ["lead.unsubscribed"]

    async def test_bounce_keeps_unsubscribe(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth, email="old@example.com")
        await engage(client, auth, lead, "unsubscribed")
        await engage(client, auth, lead, "email_bounced")

        [suppression] = (await session.scalars(select(EmailSuppression))).all()

        assert suppression.reason == "unsubscribed"
