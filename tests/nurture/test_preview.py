from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Enrollment, Event, StepRun
from app.nurture import unsubscribe
from app.nurture.preview import PREVIEW_RUN_ID
from app.settings import Settings
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from tests.nurture.test_offers import create_offer
from tests.nurture.test_runner import body_of, enrollment_uuid
from workers.tasks import run_enrollment_step

STEPS: list[JsonObject] = [
    {
        "subject": "Hello {{ lead.first_name }}",
        "body_text": "Hi {{ first_name }} from {{ company.name }}. "
        "Leave: {{ unsubscribe_url }}",
    },
    {
        "kind": "task",
        "title": "Call {{ lead.full_name }}",
        "body": "Owner: {{ owner.full_name | nobody }}",
        "due_in_days": 2,
    },
    {
        "kind": "webhook",
        "url": "https://mail.example.com/send",
        "headers": {"X-Api-Key": "k"},
    },
    {"kind": "wait", "delay": {"amount": 1, "unit": "minutes"}},
    {
        "purpose": "special_offer",
        "subject": "Your code {{ offer.code | soon }}",
        "body_text": "{{ offer.discount }} off until {{ offer.expires_at }}.",
    },
]


async def steps_with_offer(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> list[JsonObject]:
    """Return STEPS with an offer of its own on the special-offer step."""
    offer = await create_offer(client, auth)
    return [*STEPS[:-1], {**STEPS[-1], "offer_id": offer["id"]}]


async def preview(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sequence: JsonObject,
    position: int,
    body: JsonObject,
) -> httpx.Response:
    return await client.post(
        f"/v1/sequences/{sequence['id']}/steps/{position}/preview",
        json=body,
        headers=auth,
    )


class TestPreviewEmail:
    async def test_renders_like_runner(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        settings: Settings,
    ) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        await client.patch(
            f"/v1/sequences/{sequence['id']}",
            json={
                "mail_from": "Acme <sales@acme.example>",
                "reply_to": "r@acme.example",
            },
            headers=auth,
        )
        lead = await create_lead(client, auth)
        events_before = await session.scalar(select(func.count()).select_from(Event))

        response = await preview(client, auth, sequence, 0, {"lead_id": lead["id"]})

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["kind"] == "email"
        assert result["sequence_version"] == 1
        email = result["email"]
        assert email["subject"] == "Hello Ada"
        assert email["mail_from"] == "Acme <sales@acme.example>"
        assert email["reply_to"] == "r@acme.example"
        assert email["to"] == "Ada Lovelace <ada@example.com>"
        link = email["headers"]["List-Unsubscribe"].strip("<>")
        assert email["body_text"].startswith(f"Hi Ada from Acme Test. Leave: {link}")
        token = unsubscribe.verify(
            settings.signing_secret.get_secret_value(), link.rsplit("/", 1)[1]
        )
        assert token.lead_id == ids.decode("lead", lead["id"])
        assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert result["task"] is None
        assert result["webhook"] is None
        events_after = await session.scalar(select(func.count()).select_from(Event))
        assert events_after == events_before
        assert await session.scalar(select(func.count()).select_from(StepRun)) == 0
        assert await session.scalar(select(func.count()).select_from(Enrollment)) == 0

    async def test_link_inert_with_running_enrollment(
        self, client: httpx.AsyncClient, auth: dict[str, str], settings: Settings
    ) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        response = await preview(client, auth, sequence, 0, {"lead_id": lead["id"]})
        link = response.json()["email"]["headers"]["List-Unsubscribe"].strip("<>")
        path = link.removeprefix(settings.public_base_url)
        clicked = await client.post(path)

        token = unsubscribe.verify(
            settings.signing_secret.get_secret_value(), link.rsplit("/", 1)[1]
        )
        assert token.enrollment_id == PREVIEW_RUN_ID
        assert clicked.status_code == 404
        after = await client.get(f"/v1/enrollments/{enrollment['id']}", headers=auth)
        assert after.json()["status"] == "active"

    async def test_offer_values(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        lead = await create_lead(client, auth)

        with_offer = await preview(
            client,
            auth,
            sequence,
            4,
            {
                "lead_id": lead["id"],
                "offer": {"code": "SAVE20", "discount": "20 %", "expires_at": "May 1"},
            },
        )
        without = await preview(client, auth, sequence, 4, {"lead_id": lead["id"]})

        assert with_offer.json()["email"]["subject"] == "Your code SAVE20"
        assert with_offer.json()["email"]["body_text"].startswith(
            "20 % off until May 1."
        )
        assert without.json()["email"]["subject"] == "Your code soon"

    async def test_older_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        await client.patch(
            f"/v1/sequences/{sequence['id']}",
            json={"steps": [{"subject": "New {{ lead.email }}", "body_text": "x"}]},
            headers=auth,
        )
        lead = await create_lead(client, auth)

        latest = await preview(client, auth, sequence, 0, {"lead_id": lead["id"]})
        older = await preview(
            client, auth, sequence, 0, {"lead_id": lead["id"], "version": 1}
        )

        assert latest.json()["sequence_version"] == 2
        assert latest.json()["email"]["subject"] == "New ada@example.com"
        assert older.json()["email"]["subject"] == "Hello Ada"


class TestPreviewOtherKinds:
    async def test_task(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        lead = await create_lead(client, auth)

        response = await preview(client, auth, sequence, 1, {"lead_id": lead["id"]})

        assert response.status_code == 200, response.text
        task = response.json()["task"]
        assert task == {
            "title": "Call Ada Lovelace",
            "body": "Owner: nobody",
            "due_in_days": 2,
            "assignee_id": None,
        }
        assert response.json()["email"] is None

    async def test_webhook(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        lead = await create_lead(client, auth)

        response = await preview(client, auth, sequence, 2, {"lead_id": lead["id"]})

        assert response.json()["webhook"] == {
            "method": "POST",
            "url": "https://mail.example.com/send",
            "headers": {"X-Api-Key": "k"},
        }

    async def test_wait(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        lead = await create_lead(client, auth)

        response = await preview(client, auth, sequence, 3, {"lead_id": lead["id"]})

        assert response.status_code == 200
        assert response.json()["kind"] == "wait"
        assert response.json()["email"] is None


class TestPreviewErrors:
    async def test_missing_position(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        lead = await create_lead(client, auth)

        response = await preview(client, auth, sequence, 9, {"lead_id": lead["id"]})

        assert response.status_code == 404
        assert response.json()["code"] == "sequence_step_not_found"

    async def test_missing_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        lead = await create_lead(client, auth)

        response = await preview(
            client, auth, sequence, 0, {"lead_id": lead["id"], "version": 2}
        )

        assert response.status_code == 404
        assert response.json()["code"] == "sequence_version_not_found"

    async def test_missing_lead(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )

        response = await preview(
            client, auth, sequence, 0, {"lead_id": ids.encode("lead", ids.new_uuid())}
        )

        assert response.status_code == 404


class TestPreviewMatchesSend:
    async def test_same_message_as_runner(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        settings: Settings,
        smtp_settings: Settings,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(
            client, auth, steps=await steps_with_offer(client, auth)
        )
        await client.patch(
            f"/v1/sequences/{sequence['id']}",
            json={
                "mail_from": "Acme <sales@acme.example>",
                "reply_to": "r@acme.example",
            },
            headers=auth,
        )
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        response = await preview(client, auth, sequence, 0, {"lead_id": lead["id"]})
        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        email = response.json()["email"]
        [sent] = smtp_server.messages
        # The preview's link names no enrollment, so that it unsubscribes no one,
        # and the worker's settings in these tests use another public base URL.
        preview_link = email["headers"]["List-Unsubscribe"].strip("<>")
        sent_link = str(sent["List-Unsubscribe"]).strip("<>")
        assert sent_link.startswith(smtp_settings.public_base_url)
        assert email["body_text"] == body_of(sent).replace(sent_link, preview_link)
        assert email["subject"] == sent["Subject"]
        assert email["mail_from"] == sent["From"]
        assert email["reply_to"] == sent["Reply-To"]
        assert email["to"] == sent["To"]
