from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Enrollment, Sequence
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from workers.tasks import run_enrollment_step

ONE_STEP = [{"subject": "Hello {{ first_name }}", "body_text": "Hi there."}]


async def policy_sequence(
    client: httpx.AsyncClient, auth: dict[str, str], policy: str
) -> JsonObject:
    response = await client.post(
        "/v1/sequences",
        json={"name": "Policy", "steps": ONE_STEP, "reenrollment_policy": policy},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    data: JsonObject = response.json()
    return data


async def enroll_response(
    client: httpx.AsyncClient, auth: dict[str, str], sequence: JsonObject, lead: object
) -> httpx.Response:
    return await client.post(
        f"/v1/sequences/{sequence['id']}/enrollments",
        json={"lead_id": lead},
        headers=auth,
    )


async def exit_enrollment(
    client: httpx.AsyncClient, auth: dict[str, str], enrollment: JsonObject
) -> None:
    response = await client.post(
        f"/v1/enrollments/{enrollment['id']}/exit", headers=auth
    )
    assert response.status_code == 200, response.text


async def set_status(
    session: AsyncSession, enrollment: JsonObject, status: str
) -> None:
    await session.execute(
        update(Enrollment)
        .where(Enrollment.id == ids.decode("enrollment", str(enrollment["id"])))
        .values(status=status, next_run_at=None)
    )
    await session.commit()


class TestPolicySetting:
    async def test_default_always(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        assert sequence["reenrollment_policy"] == "always"

    async def test_set_on_create(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await policy_sequence(client, auth, "never")

        fetched = await client.get(f"/v1/sequences/{sequence['id']}", headers=auth)

        assert sequence["reenrollment_policy"] == "never"
        assert fetched.json()["reenrollment_policy"] == "never"

    async def test_unknown_policy(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/sequences",
            json={"name": "Bad", "steps": ONE_STEP, "reenrollment_policy": "sometimes"},
            headers=auth,
        )

        assert response.status_code == 422
        fields = [error["field"] for error in response.json()["errors"]]
        assert fields == ["reenrollment_policy"]


class TestAlways:
    async def test_again_after_exit(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await policy_sequence(client, auth, "always")
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        await exit_enrollment(client, auth, first)

        second = await enroll_response(client, auth, sequence, lead["id"])

        assert second.status_code == 201
        assert second.json()["id"] != first["id"]

    async def test_running_still_conflicts(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await policy_sequence(client, auth, "always")
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])

        second = await enroll_response(client, auth, sequence, lead["id"])

        assert second.status_code == 409
        assert second.json()["code"] == "enrollment_exists"
        assert second.json()["existing_id"] == first["id"]


class TestNever:
    async def test_after_exit_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await policy_sequence(client, auth, "never")
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        await exit_enrollment(client, auth, first)

        second = await enroll_response(client, auth, sequence, lead["id"])

        assert second.status_code == 409
        body = second.json()
        assert body["code"] == "reenrollment_not_allowed"
        assert body["existing_id"] == first["id"]
        assert body["existing_status"] == "exited"
        assert body["reenrollment_policy"] == "never"
        assert first["id"] in body["detail"]

    async def test_after_completion_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        sequence = await policy_sequence(client, auth, "never")
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        await set_status(session, first, "completed")

        second = await enroll_response(client, auth, sequence, lead["id"])

        assert second.status_code == 409
        assert second.json()["code"] == "reenrollment_not_allowed"
        assert second.json()["existing_status"] == "completed"

    async def test_running_is_enrollment_exists(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await policy_sequence(client, auth, "never")
        lead = await create_lead(client, auth)
        await enroll(client, auth, sequence["id"], lead["id"])

        second = await enroll_response(client, auth, sequence, lead["id"])

        assert second.status_code == 409
        assert second.json()["code"] == "enrollment_exists"

    async def test_other_sequence_allowed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first_sequence = await policy_sequence(client, auth, "never")
        other_sequence = await policy_sequence(client, auth, "never")
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, first_sequence["id"], lead["id"])
        await exit_enrollment(client, auth, first)

        other = await enroll_response(client, auth, other_sequence, lead["id"])

        assert other.status_code == 201

    async def test_rejection_writes_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
    ) -> None:
        sequence = await policy_sequence(client, auth, "never")
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        await exit_enrollment(client, auth, first)

        await enroll_response(client, auth, sequence, lead["id"])

        listed = await client.get(
            "/v1/enrollments",
            params={"lead_id": lead["id"], "sequence_id": sequence["id"]},
            headers=auth,
        )
        assert [item["id"] for item in listed.json()["data"]] == [first["id"]]


class TestAfterCompletion:
    async def test_after_real_completion_allowed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await policy_sequence(client, auth, "after_completion")
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        outcome = await run_enrollment_step(
            job_context, str(ids.decode("enrollment", str(first["id"])))
        )
        assert outcome == "completed"

        second = await enroll_response(client, auth, sequence, lead["id"])

        assert second.status_code == 201, second.text
        assert len(smtp_server.messages) == 1

    async def test_after_exit_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await policy_sequence(client, auth, "after_completion")
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        await exit_enrollment(client, auth, first)

        second = await enroll_response(client, auth, sequence, lead["id"])

        assert second.status_code == 409
        body = second.json()
        assert body["code"] == "reenrollment_not_allowed"
        assert body["existing_id"] == first["id"]
        assert body["reenrollment_policy"] == "after_completion"

    async def test_after_failure_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        sequence = await policy_sequence(client, auth, "after_completion")
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        await set_status(session, first, "failed")

        second = await enroll_response(client, auth, sequence, lead["id"])

        assert second.status_code == 409
        assert second.json()["existing_status"] == "failed"

    async def test_older_exit_still_blocks(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        sequence = await policy_sequence(client, auth, "always")
        lead = await create_lead(client, auth)
        exited = await enroll(client, auth, sequence["id"], lead["id"])
        await exit_enrollment(client, auth, exited)
        completed = await enroll(client, auth, sequence["id"], lead["id"])
        await set_status(session, completed, "completed")
        # No endpoint changes the policy of an existing sequence yet.
        await session.execute(
            update(Sequence)
            .where(Sequence.id == ids.decode("sequence", str(sequence["id"])))
            .values(reenrollment_policy="after_completion")
        )
        await session.commit()

        third = await enroll_response(client, auth, sequence, lead["id"])

        assert third.status_code == 409
        assert third.json()["existing_id"] == exited["id"]
