"""The bare baseline: Starlette and asyncpg running the full stack's SQL, and no more.

GET runs one SELECT of every lead column by id. POST inserts the lead and its
``lead.created`` event in one transaction. There is no authentication, validation,
middleware, ORM or job queue: what the full stack spends beyond this app is the price
of those layers. Served by uvicorn with ``--factory benchmarks.bare:create_app``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import uuid_utils
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DSN_ENV = "BENCH_BARE_DATABASE_DSN"
WORKSPACE_ENV = "BENCH_BARE_WORKSPACE_ID"
POOL_SIZE_ENV = "BENCH_BARE_POOL_SIZE"

COLUMNS = (
    "id, workspace_id, email, email_normalized, first_name, last_name, company, title, "
    "phone, timezone, source, status, owner_id, notes, attributes, customer_id, "
    "contact_id, opportunity_id, converted_at, version, created_at, updated_at"
)
SELECT_LEAD = f"SELECT {COLUMNS} FROM leads WHERE id = $1"
INSERT_LEAD = (
    "INSERT INTO leads (id, workspace_id, email, email_normalized, first_name, "
    "last_name, company, title, phone, timezone, source, status, owner_id, notes, "
    "attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'new', $12, "
    f"$13, $14) RETURNING {COLUMNS}"
)
# The event and its place in the dispatch queue, as ``emit`` writes them.
INSERT_EVENT = (
    "WITH inserted AS (INSERT INTO events (id, workspace_id, type, object_type, "
    "object_id, sequence, data, request_id, actor) VALUES ($1, $2, 'lead.created', "
    "'lead', $3, 1, $4, $5, $6) RETURNING id) "
    "INSERT INTO undispatched_events (event_id) SELECT id FROM inserted"
)
JSON = "application/json"


def _new_uuid() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


async def _init_connection(connection: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name,
            encoder=lambda value: _dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


def _dumps(value: Any) -> bytes:
    # asyncpg returns its own UUID type, which orjson renders through ``str``.
    return orjson.dumps(value, default=str)


def _not_found() -> Response:
    return Response(b'{"detail":"not found"}', status_code=404, media_type=JSON)


def create_app() -> Starlette:
    dsn = os.environ[DSN_ENV]
    workspace_id = uuid.UUID(os.environ[WORKSPACE_ENV])
    pool_size = int(os.environ.get(POOL_SIZE_ENV, "20"))
    pools: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pools["main"] = await asyncpg.create_pool(
            dsn, min_size=1, max_size=pool_size, init=_init_connection
        )
        try:
            yield
        finally:
            await pools["main"].close()

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def get_lead(request: Request) -> Response:
        try:
            lead_id = uuid.UUID(request.path_params["lead_id"])
        except ValueError:
            return _not_found()
        row = await pools["main"].fetchrow(SELECT_LEAD, lead_id)
        if row is None:
            return _not_found()
        return Response(_dumps(dict(row)), media_type=JSON)

    async def create_lead(request: Request) -> Response:
        body: dict[str, Any] = orjson.loads(await request.body())
        email = str(body["email"])
        lead_id = _new_uuid()
        async with pools["main"].acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                INSERT_LEAD,
                lead_id,
                workspace_id,
                email,
                email.strip().lower(),
                body.get("first_name"),
                body.get("last_name"),
                body.get("company"),
                body.get("title"),
                body.get("phone"),
                body.get("timezone"),
                body.get("source", "api"),
                body.get("owner_id"),
                body.get("notes"),
                body.get("attributes", {}),
            )
            lead = dict(row)
            await connection.execute(
                INSERT_EVENT,
                _new_uuid(),
                workspace_id,
                lead_id,
                lead,
                request.headers.get("x-request-id"),
                "bench",
            )
        return Response(_dumps(lead), status_code=201, media_type=JSON)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/leads/{lead_id}", get_lead, methods=["GET"]),
            Route("/v1/leads", create_lead, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
