"""Converting a lead into a customer, a contact and an opportunity in one transaction.

The lead row is locked first, so two conversions of one lead run one after the other
and the second finds a converted lead. Every row and event is written in the request's
transaction: a failure at any step leaves no customer, contact or opportunity behind.

A customer is linked when the request names it, or when its domain equals the lead's
company domain; otherwise one is created. Two conversions that create a customer with
one domain at once meet at the unique index on customer domains, and the second links
the first's customer. A contact is linked when the customer has one with the lead's
normalized email. A dry run finds the same matches and writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.lifecycle import (
    count_conversion_activities,
    link_converted_activities,
)
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.customers.errors import CustomerNotFound
from app.customers.schemas import MAX_NAME_LENGTH, ContactCreate, CustomerCreate
from app.customers.service import (
    contact_service,
    customer_service,
    duplicate_customer,
)
from app.leads.attribution_lifecycle import count_touches, link_converted_touches
from app.leads.errors import LeadAlreadyConverted, LeadNotConvertible, erased_error
from app.leads.normalize import email_company_domain
from app.leads.schemas import (
    ConversionContact,
    ConversionCustomer,
    ConversionOpportunity,
    LeadConvert,
)
from app.leads.service import lead_data, lead_service
from app.models import Contact, Customer, Lead, Opportunity
from app.models.lead import OPEN_LEAD_STATUSES
from app.nurture.exits import exit_for, exits_due
from app.opportunities.pipelines import is_open, pipeline_service
from app.opportunities.schemas import OpportunityCreate
from app.opportunities.service import opportunity_service
from app.users.service import user_service

log = structlog.get_logger(__name__)

_NOT_CONVERTIBLE = {
    "disqualified": "The lead is disqualified. Reopen it by setting its status to "
    "working, then convert it.",
    "junk": "The lead is marked as junk, which is final. Create a new lead if the "
    "person is real.",
    "merged": "The lead was merged into another lead. Convert the surviving lead.",
}


@dataclass(frozen=True)
class Match:
    """The key and value that found an existing customer or contact."""

    key: str
    value: str


@dataclass(frozen=True)
class Conversion:
    """The rows one conversion created or linked, or would in a dry run.

    In a dry run, a customer or contact that would be created is None.
    """

    dry_run: bool
    lead: Lead
    customer: Customer | None
    contact: Contact | None
    opportunity: Opportunity | None
    customer_match: Match | None
    contact_match: Match | None
    opportunity_created: bool
    activities_linked: int
    touches_linked: int
    exited_enrollment_ids: Sequence[uuid.UUID]

    @property
    def customer_created(self) -> bool:
        return self.customer_match is None

    @property
    def contact_created(self) -> bool:
        return self.contact_match is None


async def convert_lead(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    payload: LeadConvert,
    *,
    if_match: str | None,
    default_phone_region: str | None = None,
) -> Conversion:
    """Convert an open lead: customer (new or linked), contact, then opportunity."""
    _check_payload(payload)
    lead = await lead_service.get(
        session, principal.workspace_id, lead_id, for_update=not payload.dry_run
    )
    check_if_match(if_match, lead.version)
    _check_convertible(lead)
    if payload.dry_run:
        return await _plan(session, principal, lead, payload)

    customer, customer_match = await _customer(session, principal, lead, payload)
    contact, contact_match = await _contact(
        session, principal, lead, customer, payload, default_phone_region
    )

    # Before the opportunity, so a sequence that exits on both records converted.
    exited = await exit_for(session, lead, "converted", principal.actor)
    opportunity = None
    if payload.create_opportunity:
        opportunity = await _create_opportunity(
            session, principal, lead, customer, contact, payload.opportunity
        )
    activities = await link_converted_activities(
        session,
        lead,
        customer_id=customer.id,
        contact_id=contact.id,
        opportunity_id=opportunity.id if opportunity is not None else None,
        actor=principal.actor,
    )
    touches = await link_converted_touches(
        session, lead, customer_id=customer.id, contact_id=contact.id
    )

    previous_status = lead.status
    converted_at = utcnow()
    lead.status = "converted"
    lead.status_reason = None
    lead.status_changed_at = converted_at
    lead.converted_at = converted_at
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
        customer_created=customer_match is None,
        contact_id=str(contact.id),
        contact_created=contact_match is None,
        opportunity_id=str(opportunity.id) if opportunity is not None else None,
        activities_linked=len(activities),
        touches_linked=touches,
        enrollments_exited=len(exited),
    )
    return Conversion(
        dry_run=False,
        lead=lead,
        customer=customer,
        contact=contact,
        opportunity=opportunity,
        customer_match=customer_match,
        contact_match=contact_match,
        opportunity_created=opportunity is not None,
        activities_linked=len(activities),
        touches_linked=touches,
        exited_enrollment_ids=exited,
    )


async def _plan(
    session: AsyncSession, principal: Principal, lead: Lead, payload: LeadConvert
) -> Conversion:
    """Find what a conversion would link and check what it would create, read-only.

    The checks are those a real conversion makes before it writes: the linked
    customer exists, a domain match is allowed, the opportunity's stage is open.
    A real conversion can still fail where a dry run cannot look ahead, such as a
    constraint that only an insert checks.
    """
    workspace_id = principal.workspace_id
    customer: Customer | None = None
    customer_match = None
    if payload.customer_id is not None:
        customer = await _linked_customer(session, principal, payload.customer_id)
        customer_match = Match("customer_id", ids.encode("customer", customer.id))
    else:
        domain = _lead_domain(lead, payload.customer)
        if domain is not None:
            customer = await customer_service.get_by_domain(
                session, workspace_id, domain
            )
        if customer is not None:
            if not payload.match_customer_by_domain:
                raise duplicate_customer(customer)
            customer_match = Match("domain", domain or "")

    contact = None
    contact_match = None
    if customer is not None:
        contact = await contact_service.get_by_email(
            session, workspace_id, customer.id, lead.email_normalized
        )
        if contact is not None:
            contact_match = Match("email", lead.email_normalized)

    if payload.create_opportunity:
        overrides = payload.opportunity or ConversionOpportunity()
        if overrides.stage_id is not None:
            stage = await pipeline_service.get_stage_for_field(
                session, workspace_id, overrides.stage_id, field="opportunity.stage_id"
            )
            if not is_open(stage):
                raise InvalidInput(
                    f"{stage.name!r} is a closed stage. Convert into an open stage, "
                    "then move the opportunity.",
                    errors=[
                        FieldError(
                            "opportunity.stage_id",
                            "must be an open stage",
                            "stage_not_open",
                        )
                    ],
                )
    return Conversion(
        dry_run=True,
        lead=lead,
        customer=customer,
        contact=contact,
        opportunity=None,
        customer_match=customer_match,
        contact_match=contact_match,
        opportunity_created=payload.create_opportunity,
        activities_linked=await count_conversion_activities(session, lead),
        touches_linked=await count_touches(session, lead),
        exited_enrollment_ids=await exits_due(
            session, workspace_id, lead.id, "converted"
        ),
    )


async def _customer(
    session: AsyncSession, principal: Principal, lead: Lead, payload: LeadConvert
) -> tuple[Customer, Match | None]:
    """Link the named customer or the one with the lead's domain, or create one."""
    if payload.customer_id is not None:
        customer = await _linked_customer(session, principal, payload.customer_id)
        return customer, Match("customer_id", ids.encode("customer", customer.id))

    domain = _lead_domain(lead, payload.customer)
    if domain is not None and payload.match_customer_by_domain:
        # Locked, as a customer named by id is, so that two leads converted into
        # it at once cannot both add a contact with one email.
        existing = await customer_service.get_by_domain(
            session, principal.workspace_id, domain, for_update=True
        )
        if existing is not None:
            return existing, Match("domain", domain)

    outcome = await customer_service.create(
        session,
        principal,
        await _customer_from_lead(session, principal, lead, payload, domain),
        source_lead_id=lead.id,
    )
    if not outcome.created:
        # Another request created the customer with this domain after the lookup.
        customer = await customer_service.get(
            session, principal.workspace_id, outcome.customer.id, for_update=True
        )
        return customer, Match("domain", domain or "")
    return outcome.customer, None


async def _contact(
    session: AsyncSession,
    principal: Principal,
    lead: Lead,
    customer: Customer,
    payload: LeadConvert,
    default_phone_region: str | None,
) -> tuple[Contact, Match | None]:
    """Link the customer's contact with the lead's email, or create one."""
    existing = await contact_service.get_by_email(
        session, customer.workspace_id, customer.id, lead.email_normalized
    )
    if existing is not None:
        return existing, Match("email", lead.email_normalized)
    overrides = payload.contact or ConversionContact()
    contact = await contact_service.create(
        session,
        principal,
        customer.id,
        ContactCreate(
            email=lead.email,
            first_name=lead.first_name,
            last_name=lead.last_name,
            title=overrides.title or lead.title,
            phone=lead.phone_normalized,
            roles=overrides.roles,
        ),
        default_phone_region=default_phone_region,
    )
    return contact, None


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


def _lead_domain(lead: Lead, overrides: ConversionCustomer | None) -> str | None:
    if overrides is not None and overrides.domain is not None:
        return overrides.domain
    return lead.company_domain or email_company_domain(lead.email_normalized)


async def _customer_from_lead(
    session: AsyncSession,
    principal: Principal,
    lead: Lead,
    payload: LeadConvert,
    domain: str | None,
) -> CustomerCreate:
    overrides = payload.customer or ConversionCustomer()
    opportunity = payload.opportunity if payload.create_opportunity else None
    person = " ".join(part for part in (lead.first_name, lead.last_name) if part)
    name = overrides.name or lead.company or person or lead.email
    kind = overrides.kind or ("company" if lead.company or domain else "individual")
    owner_id = overrides.owner_id
    if owner_id is None and lead.owner_id is not None:
        owner = await user_service.get(session, principal.workspace_id, lead.owner_id)
        if owner.active:
            owner_id = lead.owner_id
    return CustomerCreate(
        kind=kind,
        name=name[:MAX_NAME_LENGTH],
        legal_name=overrides.legal_name,
        email=overrides.email or lead.email,
        billing_email=overrides.billing_email,
        domain=domain,
        billing_address=overrides.billing_address,
        tax_id=overrides.tax_id,
        currency=overrides.currency or (opportunity.currency if opportunity else None),
        timezone=overrides.timezone or lead.timezone,
        language=overrides.language,
        payment_terms_days=overrides.payment_terms_days,
        owner_id=owner_id,
        # With matching on, a conflict here is a customer that a concurrent request
        # created after the lookup, and it is linked like one found by the lookup.
        on_duplicate="link" if payload.match_customer_by_domain else "reject",
    )


async def _create_opportunity(
    session: AsyncSession,
    principal: Principal,
    lead: Lead,
    customer: Customer,
    contact: Contact,
    overrides: ConversionOpportunity | None,
) -> Opportunity:
    """Create the opportunity; an invalid field is named as ``opportunity.<field>``.

    The customer and contact are written by now. Raising rolls the request back, so
    they are not kept.
    """
    try:
        return await opportunity_service.create(
            session,
            principal,
            _opportunity_from_lead(lead, customer, contact, overrides),
            lead_id=lead.id,
        )
    except InvalidInput as error:
        raise InvalidInput(
            error.detail,
            errors=[
                FieldError(
                    f"opportunity.{item['field']}", item["message"], item["code"]
                )
                for item in error.errors
            ],
            **error.extra,
        ) from error


def _opportunity_from_lead(
    lead: Lead,
    customer: Customer,
    contact: Contact,
    overrides: ConversionOpportunity | None,
) -> OpportunityCreate:
    overrides = overrides or ConversionOpportunity()
    return OpportunityCreate(
        customer_id=customer.id,
        contact_id=contact.id,
        name=overrides.name or customer.name,
        amount=overrides.amount,
        currency=overrides.currency,
        stage_id=overrides.stage_id,
        expected_close_date=overrides.expected_close_date,
        owner_id=overrides.owner_id
        or (ids.encode("user", lead.owner_id) if lead.owner_id else None),
    )
