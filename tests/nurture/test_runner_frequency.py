"""The per-lead frequency cap on marketing emails, and its settings endpoint."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.jobs import JobQueue
from app.models import Enrollment, Event, NurtureSettings, StepRun
from app.nurture.schemas import EmailStepCreate, EnrollmentCreate
from app.nurture.service import enrollment_service
from app.settings import Settings
from tests.nurture.conftest import (
    Committed,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from tests.nurture.test_runner import enrollment_uuid, fetch, make_due, parse_time
from workers.tasks import run_enrollment_step

STEP = {"subject": "News", "body_text": "Hi"}


async def set_cap(
    client: httpx.AsyncClient, auth: dict[str, str], count: int | None, hours: int = 24
) -> httpx.Response:
    return await client.patch(
        "/v1/nurture-settings",
        json={"email_cap_count": count, "email_cap_window_hours": hours},
        headers=auth,
    )


class TestNurtureSettingsApi:
    async def test_default_off(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/nurture-settings", headers=auth)

        assert response.status_code == 200
        assert response.json() == {
            "object": "nurture_settings",
            "email_cap_count": None,
            "email_cap_window_hours": 24,
            "version": 0,
        }
        assert response.headers["ETag"] == '"0"'

    async def test_update_emits_event(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await set_cap(client, auth, 3, 48)
        repeated = await set_cap(client, auth, 3, 48)
        turned_off = await client.patch(
            "/v1/nurture-settings", json={"email_cap_count": None}, headers=auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["email_cap_count"] == 3
        assert response.json()["email_cap_window_hours"] == 48
        assert response.json()["version"] == 1
        assert repeated.json()["version"] == 1
        assert turned_off.json()["email_cap_count"] is None
        assert turned_off.json()["email_cap_window_hours"] == 48
        events = await session.scalars(
            select(Event.type).where(Event.type == "nurture_settings.updated")
        )
        assert len(events.all()) == 2

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await set_cap(client, auth, 3)

        response = await client.patch(
            "/v1/nurture-settings",
            json={"email_cap_count": 5},
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412
        current = await client.get("/v1/nurture-settings", headers=auth)
        assert current.json()["email_cap_count"] == 3

    @pytest.mark.parametrize(
        "body",
        [
            {"email_cap_count": 0},
            {"email_cap_count": "3"},
            {"email_cap_window_hours": 0},
            {"email_cap_window_hours": None},
            {"cap": 3},
        ],
    )
    async def test_rejects_invalid(
        self, client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
    ) -> None:
        response = await client.patch("/v1/nurture-settings", json=body, headers=auth)

        assert response.status_code == 422, response.text


async def two_enrollments(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Enroll one lead in two one-step sequences."""
    lead = await create_lead(client, auth)
    first = await create_sequence(client, auth, steps=[STEP], name="First")
    second = await create_sequence(client, auth, steps=[STEP], name="Second")
    return (
        await enroll(client, auth, first["id"], lead["id"]),
        await enroll(client, auth, second["id"], lead["id"]),
    )


class TestFrequencyCap:
    async def test_postpones_over_cap(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        await set_cap(client, auth, 1, 24)
        first, second = await two_enrollments(client, auth)

        sent = await run_enrollment_step(job_context, enrollment_uuid(first))
        postponed = await run_enrollment_step(job_context, enrollment_uuid(second))

        assert sent == "completed"
        assert postponed == "postponed"
        assert len(smtp_server.messages) == 1
        after = await fetch(client, auth, second)
        assert after["status"] == "active"
        assert after["next_position"] == 0
        assert after["step_runs"] == []
        sent_at = (await session.scalars(select(StepRun.finished_at))).one()
        assert sent_at is not None
        assert parse_time(after["next_run_at"]) == sent_at + timedelta(hours=24)

    async def test_sends_when_window_passed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        await set_cap(client, auth, 1, 24)
        first, second = await two_enrollments(client, auth)
        await run_enrollment_step(job_context, enrollment_uuid(first))
        await run_enrollment_step(job_context, enrollment_uuid(second))
        await session.execute(
            update(StepRun).values(finished_at=datetime.now(UTC) - timedelta(hours=25))
        )
        await make_due(session)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(second))

        assert outcome == "completed"
        assert len(smtp_server.messages) == 2

    async def test_no_cap_sends_all(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        first, second = await two_enrollments(client, auth)

        await run_enrollment_step(job_context, enrollment_uuid(first))
        await run_enrollment_step(job_context, enrollment_uuid(second))

        assert len(smtp_server.messages) == 2

    async def test_other_leads_not_counted(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        await set_cap(client, auth, 1, 24)
        sequence = await create_sequence(client, auth, steps=[STEP])
        ada = await create_lead(client, auth)
        grace = await create_lead(client, auth, email="grace@example.com")
        one = await enroll(client, auth, sequence["id"], ada["id"])
        two = await enroll(client, auth, sequence["id"], grace["id"])

        await run_enrollment_step(job_context, enrollment_uuid(one))
        await run_enrollment_step(job_context, enrollment_uuid(two))

        assert len(smtp_server.messages) == 2


class TestFrequencyCapRace:
    async def test_two_sequences_at_once(
        self,
        committed: Committed,
        queue: JobQueue,
        smtp_settings: Settings,
        smtp_server: SmtpServer,
    ) -> None:
        # The slow reply keeps the first send in flight while the second claims.
        smtp_server.handler.delay_seconds = 0.5
        context = {"db": committed.database, "queue": queue, "settings": smtp_settings}
        workspace_id = committed.principal.workspace_id
        async with committed.database.session() as session:
            session.add(
                NurtureSettings(
                    workspace_id=workspace_id,
                    email_cap_count=1,
                    email_cap_window_hours=24,
                )
            )
            await session.commit()
        lead_id = await committed.lead()
        enrollment_ids = []
        for _ in range(2):
            sequence_id = await committed.sequence(
                [EmailStepCreate(subject="Hi", body_text="Hi")]
            )
            async with committed.database.session() as session:
                enrollment = await enrollment_service.enroll(
                    session,
                    committed.principal,
                    sequence_id,
                    EnrollmentCreate(lead_id=lead_id),
                )
                await session.commit()
            enrollment_ids.append(str(enrollment.id))

        outcomes = await asyncio.gather(
            *(
                run_enrollment_step(context, enrollment_id)
                for enrollment_id in enrollment_ids
            )
        )

        assert Counter(outcomes) == Counter({"completed": 1, "postponed": 1})
        assert len(smtp_server.messages) == 1
        async with committed.database.session() as session:
            waiting = (
                await session.scalars(
                    select(Enrollment).where(
                        Enrollment.workspace_id == workspace_id,
                        Enrollment.status == "active",
                    )
                )
            ).one()
        assert waiting.next_run_at is not None
        assert waiting.next_run_at > datetime.now(UTC) + timedelta(hours=23)
