from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, cast, delete, func, not_, select, update
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

    async def claim_expired(
        self, *, now: datetime, batch: int
    ) -> builtins.list[uuid.UUID]:
        """Note up to ``batch`` sent proposals as expired at ``now``; return their ids.

        A proposal is expired once ``valid_until`` is before the date at ``now`` in
        its time zone, and is taken only once. SKIP LOCKED lets several workers sweep
        at once, and leaves a proposal that a request is accepting or rejecting for a
        later sweep.
        """
        # No zone is more than 14 hours ahead of UTC, so a proposal valid beyond
        # today's UTC date has not expired anywhere. The partial index serves this.
        local_today = cast(func.timezone(Proposal.timezone, now), Date)
        due = (
            select(Proposal.id)
            .where(
                Proposal.status == "sent",
                Proposal.expiry_notified_at.is_(None),
                Proposal.valid_until < now.date() + timedelta(days=1),
                Proposal.valid_until < local_today,
            )
            .order_by(Proposal.valid_until, Proposal.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
            .cte("due")
            .prefix_with("MATERIALIZED")
        )
        # The batch is a CTE, chosen once. An IN (subquery) may run again for each
        # row it updates and, among proposals tied on valid_until, take others each
        # time, so one sweep could take more than ``batch``.
        claimed = await self.session.scalars(
            update(Proposal)
            .where(Proposal.id == due.c.id, Proposal.expiry_notified_at.is_(None))
            .values(expiry_notified_at=now, updated_at=Proposal.updated_at)
            .returning(Proposal.id)
            .execution_options(synchronize_session=False)
        )
        return builtins.list(claimed.all())

    async def get_many(
        self, proposal_ids: Sequence[uuid.UUID]
    ) -> builtins.list[Proposal]:
        if not proposal_ids:
            return []
        rows = await self.session.scalars(
            select(Proposal)
            .where(Proposal.id.in_(proposal_ids))
            .order_by(Proposal.id)
            .execution_options(populate_existing=True)
        )
        return builtins.list(rows.all())

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
