from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.customers.errors import ContactNotFound, CustomerNotFound
from app.customers.repository import ContactRepository, CustomerRepository
from app.customers.schemas import Contact as ContactSchema
from app.customers.schemas import ContactCreate, CustomerCreate, CustomerUpdate
from app.customers.schemas import Customer as CustomerSchema
from app.models import Contact, Customer

log = structlog.get_logger(__name__)

# PATCH may clear email and domain with null, but these fields always need a value.
_REQUIRED_ON_UPDATE = ("name", "currency", "timezone", "payment_terms_days")


def customer_data(customer: Customer) -> dict[str, Any]:
    """Serialize a customer as the API shows it, for events."""
    return CustomerSchema.model_validate(customer).model_dump(mode="json")


def contact_data(contact: Contact) -> dict[str, Any]:
    """Serialize a contact as the API shows it, for events."""
    return ContactSchema.model_validate(contact).model_dump(mode="json")


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

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: CustomerCreate,
        *,
        source_lead_id: uuid.UUID | None = None,
    ) -> Customer:
        """Insert a customer whose currency and time zone default to the workspace's."""
        repository = CustomerRepository.from_session(session)
        default_currency, default_timezone = await repository.workspace_defaults(
            principal.workspace_id
        )

        customer = Customer(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            name=payload.name,
            email=payload.email,
            domain=payload.domain,
            currency=payload.currency or default_currency,
            timezone=payload.timezone or default_timezone,
            payment_terms_days=payload.payment_terms_days,
            source_lead_id=source_lead_id,
        )
        session.add(customer)
        await session.flush()
        await session.refresh(customer)

        await emit(
            session,
            workspace_id=customer.workspace_id,
            type="customer.created",
            object_type="customer",
            object_id=customer.id,
            data=customer_data(customer),
            actor=principal.actor,
        )
        log.info("customer.created", customer_id=str(customer.id))
        return customer

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        email: str | None = None,
        domain: str | None = None,
        query: str | None = None,
    ) -> tuple[Sequence[Customer], str | None, bool]:
        return await CustomerRepository.from_session(session).list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            email=email,
            domain=domain,
            query=query,
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        customer_id: uuid.UUID,
        payload: CustomerUpdate,
        *,
        if_match: str | None,
    ) -> Customer:
        customer = await self.get(
            session, principal.workspace_id, customer_id, for_update=True
        )
        check_if_match(if_match, customer.version)

        # Attributes, not model_dump(), which would render ids as prefixed strings.
        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        nulls = [
            name
            for name in _REQUIRED_ON_UPDATE
            if name in changes and changes[name] is None
        ]
        if nulls:
            raise InvalidInput(
                f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )
        for name, value in changes.items():
            setattr(customer, name, value)
        if not session.is_modified(customer):
            return customer
        await session.flush()
        await session.refresh(customer)

        await emit(
            session,
            workspace_id=customer.workspace_id,
            type="customer.updated",
            object_type="customer",
            object_id=customer.id,
            data=customer_data(customer),
            actor=principal.actor,
        )
        log.info(
            "customer.updated",
            customer_id=str(customer.id),
            fields=sorted(changes),
        )
        return customer


class ContactService:
    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, contact_id: uuid.UUID
    ) -> Contact:
        contact = await ContactRepository.from_session(session).get(
            workspace_id, contact_id
        )
        if contact is None:
            raise ContactNotFound(
                f"No contact with id {ids.encode('contact', contact_id)} exists in "
                "this workspace."
            )
        return contact

    async def get_by_email(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        customer_id: uuid.UUID,
        email: str,
    ) -> Contact | None:
        return await ContactRepository.from_session(session).get_by_email(
            workspace_id, customer_id, email
        )

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        customer_id: uuid.UUID,
        payload: ContactCreate,
    ) -> Contact:
        """Insert a contact at a customer, raising ``InvalidInput`` without email or name."""
        customer = await customer_service.get(
            session, principal.workspace_id, customer_id
        )
        if payload.email is None and not (payload.first_name or payload.last_name):
            raise InvalidInput(
                "A contact needs an email, a first name or a last name. Send at least "
                "one of them.",
                errors=[
                    FieldError(
                        name, "send an email or a name", "contact_identity_missing"
                    )
                    for name in ("email", "first_name", "last_name")
                ],
            )

        contact = Contact(
            id=ids.new_uuid(),
            workspace_id=customer.workspace_id,
            customer_id=customer.id,
            **payload.model_dump(),
        )
        session.add(contact)
        await session.flush()
        await session.refresh(contact)

        await emit(
            session,
            workspace_id=contact.workspace_id,
            type="contact.created",
            object_type="contact",
            object_id=contact.id,
            data=contact_data(contact),
            actor=principal.actor,
        )
        log.info(
            "contact.created",
            contact_id=str(contact.id),
            customer_id=str(customer.id),
        )
        return contact

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        customer_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[Contact], str | None, bool]:
        """List a customer's contacts, newest first, or raise ``CustomerNotFound``."""
        await customer_service.get(session, workspace_id, customer_id)
        return await ContactRepository.from_session(session).list_for_customer(
            workspace_id, customer_id, limit=limit, cursor=cursor
        )


customer_service = CustomerService()
contact_service = ContactService()
