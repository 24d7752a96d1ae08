"""The email-service webhook: Standard Webhooks signatures, the inbox, engagements."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.clock import utcnow
from app.core.ids import new_uuid
from app.models import EmailEvent, EmailSuppression, LeadEngagement, StepRun, Workspace
from tests.conftest import make_workspace_key
from tests.nurture.conftest import JsonObject, create_lead, enroll

MESSAGE_ID = "<step-run.0123@acme.example>"
STEP = {
    "delay": {"amount": 1, "unit": "hours"},
    "subject": "Hi {{ first_name }}",
    "body_text": "Hi",
}


async def create_secret(client: httpx.AsyncClient, auth: dict[str, str]) -> JsonObject:
    response = await client.post("/v1/email-event-secrets", headers=auth)
    assert response.status_code in (200, 201), response.text
    data: JsonObject = response.json()
    return data


def event_body(event_type: str = "opened", **fields: Any) -> dict[str, Any]:
    return {
        "id": "evt-1",
        "type": event_type,
        "occurred_at": utcnow().isoformat().replace("+00:00", "Z"),
        "message_id": MESSAGE_ID,
        **fields,
    }


def signed_headers(
    secret: str,
    body: bytes,
    *,
    message_id: str = "msg_1",
    at: datetime | None = None,
) -> dict[str, str]:
    moment = at or datetime.now().astimezone()
    signature = Webhook(secret).sign(message_id, moment, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def post_event(
    client: httpx.AsyncClient,
    secret: JsonObject,
    body: dict[str, Any] | bytes,
    *,
    signing_secret: str | None = None,
    at: datetime | None = None,
    path: str | None = None,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = signed_headers(signing_secret or secret["secret"], raw, at=at)
    return await client.post(
        path or secret["endpoint_path"], content=raw, headers=headers
    )


async def sent_enrollment(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
    exit_rules: list[str] | None = None,
) -> tuple[JsonObject, JsonObject]:
    """Enroll a new lead and store a sent step run with ``MESSAGE_ID``."""
    lead = await create_lead(client, auth)
    body: dict[str, Any] = {"name": "Webhook", "steps": [STEP]}
    if exit_rules is not None:
        body["exit_rules"] = exit_rules
    sequence = (await client.post("/v1/sequences", json=body, headers=auth)).json()
    enrollment = await enroll(client, auth, sequence["id"], lead["id"])
    session.add(
        StepRun(
            id=new_uuid(),
            workspace_id=workspace.id,
            enrollment_id=ids.decode("enrollment", enrollment["id"]),
            step_id=ids.decode("sequence_step", sequence["steps"][0]["id"]),
            status="sent",
            attempts=1,
            started_at=utcnow(),
            message_id=MESSAGE_ID,
        )
    )
    await session.commit()
    return lead, enrollment


async def engagements(session: AsyncSession) -> list[LeadEngagement]:
    return list((await session.scalars(select(LeadEngagement))).all())


async def enrollment_state(
    client: httpx.AsyncClient, auth: dict[str, str], enrollment: JsonObject
) -> tuple[str, str | None]:
    data = (
        await client.get(f"/v1/enrollments/{enrollment['id']}", headers=auth)
    ).json()
    return data["status"], data["exit_reason"]


class TestEmailEventSecret:
    async def test_create_then_rotate(
        self, client: httpx.AsyncClient, auth: dict[str, str], workspace: Workspace
    ) -> None:
        first = await client.post("/v1/email-event-secrets", headers=auth)
        second = await client.post("/v1/email-event-secrets", headers=auth)

        assert first.status_code == 201, first.text
        assert second.status_code == 200, second.text
        assert first.json()["secret"].startswith("whsec_")
        assert second.json()["secret"] != first.json()["secret"]
        assert first.json()["previous_secret_expires_at"] is None
        assert second.json()["previous_secret_expires_at"] is not None
        assert second.json()["endpoint_path"] == (
            "/v1/email-events/generic?workspace_id="
            + ids.encode("workspace", workspace.id)
        )

    async def test_previous_secret_still_verifies(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        old = await create_secret(client, auth)
        new = await create_secret(client, auth)

        by_old = await post_event(
            client, new, event_body(id="a"), signing_secret=old["secret"]
        )
        by_new = await post_event(client, new, event_body(id="b"))

        assert by_old.status_code == 200, by_old.text
        assert by_new.status_code == 200, by_new.text

    async def test_requires_scope(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, headers = await make_workspace_key(session, scopes=("nurture:read",))

        response = await client.post("/v1/email-event-secrets", headers=headers)

        assert response.status_code == 403


class TestSignature:
    async def test_wrong_secret(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        secret = await create_secret(client, auth)

        response = await post_event(
            client,
            secret,
            event_body(),
            signing_secret="whsec_" + "QUJD" * 11,
        )

        assert response.status_code == 401
        assert response.json()["code"] == "invalid_signature"
        assert await session.scalar(select(func.count()).select_from(EmailEvent)) == 0

    async def test_altered_body(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        secret = await create_secret(client, auth)
        raw = json.dumps(event_body()).encode()
        headers = signed_headers(secret["secret"], raw)

        response = await client.post(
            secret["endpoint_path"],
            content=raw.replace(b"opened", b"replied"),
            headers=headers,
        )

        assert response.status_code == 401
        assert await session.scalar(select(func.count()).select_from(EmailEvent)) == 0

    async def test_stale_timestamp(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        secret = await create_secret(client, auth)

        stale = await post_event(
            client,
            secret,
            event_body(),
            at=datetime.now().astimezone() - timedelta(minutes=6),
        )
        future = await post_event(
            client,
            secret,
            event_body(),
            at=datetime.now().astimezone() + timedelta(minutes=6),
        )

        assert stale.status_code == 401
        assert future.status_code == 401

    async def test_timestamp_not_unix_seconds(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        secret = await create_secret(client, auth)
        raw = json.dumps(event_body()).encode()
        headers = signed_headers(secret["secret"], raw)

        responses = {
            timestamp: await client.post(
                secret["endpoint_path"],
                content=raw,
                headers={**headers, "webhook-timestamp": timestamp},
            )
            for timestamp in ("9" * 400, "-" + "9" * 400, "soon")
        }

        for timestamp, response in responses.items():
            assert response.status_code == 401, timestamp[:10]
            assert "webhook-timestamp" in response.json()["detail"], timestamp[:10]

    async def test_missing_headers(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        secret = await create_secret(client, auth)

        response = await client.post(secret["endpoint_path"], json=event_body())

        assert response.status_code == 401

    async def test_unknown_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        secret = await create_secret(client, auth)

        for path in (
            "/v1/email-events/generic",
            "/v1/email-events/generic?workspace_id=nonsense",
            "/v1/email-events/generic?workspace_id="
            + ids.encode("workspace", new_uuid()),
        ):
            response = await post_event(client, secret, event_body(), path=path)

            assert response.status_code == 401, path

    async def test_unknown_provider(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        secret = await create_secret(client, auth)
        path = secret["endpoint_path"].replace("/generic", "/mailchimp")

        response = await post_event(client, secret, event_body(), path=path)

        assert response.status_code == 404
        assert response.json()["code"] == "email_provider_not_found"


class TestReceive:
    async def test_opened_recorded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        lead, enrollment = await sent_enrollment(client, auth, session, workspace)
        secret = await create_secret(client, auth)

        response = await post_event(
            client, secret, event_body(metadata={"link": "https://acme.example"})
        )

        assert response.status_code == 200, response.text
        receipt = response.json()
        assert receipt["status"] == "recorded"
        assert receipt["duplicate"] is False
        assert receipt["lead_id"] == lead["id"]
        [engagement] = await engagements(session)
        assert engagement.type == "email_opened"
        assert engagement.details == {"link": "https://acme.example"}
        assert ids.encode("engagement", engagement.id) == receipt["engagement_id"]
        assert engagement.enrollment_id == ids.decode("enrollment", enrollment["id"])
        assert engagement.message_id == MESSAGE_ID
        assert await enrollment_state(client, auth, enrollment) == ("active", None)

    async def test_redelivery_is_noop(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        await sent_enrollment(client, auth, session, workspace)
        secret = await create_secret(client, auth)

        first = await post_event(client, secret, event_body())
        second = await post_event(client, secret, event_body())

        assert first.status_code == 200, first.text
        assert second.status_code == 200, second.text
        assert second.json()["duplicate"] is True
        assert second.json()["id"] == first.json()["id"]
        assert len(await engagements(session)) == 1

    async def test_unmatched_stored(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        secret = await create_secret(client, auth)

        response = await post_event(
            client, secret, event_body(email="nobody@example.com")
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "unmatched"
        assert response.json()["lead_id"] is None
        stored = await session.scalar(select(EmailEvent))
        assert stored is not None
        assert stored.status == "unmatched"
        assert stored.message_id == MESSAGE_ID
        assert await engagements(session) == []

    async def test_matched_by_email(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        secret = await create_secret(client, auth)
        body = event_body("webinar_attended", email=" ADA@Example.com")
        del body["message_id"]

        response = await post_event(client, secret, body)

        assert response.status_code == 200, response.text
        assert response.json()["lead_id"] == lead["id"]
        [engagement] = await engagements(session)
        assert engagement.type == "webinar_attended"
        assert engagement.enrollment_id is None

    async def test_replied_exits(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        _, enrollment = await sent_enrollment(client, auth, session, workspace)
        secret = await create_secret(client, auth)

        response = await post_event(client, secret, event_body("replied"))

        assert response.status_code == 200, response.text
        assert await enrollment_state(client, auth, enrollment) == (
            "exited",
            "replied",
        )

    async def test_hard_bounce_suppresses(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        _, enrollment = await sent_enrollment(
            client, auth, session, workspace, exit_rules=[]
        )
        secret = await create_secret(client, auth)

        response = await post_event(client, secret, event_body("bounced"))

        assert response.status_code == 200, response.text
        assert await enrollment_state(client, auth, enrollment) == (
            "exited",
            "bounced",
        )
        suppression = await session.scalar(select(EmailSuppression))
        assert suppression is not None
        assert suppression.reason == "bounced"
        assert suppression.enrollment_id == ids.decode("enrollment", enrollment["id"])

    async def test_soft_bounce_ignored(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        _, enrollment = await sent_enrollment(client, auth, session, workspace)
        secret = await create_secret(client, auth)

        response = await post_event(
            client, secret, event_body("bounced", bounce_type="soft")
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ignored"
        assert await enrollment_state(client, auth, enrollment) == ("active", None)
        assert await session.scalar(select(EmailSuppression)) is None
        assert await engagements(session) == []

    async def test_complaint_unsubscribes(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        _, enrollment = await sent_enrollment(client, auth, session, workspace)
        secret = await create_secret(client, auth)

        response = await post_event(client, secret, event_body("complained"))

        assert response.status_code == 200, response.text
        [engagement] = await engagements(session)
        assert engagement.type == "unsubscribed"
        assert await enrollment_state(client, auth, enrollment) == (
            "exited",
            "unsubscribed",
        )
        suppression = await session.scalar(select(EmailSuppression))
        assert suppression is not None
        assert suppression.reason == "unsubscribed"

    async def test_invalid_body_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        secret = await create_secret(client, auth)
        cases: list[dict[str, Any] | bytes] = [
            {"id": "x", "type": "opened", "occurred_at": "2026-12-04T10:00:00Z"},
            event_body("delivered"),
            event_body(occurred_at="2026-12-04T10:00:00"),
            b"{not json",
        ]

        for body in cases:
            response = await post_event(client, secret, body)

            assert response.status_code == 422, body
        assert await session.scalar(select(func.count()).select_from(EmailEvent)) == 0


class TestEmailEventPrivacy:
    async def test_export_and_erase(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        secret = await create_secret(client, auth)
        body = event_body(email="ada@example.com", metadata={"ip": "192.0.2.1"})
        del body["message_id"]
        received = await post_event(client, secret, body)
        assert received.status_code == 200, received.text

        exported = await client.get(f"/v1/leads/{lead['id']}/export", headers=auth)
        erased = await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)

        assert exported.status_code == 200, exported.text
        [event] = exported.json()["data"]["email_events"]
        assert event["email"] == "ada@example.com"
        assert erased.status_code == 200, erased.text
        session.expire_all()
        stored = await session.scalar(select(EmailEvent))
        assert stored is not None
        assert stored.email is None
        assert stored.details == {}

    async def test_merge_moves_events(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        survivor = await create_lead(client, auth)
        duplicate = await create_lead(client, auth, email="ada.l@example.com")
        secret = await create_secret(client, auth)
        body = event_body(email="ada.l@example.com")
        del body["message_id"]
        await post_event(client, secret, body)

        merged = await client.post(
            f"/v1/leads/{survivor['id']}/merge",
            json={"duplicate_id": duplicate["id"]},
            headers=auth,
        )

        assert merged.status_code == 200, merged.text
        session.expire_all()
        stored = await session.scalar(select(EmailEvent))
        assert stored is not None
        assert stored.lead_id == ids.decode("lead", survivor["id"])
