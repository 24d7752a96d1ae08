"""Queries of lead imports, and the bulk statements that write their leads."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import driver_connection
from app.core.pagination import paginate
from app.models import Lead, LeadImport, LeadImportError, LeadImportFile
from app.models.lead import OPEN_LEAD_STATUSES

_OPEN = ", ".join(f"'{status}'" for status in OPEN_LEAD_STATUSES)
# Every column of the table, so each event's data is built from the stored row, as
# GET /v1/leads/{id} reads it, and a new column reaches the events without a change here.
_RETURNING = ", ".join(column.name for column in cast(Table, Lead.__table__).columns)
# One statement per chunk inserts every new lead from arrays, which costs a fraction of
# one INSERT per row. ON CONFLICT names the partial unique index of open emails, so a
# lead that a request created meanwhile returns no row instead of failing the chunk.
# unnest() flattens a two-dimensional array, so the tags of each lead arrive as one
# JSON array of strings.
_INSERT_LEADS = f"""
INSERT INTO leads (id, workspace_id, email, email_normalized, first_name, last_name,
    company, title, phone, phone_normalized, company_domain, timezone, source, status,
    owner_id, notes, attributes, tags, first_touch_id, last_touch_id)
SELECT id, $2, email, email_normalized, first_name, last_name, company, title, phone,
    phone_normalized, company_domain, timezone, source, 'new', owner_id, notes,
    attributes::jsonb,
    ARRAY(SELECT jsonb_array_elements_text(tags::jsonb)), touch_id, touch_id
FROM unnest($1::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
    $14::uuid[], $15::text[], $16::text[], $17::text[], $18::uuid[])
    AS row(id, email, email_normalized, first_name, last_name, company, title, phone,
        phone_normalized, company_domain, timezone, source, owner_id, notes,
        attributes, tags, touch_id)
ON CONFLICT (workspace_id, email_normalized) WHERE status IN ({_OPEN}) DO NOTHING
RETURNING {_RETURNING}
"""
_INSERT_TOUCHES = """
INSERT INTO lead_touches (id, workspace_id, lead_id, channel)
SELECT id, $2, lead_id, 'import'
FROM unnest($1::uuid[], $3::uuid[]) AS row(id, lead_id)
"""
# A new lead's first event has sequence 1. Each event is queued for the webhook
# dispatch in the same statement, as ``emit`` queues it.
_INSERT_EVENTS = """
WITH inserted AS (
    INSERT INTO events (id, workspace_id, type, object_type, object_id, sequence,
        data, request_id, actor)
    SELECT id, $2, 'lead.created', 'lead', object_id, 1, data::jsonb, $5, $6
    FROM unnest($1::uuid[], $3::uuid[], $4::text[]) AS row(id, object_id, data)
    RETURNING id
)
INSERT INTO undispatched_events (event_id) SELECT id FROM inserted
"""
_INSERT_ERRORS = """
INSERT INTO lead_import_errors (import_id, row_number, column_name, value, message)
SELECT $1, row_number, column_name, value, message
FROM unnest($2::int[], $3::text[], $4::text[], $5::text[])
    AS row(row_number, column_name, value, message)
"""
_OPEN_BY_EMAIL = f"""
SELECT email_normalized, id FROM leads
WHERE workspace_id = $1 AND email_normalized = ANY($2::text[]) AND status IN ({_OPEN})
"""

LEAD_COLUMNS = (
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
    "owner_id",
    "notes",
)


class LeadImportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> LeadImportRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID | None,
        import_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> LeadImport | None:
        statement = select(LeadImport).where(LeadImport.id == import_id)
        if workspace_id is not None:
            statement = statement.where(LeadImport.workspace_id == workspace_id)
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(
            statement.execution_options(populate_existing=True)
        )

    async def content(self, import_id: uuid.UUID) -> bytes:
        content = await self.session.scalar(
            select(LeadImportFile.content).where(LeadImportFile.import_id == import_id)
        )
        return content or b""

    async def list(
        self, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[LeadImport], str | None, bool]:
        statement: Select[Any] = select(LeadImport).where(
            LeadImport.workspace_id == workspace_id
        )
        return await paginate(
            self.session, statement, LeadImport.id, limit=limit, cursor=cursor
        )

    async def errors(self, import_id: uuid.UUID) -> Sequence[LeadImportError]:
        result = await self.session.scalars(
            select(LeadImportError)
            .where(LeadImportError.import_id == import_id)
            .order_by(LeadImportError.row_number, LeadImportError.id)
        )
        return result.all()

    async def claim(
        self, import_id: uuid.UUID, now: datetime, lease: timedelta
    ) -> LeadImport | None:
        """Lease an unfinished import whose lease is free; return it, or None."""
        statement = (
            update(LeadImport)
            .where(
                LeadImport.id == import_id,
                LeadImport.status.in_(("queued", "running")),
                or_(
                    LeadImport.claimed_until.is_(None),
                    LeadImport.claimed_until < now,
                ),
            )
            .values(
                status="running",
                claimed_until=now + lease,
                attempts=LeadImport.attempts + 1,
                started_at=text("coalesce(started_at, now())"),
            )
            .returning(LeadImport)
            .execution_options(populate_existing=True)
        )
        claimed: LeadImport | None = await self.session.scalar(statement)
        return claimed

    async def due(self, now: datetime, limit: int) -> Sequence[LeadImport]:
        """Return unfinished imports whose lease is free."""
        rows = await self.session.scalars(
            select(LeadImport)
            .where(
                LeadImport.status.in_(("queued", "running")),
                or_(
                    LeadImport.claimed_until.is_(None),
                    LeadImport.claimed_until < now,
                ),
            )
            .order_by(LeadImport.id)
            .limit(limit)
        )
        return rows.all()

    async def open_leads_by_email(
        self, workspace_id: uuid.UUID, emails: Sequence[str]
    ) -> dict[str, uuid.UUID]:
        if not emails:
            return {}
        connection = await driver_connection(self.session)
        # A generic plan, which asyncpg's prepared statement gets after five runs,
        # cannot see that each email is rare while the table fills, and scanned
        # the workspace's leads: 5 s of a 20,000-row import. A custom plan per run
        # uses the unique index of open emails.
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await connection.fetch(_OPEN_BY_EMAIL, workspace_id, list(emails))
        return {row["email_normalized"]: row["id"] for row in rows}

    async def insert_leads(
        self,
        workspace_id: uuid.UUID,
        lead_ids: Sequence[uuid.UUID],
        touch_ids: Sequence[uuid.UUID],
        rows: Sequence[dict[str, Any]],
    ) -> dict[uuid.UUID, dict[str, Any]]:
        """Insert leads and their first touches; return each stored row by lead id.

        Each lead points at its touch from ``touch_ids``, which is inserted with
        channel ``import`` after it. A lead missing from the result was not inserted,
        and has no touch, because an open lead with its email exists.
        """
        if not rows:
            return {}
        columns = [[row[name] for row in rows] for name in LEAD_COLUMNS]
        attributes = [json.dumps(row["attributes"]) for row in rows]
        tags = [json.dumps(row["tags"]) for row in rows]
        connection = await driver_connection(self.session)
        records = await connection.fetch(
            _INSERT_LEADS,
            list(lead_ids),
            workspace_id,
            *columns,
            attributes,
            tags,
            list(touch_ids),
        )
        stored = {record["id"]: dict(record) for record in records}
        if stored:
            await connection.execute(
                _INSERT_TOUCHES,
                [row["first_touch_id"] for row in stored.values()],
                workspace_id,
                list(stored),
            )
        return stored

    async def insert_events(
        self,
        workspace_id: uuid.UUID,
        lead_ids: Sequence[uuid.UUID],
        data: Sequence[str],
        *,
        event_ids: Sequence[uuid.UUID],
        request_id: str | None,
        actor: str | None,
    ) -> None:
        if not lead_ids:
            return
        connection = await driver_connection(self.session)
        await connection.execute(
            _INSERT_EVENTS,
            list(event_ids),
            workspace_id,
            list(lead_ids),
            list(data),
            request_id,
            actor,
        )

    async def insert_errors(
        self,
        import_id: uuid.UUID,
        errors: Sequence[tuple[int, str | None, str | None, str]],
    ) -> None:
        if not errors:
            return
        connection = await driver_connection(self.session)
        await connection.execute(
            _INSERT_ERRORS,
            import_id,
            [error[0] for error in errors],
            [error[1] for error in errors],
            [error[2] for error in errors],
            [error[3] for error in errors],
        )
