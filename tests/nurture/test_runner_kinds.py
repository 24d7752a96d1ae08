"""Task, wait and webhook steps, run by the step runner against real receivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.models import (
    Activity,
    Enrollment,
    Event,
    Sequence,
    SequenceStep,
    StepRun,
    Workspace,
)
from app.nurture import runner as runner_module
from app.nurture.executors import task_due_at
from app.nurture.runner import MAX_ATTEMPTS
from tests.live import free_port
from tests.nurture.conftest import JsonObject, SmtpServer, create_lead
from tests.nurture.test_runner import (
    enrollment_uuid,
    event_types,
    fetch,
    make_due,
    start,
)
from workers.tasks import run_enrollment_step

EMAIL = {"subject": "Hello", "body_text": "Hi {{ first_name }}"}


async def set_kind(
    session: AsyncSession,
    enrollment: JsonObject,
    position: int,
    kind: str,
    config: dict[str, Any],
) -> None:
    """Turn a step into another kind, as the sequence API will store it."""
    await session.execute(
        update(SequenceStep)
        .where(
            SequenceStep.sequence_id
            == ids.decode("sequence", str(enrollment["sequence_id"])),
            SequenceStep.position == position,
        )
        .values(kind=kind, config=config)
    )
    await session.commit()


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that responds with the queued replies."""

    replies: list[web.Response] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    delay_seconds: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        await asyncio.sleep(self.delay_seconds)
        if self.replies:
            return self.replies.pop(0)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    target = Receiver()
    app = web.Application()
    app.router.add_post("/hook", target.handle)
    app.router.add_post("/elsewhere", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield target, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


@pytest.fixture
def hook_context(job_context: dict[str, Any]) -> dict[str, Any]:
    settings = job_context["settings"].model_copy(
        update={"webhook_allow_private_hosts": ["127.0.0.1"]}
    )
    return {**job_context, "settings": settings}


class TestWaitStep:
    async def test_advances_without_send(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth, steps=[EMAIL, EMAIL])
        await set_kind(session, enrollment, 0, "wait", {})

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "sent"
        assert smtp_server.messages == []
        after = await fetch(client, auth, enrollment)
        assert after["next_position"] == 1
        [run] = after["step_runs"]
        assert run["status"] == "completed"


class TestTaskStep:
    async def test_creates_task_once(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(client, auth, steps=[EMAIL], timezone="Europe/Berlin")
        config = {"title": "Call Ada", "body": "Ask about the demo.", "due_in_days": 2}
        await set_kind(session, enrollment, 0, "task", config)
        before = datetime.now(UTC)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))
        await make_due(session)
        repeated = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "completed"
        assert repeated == "inactive"
        assert smtp_server.messages == []
        [task] = (await session.scalars(select(Activity))).all()
        assert task.kind == "task"
        assert task.subject == "Call Ada"
        assert task.body == "Ask about the demo."
        assert task.lead_id == ids.decode("lead", str(enrollment["lead_id"]))
        assert task.due_at is not None
        assert task.due_at >= before + timedelta(days=2) - timedelta(hours=1)
        assert task.due_at <= datetime.now(UTC) + timedelta(days=2) + timedelta(hours=1)
        created = await session.scalars(
            select(Event.type).where(Event.type == "activity.created")
        )
        assert len(created.all()) == 1
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "completed"
        assert [run["status"] for run in after["step_runs"]] == ["completed"]

    async def test_assigned_to_lead_owner(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
    ) -> None:
        response = await client.post(
            "/v1/users",
            json={"email": "rep@acme.example", "name": "Rep"},
            headers=auth,
        )
        assert response.status_code == 201, response.text
        owner = response.json()["id"]
        enrollment = await start(client, auth, steps=[EMAIL], owner_id=owner)
        await set_kind(session, enrollment, 0, "task", {"title": "Call"})

        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        task = (await session.scalars(select(Activity))).one()
        assert task.owner_id == ids.decode("user", owner)

    @pytest.mark.parametrize(
        ("lead_zone", "sequence_zone", "workspace_zone", "now", "due"),
        [
            # Berlin moves to summer time on 29 March 2026: 09:00 local is 08:00 UTC
            # before and 07:00 UTC after.
            (
                None,
                "Europe/Berlin",
                "UTC",
                datetime(2026, 3, 28, 8, 0, tzinfo=UTC),
                datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
            ),
            # New York moves to summer time on 8 March 2026: 10:00 local is 15:00 UTC
            # before and 14:00 UTC after.
            (
                None,
                None,
                "America/New_York",
                datetime(2026, 3, 7, 15, 0, tzinfo=UTC),
                datetime(2026, 3, 9, 14, 0, tzinfo=UTC),
            ),
            (
                "Europe/Berlin",
                "America/New_York",
                "America/New_York",
                datetime(2026, 3, 28, 8, 0, tzinfo=UTC),
                datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
            ),
        ],
    )
    async def test_due_in_scheduling_zone(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch,
        workspace: Workspace,
        lead_zone: str | None,
        sequence_zone: str | None,
        workspace_zone: str,
        now: datetime,
        due: datetime,
    ) -> None:
        lead_fields = {} if lead_zone is None else {"timezone": lead_zone}
        enrollment = await start(client, auth, steps=[EMAIL], **lead_fields)
        await set_kind(session, enrollment, 0, "task", {"due_in_days": 2})
        sequence_id = ids.decode("sequence", str(enrollment["sequence_id"]))
        await session.execute(
            update(Sequence)
            .where(Sequence.id == sequence_id)
            .values(timezone=sequence_zone)
        )
        await session.execute(
            update(Workspace)
            .where(Workspace.id == workspace.id)
            .values(timezone=workspace_zone)
        )
        await session.execute(
            update(Enrollment).values(next_run_at=now - timedelta(seconds=1))
        )
        await session.commit()
        monkeypatch.setattr(runner_module, "utcnow", lambda: now)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "completed"
        task = (await session.scalars(select(Activity))).one()
        assert task.due_at == due


class TestTaskDueAt:
    def test_keeps_local_hour_across_dst(self) -> None:
        # 2026-03-28 09:00 in Berlin is 08:00 UTC; after the switch to summer time on
        # 29 March, 09:00 local is 07:00 UTC.
        now = datetime(2026, 3, 28, 8, 0, tzinfo=UTC)

        due = task_due_at(now, 2, "Europe/Berlin")

        assert due == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)

    def test_utc_without_zone(self) -> None:
        now = datetime(2026, 3, 28, 8, 0, tzinfo=UTC)

        assert task_due_at(now, 1, None) == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
        assert task_due_at(now, 1, "Not/AZone") == datetime(
            2026, 3, 29, 8, 0, tzinfo=UTC
        )


async def sequence_secret(session: AsyncSession, enrollment: JsonObject) -> str:
    secret = await session.scalar(
        select(Sequence.webhook_secret).where(
            Sequence.id == ids.decode("sequence", str(enrollment["sequence_id"]))
        )
    )
    assert secret is not None
    return secret


class TestWebhookStep:
    async def test_signed_post(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
        smtp_server: SmtpServer,
    ) -> None:
        target, url = receiver
        enrollment = await start(client, auth, steps=[EMAIL])
        config = {"url": url, "headers": {"X-Team": "growth", "webhook-id": "forged"}}
        await set_kind(session, enrollment, 0, "webhook", config)

        outcome = await run_enrollment_step(hook_context, enrollment_uuid(enrollment))

        assert outcome == "completed"
        assert smtp_server.messages == []
        [(headers, body)] = target.requests
        secret = await sequence_secret(session, enrollment)
        assert secret.startswith("whsec_")
        payload = Webhook(secret).verify(body, headers)
        assert payload["type"] == "enrollment.step"
        assert payload["data"]["enrollment"]["id"] == enrollment["id"]
        assert payload["data"]["lead"]["email"] == "ada@example.com"
        assert payload["data"]["step"]["position"] == 0
        assert headers["X-Team"] == "growth"
        run = (await session.scalars(select(StepRun))).one()
        assert headers["webhook-id"] == str(run.id)
        assert run.status == "sent"

    async def test_retry_keeps_webhook_id(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
    ) -> None:
        target, url = receiver
        target.replies.append(web.Response(status=503, headers={"Retry-After": "600"}))
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": url})

        first = await run_enrollment_step(hook_context, enrollment_uuid(enrollment))
        waiting = await fetch(client, auth, enrollment)
        await make_due(session)
        second = await run_enrollment_step(hook_context, enrollment_uuid(enrollment))

        assert first == "retry_scheduled"
        assert datetime.fromisoformat(waiting["next_run_at"]) > datetime.now(
            UTC
        ) + timedelta(seconds=590)
        assert "HTTP 503" in waiting["last_error"]
        assert second == "completed"
        assert len(target.requests) == 2
        assert (
            target.requests[0][0]["webhook-id"] == target.requests[1][0]["webhook-id"]
        )
        assert target.requests[0][1] == target.requests[1][1]
        after = await fetch(client, auth, enrollment)
        assert after["step_runs"][0]["attempts"] == 2

    async def test_non_ascii_retry_after(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
    ) -> None:
        target, url = receiver
        # str.isdigit() accepts the superscript two, which float() rejects.
        target.replies.append(
            web.Response(status=503, headers={"Retry-After": "\u00b2"})
        )
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": url})

        outcome = await run_enrollment_step(hook_context, enrollment_uuid(enrollment))

        assert outcome == "retry_scheduled"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "active"
        assert "HTTP 503" in after["last_error"]

    @pytest.mark.parametrize("status", [400, 404, 410])
    async def test_client_error_fails(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
        status: int,
    ) -> None:
        target, url = receiver
        target.replies.append(web.Response(status=status, text="no such hook"))
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": url})

        outcome = await run_enrollment_step(hook_context, enrollment_uuid(enrollment))

        assert outcome == "failed"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "failed"
        assert f"HTTP {status}" in after["last_error"]
        assert "enrollment.failed" in await event_types(session, enrollment)

    @pytest.mark.parametrize("status", [408, 429, 500])
    async def test_retryable_status(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
        status: int,
    ) -> None:
        target, url = receiver
        target.replies.append(web.Response(status=status))
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": url})

        outcome = await run_enrollment_step(hook_context, enrollment_uuid(enrollment))

        assert outcome == "retry_scheduled"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "active"

    async def test_timeout_retried(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
    ) -> None:
        target, url = receiver
        target.delay_seconds = 2.0
        settings = hook_context["settings"].model_copy(
            update={"webhook_timeout_seconds": 0.5}
        )
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": url})

        outcome = await run_enrollment_step(
            {**hook_context, "settings": settings}, enrollment_uuid(enrollment)
        )

        assert outcome == "retry_scheduled"
        after = await fetch(client, auth, enrollment)
        assert "Timed out" in after["last_error"]

    async def test_last_attempt_fails(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
    ) -> None:
        target, url = receiver
        target.replies.extend(web.Response(status=500) for _ in range(2))
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": url})
        await run_enrollment_step(hook_context, enrollment_uuid(enrollment))
        await session.execute(update(StepRun).values(attempts=MAX_ATTEMPTS - 1))
        await make_due(session)

        outcome = await run_enrollment_step(hook_context, enrollment_uuid(enrollment))

        assert outcome == "failed"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "failed"
        assert "HTTP 500" in after["last_error"]
        assert after["step_runs"][0]["attempts"] == MAX_ATTEMPTS

    async def test_redirect_not_followed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
    ) -> None:
        target, url = receiver
        elsewhere = url.replace("/hook", "/elsewhere")
        target.replies.append(web.Response(status=307, headers={"Location": elsewhere}))
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": url})

        outcome = await run_enrollment_step(hook_context, enrollment_uuid(enrollment))

        assert outcome == "retry_scheduled"
        assert len(target.requests) == 1

    async def test_private_host_blocked(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        receiver: tuple[Receiver, str],
    ) -> None:
        target, url = receiver
        settings = job_context["settings"].model_copy(
            update={"webhook_allow_private_hosts": []}
        )
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": url})

        outcome = await run_enrollment_step(
            {**job_context, "settings": settings}, enrollment_uuid(enrollment)
        )

        assert outcome == "retry_scheduled"
        assert target.requests == []
        after = await fetch(client, auth, enrollment)
        assert "Blocked before connecting" in after["last_error"]

    async def test_invalid_url_fails(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
    ) -> None:
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": "ftp://example.com"})

        outcome = await run_enrollment_step(hook_context, enrollment_uuid(enrollment))

        assert outcome == "failed"

    async def test_one_secret_per_sequence(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
    ) -> None:
        target, url = receiver
        enrollment = await start(client, auth, steps=[EMAIL])
        await set_kind(session, enrollment, 0, "webhook", {"url": url})
        lead = await create_lead(client, auth, email="grace@example.com")
        response = await client.post(
            f"/v1/sequences/{enrollment['sequence_id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )
        second = response.json()

        await run_enrollment_step(hook_context, enrollment_uuid(enrollment))
        await run_enrollment_step(hook_context, enrollment_uuid(second))

        secret = await sequence_secret(session, enrollment)
        verified = [
            Webhook(secret).verify(body, headers) for headers, body in target.requests
        ]
        assert len(verified) == 2
        assert verified[0]["id"] != verified[1]["id"]


class TestWebhookSecretApi:
    async def test_matches_signing_secret(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        hook_context: dict[str, Any],
        receiver: tuple[Receiver, str],
    ) -> None:
        target, url = receiver
        enrollment = await start(client, auth, steps=[EMAIL])
        path = f"/v1/sequences/{enrollment['sequence_id']}/webhook-secret"

        shown = await client.get(path, headers=auth)
        await set_kind(session, enrollment, 0, "webhook", {"url": url})
        await run_enrollment_step(hook_context, enrollment_uuid(enrollment))
        again = await client.get(path, headers=auth)

        assert shown.status_code == 200, shown.text
        secret = shown.json()["secret"]
        assert secret.startswith("whsec_")
        assert again.json()["secret"] == secret
        [(headers, body)] = target.requests
        assert Webhook(secret).verify(body, headers)["type"] == "enrollment.step"

    async def test_unknown_sequence(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get(
            "/v1/sequences/seq_01m91aesbre238f7za3ksszh6p/webhook-secret", headers=auth
        )

        assert response.status_code == 404
