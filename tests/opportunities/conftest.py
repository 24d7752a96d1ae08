"""Fixtures for tests that need real commits, such as races between connections.

The shared fixtures run each test inside one rolled-back transaction, so two sessions
there can never race. These fixtures use the session-wide ``engine`` directly: every
commit is real, and the workspace they create is deleted afterwards, which cascades to
its pipelines and stages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.ids import new_uuid
from app.models import Workspace


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
            await session.execute(delete(Workspace).where(Workspace.id == workspace.id))
            await session.commit()
