"""Stripe deliveries served by the fast path ahead of the middleware stack."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers.router import STRIPE_PATH
from app.core.db import Database
from app.core.jobs import JobQueue
from app.main import create_app
from app.models import ProviderEvent
from app.settings import Settings
from tests.billing.factories import payment_intent, sign, stripe_body


async def stored_count(session: AsyncSession) -> int:
    session.expire_all()
    return len(list(await session.scalars(select(ProviderEvent))))


def signed_headers(body: bytes, **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Stripe-Signature": sign(body),
        **extra,
    }


def requests_counted(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "salescycle_http_requests_total",
        {"method": "POST", "route": STRIPE_PATH, "status": status},
    )
    return value or 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def app_client(
    settings: Settings, database: Database, queue: JobQueue
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database=database, queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


class TestFastPath:
    async def test_request_id_echoed_or_created(
        self, client: httpx.AsyncClient
    ) -> None:
        bodies = [
            stripe_body("payment_intent.succeeded", payment_intent(None, 100))
            for _ in range(3)
        ]

        client_id = await client.post(
            STRIPE_PATH,
            content=bodies[0],
            headers=signed_headers(bodies[0], **{"X-Request-Id": "req-stripe.1"}),
        )
        created = await client.post(
            STRIPE_PATH, content=bodies[1], headers=signed_headers(bodies[1])
        )
        malformed = await client.post(
            STRIPE_PATH,
            content=bodies[2],
            headers=signed_headers(bodies[2], **{"X-Request-Id": "a b"}),
        )

        assert [r.status_code for r in (client_id, created, malformed)] == [200] * 3
        assert client_id.headers["x-request-id"] == "req-stripe.1"
        assert len(created.headers["x-request-id"]) == 32
        assert len(malformed.headers["x-request-id"]) == 32
        assert client_id.headers["content-type"] == "application/json"
        assert client_id.json() == {"received": True, "duplicate": False}

    async def test_counted_in_request_metrics(self, client: httpx.AsyncClient) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))
        accepted_before = requests_counted("200")
        rejected_before = requests_counted("400")

        await client.post(STRIPE_PATH, content=body, headers=signed_headers(body))
        await client.post(
            STRIPE_PATH,
            content=body,
            headers={"Stripe-Signature": sign(body, secret="whsec_other")},
        )

        assert requests_counted("200") == accepted_before + 1
        assert requests_counted("400") == rejected_before + 1

    async def test_rejection_is_problem_with_request_id(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        response = await client.post(
            STRIPE_PATH,
            content=body,
            headers={"Stripe-Signature": sign(body, secret="whsec_other")},
        )

        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "invalid_signature"
        assert problem["instance"] == STRIPE_PATH
        assert len(response.headers["x-request-id"]) == 32
        assert await stored_count(session) == 0

    async def test_query_string_handled_by_route(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        response = await client.post(
            f"{STRIPE_PATH}?replay=1", content=body, headers=signed_headers(body)
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "query.replay"
        assert "x-request-id" in response.headers
        assert await stored_count(session) == 0

    async def test_body_over_limit_rejected(
        self,
        settings: Settings,
        database: Database,
        queue: JobQueue,
        session: AsyncSession,
    ) -> None:
        small = settings.model_copy(update={"max_body_bytes": 1024})
        body = stripe_body(
            "payment_intent.succeeded",
            {**payment_intent(None, 100), "description": "x" * 2000},
        )

        async def streamed() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 512):
                yield body[start : start + 512]

        async for http in app_client(small, database, queue):
            declared = await http.post(
                STRIPE_PATH, content=body, headers=signed_headers(body)
            )
            chunked = await http.post(
                STRIPE_PATH, content=streamed(), headers=signed_headers(body)
            )

        for response in (declared, chunked):
            assert response.status_code == 413
            assert response.json()["code"] == "payload_too_large"
            assert "x-request-id" in response.headers
        assert "content-length" not in chunked.request.headers
        assert await stored_count(session) == 0

    async def test_streamed_body_within_limit_stored(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        async def streamed() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 100):
                yield body[start : start + 100]

        response = await client.post(
            STRIPE_PATH, content=streamed(), headers=signed_headers(body)
        )

        assert response.status_code == 200, response.text
        assert await stored_count(session) == 1

    async def test_database_unreachable_is_503(
        self, settings: Settings, queue: JobQueue
    ) -> None:
        unreachable = settings.model_copy(
            update={
                "database_url": "postgresql+asyncpg://postgres@127.0.0.1:"
                f"{free_port()}/none"
            }
        )
        database = Database(unreachable)
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        try:
            async for http in app_client(unreachable, database, queue):
                response = await http.post(
                    STRIPE_PATH,
                    content=body,
                    headers=signed_headers(body, **{"X-Request-Id": "req-down"}),
                )
        finally:
            await database.dispose()

        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert response.headers["retry-after"] == "5"
        assert response.headers["x-request-id"] == "req-down"
