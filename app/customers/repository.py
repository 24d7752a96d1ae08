from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer


class CustomerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> CustomerRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        customer_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Customer | None:
        statement = select(Customer).where(
            Customer.workspace_id == workspace_id, Customer.id == customer_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)
