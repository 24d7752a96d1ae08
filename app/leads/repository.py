from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import Lead
from app.models.lead import OPEN_LEAD_STATUSES


class LeadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> LeadRepository:
        return cls(session)

    async def get(
        self, workspace_id: uuid.UUID, lead_id: uuid.UUID, *, for_update: bool = False
    ) -> Lead | None:
        statement = select(Lead).where(
            Lead.workspace_id == workspace_id, Lead.id == lead_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def get_open_by_email(
        self, workspace_id: uuid.UUID, email_normalized: str
    ) -> Lead | None:
        return await self.session.scalar(
            select(Lead).where(
                Lead.workspace_id == workspace_id,
                Lead.email_normalized == email_normalized,
                Lead.status.in_(OPEN_LEAD_STATUSES),
            )
        )

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        owner_id: str | None = None,
        email: str | None = None,
        query: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> tuple[Sequence[Lead], str | None, bool]:
        statement: Select[Lead] = select(Lead).where(Lead.workspace_id == workspace_id)
        if status is not None:
            statement = statement.where(Lead.status == status)
        if owner_id is not None:
            statement = statement.where(Lead.owner_id == owner_id)
        if email is not None:
            statement = statement.where(Lead.email_normalized == email)
        if query:
            pattern = (
                "%"
                + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            statement = statement.where(
                or_(
                    Lead.email_normalized.ilike(pattern),
                    Lead.first_name.ilike(pattern),
                    Lead.last_name.ilike(pattern),
                    Lead.company.ilike(pattern),
                )
            )
        if created_after is not None:
            statement = statement.where(Lead.created_at > created_after)
        if created_before is not None:
            statement = statement.where(Lead.created_at < created_before)
        return await paginate(
            self.session, statement, Lead.id, limit=limit, cursor=cursor
        )
