from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import LineItem


class LineItemRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> LineItemRepository:
        return cls(session)

    async def lines(self, opportunity_id: uuid.UUID) -> Sequence[LineItem]:
        return (
            await self.session.scalars(
                select(LineItem)
                .where(LineItem.opportunity_id == opportunity_id)
                .order_by(LineItem.position)
            )
        ).all()

    async def any(self, opportunity_id: uuid.UUID) -> bool:
        return bool(
            await self.session.scalar(
                select(exists().where(LineItem.opportunity_id == opportunity_id))
            )
        )

    async def next_position(self, opportunity_id: uuid.UUID) -> int:
        """Return the position after the last line; the caller must lock the opportunity."""
        last = await self.session.scalar(
            select(func.max(LineItem.position)).where(
                LineItem.opportunity_id == opportunity_id
            )
        )
        return (last or 0) + 1

    async def delete(self, line: LineItem) -> None:
        await self.session.execute(delete(LineItem).where(LineItem.id == line.id))
