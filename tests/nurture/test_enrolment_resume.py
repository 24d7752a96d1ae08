from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Enrollment, Event, Sequence, StepRun
from app.nurture.runner import MAX_ATTEMPTS
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from workers.tasks import run_enrollment_step

ADDRESS = "ada@example.com"


def enrollment_uuid(enrollment: JsonObject) -> str:
    return str(ids.decode("enrollment", str(enrollment["id"])))


async def fetch(
    client: httpx.AsyncClient, auth: dict[str, str], enrollment: JsonObject
) -> JsonObject:
    response = await client.get(f"/v1/enrollments/{enrollment['id']}", headers=auth)
    assert response.status_code == 200, response.text
    data: JsonObject = response.json()
    return data


async def resume(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    enrollment: JsonObject,
    **headers: str,
) -> httpx.Response:
    return await client.post(
        f"/v1/enrollments/{enrollment['id']}/resume", headers={**auth, **headers}
    )


async def make_due(session: AsyncSession) -> None:
    await session.execute(
        update(Enrollment)
        .where(Enrollment.status == "active")
        .values(next_run_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()


async def fail_enrollment(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    job_context: dict[str, Any],
    smtp_server: SmtpServer,
) -> JsonObject:
    """Enroll a lead and fail its step: the SMTP server refuses its last attempt."""
    sequence = await create_sequence(client, auth)
    lead = await create_lead(client, auth, email=ADDRESS)
    enrollment = await enroll(client, auth, sequence["id"], lead["id"])
    smtp_server.handler.refused[ADDRESS] = "450 4.2.1 Mailbox busy, try later"
    assert (
        await run_enrollment_step(job_context, enrollment_uuid(enrollment))
        == "retry_scheduled"
    )
    await session.execute(update(StepRun).values(attempts=MAX_ATTEMPTS - 1))
    await make_due(session)
    outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))
    assert outcome == "failed"
    failed = await fetch(client, auth, enrollment)
    assert failed["status"] == "failed"
    return failed


class TestResumeFailed:
    async def test_retries_failed_step(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        failed = await fail_enrollment(client, auth, session, job_context, smtp_server)
        [failed_run] = failed["step_runs"]

        response = await resume(client, auth, failed)

        assert response.status_code == 200, response.text
        resumed = response.json()
        assert resumed["status"] == "active"
        assert resumed["failed_at"] is None
        assert resumed["next_run_at"] is not None
        assert "450" in resumed["last_error"]
        [run] = resumed["step_runs"]
        assert run["attempts"] == 0
        assert run["status"] == "failed"
        assert run["message_id"] == failed_run["message_id"]
        assert response.headers["ETag"] == f'"{resumed["version"]}"'
        types = await session.scalars(
            select(Event.type)
            .where(Event.object_id == ids.decode("enrollment", str(failed["id"])))
            .order_by(Event.sequence)
        )
        assert types.all()[-2:] == ["enrollment.failed", "enrollment.resumed"]

    async def test_refused_then_accepted(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        failed = await fail_enrollment(client, auth, session, job_context, smtp_server)
        message_id = failed["step_runs"][0]["message_id"]
        await resume(client, auth, failed)

        # The server still refuses: with its attempts reset, the step is retried
        # later instead of failing the enrollment at once.
        refused = await run_enrollment_step(job_context, enrollment_uuid(failed))
        retrying = await fetch(client, auth, failed)
        del smtp_server.handler.refused[ADDRESS]
        await make_due(session)
        accepted = await run_enrollment_step(job_context, enrollment_uuid(failed))

        assert refused == "retry_scheduled"
        assert retrying["status"] == "active"
        assert retrying["step_runs"][0]["attempts"] == 1
        assert accepted == "completed"
        done = await fetch(client, auth, failed)
        assert done["status"] == "completed"
        assert done["last_error"] is None
        [run] = done["step_runs"]
        assert run["status"] == "sent"
        assert run["attempts"] == 2
        assert run["message_id"] == message_id
        [message] = smtp_server.messages
        assert message["Message-ID"] == message_id

    async def test_running_again_conflicts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        failed = await fail_enrollment(client, auth, session, job_context, smtp_server)
        again = await enroll(client, auth, failed["sequence_id"], failed["lead_id"])

        response = await resume(client, auth, failed)

        assert response.status_code == 409
        assert response.json()["code"] == "enrollment_exists"
        assert response.json()["existing_id"] == again["id"]
        assert (await fetch(client, auth, failed))["status"] == "failed"

    async def test_if_match_mismatch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        failed = await fail_enrollment(client, auth, session, job_context, smtp_server)

        response = await resume(
            client, auth, failed, **{"If-Match": f'"{failed["version"] - 1}"'}
        )

        assert response.status_code == 412
        after = await fetch(client, auth, failed)
        assert after["status"] == "failed"
        assert after["step_runs"][0]["attempts"] == MAX_ATTEMPTS

    async def test_completed_not_resumable(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        response = await resume(client, auth, enrollment)

        assert response.status_code == 409
        assert response.json()["code"] == "invalid_transition"
        assert response.json()["current_status"] == "completed"

    async def test_policy_ignores_resumed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        failed = await fail_enrollment(client, auth, session, job_context, smtp_server)
        await session.execute(update(Sequence).values(reenrollment_policy="never"))
        await session.commit()

        response = await resume(client, auth, failed)

        assert response.status_code == 200
        assert response.json()["status"] == "active"
