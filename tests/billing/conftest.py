"""Fixtures for billing tests that need real commits on separate connections.

The shared ``client`` fixture runs every request inside one rolled-back transaction,
so it cannot show what concurrent transactions do to each other. ``committed`` builds
an app on the real engine instead: each request commits on its own pooled connection,
and the fixture deletes every row of its workspace afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.auth import ALL_SCOPES, create_api_key
from app.core.db import Database
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.main import create_app
from app.models import (
    Customer,
    Event,
    Invoice,
    InvoiceLine,
    InvoiceNumberSeries,
    Payment,
    PaymentAllocation,
    ProviderEvent,
    Workspace,
)
from app.settings import Settings
from tests.billing.factories import create_customer, create_open_invoice
from tests.billing.stripe_standin import StripeStandIn
from tests.conftest import TestDatabase


@dataclass(frozen=True)
class Committed:
    """An app whose requests commit for real, with a workspace, key and customer."""

    client: httpx.AsyncClient
    database: Database
    auth: dict[str, str]
    workspace_id: uuid.UUID
    customer: Customer


async def _delete_workspace(database: Database, workspace_id: uuid.UUID) -> None:
    async with database.session() as session:
        # Children first: invoices and payments restrict the deletion of customers.
        for model in (
            Event,
            PaymentAllocation,
            Payment,
            InvoiceLine,
            Invoice,
            InvoiceNumberSeries,
            Customer,
        ):
            await session.execute(
                delete(model).where(model.workspace_id == workspace_id)
            )
        await session.execute(
            delete(ProviderEvent).where(ProviderEvent.workspace_id == workspace_id)
        )
        await session.execute(delete(Workspace).where(Workspace.id == workspace_id))
        await session.commit()


@pytest.fixture
async def committed(
    engine: AsyncEngine, settings: Settings, redis_client: aioredis.Redis
) -> AsyncIterator[Committed]:
    database = Database(settings, engine=engine)
    workspace_id = new_uuid()
    async with database.session() as session:
        session.add(Workspace(id=workspace_id, name="Concurrency"))
        await session.flush()
        created = await create_api_key(
            session, workspace_id=workspace_id, name="committed", scopes=ALL_SCOPES
        )
        customer = await create_customer(session, workspace_id)
    queue = JobQueue(settings.redis_url)
    app = create_app(settings, database=database, queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as client:
            yield Committed(
                client=client,
                database=database,
                auth={"Authorization": f"Bearer {created.secret}"},
                workspace_id=workspace_id,
                customer=customer,
            )
    finally:
        await queue.close()
        await database.close_autocommit_pool()
        await _delete_workspace(database, workspace_id)


@pytest.fixture
def worker_ctx(
    database: Database, queue: JobQueue, settings: Settings
) -> dict[str, Any]:
    """The context arq gives a job, on the test's database and queue."""
    return {"db": database, "queue": queue, "settings": settings}


@pytest.fixture
async def open_invoice(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
) -> AsyncIterator[dict[str, Any]]:
    customer = await create_customer(session, workspace.id)
    yield await create_open_invoice(client, auth, customer)


@pytest.fixture
async def stripe_api() -> AsyncIterator[StripeStandIn]:
    """A local stand-in for Stripe's API on a free port of 127.0.0.1."""
    standin = StripeStandIn()
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
def stripe_settings(settings: Settings, stripe_api: StripeStandIn) -> Settings:
    """Settings whose Stripe API calls go to the stand-in."""
    return settings.model_copy(
        update={
            "stripe_api_key": SecretStr("sk_test_standin"),
            "stripe_api_base": stripe_api.base_url,
            "stripe_timeout_seconds": 5.0,
        }
    )


@pytest.fixture
async def stripe_client(
    stripe_settings: Settings, database: TestDatabase, queue: JobQueue
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client whose app calls the Stripe stand-in, in the test's transaction."""
    app = create_app(stripe_settings, database=database, queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
