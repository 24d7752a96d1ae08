from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.clock import utcnow
from app.models import Event, WebhookDelivery, Workspace
from app.settings import Settings
from app.webhooks import service
from app.webhooks.schemas import SHOWN_ATTEMPTS
from tests.conftest import make_workspace_key
from tests.webhooks.conftest import Receiver, ScriptedResponse, fresh
from tests.webhooks.factories import (
    create_endpoint,
    deliveries_of,
    dispatch,
    make_due,
    record_event,
)
from workers import tasks


async def delivered(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
    ctx: dict[str, Any],
    receiver: Receiver,
    *responses: ScriptedResponse,
) -> tuple[dict[str, Any], Event, WebhookDelivery]:
    """Create an endpoint and an event, and make one attempt of its delivery."""
    endpoint = await create_endpoint(client, auth, receiver.url())
    event = await record_event(session, workspace.id, "invoice.paid")
    await dispatch(ctx, event)
    [delivery] = await deliveries_of(session, event.id)
    receiver.respond_with(*responses)
    await tasks.deliver_webhook(ctx, str(delivery.id))
    return endpoint, event, delivery


def api_id(delivery: WebhookDelivery) -> str:
    return ids.encode("webhook_delivery", delivery.id)


class TestGetDelivery:
    async def test_with_attempts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, event, delivery = await delivered(
            client,
            auth,
            session,
            workspace,
            ctx,
            receiver,
            ScriptedResponse(status=500),
        )
        await make_due(session, delivery.id)
        await tasks.deliver_webhook(ctx, str(delivery.id))

        response = await client.get(
            f"/v1/webhook-deliveries/{api_id(delivery)}", headers=auth
        )

        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "webhook_delivery"
        assert body["id"] == api_id(delivery)
        assert body["endpoint_id"] == endpoint["id"]
        assert body["event_id"] == ids.encode("event", event.id)
        assert body["event_type"] == "invoice.paid"
        assert body["status"] == "succeeded"
        assert body["attempt_count"] == 2
        assert body["last_status_code"] == 200
        assert body["next_attempt_at"] is None
        assert [item["status_code"] for item in body["attempts"]] == [500, 200]
        assert body["attempts"][0]["response_excerpt"] == "ok"
        assert all(item["duration_ms"] >= 0 for item in body["attempts"])

    async def test_other_workspace_is_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await delivered(
            client, auth, session, workspace, ctx, receiver
        )
        _, other = await make_workspace_key(session)

        response = await client.get(
            f"/v1/webhook-deliveries/{api_id(delivery)}", headers=other
        )

        assert response.status_code == 404
        assert response.json()["code"] == "webhook_delivery_not_found"


async def retried(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    ctx: dict[str, Any],
    receiver: Receiver,
    delivery: WebhookDelivery,
    times: int,
) -> None:
    """Retry a delivery ``times`` times; the receiver replies ``attempt N`` to
    attempt N, from N = 2."""
    for number in range(2, times + 2):
        receiver.respond_with(ScriptedResponse(body=f"attempt {number}".encode()))
        response = await client.post(
            f"/v1/webhook-deliveries/{api_id(delivery)}/retry", headers=auth
        )
        assert response.status_code == 202, response.text
        assert await tasks.deliver_webhook(ctx, str(delivery.id)) == "succeeded"


class TestAttempts:
    async def test_delivery_shows_its_last_attempts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(service, "SHOWN_ATTEMPTS", 3)
        endpoint, event, delivery = await delivered(
            client,
            auth,
            session,
            workspace,
            ctx,
            receiver,
            ScriptedResponse(body=b"attempt 1"),
        )
        await retried(client, auth, ctx, receiver, delivery, 4)

        by_id = await client.get(
            f"/v1/webhook-deliveries/{api_id(delivery)}", headers=auth
        )
        of_endpoint = await client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=auth
        )
        of_event = await client.get(
            f"/v1/events/{ids.encode('event', event.id)}/deliveries", headers=auth
        )

        expected = ["attempt 3", "attempt 4", "attempt 5"]
        for body in (
            by_id.json(),
            of_endpoint.json()["data"][0],
            of_event.json()["data"][0],
        ):
            assert body["attempt_count"] == 5
            assert [item["response_excerpt"] for item in body["attempts"]] == expected

    def test_every_attempt_a_delivery_may_get_is_shown(self) -> None:
        limit = Settings.model_fields["webhook_max_attempts"].metadata

        assert any(getattr(bound, "le", None) == SHOWN_ATTEMPTS for bound in limit)

    async def test_list_pages_through_every_attempt(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await delivered(
            client,
            auth,
            session,
            workspace,
            ctx,
            receiver,
            ScriptedResponse(status=500, body=b"attempt 1"),
        )
        await retried(client, auth, ctx, receiver, delivery, 4)
        url = f"/v1/webhook-deliveries/{api_id(delivery)}/attempts"

        pages = []
        cursor = None
        while True:
            params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
            response = await client.get(url, params=params, headers=auth)
            assert response.status_code == 200, response.text
            pages.append(response.json())
            cursor = pages[-1]["next_cursor"]
            if cursor is None:
                break

        assert [page["has_more"] for page in pages] == [True, True, False]
        attempts = [item for page in pages for item in page["data"]]
        assert [item["response_excerpt"] for item in attempts] == [
            "attempt 5",
            "attempt 4",
            "attempt 3",
            "attempt 2",
            "attempt 1",
        ]
        assert [item["status_code"] for item in attempts] == [200, 200, 200, 200, 500]

    async def test_list_of_other_workspace_is_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await delivered(
            client, auth, session, workspace, ctx, receiver
        )
        _, other = await make_workspace_key(session)

        response = await client.get(
            f"/v1/webhook-deliveries/{api_id(delivery)}/attempts", headers=other
        )

        assert response.status_code == 404
        assert response.json()["code"] == "webhook_delivery_not_found"

    async def test_list_rejects_a_bad_cursor(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await delivered(
            client, auth, session, workspace, ctx, receiver
        )

        response = await client.get(
            f"/v1/webhook-deliveries/{api_id(delivery)}/attempts",
            params={"cursor": "not a cursor"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.cursor"


class TestListEventDeliveries:
    async def test_every_endpoint_with_attempts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        first = await create_endpoint(client, auth, receiver.url("/first"))
        second = await create_endpoint(client, auth, receiver.url("/second"))
        event = await record_event(session, workspace.id, "invoice.paid")
        other_event = await record_event(session, workspace.id, "invoice.paid")
        await dispatch(ctx, event)
        await dispatch(ctx, other_event)
        receiver.respond_with(
            ScriptedResponse(status=503, body=b"busy"), ScriptedResponse(status=200)
        )
        for delivery in await deliveries_of(session, event.id):
            await tasks.deliver_webhook(ctx, str(delivery.id))
        path = f"/v1/events/{ids.encode('event', event.id)}/deliveries"

        response = await client.get(path, headers=auth)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["has_more"] is False
        assert {item["endpoint_id"] for item in body["data"]} == {
            first["id"],
            second["id"],
        }
        assert {item["event_id"] for item in body["data"]} == {
            ids.encode("event", event.id)
        }
        attempts = sorted(
            (item["attempts"][0] for item in body["data"]),
            key=lambda attempt: attempt["attempted_at"],
        )
        assert [attempt["status_code"] for attempt in attempts] == [503, 200]
        assert attempts[0]["response_excerpt"] == "busy"
        assert attempts[0]["duration_ms"] >= 0
        assert attempts[0]["error"] is None

    async def test_unknown_event_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        event_id = ids.encode("event", ids.new_uuid())

        response = await client.get(f"/v1/events/{event_id}/deliveries", headers=auth)

        assert response.status_code == 404
        assert response.json()["code"] == "event_not_found"

    async def test_other_workspace_is_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, event, _ = await delivered(client, auth, session, workspace, ctx, receiver)
        _, other = await make_workspace_key(session)

        response = await client.get(
            f"/v1/events/{ids.encode('event', event.id)}/deliveries", headers=other
        )

        assert response.status_code == 404


class TestListDeliveries:
    async def test_filters_and_pages(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        events = [await record_event(session, workspace.id) for _ in range(3)]
        for event in events:
            await dispatch(ctx, event)
        deliveries = [(await deliveries_of(session, e.id))[0] for e in events]
        receiver.respond_with(ScriptedResponse(status=500))
        await tasks.deliver_webhook(ctx, str(deliveries[0].id))
        path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"

        first = (await client.get(f"{path}?limit=2", headers=auth)).json()
        second = (
            await client.get(
                f"{path}?limit=2&cursor={first['next_cursor']}", headers=auth
            )
        ).json()
        pending = (await client.get(f"{path}?status=pending", headers=auth)).json()
        by_event = (
            await client.get(
                f"{path}?event_id={ids.encode('event', events[1].id)}", headers=auth
            )
        ).json()

        seen = [item["id"] for item in first["data"] + second["data"]]
        assert seen == [api_id(d) for d in reversed(deliveries)]
        assert len(pending["data"]) == 3
        assert pending["data"][2]["attempt_count"] == 1
        assert [item["id"] for item in by_event["data"]] == [api_id(deliveries[1])]
        assert first["data"][0]["event_type"] == "lead.created"

    async def test_invalid_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, "http://127.0.0.1:9/")
        path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"

        bad_status = await client.get(f"{path}?status=lost", headers=auth)
        bad_event = await client.get(f"{path}?event_id=lead_1", headers=auth)

        assert bad_status.status_code == 422
        assert bad_event.status_code == 422
        assert bad_event.json()["errors"][0]["field"] == "query.event_id"

    async def test_unknown_endpoint_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        missing = ids.encode("webhook_endpoint", ids.new_uuid())

        response = await client.get(
            f"/v1/webhook-endpoints/{missing}/deliveries", headers=auth
        )

        assert response.status_code == 404


class TestRetryDelivery:
    async def test_replays_succeeded_delivery(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, _, delivery = await delivered(
            client, auth, session, workspace, ctx, receiver
        )

        response = await client.post(
            f"/v1/webhook-deliveries/{api_id(delivery)}/retry", headers=auth
        )
        outcome = await tasks.deliver_webhook(ctx, str(delivery.id))

        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        assert response.json()["completed_at"] is None
        assert outcome == "succeeded"
        original, replay = receiver.requests
        assert replay.headers["webhook-id"] == original.headers["webhook-id"]
        assert replay.body == original.body
        Webhook(endpoint["secret"]).verify(replay.body, replay.headers)
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.attempts == 2
        assert row.status == "succeeded"

    async def test_retry_enqueues_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: Any,
    ) -> None:
        _, _, delivery = await delivered(
            client, auth, session, workspace, ctx, receiver
        )
        await redis_client.flushdb()

        await client.post(
            f"/v1/webhook-deliveries/{api_id(delivery)}/retry", headers=auth
        )

        jobs = await redis_client.queued_jobs(queue_name="salescycle:queue")
        assert [(job.function, job.args) for job in jobs] == [
            ("deliver_webhook", (str(delivery.id),))
        ]

    async def test_failed_delivery_gets_one_attempt(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await delivered(
            client,
            auth,
            session,
            workspace,
            ctx,
            receiver,
            ScriptedResponse(status=500),
        )
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(status="failed", next_attempt_at=None, completed_at=utcnow())
        )
        await session.commit()
        receiver.default = ScriptedResponse(status=500)

        response = await client.post(
            f"/v1/webhook-deliveries/{api_id(delivery)}/retry", headers=auth
        )
        outcome = await tasks.deliver_webhook(ctx, str(delivery.id))

        assert response.status_code == 202
        assert outcome == "failed"
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.status == "failed"
        assert row.attempts == 2
        assert row.attempt_limit == 2

    async def test_pending_delivery_moves_forward(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await delivered(
            client,
            auth,
            session,
            workspace,
            ctx,
            receiver,
            ScriptedResponse(status=500),
        )

        before = utcnow()
        response = await client.post(
            f"/v1/webhook-deliveries/{api_id(delivery)}/retry", headers=auth
        )

        assert response.status_code == 202
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.next_attempt_at <= before + timedelta(seconds=5)
        assert row.attempt_limit is None
        assert await tasks.deliver_webhook(ctx, str(delivery.id)) == "succeeded"

    async def test_stopped_final_attempt_sent_again(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        settings: Settings,
    ) -> None:
        _, _, delivery = await delivered(
            client,
            auth,
            session,
            workspace,
            ctx,
            receiver,
            ScriptedResponse(status=500),
        )
        # The worker leased the last attempt and stopped before recording it, so the
        # delivery is pending with no attempt left and a lapsed lease.
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(
                attempts=settings.webhook_max_attempts,
                claimed_until=utcnow() - timedelta(seconds=1),
            )
        )
        await session.commit()

        response = await client.post(
            f"/v1/webhook-deliveries/{api_id(delivery)}/retry", headers=auth
        )
        outcome = await tasks.deliver_webhook(ctx, str(delivery.id))

        assert response.status_code == 202, response.text
        assert outcome == "succeeded"
        assert len(receiver.requests) == 2
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.status == "succeeded"
        assert row.attempts == settings.webhook_max_attempts + 1
        assert row.attempt_limit == settings.webhook_max_attempts + 1

    async def test_disabled_endpoint_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, _, delivery = await delivered(
            client,
            auth,
            session,
            workspace,
            ctx,
            receiver,
            ScriptedResponse(status=410),
        )

        response = await client.post(
            f"/v1/webhook-deliveries/{api_id(delivery)}/retry", headers=auth
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "webhook_endpoint_disabled"
        assert problem["endpoint_id"] == endpoint["id"]

    async def test_in_progress_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        _, _, delivery = await delivered(
            client, auth, session, workspace, ctx, receiver
        )
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(claimed_until=utcnow() + timedelta(minutes=1))
        )
        await session.commit()

        response = await client.post(
            f"/v1/webhook-deliveries/{api_id(delivery)}/retry", headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "webhook_delivery_in_progress"

    async def test_deleted_endpoint_takes_deliveries(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, _, delivery = await delivered(
            client, auth, session, workspace, ctx, receiver
        )
        await client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth)

        response = await client.post(
            f"/v1/webhook-deliveries/{api_id(delivery)}/retry", headers=auth
        )

        assert response.status_code == 404
