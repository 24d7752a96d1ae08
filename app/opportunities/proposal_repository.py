from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence

from sqlalchemy import Select, and_, cast, delete, func, not_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Date

from app.core.pagination import paginate
from app.models import Proposal, ProposalLine


def _past_validity() -> ColumnElement[bool]:
    today = cast(func.timezone(Proposal.timezone, func.now()), Date)
    return Proposal.valid_until < today


class ProposalRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> ProposalRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        proposal_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Proposal | None:
        statement = select(Proposal).where(
            Proposal.workspace_id == workspace_id, Proposal.id == proposal_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        opportunity_id: uuid.UUID | None = None,
        status: str | None = None,
    ) -> tuple[Sequence[Proposal], str | None, bool]:
        statement: Select[Proposal] = select(Proposal).where(
            Proposal.workspace_id == workspace_id
        )
        if opportunity_id is not None:
            statement = statement.where(Proposal.opportunity_id == opportunity_id)
        if status == "expired":
            statement = statement.where(
                and_(Proposal.status == "sent", _past_validity())
            )
        elif status == "sent":
            statement = statement.where(
                and_(Proposal.status == "sent", not_(_past_validity()))
            )
        elif status is not None:
            statement = statement.where(Proposal.status == status)
        return await paginate(
            self.session, statement, Proposal.id, limit=limit, cursor=cursor
        )

    async def lines_of(
        self, proposal_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, builtins.list[ProposalLine]]:
        """Load the lines of several proposals in one query, ordered by position."""
        if not proposal_ids:
            return {}
        rows = await self.session.scalars(
            select(ProposalLine)
            .where(ProposalLine.proposal_id.in_(proposal_ids))
            .order_by(ProposalLine.proposal_id, ProposalLine.position)
        )
        lines: dict[uuid.UUID, builtins.list[ProposalLine]] = {}
        for row in rows:
            lines.setdefault(row.proposal_id, []).append(row)
        return lines

    async def accepted_for(
        self, opportunity_id: uuid.UUID, *, other_than: uuid.UUID
    ) -> uuid.UUID | None:
        return await self.session.scalar(
            select(Proposal.id).where(
                Proposal.opportunity_id == opportunity_id,
                Proposal.status == "accepted",
                Proposal.id != other_than,
            )
        )

    async def delete_lines(self, proposal_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(ProposalLine).where(ProposalLine.proposal_id == proposal_id)
        )
