"""Races between workers and requests, on separate connections that really commit."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select

from app.core import ids
from app.core.jobs import QUEUE_NAME, JobQueue
from app.models import StepRun
from app.nurture.errors import EnrollmentExists
from app.nurture.mailer import create_mailer
from app.nurture.runner import Claim, step_runner
from app.nurture.schemas import EnrollmentCreate
from app.nurture.service import enrollment_service
from app.settings import Settings
from tests.nurture.conftest import Committed, SmtpServer
from workers.tasks import run_enrollment_step, sweep_due_enrollments

# Long enough for a blocked statement to show that it waits on a row lock.
BLOCKED_SECONDS = 0.3


@pytest.fixture
def context(
    committed: Committed, queue: JobQueue, smtp_settings: Settings
) -> dict[str, Any]:
    return {"db": committed.database, "queue": queue, "settings": smtp_settings}


class TestStepRace:
    async def test_concurrent_jobs_send_once(
        self,
        committed: Committed,
        context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        smtp_server.handler.delay_seconds = 0.5
        enrollment_id = await committed.enrollment()

        outcomes = await asyncio.gather(
            *(run_enrollment_step(context, enrollment_id) for _ in range(5))
        )

        counts = Counter(outcomes)
        assert counts["completed"] == 1
        assert counts["in_progress"] + counts["inactive"] == 4
        assert len(smtp_server.messages) == 1
        async with committed.database.session() as session:
            runs = (await session.scalars(select(StepRun))).all()
        assert [(run.status, run.attempts) for run in runs] == [("sent", 1)]

    async def test_second_worker_waits_for_claim(
        self,
        committed: Committed,
        context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment_id = await committed.enrollment()
        async with committed.database.session() as first:
            in_flight = await step_runner.claim(
                first, context["settings"], uuid.UUID(enrollment_id)
            )
            second = asyncio.create_task(run_enrollment_step(context, enrollment_id))
            await asyncio.sleep(BLOCKED_SECONDS)
            assert not second.done(), "the second worker did not wait for the lock"
            await first.commit()
        assert isinstance(in_flight, Claim)

        assert await asyncio.wait_for(second, timeout=10) == "in_progress"
        delivery = await step_runner.deliver(
            in_flight, create_mailer(context["settings"]), context["settings"]
        )
        async with committed.database.session() as session:
            outcome = await step_runner.record(session, in_flight, delivery)
            await session.commit()

        assert outcome == "completed"
        assert len(smtp_server.messages) == 1


class TestSweepRace:
    async def test_skip_locked_splits_rows(
        self,
        committed: Committed,
        context: dict[str, Any],
        redis_client: aioredis.Redis,
    ) -> None:
        created = {
            await committed.enrollment(email=f"lead{index}@example.com")
            for index in range(6)
        }

        counts = await asyncio.gather(
            sweep_due_enrollments(context), sweep_due_enrollments(context)
        )

        assert sum(counts) == 6
        jobs = [job.decode() for job in await redis_client.zrange(QUEUE_NAME, 0, -1)]
        swept = [job.split(":")[1] for job in jobs if ":sweep:" in job]
        assert len(swept) == 6
        assert {str(ids.decode("enrollment", item)) for item in swept} == created

    async def test_locked_rows_skipped_not_awaited(
        self, committed: Committed, context: dict[str, Any]
    ) -> None:
        await committed.enrollment()
        async with committed.database.session() as first:
            claimed = await step_runner.sweep(first, context["settings"])

            # The first sweep has not committed: its rows are locked, and the second
            # sweep must pass over them at once instead of waiting.
            async with committed.database.session() as second:
                skipped = await asyncio.wait_for(
                    step_runner.sweep(second, context["settings"]), timeout=5
                )
            await first.commit()

        assert (claimed, skipped) == (1, 0)


class TestEnrollRace:
    async def test_one_of_two_enrollments_wins(self, committed: Committed) -> None:
        sequence_id = await committed.sequence()
        lead_id = await committed.lead()
        payload = EnrollmentCreate(lead_id=lead_id)

        async with committed.database.session() as first:
            winner = await enrollment_service.enroll(
                first, committed.principal, sequence_id, payload
            )

            async def enroll_again() -> None:
                async with committed.database.session() as second:
                    await enrollment_service.enroll(
                        second, committed.principal, sequence_id, payload
                    )
                    await second.commit()

            loser = asyncio.create_task(enroll_again())
            await asyncio.sleep(BLOCKED_SECONDS)
            assert not loser.done(), "the second insert did not wait on the index"
            await first.commit()

        with pytest.raises(EnrollmentExists) as raised:
            await asyncio.wait_for(loser, timeout=10)
        assert raised.value.extra["existing_id"] == ids.encode("enrollment", winner.id)
