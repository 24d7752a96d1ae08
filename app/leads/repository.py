from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BindParameter, Select, Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from app.core.db import driver_connection
from app.leads.attribution_repository import touched_by
from app.leads.listing import (
    DEFAULT_SORT,
    AttributeFilter,
    attribute_condition,
    paginate_leads,
    search_condition,
)
from app.models import Lead
from app.models.lead import OPEN_LEAD_STATUSES

# The statements of the hot paths are built once. SQLAlchemy caches the compiled SQL by
# a statement's structure, yet building the expression and its cache key on each call
# still cost about a third of the CPU time of a GET that loaded the lead this way. That
# was measured in-process on the 2-core benchmark machine.
_LEADS = cast(Table, Lead.__table__)
_GET = select(Lead).where(
    Lead.workspace_id == bindparam("workspace_id"), Lead.id == bindparam("lead_id")
)
_GET_FOR_UPDATE = _GET.with_for_update()
# GET /v1/leads/{id} sends this SQL straight to asyncpg (see read()); SQLAlchemy still
# writes it, once, from the table's columns.
_READ = (
    select(_LEADS)
    .where(
        _LEADS.c.workspace_id == bindparam("workspace_id"),
        _LEADS.c.id == bindparam("lead_id"),
    )
    .compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
)
_READ_SQL = _READ.string
_READ_PARAMETERS = tuple(_READ.positiontup or ())
# RETURNING loads the server defaults and the stored form of the JSON attributes in
# the INSERT's own round trip, where add(), flush() and refresh() took two. A Core
# insert costs less CPU than the ORM-enabled one, and insert() attaches the row.
# ON CONFLICT names the partial unique index of open emails, so a concurrent duplicate
# returns no row instead of aborting the transaction, and no savepoint is needed.
_OPEN_EMAIL_INDEX = next(
    index for index in _LEADS.indexes if index.name == "uq_leads_open_email"
)
_INSERT = (
    pg_insert(_LEADS)
    .on_conflict_do_nothing(
        index_elements=list(_OPEN_EMAIL_INDEX.columns),
        index_where=_OPEN_EMAIL_INDEX.dialect_options["postgresql"]["where"],
    )
    .returning(*_LEADS.c)
)
# The statuses are rendered as literals, so the query matches the predicate of the
# partial unique index uq_leads_open_email even in a generic (cached) plan. With bound
# parameters only a plan made for each execution can use the index, and a generic plan
# scans the workspace's leads.
_OPEN_STATUSES: BindParameter[list[str]] = bindparam(
    "open_statuses", list(OPEN_LEAD_STATUSES), expanding=True, literal_execute=True
)
_OPEN_BY_EMAIL = select(Lead).where(
    Lead.workspace_id == bindparam("workspace_id"),
    Lead.email_normalized == bindparam("email_normalized"),
    Lead.status.in_(_OPEN_STATUSES),
)
_OPEN_ID_BY_EMAIL = _OPEN_BY_EMAIL.with_only_columns(Lead.id)


class LeadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> LeadRepository:
        return cls(session)

    async def get(
        self, workspace_id: uuid.UUID, lead_id: uuid.UUID, *, for_update: bool = False
    ) -> Lead | None:
        return await self.session.scalar(
            _GET_FOR_UPDATE if for_update else _GET,
            {"workspace_id": workspace_id, "lead_id": lead_id},
        )

    async def read(
        self, workspace_id: uuid.UUID, lead_id: uuid.UUID
    ) -> Mapping[str, Any] | None:
        """Fetch one lead's columns without loading it into the session."""
        arguments = {"workspace_id": workspace_id, "lead_id": lead_id}
        connection = await driver_connection(self.session)
        row: Mapping[str, Any] | None = await connection.fetchrow(
            _READ_SQL, *(arguments[name] for name in _READ_PARAMETERS)
        )
        return row

    async def insert(self, values: dict[str, Any]) -> Lead | None:
        """Insert one lead from column values and return it, as stored.

        Return None, and change nothing, when an open lead of the workspace has the same
        normalized email; the INSERT first waits for a transaction that is writing one.
        """
        row = (await self.session.execute(_INSERT, values)).one_or_none()
        if row is None:
            return None
        # The returned row becomes a persistent Lead in the session without a SELECT.
        lead = Lead(**row._mapping)
        make_transient_to_detached(lead)
        self.session.add(lead)
        return lead

    async def get_open_by_email(
        self, workspace_id: uuid.UUID, email_normalized: str
    ) -> Lead | None:
        return await self.session.scalar(
            _OPEN_BY_EMAIL,
            {"workspace_id": workspace_id, "email_normalized": email_normalized},
        )

    async def find_open_id_by_email(
        self, workspace_id: uuid.UUID, email_normalized: str
    ) -> uuid.UUID | None:
        """Return the id of the open lead with this email, without loading the lead."""
        return await self.session.scalar(
            _OPEN_ID_BY_EMAIL,
            {"workspace_id": workspace_id, "email_normalized": email_normalized},
        )

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: Sequence[str] | None = None,
        owner_id: uuid.UUID | None = None,
        email: str | None = None,
        query: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        campaign_id: uuid.UUID | None = None,
        partner_id: uuid.UUID | None = None,
        sources: Sequence[str] | None = None,
        score_min: int | None = None,
        score_max: int | None = None,
        tags: Sequence[str] | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        attribute_filters: Sequence[AttributeFilter] = (),
        sort: str = DEFAULT_SORT,
    ) -> tuple[Sequence[Lead], str | None, bool]:
        statement: Select[Lead] = select(Lead).where(Lead.workspace_id == workspace_id)
        statement = touched_by(
            statement, campaign_id=campaign_id, partner_id=partner_id
        )
        if status:
            statement = statement.where(Lead.status.in_(status))
        if owner_id is not None:
            statement = statement.where(Lead.owner_id == owner_id)
        if email is not None:
            statement = statement.where(Lead.email_normalized == email)
        if query:
            statement = statement.where(search_condition(query))
        if created_after is not None:
            statement = statement.where(Lead.created_at > created_after)
        if created_before is not None:
            statement = statement.where(Lead.created_at < created_before)
        if sources:
            statement = statement.where(Lead.source.in_(sources))
        if score_min is not None:
            statement = statement.where(Lead.score >= score_min)
        if score_max is not None:
            statement = statement.where(Lead.score <= score_max)
        if tags:
            statement = statement.where(Lead.tags.contains(list(tags)))
        if updated_after is not None:
            statement = statement.where(Lead.updated_at > updated_after)
        if updated_before is not None:
            statement = statement.where(Lead.updated_at < updated_before)
        for item in attribute_filters:
            statement = statement.where(attribute_condition(item))
        return await paginate_leads(
            self.session, statement, sort=sort, limit=limit, cursor=cursor
        )
