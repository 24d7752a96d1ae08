"""The bare baseline of the Stripe workload: Starlette and asyncpg, and no more.

``POST /v1/provider-webhooks/stripe`` checks ``Stripe-Signature`` on the raw body with
the ``stripe`` library, as the full stack does, and parses the event with orjson.
It then inserts the event into a table of its own, ``bench_stripe_inbox``, unique on
``(provider, event_id)``, with ``ON CONFLICT DO NOTHING``. The insert is one statement
on a pooled connection in autocommit. The response is 200 after the insert, and 400
when the signature does not match. There is no middleware, ORM, job queue or worker. Served by uvicorn with
``--factory benchmarks.bare_stripe:create_app``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import orjson
import stripe
import uuid_utils
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DSN_ENV = "BENCH_BARE_DATABASE_DSN"
POOL_SIZE_ENV = "BENCH_BARE_POOL_SIZE"
SECRET_ENV = "BENCH_BARE_STRIPE_SECRET"
TOLERANCE_SECONDS = 300
TABLE = "bench_stripe_inbox"
CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id uuid PRIMARY KEY,
    provider varchar(32) NOT NULL,
    event_id varchar(255) NOT NULL,
    type varchar(100) NOT NULL,
    payload jsonb NOT NULL,
    provider_created_at timestamptz,
    received_at timestamptz NOT NULL,
    UNIQUE (provider, event_id)
)
"""
INSERT_EVENT = (
    f"INSERT INTO {TABLE} (id, provider, event_id, type, payload, "
    "provider_created_at, received_at) VALUES ($1, 'stripe', $2, $3, $4, $5, $6) "
    "ON CONFLICT (provider, event_id) DO NOTHING"
)
JSON = "application/json"


def _new_uuid() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def create_app() -> Starlette:
    dsn = os.environ[DSN_ENV]
    secret = os.environ[SECRET_ENV]
    pool_size = int(os.environ.get(POOL_SIZE_ENV, "20"))
    pools: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pools["main"] = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size)
        try:
            yield
        finally:
            await pools["main"].close()

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            text = body.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text,
                request.headers.get("stripe-signature"),
                secret,
                TOLERANCE_SECONDS,
            )
        except (UnicodeDecodeError, stripe.SignatureVerificationError):
            return Response(
                b'{"detail":"invalid signature"}', status_code=400, media_type=JSON
            )
        event = orjson.loads(body)
        await pools["main"].execute(
            INSERT_EVENT,
            _new_uuid(),
            event["id"],
            event["type"],
            text,
            datetime.fromtimestamp(event["created"], UTC),
            datetime.now(UTC),
        )
        return Response(b'{"received":true}', media_type=JSON)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/provider-webhooks/stripe", receive, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
