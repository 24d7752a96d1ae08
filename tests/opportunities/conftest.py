"""Fixtures for tests that need real commits, such as races between connections.

The shared fixtures run each test inside one rolled-back transaction, so two sessions
there can never race. These fixtures use the session-wide ``engine`` directly: every
commit is real, and the workspace they create is deleted afterwards with all its rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.auth import ALL_SCOPES, create_api_key
from app.core.db import Database
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.main import create_app
from app.models import Opportunity, Workspace
from app.settings import Settings


@pytest.fixture
def committing_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@pytest.fixture
async def committed_workspace(
    committing_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Workspace]:
    async with committing_sessionmaker() as session:
        workspace = Workspace(id=new_uuid(), name="Committed race test")
        session.add(workspace)
        await session.commit()
    try:
        yield workspace
    finally:
        async with committing_sessionmaker() as session:
            # Opportunities go first: their customer_id is ON DELETE RESTRICT, which
            # the cascade from the workspace to its customers would violate.
            await session.execute(
                delete(Opportunity).where(Opportunity.workspace_id == workspace.id)
            )
            await session.execute(delete(Workspace).where(Workspace.id == workspace.id))
            await session.commit()


@pytest.fixture
async def committed_auth(
    committing_sessionmaker: async_sessionmaker[AsyncSession],
    committed_workspace: Workspace,
) -> dict[str, str]:
    async with committing_sessionmaker() as session:
        created = await create_api_key(
            session,
            workspace_id=committed_workspace.id,
            name="race",
            scopes=ALL_SCOPES,
        )
        await session.commit()
    return {"Authorization": f"Bearer {created.secret}"}


@pytest.fixture
async def committed_client(
    settings: Settings, engine: AsyncEngine, queue: JobQueue
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client whose requests commit for real, each on its own connection."""
    app = create_app(settings, database=Database(settings, engine=engine), queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
