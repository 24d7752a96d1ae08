from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import create_api_key
from app.models import EmailSuppression, Enrollment, Event, Lead, Workspace
from app.nurture.enrolment_schemas import MAX_BATCH_LEADS
from tests.conftest import make_workspace_key
from tests.nurture.conftest import JsonObject, create_lead, create_sequence, enroll

UNKNOWN_LEAD = ids.encode("lead", ids.new_uuid())


async def enroll_batch(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sequence: JsonObject,
    lead_ids: list[object],
) -> httpx.Response:
    return await client.post(
        f"/v1/sequences/{sequence['id']}/enrollments/batch",
        json={"lead_ids": lead_ids},
        headers=auth,
    )


async def count_enrollments(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Enrollment)) or 0)


class TestBatchResults:
    async def test_all_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        ada = await create_lead(client, auth)
        bob = await create_lead(client, auth, email="bob@example.com")

        response = await enroll_batch(client, auth, sequence, [ada["id"], bob["id"]])

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "enrollment_batch"
        assert body["created"] == 2
        assert [item["status"] for item in body["items"]] == ["created", "created"]
        first = body["items"][0]["enrollment"]
        assert first["lead_id"] == ada["id"]
        assert first["status"] == "active"
        assert body["items"][0]["error"] is None
        events = await session.scalars(
            select(Event.type).where(Event.type == "enrollment.created")
        )
        assert len(events.all()) == 2

    async def test_mixed_items(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        fresh = await create_lead(client, auth, email="fresh@example.com")
        running = await create_lead(client, auth, email="running@example.com")
        existing = await enroll(client, auth, sequence["id"], running["id"])
        junk = await create_lead(client, auth, email="junk@example.com")
        await client.patch(
            f"/v1/leads/{junk['id']}", json={"status": "junk"}, headers=auth
        )
        unsubscribed = await create_lead(client, auth, email="unsubscribed@example.com")
        row = await session.get_one(Lead, ids.decode("lead", str(unsubscribed["id"])))
        session.add(
            EmailSuppression(
                workspace_id=row.workspace_id,
                email_normalized=row.email_normalized,
                reason="unsubscribed",
            )
        )
        await session.commit()

        response = await enroll_batch(
            client,
            auth,
            sequence,
            [
                fresh["id"],
                running["id"],
                junk["id"],
                unsubscribed["id"],
                UNKNOWN_LEAD,
                "not-an-id",
                fresh["id"],
            ],
        )

        assert response.status_code == 200, response.text
        body = response.json()
        items = body["items"]
        assert [item["status"] for item in items] == [
            "created",
            "skipped",
            "skipped",
            "skipped",
            "invalid",
            "invalid",
            "duplicate",
        ]
        assert [item["index"] for item in items] == list(range(7))
        assert items[1]["error"]["code"] == "enrollment_exists"
        assert items[1]["error"]["existing_id"] == existing["id"]
        assert items[2]["error"]["code"] == "lead_not_enrollable"
        assert items[3]["error"]["code"] == "lead_unsubscribed"
        assert items[4]["error"]["code"] == "lead_not_found"
        assert items[4]["error"]["status"] == 404
        assert items[5]["error"]["code"] == "validation_failed"
        assert items[5]["error"]["errors"][0]["field"] == "lead_ids.5"
        assert items[5]["lead_id"] == "not-an-id"
        assert items[6]["duplicate_of_index"] == 0
        assert items[6]["enrollment"] is None
        assert items[6]["error"] is None
        assert (body["created"], body["skipped"], body["invalid"]) == (1, 3, 2)
        assert body["duplicates"] == 1
        assert await count_enrollments(session) == 2

    async def test_duplicate_in_other_case(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)

        shouting = "lead_" + str(lead["id"]).removeprefix("lead_").upper()

        response = await enroll_batch(client, auth, sequence, [lead["id"], shouting])

        statuses = [item["status"] for item in response.json()["items"]]
        assert statuses == ["created", "duplicate"]
        assert await count_enrollments(session) == 1

    async def test_reenrollment_not_allowed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/sequences",
            json={
                "name": "Once",
                "reenrollment_policy": "never",
                "steps": [{"subject": "Hi", "body_text": "Hello."}],
            },
            headers=auth,
        )
        sequence = response.json()
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        await client.post(f"/v1/enrollments/{first['id']}/exit", headers=auth)

        batch = await enroll_batch(client, auth, sequence, [lead["id"]])

        [item] = batch.json()["items"]
        assert item["status"] == "skipped"
        assert item["error"]["code"] == "reenrollment_not_allowed"
        assert item["error"]["existing_id"] == first["id"]

    async def test_other_workspace_lead_invalid(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        _, other = await make_workspace_key(session)
        foreign = await create_lead(client, other)

        response = await enroll_batch(client, auth, sequence, [foreign["id"]])

        [item] = response.json()["items"]
        assert item["status"] == "invalid"
        assert item["error"]["code"] == "lead_not_found"


class TestBatchLimits:
    async def test_maximum_accepted(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await enroll_batch(client, auth, sequence, ["bad"] * MAX_BATCH_LEADS)

        assert response.status_code == 200
        assert response.json()["invalid"] == MAX_BATCH_LEADS

    async def test_over_maximum_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)

        response = await enroll_batch(
            client, auth, sequence, [lead["id"]] * (MAX_BATCH_LEADS + 1)
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "lead_ids"
        assert await count_enrollments(session) == 0

    async def test_empty_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await enroll_batch(client, auth, sequence, [])

        assert response.status_code == 422

    async def test_unknown_sequence(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)

        response = await enroll_batch(
            client,
            auth,
            {"id": ids.encode("sequence", ids.new_uuid())},
            [lead["id"]],
        )

        assert response.status_code == 404
        assert response.json()["code"] == "sequence_not_found"

    async def test_archived_sequence_conflicts(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        await client.post(f"/v1/sequences/{sequence['id']}/archive", headers=auth)

        response = await enroll_batch(client, auth, sequence, [lead["id"]])

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "sequence_archived"
        assert await count_enrollments(session) == 0

    async def test_requires_write_scope(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        sequence = await create_sequence(client, auth)
        key = await create_api_key(
            session, workspace_id=workspace.id, name="reader", scopes=["nurture:read"]
        )
        await session.commit()
        reader = {"Authorization": f"Bearer {key.secret}"}

        response = await enroll_batch(client, reader, sequence, ["x"])

        assert response.status_code == 403
