from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Event
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from tests.nurture.test_runner import enrollment_uuid, fetch, make_due
from workers.tasks import run_enrollment_step

V1_STEPS: list[JsonObject] = [
    {"subject": "Version one, {{ lead.first_name }}", "body_text": "First edition."},
    {
        "delay": {"amount": 1, "unit": "minutes"},
        "subject": "V1 second",
        "body_text": "Second of v1.",
    },
]
V2_STEPS: list[JsonObject] = [
    {"subject": "Version two, {{ lead.first_name }}", "body_text": "Second edition."},
    {
        "delay": {"amount": 1, "unit": "minutes"},
        "subject": "V2 second",
        "body_text": "Second of v2.",
    },
    {"kind": "wait", "delay": {"amount": 1, "unit": "minutes"}},
]


async def patch_sequence(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sequence: JsonObject,
    body: JsonObject,
    etag: str | None = None,
) -> httpx.Response:
    headers = dict(auth)
    if etag is not None:
        headers["If-Match"] = etag
    return await client.patch(
        f"/v1/sequences/{sequence['id']}", json=body, headers=headers
    )


async def move(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    enrollment: JsonObject,
    body: JsonObject,
    etag: str | None = None,
) -> httpx.Response:
    headers = dict(auth)
    if etag is not None:
        headers["If-Match"] = etag
    return await client.post(
        f"/v1/enrollments/{enrollment['id']}/move-version", json=body, headers=headers
    )


class TestUpdateSequence:
    async def test_steps_make_new_version(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)

        response = await patch_sequence(client, auth, sequence, {"steps": V2_STEPS})

        assert response.status_code == 200, response.text
        updated = response.json()
        assert sequence["latest_version"] == 1
        assert updated["latest_version"] == 2
        assert updated["version"] == sequence["version"] + 1
        assert response.headers["ETag"] == f'"{updated["version"]}"'
        assert [step["subject"] for step in updated["steps"]] == [
            "Version two, {{ lead.first_name }}",
            "V2 second",
            None,
        ]
        assert {step["sequence_version"] for step in updated["steps"]} == {2}
        fetched = (
            await client.get(f"/v1/sequences/{sequence['id']}", headers=auth)
        ).json()
        assert fetched["latest_version"] == 2
        assert len(fetched["steps"]) == 3
        event = await session.scalar(
            select(Event).where(Event.type == "sequence.updated")
        )
        assert event is not None
        assert event.data["latest_version"] == 2
        assert len(event.data["steps"]) == 3

    async def test_old_version_still_readable(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        await patch_sequence(client, auth, sequence, {"steps": V2_STEPS})

        first = await client.get(
            f"/v1/sequences/{sequence['id']}/versions/1", headers=auth
        )
        second = await client.get(
            f"/v1/sequences/{sequence['id']}/versions/2", headers=auth
        )
        missing = await client.get(
            f"/v1/sequences/{sequence['id']}/versions/3", headers=auth
        )

        assert first.status_code == 200
        assert first.json()["latest"] is False
        assert [step["subject"] for step in first.json()["steps"]] == [
            "Version one, {{ lead.first_name }}",
            "V1 second",
        ]
        assert second.json()["latest"] is True
        assert len(second.json()["steps"]) == 3
        assert missing.status_code == 404
        assert missing.json()["code"] == "sequence_version_not_found"

    async def test_name_and_sender_in_place(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)

        response = await patch_sequence(
            client,
            auth,
            sequence,
            {
                "name": "Renamed",
                "mail_from": "Acme Sales <sales@acme.example>",
                "reply_to": "rep@acme.example",
            },
        )

        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["name"] == "Renamed"
        assert updated["mail_from"] == "Acme Sales <sales@acme.example>"
        assert updated["reply_to"] == "rep@acme.example"
        assert updated["latest_version"] == 1
        assert [step["id"] for step in updated["steps"]] == [
            step["id"] for step in sequence["steps"]
        ]

    async def test_sender_cleared_with_null(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        await patch_sequence(client, auth, sequence, {"reply_to": "rep@acme.example"})

        response = await patch_sequence(client, auth, sequence, {"reply_to": None})

        assert response.json()["reply_to"] is None

    async def test_stale_if_match(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        current = f'"{sequence["version"]}"'
        await patch_sequence(client, auth, sequence, {"name": "First"}, etag=current)

        response = await patch_sequence(
            client, auth, sequence, {"steps": V2_STEPS}, etag=current
        )

        assert response.status_code == 412
        assert response.json()["code"] == "version_mismatch"
        fetched = (
            await client.get(f"/v1/sequences/{sequence['id']}", headers=auth)
        ).json()
        assert fetched["latest_version"] == 1
        assert fetched["name"] == "First"

    async def test_null_name_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)

        response = await patch_sequence(client, auth, sequence, {"name": None})

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "name"

    async def test_unknown_merge_field_in_new_steps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        steps = [V1_STEPS[0], {"subject": "Hi {{ lead.nickname }}", "body_text": "x"}]

        response = await patch_sequence(client, auth, sequence, {"steps": steps})

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps.1.subject"
        fetched = (
            await client.get(f"/v1/sequences/{sequence['id']}", headers=auth)
        ).json()
        assert fetched["latest_version"] == 1

    async def test_missing_sequence(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.patch(
            f"/v1/sequences/{ids.encode('sequence', ids.new_uuid())}",
            json={"name": "Nobody"},
            headers=auth,
        )

        assert response.status_code == 404


class TestRunningEnrollmentKeepsVersion:
    async def test_runner_sends_started_version(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        ada = await create_lead(client, auth)
        early = await enroll(client, auth, sequence["id"], ada["id"])
        await run_enrollment_step(job_context, enrollment_uuid(early))
        await patch_sequence(client, auth, sequence, {"steps": V2_STEPS})
        grace = await create_lead(client, auth, email="grace@example.com")
        late = await enroll(client, auth, sequence["id"], grace["id"])

        await make_due(session)
        await run_enrollment_step(job_context, enrollment_uuid(early))
        await run_enrollment_step(job_context, enrollment_uuid(late))

        subjects = [message["Subject"] for message in smtp_server.messages]
        assert subjects == ["Version one, Ada", "V1 second", "Version two, Ada"]
        assert smtp_server.recipients[2] == ["grace@example.com"]
        assert early["sequence_version"] == 1
        assert late["sequence_version"] == 2
        finished = await fetch(client, auth, early)
        assert finished["status"] == "completed"


class TestMoveVersion:
    async def test_moves_to_new_version(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        await run_enrollment_step(job_context, enrollment_uuid(enrollment))
        await patch_sequence(client, auth, sequence, {"steps": V2_STEPS})
        current = await fetch(client, auth, enrollment)

        response = await move(
            client, auth, enrollment, {"version": 2}, etag=f'"{current["version"]}"'
        )
        await make_due(session)
        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert response.status_code == 200, response.text
        moved = response.json()
        assert moved["sequence_version"] == 2
        assert moved["next_position"] == 1
        assert [message["Subject"] for message in smtp_server.messages] == [
            "Version one, Ada",
            "V2 second",
        ]
        event = await session.scalar(
            select(Event).where(Event.type == "enrollment.version_changed")
        )
        assert event is not None
        assert event.data["sequence_version"] == 2

    async def test_explicit_position(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        await patch_sequence(client, auth, sequence, {"steps": V2_STEPS})

        response = await move(client, auth, enrollment, {"version": 2, "position": 2})

        assert response.status_code == 200, response.text
        assert response.json()["next_position"] == 2

    async def test_position_out_of_range(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        response = await move(client, auth, enrollment, {"version": 1, "position": 2})

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "position"

    async def test_unknown_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        response = await move(client, auth, enrollment, {"version": 2})

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "version"
        assert (await fetch(client, auth, enrollment))["sequence_version"] == 1

    async def test_version_beyond_integer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        for field in ("version", "position"):
            body = {"version": 1, field: 10**30}
            response = await move(client, auth, enrollment, body)

            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["field"] == field
        assert (await fetch(client, auth, enrollment))["sequence_version"] == 1

    async def test_ended_enrollment(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        await client.post(f"/v1/enrollments/{enrollment['id']}/exit", headers=auth)

        response = await move(client, auth, enrollment, {"version": 1})

        assert response.status_code == 409
        assert response.json()["code"] == "enrollment_not_running"

    async def test_stale_if_match(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        response = await move(client, auth, enrollment, {"version": 1}, etag='"99"')

        assert response.status_code == 412


class TestArchiveSequence:
    async def test_rejects_new_enrollments(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        lead = await create_lead(client, auth)

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/archive", headers=auth
        )
        enrolled = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "archived"
        assert enrolled.status_code == 409
        assert enrolled.json()["code"] == "sequence_archived"
        event = await session.scalar(
            select(Event).where(Event.type == "sequence.archived")
        )
        assert event is not None
        assert event.data["status"] == "archived"

    async def test_running_enrollment_continues(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        await client.post(f"/v1/sequences/{sequence['id']}/archive", headers=auth)

        await run_enrollment_step(job_context, enrollment_uuid(enrollment))
        await make_due(session)
        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert len(smtp_server.messages) == 2
        assert (await fetch(client, auth, enrollment))["status"] == "completed"

    async def test_repeat_changes_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)
        first = await client.post(
            f"/v1/sequences/{sequence['id']}/archive", headers=auth
        )

        second = await client.post(
            f"/v1/sequences/{sequence['id']}/archive", headers=auth
        )

        assert second.status_code == 200
        assert second.json()["version"] == first.json()["version"]
        archived = (
            await session.scalars(
                select(Event).where(Event.type == "sequence.archived")
            )
        ).all()
        assert len(archived) == 1

    async def test_stale_if_match(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/archive",
            headers={**auth, "If-Match": '"99"'},
        )

        assert response.status_code == 412


class TestEmptyPatch:
    async def test_emits_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth, steps=V1_STEPS)

        response = await patch_sequence(client, auth, sequence, {})

        assert response.status_code == 200
        assert response.json()["version"] == sequence["version"]
        updated = await session.scalar(
            select(Event).where(Event.type == "sequence.updated")
        )
        assert updated is None
