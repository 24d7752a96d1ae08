"""Loading a step under the enrollment's lock, across connections that really commit."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select

from app.core.jobs import JobQueue
from app.models import Enrollment, Event
from app.nurture.locked_step import lock_for_claim, lock_for_record
from app.nurture.mailer import create_mailer
from app.nurture.runner import Claim, step_runner
from app.settings import Settings
from tests.nurture.conftest import Committed, SmtpServer
from workers.tasks import run_enrollment_step

# Long enough for a blocked statement to show that it waits on a row lock.
BLOCKED_SECONDS = 0.3


@pytest.fixture
def context(
    committed: Committed, queue: JobQueue, smtp_settings: Settings
) -> dict[str, Any]:
    return {"db": committed.database, "queue": queue, "settings": smtp_settings}


class TestLockForClaim:
    async def test_sees_run_committed_while_waiting(
        self, committed: Committed, context: dict[str, Any]
    ) -> None:
        enrollment_id = uuid.UUID(await committed.enrollment())

        async with committed.database.session() as first:
            claim = await step_runner.claim(first, context["settings"], enrollment_id)
            async with committed.database.session() as second:
                waiting = asyncio.create_task(lock_for_claim(second, enrollment_id))
                await asyncio.sleep(BLOCKED_SECONDS)
                assert not waiting.done(), "the load did not wait for the row lock"
                await first.commit()
                rows = await asyncio.wait_for(waiting, timeout=10)

        assert isinstance(claim, Claim)
        assert rows is not None
        assert rows.run is not None
        assert rows.run.status == "running"
        assert rows.run.attempts == 1
        assert rows.enrollment.claimed_until == claim.claimed_until

    async def test_missing_enrollment(self, committed: Committed) -> None:
        async with committed.database.session() as session:
            rows = await lock_for_claim(session, uuid.uuid4())

        assert rows is None


class TestLockForRecord:
    async def test_sees_runs_committed_while_waiting(
        self,
        committed: Committed,
        context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment_id = uuid.UUID(await committed.enrollment())

        async with committed.database.session() as first:
            claim = await step_runner.claim(first, context["settings"], enrollment_id)
            async with committed.database.session() as second:
                waiting = asyncio.create_task(lock_for_record(second, enrollment_id))
                await asyncio.sleep(BLOCKED_SECONDS)
                assert not waiting.done(), "the load did not wait for the row lock"
                await first.commit()
                rows = await asyncio.wait_for(waiting, timeout=10)

        assert isinstance(claim, Claim)
        assert rows is not None
        assert [(run.status, position) for run, position in rows.runs] == [
            ("running", 0)
        ]
        assert rows.following is None


class TestLastStep:
    async def test_completes_in_one_update(
        self,
        committed: Committed,
        context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment_id = await committed.enrollment()

        outcome = await run_enrollment_step(context, enrollment_id)

        assert outcome == "completed"
        assert len(smtp_server.messages) == 1
        async with committed.database.session() as session:
            enrollment = await session.get(Enrollment, uuid.UUID(enrollment_id))
            events = (
                await session.scalars(
                    select(Event)
                    .where(Event.object_id == uuid.UUID(enrollment_id))
                    .order_by(Event.sequence)
                )
            ).all()
        assert enrollment is not None
        assert enrollment.status == "completed"
        assert enrollment.next_position == 1
        assert enrollment.version == 2
        assert [event.type for event in events] == [
            "enrollment.created",
            "enrollment.step_completed",
            "enrollment.completed",
        ]
        for event in events[1:]:
            assert event.data["status"] == "completed"
            assert event.data["version"] == 2
            assert event.data["next_position"] == 1
            assert [run["status"] for run in event.data["step_runs"]] == ["sent"]


class TestStatementCount:
    async def test_one_step_email(
        self,
        committed: Committed,
        context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment_id = uuid.UUID(await committed.enrollment())
        statements: list[str] = []
        engine = committed.database.engine.sync_engine

        def count(*arguments: Any) -> None:
            statements.append(arguments[2].split(None, 1)[0].upper())

        sqlalchemy_event.listen(engine, "before_cursor_execute", count)
        try:
            async with committed.database.session() as session:
                claim = await step_runner.claim(
                    session, context["settings"], enrollment_id
                )
                await session.commit()
            claimed = list(statements)
            assert isinstance(claim, Claim)
            delivery = await step_runner.deliver(
                claim, create_mailer(context["settings"]), context["settings"]
            )
            statements.clear()
            async with committed.database.session() as session:
                outcome = await step_runner.record(session, claim, delivery)
                await session.commit()
        finally:
            sqlalchemy_event.remove(engine, "before_cursor_execute", count)

        assert outcome == "completed"
        # The locked SELECT, then the step run INSERT with the lease UPDATE.
        assert claimed == ["WITH", "WITH"]
        # The locked SELECT, the step run and enrollment UPDATEs, the two events (each
        # inserted with its place in the dispatch queue) and the check for webhook
        # endpoints that subscribe to them.
        assert sorted(statements) == sorted(
            ["WITH", "UPDATE", "UPDATE", "WITH", "SELECT", "WITH"]
        )
