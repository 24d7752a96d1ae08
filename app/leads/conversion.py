"""Converting a lead into a customer, a contact and an opportunity in one transaction.

The lead row is locked first, so two conversions of one lead run one after the other
and the second finds a converted lead. Every row and event is written in the request's
transaction: a failure at any step leaves no customer, contact or opportunity behind.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.customers.errors import CustomerNotFound
from app.customers.normalize import company_domain
from app.customers.schemas import MAX_NAME_LENGTH, ContactCreate, CustomerCreate
from app.customers.service import contact_service, customer_service
from app.leads.errors import LeadAlreadyConverted, LeadNotConvertible, erased_error
from app.leads.schemas import ConversionCustomer, ConversionOpportunity, LeadConvert
from app.leads.service import lead_data, lead_service
from app.models import Contact, Customer, Lead, Opportunity
from app.models.lead import OPEN_LEAD_STATUSES
from app.nurture.exits import exit_for
from app.opportunities.schemas import OpportunityCreate
from app.opportunities.service import opportunity_service

log = structlog.get_logger(__name__)

_NOT_CONVERTIBLE = {
    "disqualified": "The lead is disqualified. Reopen it by setting its status to "
    "working, then convert it.",
    "junk": "The lead is marked as junk, which is final. Create a new lead if the "
    "person is real.",
    "merged": "The lead was merged into another lead. Convert the surviving lead.",
}


@dataclass(frozen=True)
class Conversion:
    """The rows one conversion created or linked."""

    lead: Lead
    customer: Customer
    contact: Contact
    opportunity: Opportunity | None
    customer_created: bool
    contact_created: bool


async def convert_lead(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    payload: LeadConvert,
    *,
    if_match: str | None,
) -> Conversion:
    """Convert an open lead: customer (new or linked), contact, then opportunity."""
    _check_payload(payload)
    lead = await lead_service.get(
        session, principal.workspace_id, lead_id, for_update=True
    )
    check_if_match(if_match, lead.version)
    _check_convertible(lead)

    if payload.customer_id is not None:
        customer = await _linked_customer(session, principal, payload.customer_id)
        customer_created = False
    else:
        customer = await customer_service.create(
            session,
            principal,
            _customer_from_lead(lead, payload.customer, payload.opportunity),
            source_lead_id=lead.id,
        )
        customer_created = True

    contact = None
    if not customer_created:
        contact = await contact_service.get_by_email(
            session, customer.workspace_id, customer.id, lead.email
        )
    contact_created = contact is None
    if contact is None:
        contact = await contact_service.create(
            session,
            principal,
            customer.id,
            ContactCreate(
                email=lead.email,
                first_name=lead.first_name,
                last_name=lead.last_name,
                phone=lead.phone,
            ),
        )

    # Before the opportunity, so a sequence that exits on both records converted.
    await exit_for(session, lead, "converted", principal.actor)
    opportunity = None
    if payload.create_opportunity:
        overrides = payload.opportunity or ConversionOpportunity()
        opportunity = await opportunity_service.create(
            session,
            principal,
            OpportunityCreate(
                customer_id=customer.id,
                contact_id=contact.id,
                name=overrides.name or customer.name,
                amount=overrides.amount,
                currency=overrides.currency,
                expected_close_date=overrides.expected_close_date,
                owner_id=overrides.owner_id
                or (ids.encode("user", lead.owner_id) if lead.owner_id else None),
            ),
            lead_id=lead.id,
        )

    previous_status = lead.status
    lead.status = "converted"
    lead.converted_at = utcnow()
    lead.customer_id = customer.id
    lead.contact_id = contact.id
    lead.opportunity_id = opportunity.id if opportunity is not None else None
    await session.flush()
    await session.refresh(lead)

    await emit(
        session,
        workspace_id=lead.workspace_id,
        type="lead.converted",
        object_type="lead",
        object_id=lead.id,
        data=lead_data(lead),
        actor=principal.actor,
    )
    log.info(
        "lead.converted",
        lead_id=str(lead.id),
        from_status=previous_status,
        customer_id=str(customer.id),
        customer_created=customer_created,
        contact_id=str(contact.id),
        opportunity_id=str(opportunity.id) if opportunity is not None else None,
    )
    return Conversion(
        lead=lead,
        customer=customer,
        contact=contact,
        opportunity=opportunity,
        customer_created=customer_created,
        contact_created=contact_created,
    )


def _check_payload(payload: LeadConvert) -> None:
    if payload.customer_id is not None and payload.customer is not None:
        raise InvalidInput(
            "Send either customer_id to link an existing customer or customer to "
            "shape a new one, not both.",
            errors=[
                FieldError(
                    "customer",
                    "not allowed together with customer_id",
                    "customer_conflict",
                )
            ],
        )
    if not payload.create_opportunity and payload.opportunity is not None:
        raise InvalidInput(
            "opportunity was sent with create_opportunity false. Remove one of them.",
            errors=[
                FieldError(
                    "opportunity",
                    "not allowed when create_opportunity is false",
                    "opportunity_not_created",
                )
            ],
        )


def _check_convertible(lead: Lead) -> None:
    if lead.status == "converted":
        customer_id = (
            ids.encode("customer", lead.customer_id) if lead.customer_id else None
        )
        contact_id = ids.encode("contact", lead.contact_id) if lead.contact_id else None
        opportunity_id = (
            ids.encode("opportunity", lead.opportunity_id)
            if lead.opportunity_id
            else None
        )
        raise LeadAlreadyConverted(
            f"The lead was already converted into customer {customer_id}"
            + (f" and opportunity {opportunity_id}" if opportunity_id else "")
            + ". Work with those instead.",
            customer_id=customer_id,
            contact_id=contact_id,
            opportunity_id=opportunity_id,
        )
    if lead.erased_at is not None:
        raise erased_error(ids.encode("lead", lead.id), "conversion")
    if lead.status not in OPEN_LEAD_STATUSES:
        raise LeadNotConvertible(
            _NOT_CONVERTIBLE.get(
                lead.status, f"A {lead.status} lead cannot be converted."
            ),
            current_status=lead.status,
            convertible_statuses=list(OPEN_LEAD_STATUSES),
        )


async def _linked_customer(
    session: AsyncSession, principal: Principal, customer_id: uuid.UUID
) -> Customer:
    # The customer row stays locked until commit, so two leads converted into one
    # customer at once cannot both add a contact with the same email.
    try:
        return await customer_service.get(
            session, principal.workspace_id, customer_id, for_update=True
        )
    except CustomerNotFound as error:
        encoded = ids.encode("customer", customer_id)
        raise InvalidInput(
            f"No customer with id {encoded} exists in this workspace. Omit "
            "customer_id to create a customer from the lead.",
            errors=[
                FieldError(
                    "customer_id", f"no customer {encoded} here", "customer_not_found"
                )
            ],
        ) from error


def _customer_from_lead(
    lead: Lead,
    overrides: ConversionCustomer | None,
    opportunity: ConversionOpportunity | None,
) -> CustomerCreate:
    overrides = overrides or ConversionCustomer()
    person = " ".join(part for part in (lead.first_name, lead.last_name) if part)
    name = overrides.name or lead.company or person or lead.email
    return CustomerCreate(
        name=name[:MAX_NAME_LENGTH],
        email=overrides.email or lead.email,
        domain=overrides.domain or company_domain(lead.email_normalized),
        currency=overrides.currency or (opportunity.currency if opportunity else None),
        timezone=overrides.timezone or lead.timezone,
        payment_terms_days=overrides.payment_terms_days,
    )
