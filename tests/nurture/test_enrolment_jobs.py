from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from arq.worker import Worker
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.jobs import QUEUE_NAME, redis_settings
from app.models import Enrollment, EnrollmentJob, Event, Lead
from app.nurture import enrolment_jobs
from app.nurture.enrolment_jobs import MAX_ATTEMPTS, enrollment_job_service, run_job_id
from tests.nurture.conftest import JsonObject, create_lead, create_sequence, enroll
from workers import tasks
from workers.settings import worker_functions
from workers.tasks import run_enrollment_job, sweep_enrollment_jobs, unit_of_work


class WorkerKilled(Exception):
    """Raised where the worker process would die, between two chunks."""


@pytest.fixture
def small_chunks(job_context: dict[str, Any]) -> dict[str, Any]:
    settings = job_context["settings"].model_copy(
        update={"enrollment_job_chunk_leads": 2}
    )
    return {**job_context, "settings": settings}


async def create_job(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sequence: JsonObject,
    filter: JsonObject,
) -> httpx.Response:
    return await client.post(
        f"/v1/sequences/{sequence['id']}/enrollment-jobs",
        json={"filter": filter},
        headers=auth,
    )


async def start_job(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sequence: JsonObject,
    filter: JsonObject,
) -> JsonObject:
    response = await create_job(client, auth, sequence, filter)
    assert response.status_code == 202, response.text
    data: JsonObject = response.json()
    return data


async def fetch_job(
    client: httpx.AsyncClient, auth: dict[str, str], job: JsonObject
) -> JsonObject:
    response = await client.get(f"/v1/enrollment-jobs/{job['id']}", headers=auth)
    assert response.status_code == 200, response.text
    data: JsonObject = response.json()
    return data


def job_uuid(job: JsonObject) -> uuid.UUID:
    return ids.decode("enrollment_job", str(job["id"]))


async def tagged_leads(
    client: httpx.AsyncClient, auth: dict[str, str], count: int, tag: str = "vip"
) -> list[JsonObject]:
    return [
        await create_lead(client, auth, email=f"{tag}{index}@example.com", tags=[tag])
        for index in range(count)
    ]


async def enrollments_per_lead(session: AsyncSession) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(Enrollment.lead_id, func.count()).group_by(Enrollment.lead_id)
    )
    return {lead_id: count for lead_id, count in rows}


async def count_events(session: AsyncSession, type: str) -> int:
    found = await session.scalar(
        select(func.count()).select_from(Event).where(Event.type == type)
    )
    return int(found or 0)


class TestCreateJob:
    async def test_queued(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await create_job(client, auth, sequence, {"tag": ["vip"]})

        assert response.status_code == 202, response.text
        job = response.json()
        assert job["object"] == "enrollment_job"
        assert job["id"].startswith("enjob_")
        assert job["status"] == "queued"
        assert job["sequence_id"] == sequence["id"]
        assert job["filter"] == {"tag": ["vip"]}
        assert job["counts"] == {
            "matched": 0,
            "enrolled": 0,
            "skipped": 0,
            "skipped_reasons": {},
        }
        assert job["finished_at"] is None
        assert response.headers["Location"] == f"/v1/enrollment-jobs/{job['id']}"
        assert await fetch_job(client, auth, job) == job
        assert await count_events(session, "enrollment_job.created") == 1

    async def test_run_deferred(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
    ) -> None:
        sequence = await create_sequence(client, auth)

        job = await start_job(client, auth, sequence, {})

        row = await session.get_one(EnrollmentJob, job_uuid(job))
        assert await redis_client.exists(f"arq:job:{run_job_id(row)}") == 1

    async def test_score_range_invalid(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await create_job(
            client, auth, sequence, {"score_min": 10, "score_max": 5}
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "filter.score_min"
        stored = await session.scalar(select(func.count()).select_from(EnrollmentJob))
        assert stored == 0

    async def test_archived_sequence_conflicts(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        await client.post(f"/v1/sequences/{sequence['id']}/archive", headers=auth)

        response = await create_job(client, auth, sequence, {"tag": ["vip"]})

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "sequence_archived"
        stored = await session.scalar(select(func.count()).select_from(EnrollmentJob))
        assert stored == 0

    async def test_unknown_attribute_invalid(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await create_job(
            client, auth, sequence, {"attribute": ["plan:eq:gold"]}
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "filter.attribute"

    async def test_unknown_filter_invalid(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await create_job(client, auth, sequence, {"colour": "red"})

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "filter.colour"

    async def test_unknown_sequence(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await create_job(
            client, auth, {"id": ids.encode("sequence", ids.new_uuid())}, {}
        )

        assert response.status_code == 404
        assert response.json()["code"] == "sequence_not_found"

    async def test_unknown_job(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        missing = ids.encode("enrollment_job", ids.new_uuid())

        response = await client.get(f"/v1/enrollment-jobs/{missing}", headers=auth)

        assert response.status_code == 404
        assert response.json()["code"] == "enrollment_job_not_found"


class TestRunJob:
    async def test_enrolls_matching_leads(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        small_chunks: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(client, auth)
        vips = await tagged_leads(client, auth, 5)
        await tagged_leads(client, auth, 2, tag="other")
        junk = await create_lead(client, auth, email="junk@example.com", tags=["vip"])
        await client.patch(
            f"/v1/leads/{junk['id']}", json={"status": "junk"}, headers=auth
        )
        running = await create_lead(
            client, auth, email="running@example.com", tags=["vip"]
        )
        await enroll(client, auth, sequence["id"], running["id"])
        job = await start_job(client, auth, sequence, {"tag": ["vip"]})

        outcome = await run_enrollment_job(small_chunks, str(job_uuid(job)))

        assert outcome == "succeeded"
        done = await fetch_job(client, auth, job)
        assert done["status"] == "succeeded"
        assert done["counts"] == {
            "matched": 7,
            "enrolled": 5,
            "skipped": 2,
            "skipped_reasons": {"lead_not_enrollable": 1, "enrollment_exists": 1},
        }
        assert done["started_at"] is not None
        assert done["finished_at"] is not None
        per_lead = await enrollments_per_lead(session)
        expected = {ids.decode("lead", str(lead["id"])): 1 for lead in vips}
        expected[ids.decode("lead", str(running["id"]))] = 1
        assert per_lead == expected
        assert await count_events(session, "enrollment.created") == 6
        assert await count_events(session, "enrollment_job.completed") == 1

    async def test_run_again_does_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        small_chunks: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(client, auth)
        await tagged_leads(client, auth, 3)
        job = await start_job(client, auth, sequence, {"tag": ["vip"]})
        await run_enrollment_job(small_chunks, str(job_uuid(job)))

        outcome = await run_enrollment_job(small_chunks, str(job_uuid(job)))

        assert outcome == "not_claimed"
        assert sum((await enrollments_per_lead(session)).values()) == 3
        assert (await fetch_job(client, auth, job))["counts"]["enrolled"] == 3

    async def test_live_lease_not_claimed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        small_chunks: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(client, auth)
        job = await start_job(client, auth, sequence, {})
        async with unit_of_work(small_chunks) as session:
            await enrollment_job_service.claim(
                session, job_uuid(job), timedelta(seconds=120)
            )

        outcome = await run_enrollment_job(small_chunks, str(job_uuid(job)))

        assert outcome == "not_claimed"
        assert (await fetch_job(client, auth, job))["status"] == "running"

    async def test_lead_created_later_not_matched(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        small_chunks: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(client, auth)
        [early] = await tagged_leads(client, auth, 1)
        job = await start_job(client, auth, sequence, {"tag": ["vip"]})
        late = await create_lead(client, auth, email="late@example.com", tags=["vip"])
        # Rows of one test share a transaction and so its now(): move the late one.
        await session.execute(
            update(Lead)
            .where(Lead.id == ids.decode("lead", str(late["id"])))
            .values(created_at=datetime.now(UTC) + timedelta(minutes=5))
        )
        await session.commit()

        await run_enrollment_job(small_chunks, str(job_uuid(job)))

        assert await enrollments_per_lead(session) == {
            ids.decode("lead", str(early["id"])): 1
        }

    async def test_budget_defers_continuation(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        small_chunks: dict[str, Any],
        redis_client: aioredis.Redis,
    ) -> None:
        sequence = await create_sequence(client, auth)
        await tagged_leads(client, auth, 3)
        job = await start_job(client, auth, sequence, {"tag": ["vip"]})
        async with unit_of_work(small_chunks) as claim_session:
            await enrollment_job_service.claim(
                claim_session, job_uuid(job), timedelta(seconds=120)
            )

        outcome = await enrolment_jobs.run_job(
            lambda: unit_of_work(small_chunks),
            job_uuid(job),
            small_chunks["settings"],
            budget_seconds=0,
        )

        assert outcome == "continued"
        row = await session.get_one(EnrollmentJob, job_uuid(job))
        await session.refresh(row)
        assert row.matched_count == 2
        assert row.claimed_until is None
        assert await redis_client.exists(f"arq:job:{run_job_id(row)}") == 1
        assert await run_enrollment_job(small_chunks, str(row.id)) == "succeeded"
        assert sum((await enrollments_per_lead(session)).values()) == 3

    async def test_archived_midway_stops(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        small_chunks: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(client, auth)
        await tagged_leads(client, auth, 3)
        job = await start_job(client, auth, sequence, {"tag": ["vip"]})
        async with unit_of_work(small_chunks) as claim_session:
            await enrollment_job_service.claim(
                claim_session, job_uuid(job), timedelta(seconds=120)
            )
        first = await enrolment_jobs.run_job(
            lambda: unit_of_work(small_chunks),
            job_uuid(job),
            small_chunks["settings"],
            budget_seconds=0,
        )
        assert first == "continued"
        await client.post(f"/v1/sequences/{sequence['id']}/archive", headers=auth)

        outcome = await run_enrollment_job(small_chunks, str(job_uuid(job)))

        assert outcome == "failed"
        done = await fetch_job(client, auth, job)
        assert done["status"] == "failed"
        assert done["error_code"] == "sequence_archived"
        assert done["counts"]["matched"] == 2
        assert done["counts"]["skipped"] == 0
        assert sum((await enrollments_per_lead(session)).values()) == 2


class TestRequestId:
    async def test_job_events_carry_the_request_id(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
        small_chunks: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(client, auth)
        await tagged_leads(client, auth, 3)
        await redis_client.flushdb()

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollment-jobs",
            json={"filter": {"tag": ["vip"]}},
            headers={**auth, "X-Request-Id": "req-enrol-7"},
        )
        assert response.status_code == 202, response.text
        worker = Worker(
            functions=worker_functions(),
            redis_settings=redis_settings(small_chunks["settings"].redis_url),
            queue_name=QUEUE_NAME,
            burst=True,
            ctx=dict(small_chunks),
            handle_signals=False,
            poll_delay=0.01,
            max_jobs=1,
        )
        try:
            await worker.main()
        finally:
            await worker.close()

        assert worker.jobs_complete >= 1
        assert worker.jobs_failed == 0
        request_ids = (
            await session.scalars(
                select(Event.request_id).where(Event.type == "enrollment.created")
            )
        ).all()
        assert request_ids == ["req-enrol-7"] * 3

    async def test_job_run_directly_has_none(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        small_chunks: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(client, auth)
        await tagged_leads(client, auth, 2)
        job = await start_job(client, auth, sequence, {"tag": ["vip"]})

        await run_enrollment_job(small_chunks, str(job_uuid(job)))

        request_ids = (
            await session.scalars(
                select(Event.request_id).where(Event.type == "enrollment.created")
            )
        ).all()
        assert request_ids == [None, None]


class TestJobCrash:
    async def test_sweep_resumes_after_lease_lapses(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        small_chunks: dict[str, Any],
        redis_client: aioredis.Redis,
    ) -> None:
        sequence = await create_sequence(client, auth)
        leads = await tagged_leads(client, auth, 5)
        job = await start_job(client, auth, sequence, {"tag": ["vip"]})
        async with unit_of_work(small_chunks) as claim_session:
            await enrollment_job_service.claim(
                claim_session, job_uuid(job), timedelta(seconds=120)
            )
        opened = 0

        @asynccontextmanager
        async def dies_at_second_chunk() -> AsyncIterator[AsyncSession]:
            nonlocal opened
            opened += 1
            # The first unit loads the job, the second writes chunk one.
            if opened == 3:
                raise WorkerKilled
            async with unit_of_work(small_chunks) as unit_session:
                yield unit_session

        with pytest.raises(WorkerKilled):
            await enrolment_jobs.run_job(
                dies_at_second_chunk, job_uuid(job), small_chunks["settings"]
            )
        crashed = await fetch_job(client, auth, job)
        assert crashed["status"] == "running"
        assert crashed["counts"]["enrolled"] == 2
        assert await sweep_enrollment_jobs(small_chunks) == 0

        await session.execute(
            update(EnrollmentJob)
            .where(EnrollmentJob.id == job_uuid(job))
            .values(claimed_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
        swept = await sweep_enrollment_jobs(small_chunks)
        row = await session.get_one(EnrollmentJob, job_uuid(job))
        await session.refresh(row)
        queued = await redis_client.exists(f"arq:job:{run_job_id(row)}")
        outcome = await run_enrollment_job(small_chunks, str(job_uuid(job)))

        assert swept == 1
        assert queued == 1
        assert outcome == "succeeded"
        done = await fetch_job(client, auth, job)
        assert done["counts"]["matched"] == 5
        assert done["counts"]["enrolled"] == 5
        assert done["counts"]["skipped"] == 0
        assert await enrollments_per_lead(session) == {
            ids.decode("lead", str(lead["id"])): 1 for lead in leads
        }
        assert await count_events(session, "enrollment.created") == 5

    async def test_overtaken_run_writes_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        small_chunks: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(client, auth)
        await tagged_leads(client, auth, 3)
        job = await start_job(client, auth, sequence, {"tag": ["vip"]})
        async with unit_of_work(small_chunks) as claim_session:
            await enrollment_job_service.claim(
                claim_session, job_uuid(job), timedelta(seconds=120)
            )
        one_chunk = {
            **small_chunks,
            "settings": small_chunks["settings"].model_copy(
                update={"enrollment_job_run_seconds": 0.000001}
            ),
        }
        opened = 0

        @asynccontextmanager
        async def overtaken() -> AsyncIterator[AsyncSession]:
            nonlocal opened
            opened += 1
            if opened == 2:
                # This run stalls past its lease; another run takes the job over
                # and commits its first chunk.
                await session.execute(
                    update(EnrollmentJob).values(
                        claimed_until=datetime.now(UTC) - timedelta(seconds=1)
                    )
                )
                await session.commit()
                assert await run_enrollment_job(one_chunk, str(job_uuid(job))) == (
                    "continued"
                )
            async with unit_of_work(small_chunks) as unit_session:
                yield unit_session

        outcome = await enrolment_jobs.run_job(
            overtaken, job_uuid(job), small_chunks["settings"]
        )

        assert outcome == "superseded"
        counts = (await fetch_job(client, auth, job))["counts"]
        assert counts["matched"] == 2
        assert counts["skipped"] == 0

    async def test_gives_up_after_max_attempts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        small_chunks: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(client, auth)
        job = await start_job(client, auth, sequence, {})
        await session.execute(
            update(EnrollmentJob)
            .where(EnrollmentJob.id == job_uuid(job))
            .values(attempts=MAX_ATTEMPTS, status="running")
        )
        await session.commit()

        outcome = await run_enrollment_job(small_chunks, str(job_uuid(job)))

        assert outcome == "not_claimed"
        failed = await fetch_job(client, auth, job)
        assert failed["status"] == "failed"
        assert failed["error_code"] == "too_many_attempts"
        assert failed["finished_at"] is not None
        assert await count_events(session, "enrollment_job.completed") == 1


class TestSweepRegistered:
    def test_in_sweeps(self) -> None:
        assert sweep_enrollment_jobs in tasks.SWEEPS
        assert run_enrollment_job in tasks.FUNCTIONS
