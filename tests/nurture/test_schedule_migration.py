"""The migration that turns step delays in seconds into an amount and a unit."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from app.core import migrate
from tests.conftest import (
    Servers,
    _asyncpg_dsn,
    recreate_database,
    sibling_database_url,
)

BEFORE = "723d17504bcf"
SCHEDULE = "5d0c2a9e41b7"


async def insert_steps(url: str, delays: list[int]) -> uuid.UUID:
    workspace_id, sequence_id = uuid.uuid4(), uuid.uuid4()
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute(
            "INSERT INTO workspaces (id, name, default_currency, timezone) "
            "VALUES ($1, 'Old', 'USD', 'UTC')",
            workspace_id,
        )
        await connection.execute(
            "INSERT INTO sequences (id, workspace_id, name, status) "
            "VALUES ($1, $2, 'Old', 'active')",
            sequence_id,
            workspace_id,
        )
        for position, seconds in enumerate(delays):
            await connection.execute(
                "INSERT INTO sequence_steps (id, workspace_id, sequence_id, position, "
                "kind, purpose, delay_seconds, subject, body_text) "
                "VALUES ($1, $2, $3, $4, 'email', 'follow_up', $5, 'Hi', 'Hello')",
                uuid.uuid4(),
                workspace_id,
                sequence_id,
                position,
                seconds,
            )
    finally:
        await connection.close()
    return sequence_id


async def fetch_steps(url: str, columns: str) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        rows = await connection.fetch(
            f"SELECT {columns} FROM sequence_steps ORDER BY position"
        )
    finally:
        await connection.close()
    return [tuple(row.values()) for row in rows]


class TestDelayMigration:
    def test_seconds_become_minutes_and_back(self, servers: Servers) -> None:
        url = sibling_database_url(servers.database_url, "schedule_migration")
        asyncio.run(recreate_database(url))
        migrate.upgrade(url, BEFORE)
        asyncio.run(insert_steps(url, [0, 1, 60, 61, 86_400]))

        migrate.upgrade(url, SCHEDULE)
        upgraded = asyncio.run(fetch_steps(url, "delay_amount, delay_unit"))
        migrate.downgrade(url, BEFORE)
        downgraded = asyncio.run(fetch_steps(url, "delay_seconds"))

        # Rounded up to whole minutes, so no step runs earlier than before.
        assert upgraded == [
            (0, "minutes"),
            (1, "minutes"),
            (1, "minutes"),
            (2, "minutes"),
            (1_440, "minutes"),
        ]
        assert downgraded == [(0,), (60,), (60,), (120,), (86_400,)]
