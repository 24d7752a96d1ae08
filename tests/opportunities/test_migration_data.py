"""The conversion-stage migration carries owners, lost reasons and history over."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from app.core import ids, migrate
from tests.conftest import Servers, recreate_database, sibling_database_url

BEFORE = "5e0b7c3a9d12"
AFTER = "46088ab99a6e"


def plain_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def seed(url: str) -> dict[str, Any]:
    """Write rows in the schema before the migration, as the old code did."""
    made = {name: uuid.uuid4() for name in ("ws", "user", "named", "cus", "pipe")}
    stages = [uuid.uuid4() for _ in range(3)]
    opportunities = [uuid.uuid4() for _ in range(4)]
    connection = await asyncpg.connect(plain_url(url))
    try:
        await connection.execute(
            "INSERT INTO workspaces (id, name, default_currency, timezone) "
            "VALUES ($1, 'Old', 'USD', 'UTC')",
            made["ws"],
        )
        for user_id, name, email in (
            (made["user"], "Ada Lovelace", "ada@example.org"),
            (made["named"], "Charles Babbage", "charles@example.org"),
        ):
            await connection.execute(
                "INSERT INTO users (id, workspace_id, name, email, email_normalized, "
                "role, active) VALUES ($1, $2, $3, $4, $4, 'rep', true)",
                user_id,
                made["ws"],
                name,
                email,
            )
        await connection.execute(
            "INSERT INTO customers (id, workspace_id, name, currency, timezone, "
            "payment_terms_days) VALUES ($1, $2, 'Acme', 'USD', 'UTC', 30)",
            made["cus"],
            made["ws"],
        )
        await connection.execute(
            "INSERT INTO pipelines (id, workspace_id, name, is_default) "
            "VALUES ($1, $2, 'Sales', true)",
            made["pipe"],
            made["ws"],
        )
        for position, (stage_id, won, lost) in enumerate(
            zip(stages, (False, True, False), (False, False, True), strict=True),
            start=1,
        ):
            await connection.execute(
                "INSERT INTO stages (id, workspace_id, pipeline_id, name, position, "
                "probability, is_won, is_lost) VALUES ($1, $2, $3, $4, $5, 10, $6, $7)",
                stage_id,
                made["ws"],
                made["pipe"],
                f"Stage {position}",
                position,
                won,
                lost,
            )
        owners = [
            ids.encode("user", made["user"]),
            "CHARLES@example.org",
            "Ada Lovelace",
            "rep_5",
        ]
        for opportunity_id, owner in zip(opportunities, owners, strict=True):
            lost = owner == "rep_5"
            await connection.execute(
                "INSERT INTO opportunities (id, workspace_id, name, customer_id, "
                "pipeline_id, stage_id, status, amount, currency, owner_id, "
                "lost_reason, version) VALUES ($1, $2, 'Deal', $3, $4, $5, $6, 0, "
                "'USD', $7, $8, 2)",
                opportunity_id,
                made["ws"],
                made["cus"],
                made["pipe"],
                stages[2] if lost else stages[0],
                "lost" if lost else "open",
                owner,
                "Price" if lost else None,
            )
        await connection.execute(
            "INSERT INTO stage_transitions (id, workspace_id, opportunity_id, "
            "from_stage_id, to_stage_id, at) VALUES "
            "($1, $2, $3, NULL, $4, now() - interval '2 hours'), "
            "($5, $2, $3, $4, $6, now() - interval '30 minutes')",
            uuid.UUID(int=1),
            made["ws"],
            opportunities[3],
            stages[0],
            uuid.UUID(int=2),
            stages[2],
        )
    finally:
        await connection.close()
    return {"made": made, "opportunities": opportunities, "stages": stages}


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(plain_url(url))
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


class TestConversionStageMigration:
    def test_carries_data_both_ways(self, servers: Servers) -> None:
        url = sibling_database_url(servers.database_url, "oppdata")
        asyncio.run(recreate_database(url))
        migrate.upgrade(url, BEFORE)
        seeded = asyncio.run(seed(url))
        made, opportunities = seeded["made"], seeded["opportunities"]

        migrate.upgrade(url, AFTER)

        rows = asyncio.run(
            fetch(
                url,
                "SELECT id, owner_id, lost_reason_id FROM opportunities ORDER BY id",
            )
        )
        owners = {row["id"]: row["owner_id"] for row in rows}
        assert owners[opportunities[0]] == made["user"]
        assert owners[opportunities[1]] == made["named"]
        assert owners[opportunities[2]] == made["user"]
        assert owners[opportunities[3]] is None
        reasons = asyncio.run(fetch(url, "SELECT id, name FROM lost_reasons"))
        assert [row["name"] for row in reasons] == ["Price"]
        lost = {row["id"]: row["lost_reason_id"] for row in rows}
        assert lost[opportunities[3]] == reasons[0]["id"]
        history = asyncio.run(
            fetch(
                url,
                "SELECT opportunity_version, from_status, to_status, "
                "seconds_in_previous_stage FROM stage_transitions ORDER BY id",
            )
        )
        assert [row["opportunity_version"] for row in history] == [0, 1]
        assert [row["from_status"] for row in history] == [None, "open"]
        assert [row["to_status"] for row in history] == ["open", "lost"]
        assert history[0]["seconds_in_previous_stage"] is None
        assert 5400 - 5 <= history[1]["seconds_in_previous_stage"] <= 5400 + 5

        migrate.downgrade(url, BEFORE)

        rows = asyncio.run(
            fetch(url, "SELECT id, owner_id, lost_reason FROM opportunities")
        )
        restored = {row["id"]: row for row in rows}
        assert restored[opportunities[1]]["owner_id"] == ids.encode(
            "user", made["named"]
        )
        assert restored[opportunities[3]]["owner_id"] is None
        assert restored[opportunities[3]]["lost_reason"] == "Price"
