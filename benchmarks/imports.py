"""The CSV import workload: the importer against a bare ``COPY`` of the same rows.

The full side runs what the worker runs for an upload: ``lead_import_service.create``
(header check, file stored in PostgreSQL), the claim, and ``run_import`` with the
settings' chunk size, in one process on a real database, without Redis. The bare side
copies the rows the importer stored (leads, their first touches, then their
``lead.created`` events) into a second workspace with asyncpg's ``copy_records_to_table``, and nothing else: no
parsing, validation, dedupe lookup or progress rows. Each round imports into a fresh
workspace, so both sides insert into a table of the same size.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database
from app.core.ids import new_uuid
from app.leads.imports import ImportOptions, lead_import_service, run_import
from app.models import Workspace
from app.settings import Settings
from benchmarks.environment import asyncpg_dsn

TITLE = "CSV import"
COPY_LEAD_COLUMNS = (
    "id",
    "workspace_id",
    "email",
    "email_normalized",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "phone_normalized",
    "company_domain",
    "timezone",
    "source",
    "status",
    "owner_id",
    "notes",
    "attributes",
    "tags",
    "first_touch_id",
    "last_touch_id",
)
COPY_TOUCH_COLUMNS = ("id", "workspace_id", "lead_id", "channel")
COPY_EVENT_COLUMNS = (
    "id",
    "workspace_id",
    "type",
    "object_type",
    "object_id",
    "sequence",
    "data",
    "actor",
)


class ImportFailed(Exception):
    """The importer did not complete the benchmark file, or dropped rows."""


@dataclass(frozen=True)
class ImportRound:
    full_seconds: float
    bare_seconds: float


@dataclass(frozen=True)
class ImportSummary:
    """Medians over rounds; ``ratio`` divides the importer's rows/s by COPY's."""

    title: str
    rows: int
    rounds: int
    full_seconds: float
    bare_seconds: float
    full_rows_per_second: float
    bare_rows_per_second: float
    ratio: float
    ratio_target: float


def build_csv(rows: int, seed: int = 20261204) -> bytes:
    """Write a CSV file as a CRM exports it: headers by other names, a phone, a date."""
    rng = random.Random(seed)
    lines = [
        "Email,First Name,Last Name,Company,Job Title,Mobile Phone,Lead Source,"
        "Created Date"
    ]
    for number in range(rows):
        day = 1 + number % 28
        lines.append(
            f"Lead{number}@Import{number % 997}.example.com,First{number},"
            f"Last{number},Company {number % 5000},Head of Operations,"
            f"+4930{rng.randrange(10**7, 10**8)},Trade show,"
            f"{day:02d}/{1 + number % 12:02d}/2025"
        )
    return ("\n".join(lines) + "\n").encode()


async def _workspace(database: Database, name: str) -> uuid.UUID:
    async with database.session() as session:
        workspace = Workspace(id=new_uuid(), name=name)
        session.add(workspace)
        await session.commit()
        return workspace.id


async def _run_full(
    database: Database, settings: Settings, workspace_id: uuid.UUID, content: bytes
) -> float:
    @asynccontextmanager
    async def unit() -> AsyncIterator[AsyncSession]:
        async with database.session() as session:
            yield session
            await session.commit()

    started = time.perf_counter()
    async with unit() as session:
        lead_import = await lead_import_service.create(
            session,
            workspace_id=workspace_id,
            actor="benchmark",
            content=content,
            filename="benchmark.csv",
            options=ImportOptions(),
        )
    async with unit() as session:
        await lead_import_service.claim(session, lead_import.id, timedelta(hours=1))
    outcome = await run_import(unit, lead_import.id, settings)
    elapsed = time.perf_counter() - started
    if outcome != "completed":
        raise ImportFailed(f"the import ended {outcome}, not completed")
    return elapsed


async def _run_bare(
    dsn: str, source_workspace: uuid.UUID, target_workspace: uuid.UUID
) -> tuple[float, int]:
    connection = await asyncpg.connect(dsn)
    try:
        leads = await connection.fetch(
            "SELECT email, email_normalized, first_name, last_name, company, title, "
            "phone, phone_normalized, company_domain, timezone, source, status, "
            "owner_id, notes, attributes::text AS attributes, tags "
            "FROM leads WHERE workspace_id = $1",
            source_workspace,
        )
        events = await connection.fetch(
            "SELECT data::text AS data FROM events WHERE workspace_id = $1",
            source_workspace,
        )
        lead_rows = []
        touch_rows = []
        event_rows = []
        for lead, event in zip(leads, events, strict=True):
            lead_id = new_uuid()
            touch_id = new_uuid()
            lead_rows.append(
                (
                    lead_id,
                    target_workspace,
                    *(lead[name] for name in COPY_LEAD_COLUMNS[2:-2]),
                    touch_id,
                    touch_id,
                )
            )
            touch_rows.append((touch_id, target_workspace, lead_id, "import"))
            event_rows.append(
                (
                    new_uuid(),
                    target_workspace,
                    "lead.created",
                    "lead",
                    lead_id,
                    1,
                    event["data"],
                    "benchmark",
                )
            )
        started = time.perf_counter()
        async with connection.transaction():
            await connection.copy_records_to_table(
                "leads", records=lead_rows, columns=COPY_LEAD_COLUMNS
            )
            await connection.copy_records_to_table(
                "lead_touches", records=touch_rows, columns=COPY_TOUCH_COLUMNS
            )
            await connection.copy_records_to_table(
                "events", records=event_rows, columns=COPY_EVENT_COLUMNS
            )
        return time.perf_counter() - started, len(lead_rows)
    finally:
        await connection.close()


async def measure_import(
    database_url: str,
    *,
    rows: int,
    rounds: int,
    ratio_target: float,
    progress: Callable[[str], None] = lambda message: None,
) -> ImportSummary:
    """Import ``rows`` rows ``rounds`` times, each against a COPY of the same rows."""
    settings = Settings(database_url=database_url, log_level="WARNING")
    database = Database(settings)
    content = build_csv(rows)
    results: list[ImportRound] = []
    try:
        for number in range(rounds):
            progress(f"importing {rows} CSV rows, round {number + 1}")
            imported = await _workspace(database, f"Import {number}")
            full = await _run_full(database, settings, imported, content)
            copied = await _workspace(database, f"Copy {number}")
            bare, count = await _run_bare(asyncpg_dsn(database_url), imported, copied)
            if count != rows:
                raise ImportFailed(f"the importer stored {count} of {rows} rows")
            results.append(ImportRound(full, bare))
    finally:
        await database.dispose()
    full_seconds = statistics.median(item.full_seconds for item in results)
    bare_seconds = statistics.median(item.bare_seconds for item in results)
    return ImportSummary(
        title=f"{TITLE} of {rows} rows",
        rows=rows,
        rounds=rounds,
        full_seconds=round(full_seconds, 3),
        bare_seconds=round(bare_seconds, 3),
        full_rows_per_second=round(rows / full_seconds, 1),
        bare_rows_per_second=round(rows / bare_seconds, 1),
        ratio=round(
            statistics.median(i.bare_seconds / i.full_seconds for i in results), 3
        ),
        ratio_target=ratio_target,
    )


def render_import(summary: ImportSummary) -> list[str]:
    return [
        "",
        f"{'workload':<28}{'server':<11}{'seconds':>9}{'rows/s':>11}",
        f"{summary.title:<28}{'bare COPY':<11}{summary.bare_seconds:>9.3f}"
        f"{summary.bare_rows_per_second:>11.1f}",
        f"{'':<28}{'importer':<11}{summary.full_seconds:>9.3f}"
        f"{summary.full_rows_per_second:>11.1f}",
        f"{'':<28}{'full/bare':<11}{summary.ratio:>8.2f}x",
    ]
