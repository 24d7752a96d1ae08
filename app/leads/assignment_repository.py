from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import AssignmentCursor, AssignmentRule, Lead, LeadAssignment
from app.models.lead import OPEN_LEAD_STATUSES


class AssignmentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> AssignmentRepository:
        return cls(session)

    async def enabled_rules(self, workspace_id: uuid.UUID) -> Sequence[AssignmentRule]:
        return (
            await self.session.scalars(
                select(AssignmentRule)
                .where(
                    AssignmentRule.workspace_id == workspace_id,
                    AssignmentRule.enabled.is_(True),
                )
                .order_by(AssignmentRule.position, AssignmentRule.id)
            )
        ).all()

    async def get_rule(
        self, workspace_id: uuid.UUID, rule_id: uuid.UUID, *, for_update: bool = False
    ) -> AssignmentRule | None:
        statement = select(AssignmentRule).where(
            AssignmentRule.workspace_id == workspace_id, AssignmentRule.id == rule_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def list_rules(
        self, workspace_id: uuid.UUID, *, limit: int
    ) -> Sequence[AssignmentRule]:
        return (
            await self.session.scalars(
                select(AssignmentRule)
                .where(AssignmentRule.workspace_id == workspace_id)
                .order_by(AssignmentRule.position, AssignmentRule.id)
                .limit(limit)
            )
        ).all()

    async def next_position(self, workspace_id: uuid.UUID) -> int:
        highest = await self.session.scalar(
            select(func.max(AssignmentRule.position)).where(
                AssignmentRule.workspace_id == workspace_id
            )
        )
        return 0 if highest is None else highest + 1

    async def lock_cursor(
        self, workspace_id: uuid.UUID, team_id: uuid.UUID
    ) -> AssignmentCursor:
        """Create the team's cursor row if needed, then lock it until commit."""
        await self.session.execute(
            pg_insert(AssignmentCursor)
            .values(team_id=team_id, workspace_id=workspace_id)
            .on_conflict_do_nothing(index_elements=["team_id"])
        )
        cursor = await self.session.scalar(
            select(AssignmentCursor)
            .where(AssignmentCursor.team_id == team_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert cursor is not None
        return cursor

    async def open_lead_counts(
        self, workspace_id: uuid.UUID, user_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        if not user_ids:
            return {}
        rows = await self.session.execute(
            select(Lead.owner_id, func.count())
            .where(
                Lead.workspace_id == workspace_id,
                Lead.owner_id.in_(user_ids),
                Lead.status.in_(OPEN_LEAD_STATUSES),
            )
            .group_by(Lead.owner_id)
        )
        return {owner_id: count for owner_id, count in rows if owner_id}

    async def list_assignments(
        self,
        workspace_id: uuid.UUID,
        lead_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[LeadAssignment], str | None, bool]:
        statement: Select[LeadAssignment] = select(LeadAssignment).where(
            LeadAssignment.workspace_id == workspace_id,
            LeadAssignment.lead_id == lead_id,
        )
        return await paginate(
            self.session, statement, LeadAssignment.id, limit=limit, cursor=cursor
        )
