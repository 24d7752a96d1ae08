from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import Contact, Customer, Workspace


def _contains(text: str) -> str:
    """Build an ILIKE pattern that matches ``text`` literally anywhere."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


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

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        email: str | None = None,
        domain: str | None = None,
        query: str | None = None,
    ) -> tuple[Sequence[Customer], str | None, bool]:
        statement: Select[Customer] = select(Customer).where(
            Customer.workspace_id == workspace_id
        )
        if email is not None:
            statement = statement.where(func.lower(Customer.email) == email.lower())
        if domain is not None:
            statement = statement.where(Customer.domain == domain)
        if query:
            pattern = _contains(query)
            statement = statement.where(
                or_(
                    Customer.name.ilike(pattern),
                    Customer.email.ilike(pattern),
                    Customer.domain.ilike(pattern),
                )
            )
        return await paginate(
            self.session, statement, Customer.id, limit=limit, cursor=cursor
        )

    async def workspace_defaults(self, workspace_id: uuid.UUID) -> tuple[str, str]:
        """Return the workspace's default currency and time zone."""
        row = (
            await self.session.execute(
                select(Workspace.default_currency, Workspace.timezone).where(
                    Workspace.id == workspace_id
                )
            )
        ).one()
        return row.default_currency, row.timezone


class ContactRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> ContactRepository:
        return cls(session)

    async def get(
        self, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> Contact | None:
        return await self.session.scalar(
            select(Contact).where(
                Contact.workspace_id == workspace_id, Contact.id == contact_id
            )
        )

    async def get_by_email(
        self, workspace_id: uuid.UUID, customer_id: uuid.UUID, email: str
    ) -> Contact | None:
        """Return the customer's oldest contact with ``email``, compared ignoring case."""
        return await self.session.scalar(
            select(Contact)
            .where(
                Contact.workspace_id == workspace_id,
                Contact.customer_id == customer_id,
                func.lower(Contact.email) == email.lower(),
            )
            .order_by(Contact.id)
            .limit(1)
        )

    async def list_for_customer(
        self,
        workspace_id: uuid.UUID,
        customer_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[Contact], str | None, bool]:
        statement: Select[Contact] = select(Contact).where(
            Contact.workspace_id == workspace_id, Contact.customer_id == customer_id
        )
        return await paginate(
            self.session, statement, Contact.id, limit=limit, cursor=cursor
        )
