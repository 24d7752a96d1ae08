from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.customers.errors import CustomerNotFound
from app.customers.repository import CustomerRepository
from app.models import Customer


class CustomerService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        customer_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Customer:
        customer = await CustomerRepository.from_session(session).get(
            workspace_id, customer_id, for_update=for_update
        )
        if customer is None:
            raise CustomerNotFound(
                f"No customer with id {ids.encode('customer', customer_id)} exists in "
                "this workspace."
            )
        return customer


customer_service = CustomerService()
