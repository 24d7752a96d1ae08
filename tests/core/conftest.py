"""Fixtures for tests whose requests commit, each on its own connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import delete

from app.core.auth import ALL_SCOPES, create_api_key
from app.core.db import Database
from app.core.ids import new_uuid
from app.core.logging import configure_logging
from app.models import Workspace
from app.settings import Settings


@pytest.fixture
def restore_logging(settings: Settings) -> Iterator[None]:
    """Restore the configured logging after the test, so that later tests do not
    write to the output this test captured."""
    yield
    configure_logging(settings.log_format, settings.log_level)


@pytest.fixture
async def committed_key(settings: Settings) -> AsyncIterator[tuple[Database, str]]:
    database = Database(settings)
    workspace_id = new_uuid()
    async with database.session() as session:
        session.add(Workspace(id=workspace_id, name="race"))
        await session.flush()
        created = await create_api_key(
            session, workspace_id=workspace_id, name="race", scopes=ALL_SCOPES
        )
        await session.commit()
    yield database, created.secret
    async with database.session() as session:
        await session.execute(delete(Workspace).where(Workspace.id == workspace_id))
        await session.commit()
    await database.dispose()
