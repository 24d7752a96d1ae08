from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import text

from app.core.db import Database
from app.settings import Settings
from tests.conftest import _asyncpg_dsn


async def _backend_pid(database: Database) -> int:
    async with database.session() as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


class TestPooledConnections:
    async def test_terminated_connection_replaced(self, settings: Settings) -> None:
        database = Database(
            settings.model_copy(
                update={"database_pool_size": 1, "database_max_overflow": 0}
            )
        )
        admin = await asyncpg.connect(_asyncpg_dsn(settings.database_url))
        try:
            first = await _backend_pid(database)
            assert await _backend_pid(database) == first

            terminated = await admin.fetchval("SELECT pg_terminate_backend($1)", first)
            # Give the event loop a turn to read the server's goodbye on the socket.
            await asyncio.sleep(0.2)
            second = await _backend_pid(database)
        finally:
            await admin.close()
            await database.dispose()

        assert terminated is True
        assert second != first
