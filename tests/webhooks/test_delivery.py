from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import uuid
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.events import DISPATCH_JOB
from app.models import (
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    Workspace,
)
from app.settings import Settings
from app.webhooks import delivery as webhook_delivery
from app.webhooks.backoff import JITTER, retry_delays
from app.webhooks.schemas import WebhookEndpointCreate
from app.webhooks.sender import (
    MAX_ERROR_CHARS,
    MAX_EXCERPT_BYTES,
    USER_AGENT,
    OutgoingRequest,
    WebhookSender,
)
from app.webhooks.service import DELIVER_JOB, webhook_endpoint_service
from app.webhooks.signing import generate_secret
from app.webhooks.url_safety import AddressPolicy
from tests.webhooks.conftest import (
    Committed,
    RawReceiver,
    Receiver,
    ScriptedResponse,
    StaticResolver,
    fresh,
    static_resolve,
)
from tests.webhooks.factories import (
    create_endpoint,
    deliveries_of,
    dispatch,
    drain,
    make_due,
    record_event,
)
from workers import tasks
from workers.settings import worker_settings


async def setup_delivery(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
    ctx: dict[str, Any],
    url: str,
    *,
    event_type: str = "lead.created",
) -> tuple[dict[str, Any], Event, WebhookDelivery]:
    """Create an endpoint for everything, one event, and its dispatched delivery."""
    endpoint = await create_endpoint(client, auth, url)
    event = await record_event(session, workspace.id, event_type)
    await dispatch(ctx, event)
    [delivery] = await deliveries_of(session, event.id)
    return endpoint, event, delivery


async def deliver(ctx: dict[str, Any], delivery: WebhookDelivery) -> str:
    return await tasks.deliver_webhook(ctx, str(delivery.id))


async def attempts_of(
    session: AsyncSession, delivery_id: uuid.UUID
) -> list[WebhookAttempt]:
    rows = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.attempted_at)
    )
    return list(rows.all())


async def endpoint_row(session: AsyncSession, endpoint: dict[str, Any]) -> Any:
    return await fresh(
        session, WebhookEndpoint, ids.decode("webhook_endpoint", endpoint["id"])
    )


class TestDeliverWebhook:
    async def test_signed_request_verifies(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, event, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url("/hooks?src=sc")
        )

        outcome = await deliver(ctx, delivery)

        assert outcome == "succeeded"
        [request] = receiver.requests
        assert request.method == "POST"
        assert request.path == "/hooks?src=sc"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"] == USER_AGENT
        assert request.headers["webhook-id"] == ids.encode(
            "webhook_delivery", delivery.id
        )
        payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        assert payload == {
            "id": ids.encode("event", event.id),
            "type": "lead.created",
            "created_at": payload["created_at"],
            "object_type": "lead",
            "object_id": ids.encode("lead", event.object_id),
            "sequence": 1,
            "request_id": None,
            "actor": "test",
            "data": {"name": "Ada", "amount": 1999},
        }
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.status == "succeeded"
        assert row.attempts == 1
        assert row.last_status_code == 200
        assert row.completed_at is not None
        assert row.claimed_until is None
        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.status_code == 200
        assert attempt.response_excerpt == "ok"
        assert attempt.error is None

    @pytest.mark.parametrize(
        ("response", "outcome"),
        [
            (ScriptedResponse(status=201), "succeeded"),
            (ScriptedResponse(status=204, body=b""), "succeeded"),
            (ScriptedResponse(status=400), "retrying"),
            (ScriptedResponse(status=404), "retrying"),
            (ScriptedResponse(status=500), "retrying"),
            (ScriptedResponse(status=503), "retrying"),
            (ScriptedResponse(close_connection=True), "retrying"),
        ],
    )
    async def test_outcome_by_response(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        response: ScriptedResponse,
        outcome: str,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        receiver.respond_with(response)

        assert await deliver(ctx, delivery) == outcome

        [attempt] = await attempts_of(session, delivery.id)
        if response.close_connection:
            assert attempt.status_code is None
            assert attempt.error is not None
            assert attempt.error.startswith("Request failed")
        else:
            assert attempt.status_code == response.status
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.status == ("succeeded" if outcome == "succeeded" else "pending")

    async def test_503_retry_after_honoured(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        receiver.respond_with(
            ScriptedResponse(status=503, headers={"Retry-After": "7200"})
        )
        before = utcnow()

        assert await deliver(ctx, delivery) == "retrying"

        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.next_attempt_at >= before + timedelta(seconds=7200)
        assert row.next_attempt_at < before + timedelta(seconds=7300)

    async def test_custom_headers_sent(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            client,
            auth,
            receiver.url(),
            headers={"Authorization": "Bearer receiver-token", "X-Tenant": "acme"},
        )
        event = await record_event(session, workspace.id)
        await dispatch(ctx, event)
        [delivery] = await deliveries_of(session, event.id)
        receiver.respond_with(ScriptedResponse(status=500))

        assert await deliver(ctx, delivery) == "retrying"
        await make_due(session, delivery.id)
        assert await deliver(ctx, delivery) == "succeeded"

        assert len(receiver.requests) == 2
        for request in receiver.requests:
            assert request.headers["Authorization"] == "Bearer receiver-token"
            assert request.headers["X-Tenant"] == "acme"
            Webhook(endpoint["secret"]).verify(request.body, request.headers)

    async def test_same_id_and_body_on_retry(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        receiver.respond_with(ScriptedResponse(status=500, body=b"boom"))

        first = await deliver(ctx, delivery)
        await make_due(session, delivery.id)
        second = await deliver(ctx, delivery)

        assert (first, second) == ("retrying", "succeeded")
        failed, succeeded = receiver.requests
        assert failed.headers["webhook-id"] == succeeded.headers["webhook-id"]
        assert failed.body == succeeded.body
        for request in receiver.requests:
            Webhook(endpoint["secret"]).verify(request.body, request.headers)
        attempts = await attempts_of(session, delivery.id)
        assert [attempt.status_code for attempt in attempts] == [500, 200]
        assert attempts[0].response_excerpt == "boom"
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.status == "succeeded"
        assert row.attempts == 2

    async def test_backoff_schedules_next_attempt(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        receiver.default = ScriptedResponse(status=502)
        delays = retry_delays(settings.webhook_max_attempts)

        for attempt in (1, 2, 3):
            before = utcnow()
            assert await deliver(ctx, delivery) == "retrying"
            row = await fresh(session, WebhookDelivery, delivery.id)
            waited = (row.next_attempt_at - before).total_seconds()
            nominal = delays[attempt - 1]
            assert nominal * (1 - JITTER) - 1 <= waited <= nominal * (1 + JITTER) + 1
            assert row.status == "pending"
            assert row.last_error == "The endpoint responded 502."
            await make_due(session, delivery.id)

        endpoint = await fresh(session, WebhookEndpoint, row.endpoint_id)
        assert endpoint.failing_since is not None

    async def test_retry_scheduled_in_the_row_without_a_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: Any,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        receiver.respond_with(ScriptedResponse(status=500))
        await redis_client.flushdb()

        outcome = await deliver(ctx, delivery)

        assert outcome == "retrying"
        assert await redis_client.queued_jobs(queue_name="salescycle:queue") == []
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.status == "pending"
        assert row.claimed_until is None
        assert row.next_attempt_at > utcnow()

    async def test_not_due_is_skipped(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        receiver.respond_with(ScriptedResponse(status=500))
        await deliver(ctx, delivery)

        outcome = await deliver(ctx, delivery)

        assert outcome == "skipped"
        assert len(receiver.requests) == 1

    async def test_succeeded_is_not_sent_again(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        await deliver(ctx, delivery)

        outcome = await deliver(ctx, delivery)

        assert outcome == "skipped"
        assert len(receiver.requests) == 1

    @pytest.mark.parametrize(
        ("status", "header"),
        [(429, "3600"), (503, "http-date")],
    )
    async def test_retry_after_honoured(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        status: int,
        header: str,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        value = header
        if header == "http-date":
            value = format_datetime(utcnow() + timedelta(hours=1), usegmt=True)
        receiver.respond_with(
            ScriptedResponse(status=status, headers={"Retry-After": value})
        )
        before = utcnow()

        assert await deliver(ctx, delivery) == "retrying"

        row = await fresh(session, WebhookDelivery, delivery.id)
        waited = (row.next_attempt_at - before).total_seconds()
        assert 3595 <= waited <= 3605

    async def test_gone_disables_endpoint(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        second_event = await record_event(session, workspace.id, "lead.updated")
        await dispatch(ctx, second_event)
        [second] = await deliveries_of(session, second_event.id)
        receiver.respond_with(ScriptedResponse(status=410))

        outcome = await deliver(ctx, delivery)
        skipped = await deliver(ctx, second)

        assert outcome == "failed"
        assert skipped == "skipped"
        assert len(receiver.requests) == 1
        row = await endpoint_row(session, endpoint)
        assert row.enabled is False
        assert row.disabled_reason == "gone"
        assert row.failing_since is not None
        assert row.version == 2
        disabled = await session.scalar(
            select(Event).where(
                Event.type == "webhook_endpoint.disabled",
                Event.object_id == row.id,
            )
        )
        assert disabled is not None
        assert disabled.data["enabled"] is False
        assert disabled.data["disabled_reason"] == "gone"
        assert disabled.data["failing_since"] is not None
        assert disabled.actor == "system"
        first_row = await fresh(session, WebhookDelivery, delivery.id)
        assert first_row.status == "failed"
        assert first_row.last_status_code == 410
        second_row = await fresh(session, WebhookDelivery, second.id)
        assert second_row.status == "failed"
        assert second_row.attempts == 0
        assert "disabled" in second_row.last_error

    async def test_last_attempt_fails_delivery(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        short = {
            **ctx,
            "settings": settings.model_copy(update={"webhook_max_attempts": 2}),
        }
        endpoint, _, delivery = await setup_delivery(
            client, auth, session, workspace, short, receiver.url()
        )
        receiver.default = ScriptedResponse(status=500)

        first = await deliver(short, delivery)
        await make_due(session, delivery.id)
        second = await deliver(short, delivery)

        assert (first, second) == ("retrying", "failed")
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.status == "failed"
        assert row.attempts == 2
        assert row.next_attempt_at is None
        assert row.completed_at is not None
        assert (await endpoint_row(session, endpoint)).enabled is True

    async def test_failing_for_days_disables(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        single = {
            **ctx,
            "settings": settings.model_copy(update={"webhook_max_attempts": 1}),
        }
        endpoint, _, delivery = await setup_delivery(
            client, auth, session, workspace, single, receiver.url()
        )
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == ids.decode("webhook_endpoint", endpoint["id"]))
            .values(failing_since=utcnow() - timedelta(days=6))
        )
        await session.commit()
        receiver.default = ScriptedResponse(status=500)

        outcome = await deliver(single, delivery)

        assert outcome == "failed"
        row = await endpoint_row(session, endpoint)
        assert row.enabled is False
        assert row.disabled_reason == "failing"

    async def test_failing_disables_before_last_attempt(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        hourly = {
            **ctx,
            "settings": settings.model_copy(
                update={"webhook_disable_after_failing_seconds": 3600}
            ),
        }
        endpoint, _, delivery = await setup_delivery(
            client, auth, session, workspace, hourly, receiver.url()
        )
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == ids.decode("webhook_endpoint", endpoint["id"]))
            .values(failing_since=utcnow() - timedelta(minutes=61))
        )
        await session.commit()
        receiver.default = ScriptedResponse(status=500)

        outcome = await deliver(hourly, delivery)

        assert outcome == "retrying"
        row = await endpoint_row(session, endpoint)
        assert row.enabled is False
        assert row.disabled_reason == "failing"
        disabled = await session.scalars(
            select(Event).where(
                Event.object_id == row.id, Event.type == "webhook_endpoint.disabled"
            )
        )
        [event] = disabled.all()
        assert event.actor == "system"
        assert event.data["disabled_reason"] == "failing"
        shown = await client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth
        )
        assert shown.json()["enabled"] is False
        assert shown.json()["failing_since"] is not None

    async def test_failing_briefly_stays_enabled(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == ids.decode("webhook_endpoint", endpoint["id"]))
            .values(failing_since=utcnow() - timedelta(days=4))
        )
        await session.commit()
        receiver.default = ScriptedResponse(status=500)

        assert await deliver(ctx, delivery) == "retrying"

        row = await endpoint_row(session, endpoint)
        assert row.enabled is True
        assert row.disabled_reason is None

    async def test_http_blocked_when_https_required(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        strict = WebhookSender(
            settings.model_copy(update={"webhook_allow_http": False})
        )
        try:
            outcome = await deliver({**ctx, "webhook_sender": strict}, delivery)
        finally:
            await strict.close()

        assert outcome == "retrying"
        assert receiver.requests == []
        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.status_code is None
        assert attempt.error is not None
        assert "https://" in attempt.error

    async def test_unparsable_stored_url_recorded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        # A URL accepted before the API parsed URLs as the sender does.
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == ids.decode("webhook_endpoint", endpoint["id"]))
            .values(url="http://[2606:4700::1]x/hooks")
        )

        outcome = await deliver(ctx, delivery)

        assert outcome == "retrying"
        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.status_code is None
        assert attempt.error is not None
        assert "Invalid IPv6 URL" in attempt.error

    async def test_success_clears_failing_since(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        receiver.respond_with(ScriptedResponse(status=500))

        await deliver(ctx, delivery)
        failing = await endpoint_row(session, endpoint)
        failing_since, version = failing.failing_since, failing.version
        await make_due(session, delivery.id)
        await deliver(ctx, delivery)

        assert failing_since is not None
        healthy = await endpoint_row(session, endpoint)
        assert healthy.failing_since is None
        assert healthy.version == version

    async def test_redirect_not_followed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        target = receiver.url("/elsewhere")
        receiver.respond_with(
            ScriptedResponse(status=302, headers={"Location": target})
        )

        assert await deliver(ctx, delivery) == "retrying"

        assert [request.path for request in receiver.requests] == ["/hooks"]
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.last_status_code == 302
        assert "redirects are not followed" in row.last_error
        assert target in row.last_error

    async def test_long_redirect_target_cut(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        target = "/" + "x" * 6_000
        receiver.respond_with(
            ScriptedResponse(status=307, headers={"Location": target})
        )

        assert await deliver(ctx, delivery) == "retrying"

        row = await fresh(session, WebhookDelivery, delivery.id)
        cut = target[: webhook_delivery.MAX_LOCATION_CHARS] + "…"
        assert row.last_error == (
            f"The endpoint responded 307 to {cut}, and redirects are not followed. "
            "Point the endpoint at the final URL."
        )

    async def test_timeout(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        quick = settings.model_copy(update={"webhook_timeout_seconds": 0.3})
        sender = WebhookSender(quick)
        quick_ctx = {**ctx, "settings": quick, "webhook_sender": sender}
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, quick_ctx, receiver.url()
        )
        receiver.respond_with(ScriptedResponse(delay_seconds=2))

        try:
            outcome = await deliver(quick_ctx, delivery)
        finally:
            await sender.close()

        assert outcome == "retrying"
        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.status_code is None
        assert attempt.error == "Timed out after 0.3 s."
        assert attempt.duration_ms < 1500

    async def test_connection_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        url = receiver.url()
        await receiver.stop()
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, url
        )

        assert await deliver(ctx, delivery) == "retrying"

        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.status_code is None
        assert attempt.error is not None
        host, port = url.removeprefix("http://").split("/")[0].split(":")
        assert (
            attempt.error == f"Could not connect to {host}:{port}: Connection refused."
        )

    async def test_excerpt_is_bounded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        receiver.respond_with(
            ScriptedResponse(status=500, body=b"a\x00b" + b"x" * 100_000)
        )

        await deliver(ctx, delivery)

        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.response_excerpt is not None
        assert attempt.response_excerpt.startswith("abx")
        assert len(attempt.response_excerpt) == MAX_EXCERPT_BYTES - 1

    async def test_body_survives_large_integers(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        event = await record_event(
            session, workspace.id, data={"big": 2**70, "text": "Łódź"}
        )
        await dispatch(ctx, event)
        [delivery] = await deliveries_of(session, event.id)

        assert await deliver(ctx, delivery) == "succeeded"

        [request] = receiver.requests
        payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        assert payload["data"] == {"big": 2**70, "text": "Łódź"}


class TestLeases:
    async def test_lapsed_lease_is_claimed_again(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
        database: Any,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        async with database.session() as worker_session:
            claims = await webhook_delivery.lease(
                worker_session,
                settings,
                limit=1,
                owner=uuid.uuid4(),
                only=[delivery.id],
            )
            await worker_session.commit()
        assert len(claims) == 1

        blocked = await deliver(ctx, delivery)
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(claimed_until=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        outcome = await deliver(ctx, delivery)

        assert blocked == "skipped"
        assert outcome == "succeeded"
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.attempts == 2
        assert len(receiver.requests) == 1

    async def test_lost_claim_keeps_attempt(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
        database: Any,
        sender: WebhookSender,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        async with database.session() as worker_session:
            [stale] = await webhook_delivery.lease(
                worker_session,
                settings,
                limit=1,
                owner=uuid.uuid4(),
                only=[delivery.id],
            )
            await worker_session.commit()
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(claimed_until=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        assert await deliver(ctx, delivery) == "succeeded"

        late = await sender.send(stale.request)
        async with database.session() as worker_session:
            [outcome] = await webhook_delivery.record(
                worker_session, settings, [(stale, late)]
            )
            await worker_session.commit()

        assert outcome == "lost"
        assert len(await attempts_of(session, delivery.id)) == 2
        assert (
            await fresh(session, WebhookDelivery, delivery.id)
        ).status == "succeeded"

    async def test_worker_lost_on_last_attempt(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(
                attempts=settings.webhook_max_attempts,
                claimed_until=utcnow() - timedelta(seconds=1),
            )
        )
        await session.commit()

        outcome = await deliver(ctx, delivery)

        assert outcome == "skipped"
        assert receiver.requests == []
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.status == "failed"
        assert "worker stopped" in row.last_error


class TestSecretRotation:
    async def test_both_secrets_sign_during_grace(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        rotated = (
            await client.post(
                f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
                json={"previous_secret_expires_in": 3600},
                headers=auth,
            )
        ).json()
        event = await record_event(session, workspace.id)
        await dispatch(ctx, event)
        [delivery] = await deliveries_of(session, event.id)

        await deliver(ctx, delivery)

        [request] = receiver.requests
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        Webhook(rotated["secret"]).verify(request.body, request.headers)
        Webhook(endpoint["secret"]).verify(request.body, request.headers)

    async def test_old_secret_stops_after_grace(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        rotated = (
            await client.post(
                f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
                json={"previous_secret_expires_in": 60},
                headers=auth,
            )
        ).json()
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == ids.decode("webhook_endpoint", endpoint["id"]))
            .values(previous_secret_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
        event = await record_event(session, workspace.id)
        await dispatch(ctx, event)
        [delivery] = await deliveries_of(session, event.id)

        await deliver(ctx, delivery)

        [request] = receiver.requests
        Webhook(rotated["secret"]).verify(request.body, request.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(endpoint["secret"]).verify(request.body, request.headers)


class TestConnectTimeChecks:
    async def test_literal_blocked_without_allow_list(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        strict = WebhookSender(
            settings.model_copy(update={"webhook_allow_private_hosts": []})
        )
        strict_ctx = {**ctx, "webhook_sender": strict}
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, strict_ctx, receiver.url()
        )

        try:
            outcome = await deliver(strict_ctx, delivery)
        finally:
            await strict.close()

        assert outcome == "retrying"
        assert receiver.requests == []
        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.error is not None
        assert attempt.error.startswith("Blocked before connecting:")
        assert "127.0.0.1" in attempt.error

    async def test_rebound_name_blocked(
        self,
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        endpoint_id = await self._endpoint_created_while_public(
            session, workspace, receiver
        )
        dns = StaticResolver({"rebind.test": ["127.0.0.1"]})
        sender = WebhookSender(settings, resolver=dns, policy=AddressPolicy())
        rebind_ctx = {**ctx, "webhook_sender": sender}
        event = await record_event(session, workspace.id)
        await dispatch(rebind_ctx, event)
        [delivery] = await deliveries_of(session, event.id)

        try:
            outcome = await deliver(rebind_ctx, delivery)
        finally:
            await sender.close()

        assert outcome == "retrying"
        assert dns.queries == ["rebind.test"]
        assert receiver.requests == []
        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.error is not None
        assert "rebind.test resolves to 127.0.0.1" in attempt.error
        assert delivery.endpoint_id == endpoint_id

    async def test_resolved_address_dialled_with_host_header(
        self,
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        await self._endpoint_created_while_public(session, workspace, receiver)
        dns = StaticResolver({"rebind.test": ["127.0.0.1"]})
        sender = WebhookSender(
            settings, resolver=dns, policy=AddressPolicy.from_entries(["rebind.test"])
        )
        dns_ctx = {**ctx, "webhook_sender": sender}
        event = await record_event(session, workspace.id)
        await dispatch(dns_ctx, event)
        [delivery] = await deliveries_of(session, event.id)

        try:
            outcome = await deliver(dns_ctx, delivery)
        finally:
            await sender.close()

        assert outcome == "succeeded"
        [request] = receiver.requests
        assert request.headers["Host"] == f"rebind.test:{receiver.port}"

    @staticmethod
    async def _endpoint_created_while_public(
        session: AsyncSession, workspace: Workspace, receiver: Receiver
    ) -> uuid.UUID:
        """Create an endpoint whose host resolved to a public address at creation."""
        principal = Principal(
            api_key_id=uuid.uuid4(),
            workspace_id=workspace.id,
            scopes=frozenset({"webhooks:manage"}),
            kind="secret",
        )
        endpoint, _ = await webhook_endpoint_service.create(
            session,
            principal,
            WebhookEndpointCreate(
                url=f"http://rebind.test:{receiver.port}/hooks", event_types=["*"]
            ),
            policy=AddressPolicy(),
            max_endpoints=Settings.model_fields[
                "webhook_max_endpoints_per_workspace"
            ].default,
            resolve=static_resolve({"rebind.test": ["8.8.8.8"]}),
        )
        await session.commit()
        return endpoint.id


class TestAttemptLogs:
    async def test_logged_without_secret(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        endpoint, event, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, receiver.url()
        )
        receiver.respond_with(ScriptedResponse(status=500))
        # The app's loggers are cached on first use, so structlog.testing's
        # capture_logs cannot reach them; this module's logger is swapped instead.
        capture = structlog.testing.LogCapture()
        monkeypatch.setattr(
            webhook_delivery,
            "log",
            structlog.wrap_logger(
                None,
                processors=[
                    structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    capture,
                ],
            ),
        )

        await deliver(ctx, delivery)

        [failed] = [
            entry
            for entry in capture.entries
            if entry["event"] == "webhook.attempt_failed"
        ]
        assert failed["log_level"] == "warning"
        assert failed["delivery_id"] == str(delivery.id)
        assert failed["event_id"] == str(event.id)
        assert failed["endpoint_id"] == str(delivery.endpoint_id)
        assert failed["attempt"] == 1
        assert failed["status_code"] == 500
        assert failed["error"] == "The endpoint responded 500."
        assert failed["job_id"] == "test-job"
        assert endpoint["secret"].removeprefix("whsec_") not in repr(capture.entries)


def capture_delivery_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> structlog.testing.LogCapture:
    """Capture what the delivery module logs.

    The app's loggers are cached on first use, so structlog.testing's capture_logs
    cannot reach them; this module's logger is swapped instead.
    """
    capture = structlog.testing.LogCapture()
    monkeypatch.setattr(
        webhook_delivery,
        "log",
        structlog.wrap_logger(
            None,
            processors=[structlog.processors.add_log_level, capture],
        ),
    )
    return capture


class TestMalformedResponses:
    async def test_location_not_utf8_recorded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        raw_receiver: RawReceiver,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, raw_receiver.url()
        )
        raw_receiver.response = (
            b"HTTP/1.1 302 Found\r\nLocation: /next\xff\xfe\r\n"
            b"Content-Length: 0\r\n\r\n"
        )

        assert await deliver(ctx, delivery) == "retrying"

        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.last_status_code == 302
        assert "to /next\ufffd\ufffd, and redirects are not followed" in row.last_error
        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.status_code == 302

    async def test_location_not_utf8_spares_batch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        raw_receiver: RawReceiver,
    ) -> None:
        await create_endpoint(client, auth, receiver.url())
        await create_endpoint(client, auth, raw_receiver.url())
        raw_receiver.response = (
            b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /\xc3\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        event = await record_event(session, workspace.id)

        async with asyncio.timeout(30):
            await drain(ctx)

        by_status = {
            row.last_status_code: row for row in await deliveries_of(session, event.id)
        }
        assert set(by_status) == {200, 307}
        assert by_status[200].status == "succeeded"
        assert by_status[307].status == "pending"
        for row in by_status.values():
            assert len(await attempts_of(session, row.id)) == 1

    async def test_parse_error_hides_url(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        raw_receiver: RawReceiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        url = raw_receiver.url("/catch/path-token-4f3c?key=query-token-9a1b")
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, url
        )
        raw_receiver.response = b"HTTP/1.1 2x0 OK\r\n\r\n"
        capture = capture_delivery_logs(monkeypatch)

        assert await deliver(ctx, delivery) == "retrying"

        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.status_code is None
        assert attempt.error is not None
        assert attempt.error.startswith("Request failed: ClientResponseError: 400")
        assert "Bad status line" in attempt.error
        row = await fresh(session, WebhookDelivery, delivery.id)
        logged = repr(capture.entries)
        for token in ("path-token-4f3c", "query-token-9a1b"):
            assert token not in attempt.error
            assert token not in row.last_error
            assert token not in logged
        assert "webhook.attempt_failed" in logged

    async def test_long_parse_error_cut(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        raw_receiver: RawReceiver,
    ) -> None:
        _, _, delivery = await setup_delivery(
            client, auth, session, workspace, ctx, raw_receiver.url()
        )
        # aiohttp quotes the whole malformed line, up to its 8 KB line limit, twice
        # for a header line.
        raw_receiver.response = (
            b"HTTP/1.1 200 OK\r\n" + b"X" * 8000 + b"\r\nContent-Length: 0\r\n\r\n"
        )

        assert await deliver(ctx, delivery) == "retrying"

        [attempt] = await attempts_of(session, delivery.id)
        assert attempt.error is not None
        assert attempt.error.startswith("Request failed: ClientResponseError: 400")
        assert len(attempt.error) <= MAX_ERROR_CHARS
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.last_error == attempt.error


async def _serve(reply: bytes, context: ssl.SSLContext | None = None) -> asyncio.Server:
    """Start a server on 127.0.0.1 that writes ``reply`` to each connection and
    closes it, over TLS with ``context``."""

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(reply)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)


def _request(url: str) -> OutgoingRequest:
    return OutgoingRequest(
        url=url, message_id="msg_1", body=b"{}", signing_secrets=(generate_secret(),)
    )


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command makes the certificate and is not installed")
    key, certificate = tmp_path / "key.pem", tmp_path / "certificate.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(certificate), "-subj", "/CN=127.0.0.1"],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context


class TestConnectionErrors:
    async def test_refused(self, sender: WebhookSender) -> None:
        server = await _serve(b"")
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()

        result = await sender.send(_request(f"http://127.0.0.1:{port}/hooks"))

        assert result.status_code is None
        assert (
            result.error
            == f"Could not connect to 127.0.0.1:{port}: Connection refused."
        )

    async def test_https_to_plain_http(self, sender: WebhookSender) -> None:
        server = await _serve(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        port = server.sockets[0].getsockname()[1]
        try:
            result = await sender.send(_request(f"https://127.0.0.1:{port}/hooks"))
        finally:
            server.close()
            await server.wait_closed()

        assert result.error == (
            f"The TLS handshake with 127.0.0.1:{port} failed: wrong version number, "
            "as when the port serves plain HTTP."
        )

    async def test_untrusted_certificate(
        self, sender: WebhookSender, self_signed: ssl.SSLContext
    ) -> None:
        server = await _serve(b"HTTP/1.1 204 No Content\r\n\r\n", self_signed)
        port = server.sockets[0].getsockname()[1]
        try:
            result = await sender.send(_request(f"https://127.0.0.1:{port}/hooks"))
        finally:
            server.close()
            await server.wait_closed()

        assert result.error == (
            f"The TLS certificate of 127.0.0.1:{port} was not accepted: "
            "self-signed certificate."
        )


class TestEndpointChangedMidRequest:
    async def test_old_url_gone_keeps_enabled(
        self,
        committed_api: httpx.AsyncClient,
        committed: Committed,
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            committed_api, committed.auth, receiver.url("/old")
        )
        async with committed.database.session() as writing:
            event = await record_event(writing, committed.workspace.id)
            await dispatch(committed.ctx, event)
            [delivery] = await deliveries_of(writing, event.id)
        receiver.respond_with(ScriptedResponse(status=410, delay_seconds=1.0))

        sending = asyncio.create_task(deliver(committed.ctx, delivery))
        # The PATCH commits while the request to the old URL waits for its 410.
        await asyncio.sleep(0.5)
        patched = await committed_api.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={"url": receiver.url("/new")},
            headers=committed.auth,
        )
        outcome = await sending

        assert patched.status_code == 200, patched.text
        assert outcome == "failed"
        assert [request.path for request in receiver.requests] == ["/old"]
        async with committed.database.session() as reading:
            row = await endpoint_row(reading, endpoint)
            disabled = await reading.scalar(
                select(Event).where(
                    Event.type == "webhook_endpoint.disabled",
                    Event.object_id == row.id,
                )
            )
        assert row.url == receiver.url("/new")
        assert row.enabled is True
        assert row.disabled_reason is None
        assert row.failing_since is None
        assert row.version == patched.json()["version"]
        assert disabled is None


class TestWorkerRegistration:
    def test_jobs_registered(self, settings: Settings) -> None:
        names = {function.__name__ for function in tasks.FUNCTIONS}
        cron_jobs = worker_settings(settings)["cron_jobs"]
        crons = {job.coroutine.__name__ for job in cron_jobs}

        assert {DISPATCH_JOB, DELIVER_JOB} <= names
        assert "sweep_webhooks" in crons
        assert tasks.start_webhook_sender in tasks.STARTUP_HOOKS
        assert tasks.close_webhook_sender in tasks.SHUTDOWN_HOOKS

    async def test_sender_hooks(self, settings: Settings) -> None:
        worker_ctx: dict[str, Any] = {"settings": settings}

        await tasks.start_webhook_sender(worker_ctx)
        sender = worker_ctx[tasks.WEBHOOK_SENDER]
        await tasks.close_webhook_sender(worker_ctx)

        assert isinstance(sender, WebhookSender)
        assert sender.session.closed
        assert tasks.WEBHOOK_SENDER not in worker_ctx
