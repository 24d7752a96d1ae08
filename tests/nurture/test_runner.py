from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis
import structlog
from arq.worker import Worker, func
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from app.core import ids
from app.core.db import PendingJob
from app.core.jobs import QUEUE_NAME, redis_settings
from app.models import EmailSuppression, Enrollment, Event, Lead, StepRun
from app.nurture import runner, unsubscribe
from app.nurture.backlog import BACKLOG_PER_JOB_SLOT
from app.nurture.runner import MAX_ATTEMPTS, Claim, Delivery, step_runner
from app.settings import Settings
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from workers import tasks
from workers.settings import worker_settings
from workers.tasks import run_enrollment_step, sweep_due_enrollments, unit_of_work

TWO_STEPS = [
    {
        "delay": {"amount": 0, "unit": "minutes"},
        "subject": "Welcome, {{ first_name }}",
        "body_text": "Hello {{ first_name }} at {{ company | your team }}!",
    },
    {
        "delay": {"amount": 1, "unit": "hours"},
        "subject": "Day two",
        "body_text": "More for you.",
    },
]
ONE_STEP = TWO_STEPS[:1]


def enrollment_uuid(enrollment: JsonObject) -> str:
    return str(ids.decode("enrollment", str(enrollment["id"])))


def body_of(message: EmailMessage) -> str:
    """Return the text body with the CRLF line ends of SMTP turned back into LF."""
    return cast(str, message.get_content()).replace("\r\n", "\n")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def start(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    steps: list[JsonObject] | None = None,
    **lead_fields: object,
) -> JsonObject:
    """Create a sequence and a lead, enroll the lead and return the enrollment."""
    sequence = await create_sequence(client, auth, steps=steps or TWO_STEPS)
    lead = await create_lead(client, auth, **lead_fields)
    return await enroll(client, auth, sequence["id"], lead["id"])


async def fetch(
    client: httpx.AsyncClient, auth: dict[str, str], enrollment: JsonObject
) -> JsonObject:
    response = await client.get(f"/v1/enrollments/{enrollment['id']}", headers=auth)
    assert response.status_code == 200, response.text
    data: JsonObject = response.json()
    return data


async def event_types(session: AsyncSession, enrollment: JsonObject) -> list[str]:
    rows = await session.scalars(
        select(Event.type)
        .where(Event.object_id == ids.decode("enrollment", str(enrollment["id"])))
        .order_by(Event.sequence)
    )
    return list(rows)


async def make_due(session: AsyncSession) -> None:
    """Move every enrollment's next step into the past."""
    await session.execute(
        update(Enrollment).values(next_run_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()


async def step_jobs(redis_client: aioredis.Redis) -> list[str]:
    """List the queued ids of step jobs, in order."""
    queued = await redis_client.zrange(QUEUE_NAME, 0, -1)
    return sorted(job.decode() for job in queued if job.startswith(b"enrollment-step:"))


async def claim(job_context: dict[str, Any], enrollment: JsonObject) -> Claim | str:
    async with unit_of_work(job_context) as session:
        return await step_runner.claim(
            session,
            job_context["settings"],
            ids.decode("enrollment", str(enrollment["id"])),
        )


class TestSendStep:
    async def test_sends_over_smtp(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
        smtp_settings: Settings,
    ) -> None:
        enrollment = await start(client, auth)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "sent"
        assert smtp_server.recipients == [["ada@example.com"]]
        message = smtp_server.messages[0]
        assert message["Subject"] == "Welcome, Ada"
        assert message["From"] == "Acme Sales <sales@acme.example>"
        assert message["To"] == "Ada Lovelace <ada@example.com>"
        body = body_of(message)
        assert body.startswith("Hello Ada at Analytical Engines!\n")
        link = message["List-Unsubscribe"].strip("<>")
        assert link.startswith("https://api.acme.example/v1/unsubscribe/")
        assert link in body
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        raw = smtp_server.raw_messages[0]
        assert f"\r\nList-Unsubscribe: <{link}>\r\n".encode() in raw
        assert b"=?utf-8?" not in raw
        token = unsubscribe.verify(
            smtp_settings.signing_secret.get_secret_value(), link.rsplit("/", 1)[1]
        )
        assert token.enrollment_id == ids.decode("enrollment", enrollment["id"])
        assert token.lead_id == ids.decode("lead", enrollment["lead_id"])

        after = await fetch(client, auth, enrollment)
        assert after["status"] == "active"
        assert after["next_position"] == 1
        assert after["version"] == 2
        assert parse_time(after["next_run_at"]) > datetime.now(UTC) + timedelta(
            seconds=3590
        )
        [run] = after["step_runs"]
        assert run["status"] == "sent"
        assert run["position"] == 0
        assert run["attempts"] == 1
        assert run["finished_at"] is not None
        assert run["error"] is None
        assert run["message_id"] == message["Message-ID"]
        assert run["message_id"].endswith("@acme.example>")

        assert await event_types(session, enrollment) == [
            "enrollment.created",
            "enrollment.step_completed",
        ]
        event = (
            await session.scalars(
                select(Event).where(Event.type == "enrollment.step_completed")
            )
        ).one()
        assert event.data == after
        queued = await redis_client.zrange(QUEUE_NAME, 0, -1)
        assert any(
            job.decode().startswith(f"enrollment-step:{enrollment['id']}:1:")
            for job in queued
        )

    async def test_fallback_for_empty_field(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(client, auth, steps=ONE_STEP)
        response = await client.post(
            "/v1/leads", json={"email": "solo@example.com"}, headers=auth
        )
        enrollment = await enroll(client, auth, sequence["id"], response.json()["id"])

        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        message = smtp_server.messages[0]
        assert message["Subject"] == "Welcome,"
        assert message["To"] == "solo@example.com"
        assert body_of(message).startswith("Hello  at your team!")

    async def test_international_address_and_text(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(
            client,
            auth,
            steps=[{"subject": "Hallo {{ first_name }}", "body_text": "Grüße!"}],
            email="Jo@Bücher.example",
            first_name="Jürgen",
        )

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "completed"
        assert smtp_server.recipients == [["Jo@xn--bcher-kva.example"]]
        assert smtp_server.handler.envelopes[0].smtp_utf8 is False
        message = smtp_server.messages[0]
        assert message["Subject"] == "Hallo Jürgen"
        assert body_of(message).startswith("Grüße!\n")
        assert message["Content-Transfer-Encoding"] == "quoted-printable"
        assert smtp_server.raw_messages[0].isascii()

    async def test_utf8_sender_uses_smtputf8(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_settings: Settings,
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        sender = smtp_settings.model_copy(
            update={"mail_from": "Vertrieb <verkäufer@acme.example>"}
        )

        outcome = await run_enrollment_step(
            {**job_context, "settings": sender}, enrollment_uuid(enrollment)
        )

        assert outcome == "sent"
        envelope = smtp_server.handler.envelopes[0]
        assert envelope.smtp_utf8 is True
        assert envelope.mail_from == "verkäufer@acme.example"
        assert smtp_server.messages[0]["From"] == "Vertrieb <verkäufer@acme.example>"

    async def test_utf8_local_part_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth, email="jürgen@example.com")

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "failed"
        assert smtp_server.messages == []
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "failed"
        assert "non-ASCII" in after["last_error"]

    async def test_placed_unsubscribe_link_not_repeated(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(
            client,
            auth,
            steps=[
                {
                    "subject": "News",
                    "body_text": "Read on.\nOpt out: {{ unsubscribe_url }}",
                }
            ],
        )

        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        message = smtp_server.messages[0]
        link = message["List-Unsubscribe"].strip("<>")
        assert body_of(message) == f"Read on.\nOpt out: {link}\n"

    async def test_header_injection_neutralized(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(
            client, auth, first_name="Ada\r\nBcc: victim@example.com"
        )

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "sent"
        message = smtp_server.messages[0]
        assert message["Subject"] == "Welcome, Ada Bcc: victim@example.com"
        assert message["Bcc"] is None
        assert smtp_server.recipients == [["ada@example.com"]]

    async def test_last_step_completes(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth, steps=ONE_STEP)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "completed"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "completed"
        assert after["completed_at"] is not None
        assert after["next_run_at"] is None
        assert after["next_position"] == 1
        assert await event_types(session, enrollment) == [
            "enrollment.created",
            "enrollment.step_completed",
            "enrollment.completed",
        ]
        assert len(smtp_server.messages) == 1

    async def test_every_step_in_order(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)

        first = await run_enrollment_step(job_context, enrollment_uuid(enrollment))
        await make_due(session)
        second = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert (first, second) == ("sent", "completed")
        assert [m["Subject"] for m in smtp_server.messages] == [
            "Welcome, Ada",
            "Day two",
        ]
        runs = (await fetch(client, auth, enrollment))["step_runs"]
        assert [run["position"] for run in runs] == [0, 1]
        assert runs[0]["message_id"] != runs[1]["message_id"]

    async def test_mailer_from_context(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth, steps=ONE_STEP)
        await tasks.start_mailer(job_context)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert type(job_context["mailer"]).__name__ == "SmtpMailer"
        assert outcome == "completed"
        assert len(smtp_server.messages) == 1


class TestExactlyOnce:
    async def test_twice_in_a_row(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth, steps=ONE_STEP)

        first = await run_enrollment_step(job_context, enrollment_uuid(enrollment))
        second = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert first == "completed"
        assert second == "inactive"
        assert len(smtp_server.messages) == 1

    async def test_next_step_not_due(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)

        first = await run_enrollment_step(job_context, enrollment_uuid(enrollment))
        second = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert (first, second) == ("sent", "not_due")
        assert len(smtp_server.messages) == 1

    async def test_duplicate_job_while_sending(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        in_flight = await claim(job_context, enrollment)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert isinstance(in_flight, Claim)
        assert outcome == "in_progress"
        assert smtp_server.messages == []
        [run] = (await fetch(client, auth, enrollment))["step_runs"]
        assert run["status"] == "running"
        assert run["attempts"] == 1

    async def test_lapsed_lease_retried(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        in_flight = await claim(job_context, enrollment)
        assert isinstance(in_flight, Claim)
        # The worker holding the claim died: its lease lapses unrenewed.
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(update(StepRun).values(claimed_until=past))
        await session.execute(update(Enrollment).values(claimed_until=past))
        await session.commit()

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "sent"
        assert len(smtp_server.messages) == 1
        assert smtp_server.messages[0]["Message-ID"] == in_flight.message_id
        [run] = (await fetch(client, auth, enrollment))["step_runs"]
        assert run["status"] == "sent"
        assert run["attempts"] == 2

    async def test_taken_over_worker_records_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        stale = await claim(job_context, enrollment)
        assert isinstance(stale, Claim)
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(update(StepRun).values(claimed_until=past))
        await session.commit()
        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        async with unit_of_work(job_context) as work:
            outcome = await step_runner.record(work, stale, Delivery())

        assert outcome == "lease_lost"
        after = await fetch(client, auth, enrollment)
        assert after["next_position"] == 1
        assert after["step_runs"][0]["attempts"] == 2
        assert await event_types(session, enrollment) == [
            "enrollment.created",
            "enrollment.step_completed",
        ]

    async def test_pause_while_sending(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        in_flight = await claim(job_context, enrollment)
        assert isinstance(in_flight, Claim)
        paused = await client.post(
            f"/v1/enrollments/{enrollment['id']}/pause", headers=auth
        )
        assert paused.status_code == 200

        async with unit_of_work(job_context) as work:
            outcome = await step_runner.record(work, in_flight, Delivery())

        assert outcome == "sent"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "paused"
        assert after["next_position"] == 1
        assert after["step_runs"][0]["status"] == "sent"
        rerun = await run_enrollment_step(job_context, enrollment_uuid(enrollment))
        assert rerun == "inactive"


class TestStepExits:
    async def test_paused_not_sent(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        await client.post(f"/v1/enrollments/{enrollment['id']}/pause", headers=auth)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "inactive"
        assert smtp_server.messages == []

    async def test_unknown_enrollment(self, job_context: dict[str, Any]) -> None:
        outcome = await run_enrollment_step(job_context, str(ids.new_uuid()))

        assert outcome == "missing"

    async def test_suppressed_address_exits(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        lead = (await session.scalars(select(Lead))).one()
        session.add(
            EmailSuppression(
                workspace_id=lead.workspace_id,
                email_normalized=lead.email_normalized,
                reason="unsubscribed",
            )
        )
        await session.commit()

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "exited"
        assert smtp_server.messages == []
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "exited"
        assert after["exit_reason"] == "unsubscribed"
        assert after["step_runs"] == []

    @pytest.mark.parametrize(
        ("lead_status", "reason"),
        [("converted", "converted"), ("junk", "lead_closed")],
    )
    async def test_closed_lead_exits(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
        lead_status: str,
        reason: str,
    ) -> None:
        enrollment = await start(client, auth)
        await session.execute(update(Lead).values(status=lead_status))
        await session.commit()

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "exited"
        assert smtp_server.messages == []
        assert (await fetch(client, auth, enrollment))["exit_reason"] == reason

    async def test_refused_recipient_bounces(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        smtp_server.handler.refused["ada@example.com"] = "550 5.1.1 No such user"
        enrollment = await start(client, auth)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "exited"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "exited"
        assert after["exit_reason"] == "bounced"
        assert after["last_error"] is None
        [run] = after["step_runs"]
        assert run["status"] == "failed"
        assert "550 5.1.1 No such user" in run["error"]
        suppression = (await session.scalars(select(EmailSuppression))).one()
        assert suppression.reason == "bounced"
        again = await client.post(
            f"/v1/sequences/{enrollment['sequence_id']}/enrollments",
            json={"lead_id": enrollment["lead_id"]},
            headers=auth,
        )
        assert again.status_code == 409
        assert again.json()["code"] == "lead_unsubscribed"


class TestStepFailures:
    async def test_production_without_smtp(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A fresh logger proxy, because capture_logs cannot see loggers that
        # structlog has already cached.
        monkeypatch.setattr(runner, "log", structlog.get_logger(runner.__name__))
        enrollment = await start(client, auth)
        context = {
            **job_context,
            "settings": settings.model_copy(
                update={"env": "production", "smtp_host": None}
            ),
        }

        with capture_logs() as logs:
            outcome = await run_enrollment_step(context, enrollment_uuid(enrollment))

        assert outcome == "retry_scheduled"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "active"
        assert after["next_position"] == 0
        assert "SALESCYCLE_SMTP_HOST" in after["last_error"]
        due = parse_time(after["next_run_at"]) - datetime.now(UTC)
        assert timedelta(seconds=50) < due < timedelta(seconds=70)
        [run] = after["step_runs"]
        assert run["status"] == "failed"
        assert run["attempts"] == 1
        assert "No SMTP server is configured" in run["error"]
        assert await event_types(session, enrollment) == [
            "enrollment.created",
            "enrollment.step_failed",
        ]
        errors = [line for line in logs if line["log_level"] == "error"]
        assert errors[0]["event"] == "enrollment.step_failed"
        assert errors[0]["enrollment_id"] == enrollment_uuid(enrollment)

    async def test_retry_then_send(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        settings: Settings,
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        unconfigured = {
            **job_context,
            "settings": settings.model_copy(update={"smtp_host": None}),
        }
        await run_enrollment_step(unconfigured, enrollment_uuid(enrollment))
        await make_due(session)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "sent"
        assert len(smtp_server.messages) == 1
        after = await fetch(client, auth, enrollment)
        assert after["last_error"] is None
        assert after["step_runs"][0]["attempts"] == 2
        assert after["step_runs"][0]["error"] is None

    async def test_unreachable_server_retries(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_settings: Settings,
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        closed = smtp_settings.model_copy(update={"smtp_port": 1})

        outcome = await run_enrollment_step(
            {**job_context, "settings": closed}, enrollment_uuid(enrollment)
        )

        assert outcome == "retry_scheduled"
        error = (await fetch(client, auth, enrollment))["last_error"]
        assert "127.0.0.1:1" in error

    async def test_gives_up_after_max_attempts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        settings: Settings,
    ) -> None:
        enrollment = await start(client, auth)
        unconfigured = {
            **job_context,
            "settings": settings.model_copy(update={"smtp_host": None}),
        }
        await run_enrollment_step(unconfigured, enrollment_uuid(enrollment))
        await session.execute(update(StepRun).values(attempts=MAX_ATTEMPTS - 1))
        await make_due(session)

        outcome = await run_enrollment_step(unconfigured, enrollment_uuid(enrollment))

        assert outcome == "failed"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "failed"
        assert after["failed_at"] is not None
        assert after["next_run_at"] is None
        assert "No SMTP server" in after["last_error"]
        assert after["step_runs"][0]["attempts"] == MAX_ATTEMPTS
        assert (await event_types(session, enrollment))[-1] == "enrollment.failed"

    async def test_gives_up_on_crashing_step(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth)
        await claim(job_context, enrollment)
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(
            update(StepRun).values(claimed_until=past, attempts=MAX_ATTEMPTS)
        )
        await session.commit()

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "failed"
        assert smtp_server.messages == []
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "failed"
        assert after["step_runs"][0]["status"] == "failed"
        assert "Gave up after 8 attempts" in after["last_error"]


class TestDevOutbox:
    async def test_writes_eml(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        settings: Settings,
        tmp_path: Path,
    ) -> None:
        enrollment = await start(client, auth)
        dev = settings.model_copy(
            update={"env": "dev", "smtp_host": None, "data_dir": tmp_path}
        )

        outcome = await run_enrollment_step(
            {**job_context, "settings": dev}, enrollment_uuid(enrollment)
        )

        assert outcome == "sent"
        files = list((tmp_path / "outbox").iterdir())
        assert len(files) == 1
        assert files[0].suffix == ".eml"
        message = message_from_bytes(files[0].read_bytes(), policy=policy.default)
        assert message["Subject"] == "Welcome, Ada"
        assert message["To"] == "Ada Lovelace <ada@example.com>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/v1/")
        assert (
            b"\nList-Unsubscribe: <http://127.0.0.1:8000/v1/" in files[0].read_bytes()
        )
        run = (await fetch(client, auth, enrollment))["step_runs"][0]
        assert message["Message-ID"] == run["message_id"]


class TestSweep:
    async def test_picks_up_lost_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        redis_client: aioredis.Redis,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
        smtp_settings: Settings,
    ) -> None:
        enrollment = await start(client, auth, steps=ONE_STEP)
        assert await redis_client.zcard(QUEUE_NAME) > 0
        await redis_client.flushdb()

        claimed = await sweep_due_enrollments(job_context)

        assert claimed == 1
        queued = [job.decode() for job in await redis_client.zrange(QUEUE_NAME, 0, -1)]
        assert len(queued) == 1
        assert queued[0].startswith(f"enrollment-step:{enrollment['id']}:0:sweep:")
        worker = Worker(
            functions=[func(run_enrollment_step, name="run_enrollment_step")],
            redis_settings=redis_settings(smtp_settings.redis_url),
            queue_name=QUEUE_NAME,
            burst=True,
            ctx=job_context,
            handle_signals=False,
            poll_delay=0.01,
            max_jobs=1,
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        assert len(smtp_server.messages) == 1
        assert (await fetch(client, auth, enrollment))["status"] == "completed"

    async def test_skips_future_and_claimed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
        job_context: dict[str, Any],
    ) -> None:
        sequence = await create_sequence(
            client,
            auth,
            steps=[
                {
                    "delay": {"amount": 10, "unit": "minutes"},
                    "subject": "Later",
                    "body_text": "x",
                }
            ],
        )
        lead = await create_lead(client, auth)
        await enroll(client, auth, sequence["id"], lead["id"])

        future = await sweep_due_enrollments(job_context)
        await make_due(session)
        first = await sweep_due_enrollments(job_context)
        second = await sweep_due_enrollments(job_context)

        assert (future, first, second) == (0, 1, 0)

    async def test_reclaims_lapsed_lease(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
        job_context: dict[str, Any],
    ) -> None:
        await start(client, auth)
        await redis_client.flushdb()
        first = await sweep_due_enrollments(job_context)
        await session.execute(
            update(Enrollment).values(
                claimed_until=datetime.now(UTC) - timedelta(seconds=1)
            )
        )
        await session.commit()

        second = await sweep_due_enrollments(job_context)

        assert (first, second) == (1, 1)
        sweeps = [
            job
            for job in await redis_client.zrange(QUEUE_NAME, 0, -1)
            if b":sweep:" in job
        ]
        # The first sweep's job has not started, so arq drops the second one.
        assert len(sweeps) == 1

    async def test_step_job_queued_not_duplicated(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        redis_client: aioredis.Redis,
        job_context: dict[str, Any],
    ) -> None:
        enrollment = await start(client, auth)
        before = await step_jobs(redis_client)

        claimed = await sweep_due_enrollments(job_context)

        assert claimed == 1
        assert len(before) == 1
        assert before[0].startswith(f"enrollment-step:{enrollment['id']}:0:")
        assert await step_jobs(redis_client) == before

    async def test_new_attempt_new_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
        job_context: dict[str, Any],
    ) -> None:
        enrollment = await start(client, auth)
        await redis_client.flushdb()
        first = await sweep_due_enrollments(job_context)
        # A worker claims the step and dies: both leases lapse unrenewed.
        assert isinstance(await claim(job_context, enrollment), Claim)
        past = datetime.now(UTC) - timedelta(seconds=1)
        await session.execute(update(StepRun).values(claimed_until=past))
        await session.execute(update(Enrollment).values(claimed_until=past))
        await session.commit()

        second = await sweep_due_enrollments(job_context)

        assert (first, second) == (1, 1)
        queued = await step_jobs(redis_client)
        prefix = f"enrollment-step:{enrollment['id']}:0:sweep:"
        assert queued == [prefix + "0", prefix + "1"]

    async def test_limited_by_ready_jobs(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        redis_client: aioredis.Redis,
        job_context: dict[str, Any],
        smtp_settings: Settings,
    ) -> None:
        for number in range(3):
            await start(client, auth, email=f"lead{number}@example.com")
        await redis_client.flushdb()
        queue = job_context["queue"]
        later = datetime.now(UTC) + timedelta(hours=1)
        for number in range(BACKLOG_PER_JOB_SLOT - 1):
            await queue.enqueue(PendingJob("noop", (), job_id=f"noop:{number}"))
            await queue.enqueue(
                PendingJob(
                    "noop",
                    (),
                    job_id=f"noop:later:{number}",
                    kwargs={"_defer_until": later},
                )
            )
        one_slot = smtp_settings.model_copy(update={"worker_max_jobs": 1})

        first = await sweep_due_enrollments({**job_context, "settings": one_slot})
        second = await sweep_due_enrollments({**job_context, "settings": one_slot})

        # Jobs deferred to later do not count, so the first sweep leases one
        # enrollment, and its job fills the backlog.
        assert (first, second) == (1, 0)

    async def test_ignores_paused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
    ) -> None:
        enrollment = await start(client, auth)
        await client.post(f"/v1/enrollments/{enrollment['id']}/pause", headers=auth)

        assert await sweep_due_enrollments(job_context) == 0


class TestWorkerSetup:
    def test_registered(self, settings: Settings) -> None:
        options = worker_settings(settings)

        names = {function.__name__ for function in options["functions"]}
        assert "run_enrollment_step" in names
        crons = {job.name: job for job in options["cron_jobs"]}
        sweep = crons["cron:sweep_due_enrollments"]
        assert sweep.second == set(range(0, 60, 5))
        assert tasks.start_mailer in tasks.STARTUP_HOOKS

    async def test_default_secret_logged(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(tasks, "log", structlog.get_logger(tasks.__name__))
        context: dict[str, Any] = {
            "settings": settings.model_copy(update={"env": "production"})
        }

        with capture_logs() as logs:
            await tasks.start_mailer(context)

        assert type(context["mailer"]).__name__ == "UnconfiguredMailer"
        events = [line["event"] for line in logs]
        assert "mailer.default_signing_secret" in events

    async def test_own_secret_not_logged(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(tasks, "log", structlog.get_logger(tasks.__name__))
        context: dict[str, Any] = {
            "settings": settings.model_copy(
                update={"env": "production", "signing_secret": SecretStr("s3cret")}
            )
        }

        with capture_logs() as logs:
            await tasks.start_mailer(context)

        events = [line["event"] for line in logs]
        assert "mailer.default_signing_secret" not in events
