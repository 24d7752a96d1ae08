"""Customers and their contacts.

A customer's normalized company domain and a contact's normalized email at its
customer are unique: the partial unique indexes ``uq_customers_workspace_domain`` and
``uq_contacts_customer_email`` decide between concurrent writers, and a loser gets a
409 naming the row that won.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.balances import credit_balances
from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.customers.errors import (
    ContactInUse,
    ContactNotFound,
    CustomerNotFound,
    DuplicateContact,
    DuplicateCustomer,
)
from app.customers.repository import ContactRepository, CustomerRepository
from app.customers.schemas import (
    BillingAddress,
    ContactCreate,
    ContactUpdate,
    CustomerCreate,
    CustomerUpdate,
    TaxId,
)
from app.customers.schemas import Contact as ContactSchema
from app.customers.schemas import Customer as CustomerSchema
from app.leads.normalize import normalize_email, normalize_phone
from app.models import Contact, Customer
from app.users.service import user_service

log = structlog.get_logger(__name__)

# PATCH may clear the optional fields with null, but these always need a value.
_REQUIRED_ON_UPDATE = ("kind", "name", "currency", "timezone", "payment_terms_days")
_ADDRESS_FIELDS = ("line1", "line2", "city", "region", "postal_code", "country")


def customer_view(customer: Customer, credit_balance: int) -> CustomerSchema:
    """Shape a customer row and its credit balance as the API shows them."""
    address = None
    if customer.billing_address_line1 is not None:
        address = {
            name: getattr(customer, f"billing_address_{name}")
            for name in _ADDRESS_FIELDS
        }
    tax_id = None
    if customer.tax_id is not None:
        tax_id = {"type": customer.tax_id_type, "value": customer.tax_id}
    return CustomerSchema.model_validate(
        {
            **{
                name: getattr(customer, name)
                for name in CustomerSchema.model_fields
                if name not in {"object", "billing_address", "tax_id", "credit_balance"}
            },
            "billing_address": address,
            "tax_id": tax_id,
            "credit_balance": credit_balance,
        }
    )


def contact_data(contact: Contact) -> dict[str, Any]:
    """Serialize a contact as the API shows it, for events."""
    return ContactSchema.model_validate(contact).model_dump(mode="json")


def _address_columns(address: BillingAddress | None) -> dict[str, Any]:
    return {
        f"billing_address_{name}": getattr(address, name) if address else None
        for name in _ADDRESS_FIELDS
    }


def _tax_id_columns(tax_id: TaxId | None) -> dict[str, Any]:
    return {
        "tax_id": tax_id.value if tax_id else None,
        "tax_id_type": tax_id.type if tax_id else None,
    }


def duplicate_customer(existing: Customer) -> DuplicateCustomer:
    encoded = ids.encode("customer", existing.id)
    return DuplicateCustomer(
        f"A customer with the domain {existing.domain} already exists: {encoded}. "
        "Use that customer: send its id as customer_id, or, when creating a "
        "customer, send on_duplicate 'link' to get it back instead of this error.",
        existing_id=encoded,
        matched_key="domain",
        matched_value=existing.domain,
    )


def duplicate_contact(existing: Contact) -> DuplicateContact:
    encoded = ids.encode("contact", existing.id)
    return DuplicateContact(
        f"The customer already has a contact with the email {existing.email}: "
        f"{encoded}. Update that contact instead.",
        existing_id=encoded,
        matched_key="email",
        matched_value=existing.email_normalized,
    )


@dataclass(frozen=True)
class CustomerOutcome:
    """A customer that a create inserted, or the existing one it linked."""

    customer: Customer
    created: bool


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

    async def get_by_domain(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        domain: str,
        *,
        for_update: bool = False,
    ) -> Customer | None:
        return await CustomerRepository.from_session(session).get_by_domain(
            workspace_id, domain, for_update=for_update
        )

    async def view(self, session: AsyncSession, customer: Customer) -> CustomerSchema:
        balances = await credit_balances(session, customer.workspace_id, [customer.id])
        return customer_view(customer, balances[customer.id])

    async def views(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        customers: Sequence[Customer],
    ) -> list[CustomerSchema]:
        """Shape a page of customers with one credit balance query for all of them."""
        balances = await credit_balances(
            session, workspace_id, [customer.id for customer in customers]
        )
        return [
            customer_view(customer, balances[customer.id]) for customer in customers
        ]

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: CustomerCreate,
        *,
        source_lead_id: uuid.UUID | None = None,
    ) -> CustomerOutcome:
        """Insert a customer, or link the one with its domain when on_duplicate is link."""
        repository = CustomerRepository.from_session(session)
        workspace_id = principal.workspace_id
        if payload.owner_id is not None:
            await user_service.require_active(
                session, workspace_id, payload.owner_id, "owner_id"
            )
            owner_id = payload.owner_id
        else:
            owner_id = await user_service.acting_user(session, principal)
        default_currency, default_timezone = await repository.workspace_defaults(
            workspace_id
        )

        customer = await repository.insert(
            {
                "id": ids.new_uuid(),
                "workspace_id": workspace_id,
                "kind": payload.kind,
                "name": payload.name,
                "legal_name": payload.legal_name,
                "email": payload.email,
                "billing_email": payload.billing_email,
                "domain": payload.domain,
                **_address_columns(payload.billing_address),
                **_tax_id_columns(payload.tax_id),
                "currency": payload.currency or default_currency,
                "timezone": payload.timezone or default_timezone,
                "language": payload.language,
                "payment_terms_days": payload.payment_terms_days,
                "owner_id": owner_id,
                "source_lead_id": source_lead_id,
                "version": 1,
            }
        )
        if customer is None:
            assert payload.domain is not None  # only the domain index can conflict
            existing = await repository.get_by_domain(workspace_id, payload.domain)
            if existing is None:
                raise DuplicateCustomer(
                    "A customer with this domain was created and changed meanwhile. "
                    "Retry the request."
                )
            if payload.on_duplicate == "link":
                log.info(
                    "customer.linked",
                    customer_id=str(existing.id),
                    matched_key="domain",
                )
                return CustomerOutcome(existing, created=False)
            raise duplicate_customer(existing)

        await emit(
            session,
            workspace_id=workspace_id,
            type="customer.created",
            object_type="customer",
            object_id=customer.id,
            # A customer that was just inserted has no invoices, so no credit.
            data=customer_view(customer, 0).model_dump(mode="json"),
            actor=principal.actor,
        )
        log.info("customer.created", customer_id=str(customer.id))
        return CustomerOutcome(customer, created=True)

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        **filters: Any,
    ) -> tuple[Sequence[Customer], str | None, bool]:
        return await CustomerRepository.from_session(session).list(
            workspace_id, limit=limit, cursor=cursor, **filters
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
        if changes.get("owner_id") is not None:
            await user_service.require_active(
                session, principal.workspace_id, changes["owner_id"], "owner_id"
            )
        columns = dict(changes)
        if "billing_address" in columns:
            columns.update(_address_columns(columns.pop("billing_address")))
        if "tax_id" in columns:
            columns.update(_tax_id_columns(columns.pop("tax_id")))
        for name, value in columns.items():
            setattr(customer, name, value)
        if not session.is_modified(customer):
            return customer
        await self._flush_checking_domain(session, customer)
        await session.refresh(customer)

        view = await self.view(session, customer)
        await emit(
            session,
            workspace_id=customer.workspace_id,
            type="customer.updated",
            object_type="customer",
            object_id=customer.id,
            data=view.model_dump(mode="json"),
            actor=principal.actor,
        )
        log.info(
            "customer.updated",
            customer_id=str(customer.id),
            fields=sorted(changes),
        )
        return customer

    async def _flush_checking_domain(
        self, session: AsyncSession, customer: Customer
    ) -> None:
        # The savepoint's rollback expires the row, so the domain is read before.
        domain = customer.domain
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError as error:
            if "uq_customers_workspace_domain" not in str(error.orig):
                raise
            raise DuplicateCustomer(
                f"Another customer already has the domain {domain}. Choose another "
                "domain, or update that customer instead.",
                matched_key="domain",
                matched_value=domain,
            ) from error


class ContactService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        contact_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Contact:
        contact = await ContactRepository.from_session(session).get(
            workspace_id, contact_id, for_update=for_update
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
        """Return the customer's contact whose normalized email equals ``email``'s."""
        return await ContactRepository.from_session(session).get_by_email(
            workspace_id, customer_id, normalize_email(email)
        )

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        customer_id: uuid.UUID,
        payload: ContactCreate,
        *,
        default_phone_region: str | None = None,
    ) -> Contact:
        """Insert a contact at a customer; 409 when it has one with the same email."""
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
        region = payload.phone_region or default_phone_region
        repository = ContactRepository.from_session(session)

        email_normalized = normalize_email(payload.email) if payload.email else None
        contact = await repository.insert(
            {
                "id": ids.new_uuid(),
                "workspace_id": customer.workspace_id,
                "customer_id": customer.id,
                "email": payload.email,
                "email_normalized": email_normalized,
                "first_name": payload.first_name,
                "last_name": payload.last_name,
                "title": payload.title,
                "phone": normalize_phone(payload.phone, region)
                if payload.phone
                else None,
                "roles": payload.roles,
                "version": 1,
            }
        )
        if contact is None:
            assert email_normalized is not None  # only the email index can conflict
            existing = await repository.get_by_email(
                customer.workspace_id, customer.id, email_normalized
            )
            if existing is None:
                raise DuplicateContact(
                    "A contact with this email was created and changed meanwhile. "
                    "Retry the request."
                )
            raise duplicate_contact(existing)

        await self._emit(session, principal, contact, "contact.created")
        log.info(
            "contact.created",
            contact_id=str(contact.id),
            customer_id=str(customer.id),
        )
        return contact

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        contact_id: uuid.UUID,
        payload: ContactUpdate,
        *,
        if_match: str | None,
        default_phone_region: str | None = None,
    ) -> Contact:
        contact = await self.get(
            session, principal.workspace_id, contact_id, for_update=True
        )
        check_if_match(if_match, contact.version)

        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        region = changes.pop("phone_region", None) or default_phone_region
        if "roles" in changes and changes["roles"] is None:
            raise InvalidInput(
                "roles cannot be null. Send [] to remove every role.",
                errors=[FieldError("roles", "cannot be null", "null_not_allowed")],
            )
        merged = {
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            **changes,
        }
        if merged["email"] is None and not (
            merged["first_name"] or merged["last_name"]
        ):
            raise InvalidInput(
                "The update would leave the contact without an email and a name. "
                "Keep at least one of them.",
                errors=[
                    FieldError(
                        name, "send an email or a name", "contact_identity_missing"
                    )
                    for name in ("email", "first_name", "last_name")
                    if name in changes
                ],
            )
        if "email" in changes:
            changes["email_normalized"] = (
                normalize_email(changes["email"]) if changes["email"] else None
            )
        if changes.get("phone"):
            changes["phone"] = normalize_phone(changes["phone"], region)
        for name, value in changes.items():
            setattr(contact, name, value)
        if not session.is_modified(contact):
            return contact
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError as error:
            if "uq_contacts_customer_email" not in str(error.orig):
                raise
            raise DuplicateContact(
                f"The customer already has another contact with the email "
                f"{changes['email']}. Update that contact instead.",
                matched_key="email",
                matched_value=changes["email_normalized"],
            ) from error
        await session.refresh(contact)

        await self._emit(session, principal, contact, "contact.updated")
        log.info("contact.updated", contact_id=str(contact.id), fields=sorted(changes))
        return contact

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        contact_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        """Delete a contact that no activity, opportunity or converted lead names."""
        contact = await self.get(
            session, principal.workspace_id, contact_id, for_update=True
        )
        check_if_match(if_match, contact.version)
        repository = ContactRepository.from_session(session)
        references = await repository.references(contact.workspace_id, contact.id)
        in_use = {name: count for name, count in references.items() if count}
        if in_use:
            listed = ", ".join(f"{count} {name}" for name, count in in_use.items())
            raise ContactInUse(
                f"The contact is named by {listed}, which would lose it. Keep the "
                "contact, or relink those records first.",
                references=in_use,
            )

        data = contact_data(contact)
        await repository.delete(contact)
        await emit(
            session,
            workspace_id=principal.workspace_id,
            type="contact.deleted",
            object_type="contact",
            object_id=contact_id,
            data=data,
            actor=principal.actor,
        )
        log.info("contact.deleted", contact_id=str(contact_id))

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        customer_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        role: str | None = None,
    ) -> tuple[Sequence[Contact], str | None, bool]:
        """List a customer's contacts, newest first, or raise ``CustomerNotFound``."""
        await customer_service.get(session, workspace_id, customer_id)
        return await ContactRepository.from_session(session).list_for_customer(
            workspace_id, customer_id, limit=limit, cursor=cursor, role=role
        )

    @staticmethod
    async def _emit(
        session: AsyncSession, principal: Principal, contact: Contact, type: str
    ) -> None:
        await emit(
            session,
            workspace_id=contact.workspace_id,
            type=type,
            object_type="contact",
            object_id=contact.id,
            data=contact_data(contact),
            actor=principal.actor,
        )


customer_service = CustomerService()
contact_service = ContactService()
