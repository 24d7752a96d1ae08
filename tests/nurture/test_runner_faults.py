"""Exactly-once sends under faults, with real ``salescycle worker`` processes.

Each test runs workers as child processes against a database of its own, the test
Redis database and an aiosmtpd server on 127.0.0.1. It then kills a worker with
SIGKILL, enqueues duplicate jobs, flushes Redis (FLUSHDB on the test database number
only) or runs two workers at once. The result is read from PostgreSQL and from the messages the
SMTP server received.

The one resend these tests allow is the known window: a worker killed after the server
accepted a message but before it recorded the send makes the retry send it again, with
the same Message-ID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from app.core.auth import ALL_SCOPES, Principal
from app.core.db import Database, PendingJob
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.leads.schemas import LeadCreate
from app.leads.service import lead_service
from app.models import Enrollment, StepRun
from app.nurture.jobs import STEP_JOB
from app.nurture.schemas import EmailStepCreate, EnrollmentCreate, SequenceCreate
from app.nurture.service import enrollment_service, sequence_service
from app.settings import Settings
from tests.conftest import Servers, sibling_database_url
from tests.live import Tenant, free_port, prepare_database, running

# Upper bound on waiting for the workers to finish every step. The lease is 10 s and
# the sweep runs every second, so a retry after a kill starts within about 12 s.
FINISH_TIMEOUT = 120.0
LEASE_SECONDS = 10


class SlowInbox:
    """An aiosmtpd handler that delays each reply and keeps every Message-ID."""

    def __init__(self, delay_seconds: float) -> None:
        self.delay_seconds = delay_seconds
        self.message_ids: list[str] = []
        self.receiving = threading.Event()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving.set()
        # The controller's own event loop thread runs this, so the test keeps going.
        await asyncio.sleep(self.delay_seconds)
        message = message_from_bytes(envelope.original_content)
        with self.lock:
            self.message_ids.append(str(message["Message-ID"]))
        return "250 Message accepted"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(self.message_ids)


@dataclass
class Fixture:
    """A live database with a workspace, the worker environment and the inbox."""

    database: Database
    tenant: Tenant
    env: dict[str, str]
    inbox: SlowInbox
    redis_url: str
    log_folder: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def principal(self) -> Principal:
        return Principal(
            api_key_id=new_uuid(),
            workspace_id=uuid.UUID(self.tenant.workspace_id),
            scopes=frozenset(ALL_SCOPES),
            kind="secret",
        )

    async def enroll(
        self, count: int, steps: int = 2, *, queue: JobQueue | None = None
    ) -> list[uuid.UUID]:
        """Enroll ``count`` new leads in one sequence of ``steps`` emails due at once.

        With ``queue``, the jobs the enrolments deferred are sent, as the API would;
        without it only the workers' sweep finds them.
        """
        principal = self.principal
        async with self.database.session() as session:
            sequence = await sequence_service.create(
                session,
                principal,
                SequenceCreate(
                    name="Faults",
                    steps=[
                        EmailStepCreate(subject=f"Step {index}", body_text="Hi")
                        for index in range(steps)
                    ],
                ),
            )
            enrollment_ids = []
            for index in range(count):
                lead = await lead_service.create(
                    session,
                    principal,
                    LeadCreate(email=f"lead{index}@example.com", first_name="Ada"),
                )
                enrollment = await enrollment_service.enroll(
                    session, principal, sequence.id, EnrollmentCreate(lead_id=lead.id)
                )
                enrollment_ids.append(enrollment.id)
            await session.commit()
            if queue is not None:
                await queue.send_pending(session)
        return enrollment_ids

    def start_worker(self, stack: ExitStack) -> subprocess.Popen[bytes]:
        log_path = self.log_folder / f"worker-{len(self.workers)}.log"
        process = stack.enter_context(
            running(["app.cli", "worker"], self.env, ready_url=None, log_path=log_path)
        )
        self.workers.append(process)
        return process

    def worker_logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-3000:]
            for path in sorted(self.log_folder.glob("worker-*.log"))
        )

    async def wait_finished(self, expected: int) -> None:
        """Wait until ``expected`` enrolments completed; fail on a failed one."""
        deadline = asyncio.get_running_loop().time() + FINISH_TIMEOUT
        while True:
            counts = await self.statuses()
            assert counts.get("failed", 0) == 0, (counts, self.worker_logs())
            if counts.get("completed", 0) == expected:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"not finished within {FINISH_TIMEOUT} s: {counts}\n"
                    f"{self.worker_logs()}"
                )
            await asyncio.sleep(0.5)

    async def statuses(self) -> Counter[str]:
        async with self.database.session() as session:
            rows = await session.execute(
                select(Enrollment.status, func.count()).group_by(Enrollment.status)
            )
            return Counter({status: count for status, count in rows.all()})

    async def step_runs(self) -> list[StepRun]:
        async with self.database.session() as session:
            return list((await session.scalars(select(StepRun))).all())


@pytest.fixture
def inbox() -> Iterator[tuple[SlowInbox, int]]:
    handler = SlowInbox(delay_seconds=0.0)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
async def live(
    servers: Servers, inbox: tuple[SlowInbox, int], tmp_path: Path
) -> AsyncIterator[Fixture]:
    database_url = sibling_database_url(servers.database_url, "faults")
    tenant = await asyncio.to_thread(prepare_database, database_url)
    handler, port = inbox
    flusher = JobQueue(servers.redis_url)
    await (await flusher.pool()).flushdb()
    await flusher.close()
    env = {
        "SALESCYCLE_ENV": "test",
        "SALESCYCLE_DATABASE_URL": database_url,
        "SALESCYCLE_REDIS_URL": servers.redis_url,
        "SALESCYCLE_LOG_LEVEL": "INFO",
        "SALESCYCLE_SMTP_HOST": "127.0.0.1",
        "SALESCYCLE_SMTP_PORT": str(port),
        "SALESCYCLE_SMTP_TLS": "none",
        "SALESCYCLE_SMTP_TIMEOUT_SECONDS": "4",
        "SALESCYCLE_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
        "SALESCYCLE_STEP_LEASE_SECONDS": str(LEASE_SECONDS),
        "SALESCYCLE_SWEEP_INTERVAL_SECONDS": "1",
        "SALESCYCLE_WORKER_JOB_TIMEOUT_SECONDS": "30",
        "SALESCYCLE_MAIL_FROM": "Acme <sales@acme.example>",
        "SALESCYCLE_DATA_DIR": str(tmp_path / "data"),
    }
    database = Database(Settings(database_url=database_url))
    try:
        yield Fixture(
            database=database,
            tenant=tenant,
            env=env,
            inbox=handler,
            redis_url=servers.redis_url,
            log_folder=tmp_path,
        )
    finally:
        await database.dispose()


def assert_each_step_sent(
    runs: list[StepRun], received: Counter[str], steps: int, *, max_copies: int
) -> None:
    assert len(runs) == steps
    assert {run.status for run in runs} == {"sent"}
    run_ids = {run.message_id for run in runs}
    # One Message-ID per step run, and every message the server got belongs to one:
    # no step went out under two different Message-IDs.
    assert len(run_ids) == steps
    assert set(received) == run_ids
    assert max(received.values()) <= max_copies, received


class TestWorkerKilled:
    async def test_kill_mid_send(self, live: Fixture) -> None:
        live.inbox.delay_seconds = 2.0
        await live.enroll(5, steps=2)

        with ExitStack() as stack:
            first = live.start_worker(stack)
            arrived = await asyncio.to_thread(live.inbox.receiving.wait, 60)
            assert arrived, live.worker_logs()
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            live.start_worker(stack)

            await live.wait_finished(5)

        runs = await live.step_runs()
        received = live.inbox.counts()
        assert_each_step_sent(runs, received, 10, max_copies=2)
        assert any(run.attempts == 2 for run in runs), "the kill interrupted no send"
        resent = [message_id for message_id, count in received.items() if count == 2]
        retried = {run.message_id for run in runs if run.attempts > 1}
        assert set(resent) <= retried


class TestDuplicateJobs:
    async def test_five_jobs_send_once(self, live: Fixture) -> None:
        live.inbox.delay_seconds = 0.3
        queue = JobQueue(live.redis_url)
        try:
            enrollment_ids = await live.enroll(3, steps=2, queue=queue)
            for enrollment_id in enrollment_ids:
                for copy in range(5):
                    await queue.enqueue(
                        PendingJob(
                            STEP_JOB,
                            (str(enrollment_id),),
                            job_id=f"duplicate:{enrollment_id}:{copy}",
                        )
                    )

            with ExitStack() as stack:
                live.start_worker(stack)
                await live.wait_finished(3)
        finally:
            await queue.close()

        runs = await live.step_runs()
        assert_each_step_sent(runs, live.inbox.counts(), 6, max_copies=1)
        assert {run.attempts for run in runs} == {1}


class TestRedisFlushed:
    async def test_sweep_sends_all(self, live: Fixture) -> None:
        live.inbox.delay_seconds = 0.2
        queue = JobQueue(live.redis_url)
        try:
            await live.enroll(10, steps=2, queue=queue)
        finally:
            await queue.close()

        with ExitStack() as stack:
            live.start_worker(stack)
            arrived = await asyncio.to_thread(live.inbox.receiving.wait, 60)
            assert arrived, live.worker_logs()
            flusher = JobQueue(live.redis_url)
            try:
                await (await flusher.pool()).flushdb()
            finally:
                await flusher.close()

            await live.wait_finished(10)

        runs = await live.step_runs()
        assert_each_step_sent(runs, live.inbox.counts(), 20, max_copies=1)


class TestTwoWorkers:
    async def test_fifty_enrollments(self, live: Fixture) -> None:
        live.inbox.delay_seconds = 0.05
        await live.enroll(50, steps=1)

        with ExitStack() as stack:
            live.start_worker(stack)
            live.start_worker(stack)
            await live.wait_finished(50)

        runs = await live.step_runs()
        assert_each_step_sent(runs, live.inbox.counts(), 50, max_copies=1)
        assert {run.attempts for run in runs} == {1}
