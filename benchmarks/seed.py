"""The benchmark database: a fresh schema, one workspace with its API key, many leads.

The workspace and key go through the application's own code (``create_api_key``); the
leads are copied in bulk, because inserting 100,000 of them through the service would
take minutes and measure nothing.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson

from app.core.auth import create_api_key
from app.core.db import Database
from app.core.ids import new_uuid
from app.core.migrate import upgrade
from app.models import Workspace
from app.settings import Settings
from benchmarks.environment import asyncpg_dsn, create_database, reset_schema

SCOPES = ("leads:read", "leads:write")
STATUSES = ("new", "working", "nurturing", "qualified", "disqualified")
SOURCES = ("web_form", "campaign", "partner", "import", "api", "referral")
LEAD_COLUMNS = (
    "id",
    "workspace_id",
    "email",
    "email_normalized",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "timezone",
    "source",
    "status",
    "owner_id",
    "notes",
    "attributes",
    "customer_id",
    "contact_id",
    "opportunity_id",
    "converted_at",
    "version",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class Seed:
    """Inputs of the load generator: the key to send and the ids to fetch."""

    workspace_id: uuid.UUID
    api_key: str
    lead_ids: list[uuid.UUID]


def prepare_schema(database_url: str) -> None:
    """Create the database if needed, drop its schema and apply every migration."""
    asyncio.run(create_database(database_url))
    asyncio.run(reset_schema(database_url))
    upgrade(database_url)


def _lead_rows(
    workspace_id: uuid.UUID, lead_ids: list[uuid.UUID], rng: random.Random
) -> list[tuple[object, ...]]:
    now = datetime.now(UTC)
    rows: list[tuple[object, ...]] = []
    for number, lead_id in enumerate(lead_ids):
        email = f"lead{number}@seed{number % 997}.example.com"
        created = now - timedelta(seconds=rng.randrange(365 * 86_400))
        rows.append(
            (
                lead_id,
                workspace_id,
                email,
                email,
                f"First{number}",
                f"Last{number}",
                f"Company {number % 5_000}",
                "Head of Operations",
                f"+4930{number:08d}",
                "Europe/Berlin",
                SOURCES[number % len(SOURCES)],
                STATUSES[number % len(STATUSES)],
                None,
                None,
                orjson.dumps({"plan": "pro", "seats": number % 50}).decode(),
                None,
                None,
                None,
                None,
                1,
                created,
                created,
            )
        )
    return rows


async def seed(database_url: str, *, leads: int, sample_ids: int) -> Seed:
    """Insert the workspace, its key and ``leads`` leads; return a sample of their ids."""
    database = Database(Settings(database_url=database_url, database_pool_size=1))
    try:
        async with database.session() as session:
            workspace = Workspace(id=new_uuid(), name="Benchmark")
            session.add(workspace)
            await session.flush()
            created = await create_api_key(
                session, workspace_id=workspace.id, name="benchmark", scopes=SCOPES
            )
            await session.commit()
    finally:
        await database.dispose()

    rng = random.Random(20261204)
    lead_ids = [new_uuid() for _ in range(leads)]
    rows = _lead_rows(workspace.id, lead_ids, rng)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.copy_records_to_table(
            "leads", records=rows, columns=LEAD_COLUMNS
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()

    return Seed(
        workspace_id=workspace.id,
        api_key=created.secret,
        lead_ids=rng.sample(lead_ids, min(sample_ids, leads)),
    )
