"""Exits racing running steps and redelivered webhooks, on connections that commit."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.auth import create_api_key
from app.core.clock import utcnow
from app.core.jobs import QUEUE_NAME, JobQueue
from app.main import create_app
from app.models import Enrollment, LeadEngagement, StepRun
from app.nurture.schemas import EmailStepCreate, EnrollmentCreate
from app.nurture.service import enrollment_service
from app.settings import Settings
from tests.nurture.conftest import Committed, SmtpServer
from workers.tasks import run_enrollment_step, sweep_due_enrollments

# Long enough for a blocked statement to show that it waits on a row lock.
BLOCKED_SECONDS = 0.3
WAIT_SECONDS = 10.0


@pytest.fixture
def context(
    committed: Committed, queue: JobQueue, smtp_settings: Settings
) -> dict[str, Any]:
    return {"db": committed.database, "queue": queue, "settings": smtp_settings}


@pytest.fixture
async def committed_client(
    settings: Settings, queue: JobQueue, committed: Committed
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client whose requests commit, each on its own connection."""
    app = create_app(settings, database=committed.database, queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
async def committed_auth(committed: Committed) -> dict[str, str]:
    async with committed.database.session() as session:
        created = await create_api_key(
            session,
            workspace_id=committed.principal.workspace_id,
            name="race",
            scopes=tuple(committed.principal.scopes),
        )
        await session.commit()
    return {"Authorization": f"Bearer {created.secret}"}


async def two_step_enrollment(committed: Committed) -> uuid.UUID:
    """Enroll a lead in a sequence whose two steps are both due at once."""
    sequence_id = await committed.sequence(
        [
            EmailStepCreate(subject="One", body_text="First"),
            EmailStepCreate(subject="Two", body_text="Second"),
        ]
    )
    lead_id = await committed.lead()
    async with committed.database.session() as session:
        enrollment = await enrollment_service.enroll(
            session, committed.principal, sequence_id, EnrollmentCreate(lead_id=lead_id)
        )
        await session.commit()
    enrollment_id: uuid.UUID = enrollment.id
    return enrollment_id


async def step_runs(committed: Committed) -> list[StepRun]:
    async with committed.database.session() as session:
        return list((await session.scalars(select(StepRun))).all())


async def load(committed: Committed, enrollment_id: uuid.UUID) -> Enrollment:
    async with committed.database.session() as session:
        enrollment = await session.get(Enrollment, enrollment_id)
    assert enrollment is not None
    return enrollment


class TestExitDuringSend:
    async def test_next_step_never_starts(
        self,
        committed: Committed,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        context: dict[str, Any],
        smtp_server: SmtpServer,
        redis_client: aioredis.Redis,
    ) -> None:
        enrollment_id = await two_step_enrollment(committed)
        encoded = ids.encode("enrollment", enrollment_id)
        smtp_server.handler.hold = threading.Event()
        running = asyncio.create_task(run_enrollment_step(context, str(enrollment_id)))
        started = await asyncio.to_thread(
            smtp_server.handler.data_started.wait, WAIT_SECONDS
        )
        assert started, "the first step never reached the mail server"

        exited = await committed_client.post(
            f"/v1/enrollments/{encoded}/exit", headers=committed_auth
        )
        smtp_server.handler.hold.set()
        outcome = await asyncio.wait_for(running, WAIT_SECONDS)

        assert exited.status_code == 200, exited.text
        assert exited.json()["status"] == "exited"
        assert exited.json()["exit_reason"] == "manual"
        assert outcome == "sent"
        assert len(smtp_server.messages) == 1
        runs = await step_runs(committed)
        assert [(run.status, run.attempts) for run in runs] == [("sent", 1)]
        enrollment = await load(committed, enrollment_id)
        assert enrollment.status == "exited"
        assert enrollment.next_run_at is None
        jobs = [job.decode() for job in await redis_client.zrange(QUEUE_NAME, 0, -1)]
        assert [
            job for job in jobs if job.startswith(f"enrollment-step:{encoded}:1")
        ] == []

        # A duplicate job and the sweep find nothing to run either.
        assert await run_enrollment_step(context, str(enrollment_id)) == "inactive"
        assert await sweep_due_enrollments(context) == 0
        assert len(await step_runs(committed)) == 1
        assert len(smtp_server.messages) == 1


class TestExitBeforeClaim:
    async def test_committed_exit_sends_nothing(
        self,
        committed: Committed,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment_id = await two_step_enrollment(committed)
        encoded = ids.encode("enrollment", enrollment_id)

        exited = await committed_client.post(
            f"/v1/enrollments/{encoded}/exit", headers=committed_auth
        )
        outcome = await run_enrollment_step(context, str(enrollment_id))

        assert exited.status_code == 200, exited.text
        assert outcome == "inactive"
        assert smtp_server.messages == []
        assert await step_runs(committed) == []

    async def test_claim_waits_for_exit(
        self,
        committed: Committed,
        context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment_id = await two_step_enrollment(committed)
        async with committed.database.session() as first:
            await enrollment_service.exit(
                first, committed.principal, enrollment_id, if_match=None
            )
            claim = asyncio.create_task(
                run_enrollment_step(context, str(enrollment_id))
            )
            await asyncio.sleep(BLOCKED_SECONDS)
            assert not claim.done(), "the claim did not wait for the exit's lock"
            await first.commit()

        assert await asyncio.wait_for(claim, WAIT_SECONDS) == "inactive"
        assert smtp_server.messages == []
        assert await step_runs(committed) == []

    async def test_reply_exits_before_claim(
        self,
        committed: Committed,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment_id = await two_step_enrollment(committed)
        enrollment = await load(committed, enrollment_id)
        lead = ids.encode("lead", enrollment.lead_id)

        replied = await committed_client.post(
            f"/v1/leads/{lead}/engagements",
            json={"type": "replied"},
            headers=committed_auth,
        )
        outcome = await run_enrollment_step(context, str(enrollment_id))

        assert replied.status_code == 201, replied.text
        assert outcome == "inactive"
        assert (await load(committed, enrollment_id)).exit_reason == "replied"
        assert smtp_server.messages == []
        assert await step_runs(committed) == []


class TestConcurrentWebhook:
    async def test_same_event_once(
        self,
        committed: Committed,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
    ) -> None:
        lead_id = await committed.lead()
        secret = (
            await committed_client.post(
                "/v1/email-event-secrets", headers=committed_auth
            )
        ).json()
        body = json.dumps(
            {
                "id": "evt-race",
                "type": "clicked",
                "occurred_at": utcnow().isoformat().replace("+00:00", "Z"),
                "email": "ada@example.com",
            }
        )

        def headers(index: int) -> dict[str, str]:
            moment = datetime.now().astimezone()
            message_id = f"msg_{index}"
            return {
                "webhook-id": message_id,
                "webhook-timestamp": str(int(moment.timestamp())),
                "webhook-signature": Webhook(secret["secret"]).sign(
                    message_id, moment, body
                ),
                "content-type": "application/json",
            }

        responses = await asyncio.gather(
            *(
                committed_client.post(
                    secret["endpoint_path"], content=body, headers=headers(index)
                )
                for index in range(6)
            )
        )

        assert [response.status_code for response in responses] == [200] * 6
        fresh = [response for response in responses if not response.json()["duplicate"]]
        assert len(fresh) == 1
        assert {response.json()["id"] for response in responses} == {
            fresh[0].json()["id"]
        }
        async with committed.database.session() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(LeadEngagement)
                .where(LeadEngagement.lead_id == lead_id)
            )
        assert count == 1


class TestMoveVersionDuringSend:
    async def test_moved_to_step_still_runs(
        self,
        committed: Committed,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment_id = await two_step_enrollment(committed)
        encoded = ids.encode("enrollment", enrollment_id)
        enrollment = await load(committed, enrollment_id)
        sequence = ids.encode("sequence", enrollment.sequence_id)
        saved = await committed_client.patch(
            f"/v1/sequences/{sequence}",
            json={
                "steps": [
                    {"subject": "New one", "body_text": "First"},
                    {"subject": "New two", "body_text": "Second"},
                ]
            },
            headers=committed_auth,
        )
        assert saved.status_code == 200, saved.text
        smtp_server.handler.hold = threading.Event()
        running = asyncio.create_task(run_enrollment_step(context, str(enrollment_id)))
        started = await asyncio.to_thread(
            smtp_server.handler.data_started.wait, WAIT_SECONDS
        )
        assert started, "the first step never reached the mail server"

        moved = await committed_client.post(
            f"/v1/enrollments/{encoded}/move-version",
            json={"version": 2, "position": 0},
            headers=committed_auth,
        )
        smtp_server.handler.hold.set()
        first = await asyncio.wait_for(running, WAIT_SECONDS)
        second = await run_enrollment_step(context, str(enrollment_id))

        assert moved.status_code == 200, moved.text
        assert first == "sent"
        assert second == "sent"
        subjects = [message["Subject"] for message in smtp_server.messages]
        assert subjects == ["One", "New one"]
        enrollment = await load(committed, enrollment_id)
        assert enrollment.sequence_version == 2
        assert enrollment.next_position == 1
