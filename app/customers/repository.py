from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import Activity, Contact, Customer, Lead, Opportunity, Workspace

_CUSTOMERS = cast(Table, Customer.__table__)
_CONTACTS = cast(Table, Contact.__table__)
_DOMAIN_INDEX = next(
    index
    for index in _CUSTOMERS.indexes
    if index.name == "uq_customers_workspace_domain"
)
_CONTACT_EMAIL_INDEX = next(
    index for index in _CONTACTS.indexes if index.name == "uq_contacts_customer_email"
)


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
            statement = statement.with_for_update().execution_options(
                populate_existing=True
            )
        return await self.session.scalar(statement)

    async def get_by_domain(
        self, workspace_id: uuid.UUID, domain: str, *, for_update: bool = False
    ) -> Customer | None:
        statement = select(Customer).where(
            Customer.workspace_id == workspace_id, Customer.domain == domain
        )
        if for_update:
            statement = statement.with_for_update().execution_options(
                populate_existing=True
            )
        return await self.session.scalar(statement)

    async def insert(self, values: dict[str, Any]) -> Customer | None:
        """Insert a customer, or return None when another has its domain.

        ON CONFLICT waits for a concurrent insert of the same domain to commit, so of
        two creates one gets the row and the other None, without an aborted
        transaction.
        """
        statement = (
            pg_insert(Customer)
            .values(**values)
            .on_conflict_do_nothing(
                index_elements=list(_DOMAIN_INDEX.columns),
                index_where=_DOMAIN_INDEX.dialect_options["postgresql"]["where"],
            )
            .returning(Customer)
        )
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
        owner_id: uuid.UUID | None = None,
        kind: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> tuple[Sequence[Customer], str | None, bool]:
        statement: Select[Customer] = select(Customer).where(
            Customer.workspace_id == workspace_id
        )
        if email is not None:
            statement = statement.where(func.lower(Customer.email) == email.lower())
        if domain is not None:
            statement = statement.where(Customer.domain == domain)
        if owner_id is not None:
            statement = statement.where(Customer.owner_id == owner_id)
        if kind is not None:
            statement = statement.where(Customer.kind == kind)
        if created_after is not None:
            statement = statement.where(Customer.created_at > created_after)
        if created_before is not None:
            statement = statement.where(Customer.created_at < created_before)
        if query:
            pattern = _contains(query)
            statement = statement.where(
                or_(
                    Customer.name.ilike(pattern),
                    Customer.legal_name.ilike(pattern),
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
        self,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Contact | None:
        statement = select(Contact).where(
            Contact.workspace_id == workspace_id, Contact.id == contact_id
        )
        if for_update:
            statement = statement.with_for_update().execution_options(
                populate_existing=True
            )
        return await self.session.scalar(statement)

    async def get_by_email(
        self, workspace_id: uuid.UUID, customer_id: uuid.UUID, email_normalized: str
    ) -> Contact | None:
        """Return the customer's contact with this normalized email, if any."""
        return await self.session.scalar(
            select(Contact).where(
                Contact.workspace_id == workspace_id,
                Contact.customer_id == customer_id,
                Contact.email_normalized == email_normalized,
            )
        )

    async def insert(self, values: dict[str, Any]) -> Contact | None:
        """Insert a contact, or return None when the customer has one with its email."""
        statement = (
            pg_insert(Contact)
            .values(**values)
            .on_conflict_do_nothing(
                index_elements=list(_CONTACT_EMAIL_INDEX.columns),
                index_where=_CONTACT_EMAIL_INDEX.dialect_options["postgresql"]["where"],
            )
            .returning(Contact)
        )
        return await self.session.scalar(statement)

    async def references(
        self, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> dict[str, int]:
        """Count the activities, opportunities and leads that name the contact."""
        counts = {}
        for name, model in (
            ("activities", Activity),
            ("opportunities", Opportunity),
            ("leads", Lead),
        ):
            counts[name] = (
                await self.session.scalar(
                    select(func.count())
                    .select_from(model)
                    .where(
                        model.workspace_id == workspace_id,
                        model.contact_id == contact_id,
                    )
                )
            ) or 0
        return counts

    async def delete(self, contact: Contact) -> None:
        await self.session.delete(contact)
        await self.session.flush()

    async def list_for_customer(
        self,
        workspace_id: uuid.UUID,
        customer_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        role: str | None = None,
    ) -> tuple[Sequence[Contact], str | None, bool]:
        statement: Select[Contact] = select(Contact).where(
            Contact.workspace_id == workspace_id, Contact.customer_id == customer_id
        )
        if role is not None:
            statement = statement.where(Contact.roles.contains([role]))
        return await paginate(
            self.session, statement, Contact.id, limit=limit, cursor=cursor
        )
