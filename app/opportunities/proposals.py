"""Proposals: the priced offer for an opportunity, from draft to accepted or rejected.

A proposal copies the opportunity's line items when it is created and can be edited
while it is a draft. Sending it freezes it. A sent proposal whose ``valid_until`` has
passed in its time zone reads as ``expired`` and can be neither accepted nor rejected.
The status is derived on read, so it changes at that moment; a worker sweep then
emits ``proposal.expired`` once (``sweep_expired``).
Accepting it can win the opportunity and create a draft invoice with the same lines,
in the request's one transaction.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.schemas import DiscountInput, InvoiceCreate, InvoiceLineCreate
from app.billing.service import invoice_service
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import Conflict, FieldError, InvalidInput
from app.core.events import emit
from app.customers.service import customer_service
from app.models import Invoice, Opportunity, Proposal, ProposalLine
from app.opportunities import proposal_states
from app.opportunities.catalog_errors import (
    InvalidProposalTransition,
    ProposalExpired,
    ProposalNotFound,
)
from app.opportunities.line_inputs import (
    apply_amounts,
    apply_terms,
    priced_line_fields,
    resolve_line,
    terms_of,
)
from app.opportunities.line_item_schemas import LineCreate
from app.opportunities.line_items import line_item_service
from app.opportunities.pricing import price_lines
from app.opportunities.proposal_repository import ProposalRepository
from app.opportunities.proposal_schemas import Proposal as ProposalSchema
from app.opportunities.proposal_schemas import (
    ProposalAccept,
    ProposalCreate,
    ProposalReject,
    ProposalUpdate,
)
from app.opportunities.proposal_schemas import (
    ProposalLine as ProposalLineSchema,
)
from app.opportunities.service import opportunity_service

log = structlog.get_logger(__name__)

ProposalWithLines = tuple[Proposal, list[ProposalLine]]


def today_in(proposal: Proposal, now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(ZoneInfo(proposal.timezone)).date()


def status_of(proposal: Proposal, now: datetime | None = None) -> str:
    """Return the status the API shows: a sent proposal past validity is expired."""
    if proposal.status == "sent" and today_in(proposal, now) > proposal.valid_until:
        return "expired"
    return proposal.status


def proposal_view(
    proposal: Proposal, lines: Sequence[ProposalLine], now: datetime | None = None
) -> ProposalSchema:
    return ProposalSchema(
        id=proposal.id,
        opportunity_id=proposal.opportunity_id,
        status=status_of(proposal, now),
        currency=proposal.currency,
        terms=proposal.terms,
        valid_until=proposal.valid_until,
        timezone=proposal.timezone,
        lines=[
            ProposalLineSchema(id=line.id, **priced_line_fields(line)) for line in lines
        ],
        subtotal=proposal.subtotal,
        discount_total=proposal.discount_total,
        tax_total=proposal.tax_total,
        total=proposal.total,
        sent_at=proposal.sent_at,
        accepted_at=proposal.accepted_at,
        rejected_at=proposal.rejected_at,
        rejection_reason=proposal.rejection_reason,
        invoice_id=proposal.invoice_id,
        version=proposal.version,
        created_at=proposal.created_at,
        updated_at=proposal.updated_at,
    )


def proposal_data(proposal: Proposal, lines: Sequence[ProposalLine]) -> dict[str, Any]:
    """Serialize a proposal as the API shows it, for events."""
    return proposal_view(proposal, lines).model_dump(mode="json")


class ProposalService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        payload: ProposalCreate,
    ) -> ProposalWithLines:
        """Draft a proposal, copying the opportunity's line items unless lines are sent."""
        # The lock keeps the line items from changing while they are copied.
        opportunity = await opportunity_service.get(
            session, principal.workspace_id, opportunity_id, for_update=True
        )
        if opportunity.status != "open":
            encoded = ids.encode("opportunity", opportunity.id)
            raise Conflict(
                f"Opportunity {encoded} is {opportunity.status}. Propose only on an "
                f"open opportunity; reopen it with POST /v1/opportunities/{encoded}"
                "/reopen.",
                code="opportunity_closed",
                current_status=opportunity.status,
            )
        customer = await customer_service.get(
            session, opportunity.workspace_id, opportunity.customer_id
        )

        proposal = Proposal(
            id=ids.new_uuid(),
            workspace_id=opportunity.workspace_id,
            opportunity_id=opportunity.id,
            status=proposal_states.INITIAL,
            currency=opportunity.currency,
            terms=payload.terms,
            valid_until=payload.valid_until,
            timezone=_zone_name(customer.timezone),
        )
        _check_validity(proposal)
        if payload.lines is None:
            lines = await self._copy_line_items(session, proposal, opportunity)
        else:
            lines = await self._build_lines(session, proposal, payload.lines)
        _reprice(proposal, lines)
        session.add(proposal)
        await session.flush()
        session.add_all(lines)
        await session.flush()
        await session.refresh(proposal)

        await self._emit(session, principal, proposal, lines, "proposal.created")
        log.info(
            "proposal.created",
            proposal_id=str(proposal.id),
            opportunity_id=str(opportunity.id),
            line_count=len(lines),
        )
        return proposal, lines

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        proposal_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Proposal:
        proposal = await ProposalRepository.from_session(session).get(
            workspace_id, proposal_id, for_update=for_update
        )
        if proposal is None:
            raise ProposalNotFound(
                f"No proposal with id {ids.encode('proposal', proposal_id)} exists in "
                "this workspace."
            )
        return proposal

    async def get_with_lines(
        self, session: AsyncSession, workspace_id: uuid.UUID, proposal_id: uuid.UUID
    ) -> ProposalWithLines:
        proposal = await self.get(session, workspace_id, proposal_id)
        return proposal, await self._lines(session, proposal)

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        opportunity_id: uuid.UUID | None = None,
        status: str | None = None,
    ) -> tuple[builtins.list[ProposalWithLines], str | None, bool]:
        repository = ProposalRepository.from_session(session)
        rows, next_cursor, has_more = await repository.list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            opportunity_id=opportunity_id,
            status=status,
        )
        lines = await repository.lines_of([proposal.id for proposal in rows])
        return (
            [(proposal, lines.get(proposal.id, [])) for proposal in rows],
            next_cursor,
            has_more,
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        proposal_id: uuid.UUID,
        payload: ProposalUpdate,
        *,
        if_match: str | None,
    ) -> ProposalWithLines:
        proposal = await self.get(
            session, principal.workspace_id, proposal_id, for_update=True
        )
        check_if_match(if_match, proposal.version)
        if proposal.status != "draft":
            raise _transition_error(proposal, "changed", "only a draft can change")
        changes = payload.model_fields_set
        nulls = [
            name
            for name in ("valid_until", "lines")
            if name in changes and getattr(payload, name) is None
        ]
        if nulls:
            raise InvalidInput(
                f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )
        lines = await self._lines(session, proposal)

        if payload.valid_until is not None:
            proposal.valid_until = payload.valid_until
            _check_validity(proposal)
        if "terms" in changes:
            proposal.terms = payload.terms
        if payload.lines is not None:
            await ProposalRepository.from_session(session).delete_lines(proposal.id)
            for line in lines:
                session.expunge(line)
            lines = await self._build_lines(session, proposal, payload.lines)
            _reprice(proposal, lines)
            session.add_all(lines)
            # Touch the row so its version moves even when only the lines changed.
            proposal.updated_at = utcnow()
        if not session.is_modified(proposal):
            return proposal, lines
        await session.flush()
        await session.refresh(proposal)

        await self._emit(session, principal, proposal, lines, "proposal.updated")
        log.info(
            "proposal.updated", proposal_id=str(proposal.id), fields=sorted(changes)
        )
        return proposal, lines

    async def send(
        self,
        session: AsyncSession,
        principal: Principal,
        proposal_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> ProposalWithLines:
        """Mark a draft as sent; it needs a line and a validity date not yet past."""
        proposal = await self.get(
            session, principal.workspace_id, proposal_id, for_update=True
        )
        check_if_match(if_match, proposal.version)
        _check_transition(proposal, "sent")
        lines = await self._lines(session, proposal)
        if not lines:
            raise InvalidInput(
                f"Proposal {ids.encode('proposal', proposal.id)} has no lines. Add at "
                "least one line with PATCH before sending it.",
                errors=[FieldError("lines", "at least one line is required", "empty")],
            )
        _check_validity(proposal)

        proposal.status = "sent"
        proposal.sent_at = utcnow()
        await session.flush()
        await session.refresh(proposal)

        await self._emit(session, principal, proposal, lines, "proposal.sent")
        log.info("proposal.sent", proposal_id=str(proposal.id))
        return proposal, lines

    async def sweep_expired(
        self, session: AsyncSession, *, batch: int, now: datetime | None = None
    ) -> int:
        """Emit proposal.expired once for each sent proposal past its validity.

        Returns how many it took; the next sweep takes the rest of a larger backlog.
        """
        now = now or utcnow()
        repository = ProposalRepository.from_session(session)
        claimed = await repository.claim_expired(now=now, batch=batch)
        lines = await repository.lines_of(claimed)
        for proposal in await repository.get_many(claimed):
            await emit(
                session,
                workspace_id=proposal.workspace_id,
                type="proposal.expired",
                object_type="proposal",
                object_id=proposal.id,
                data=proposal_data(proposal, lines.get(proposal.id, [])),
            )
            log.info(
                "proposal.expired",
                proposal_id=str(proposal.id),
                valid_until=proposal.valid_until.isoformat(),
                timezone=proposal.timezone,
            )
        return len(claimed)

    async def reject(
        self,
        session: AsyncSession,
        principal: Principal,
        proposal_id: uuid.UUID,
        payload: ProposalReject,
        *,
        if_match: str | None,
    ) -> ProposalWithLines:
        proposal = await self.get(
            session, principal.workspace_id, proposal_id, for_update=True
        )
        check_if_match(if_match, proposal.version)
        _check_transition(proposal, "rejected")
        lines = await self._lines(session, proposal)

        proposal.status = "rejected"
        proposal.rejected_at = utcnow()
        proposal.rejection_reason = payload.reason
        await session.flush()
        await session.refresh(proposal)

        await self._emit(session, principal, proposal, lines, "proposal.rejected")
        log.info("proposal.rejected", proposal_id=str(proposal.id))
        return proposal, lines

    async def accept(
        self,
        session: AsyncSession,
        principal: Principal,
        proposal_id: uuid.UUID,
        payload: ProposalAccept,
        *,
        if_match: str | None,
    ) -> ProposalWithLines:
        """Accept a sent proposal and, with ``win_opportunity``, win and invoice it.

        Winning moves the opportunity to its pipeline's won stage through the
        opportunity service, and the invoice is created through the billing service,
        so each emits its own events. Any failure rolls all of it back.
        """
        proposal = await self.get(
            session, principal.workspace_id, proposal_id, for_update=True
        )
        check_if_match(if_match, proposal.version)
        _check_transition(proposal, "accepted")
        opportunity = await opportunity_service.get(
            session, proposal.workspace_id, proposal.opportunity_id, for_update=True
        )
        encoded = ids.encode("opportunity", opportunity.id)
        if opportunity.status == "lost":
            raise Conflict(
                f"Opportunity {encoded} is lost. Reopen it with POST "
                f"/v1/opportunities/{encoded}/reopen before accepting its proposal.",
                code="opportunity_closed",
                current_status=opportunity.status,
            )
        # The opportunity's row lock serializes accepts of its proposals; the unique
        # index on accepted proposals backs this check.
        accepted = await ProposalRepository.from_session(session).accepted_for(
            opportunity.id, other_than=proposal.id
        )
        if accepted is not None:
            raise Conflict(
                f"Opportunity {encoded} already has the accepted proposal "
                f"{ids.encode('proposal', accepted)}. Only one proposal per "
                "opportunity can be accepted.",
                code="proposal_already_accepted",
                accepted_proposal_id=ids.encode("proposal", accepted),
            )
        lines = await self._lines(session, proposal)

        invoice: Invoice | None = None
        if payload.win_opportunity:
            if opportunity.status == "open":
                await self._win(session, principal, opportunity)
            invoice, _ = await invoice_service.create(
                session, principal, _invoice_payload(proposal, opportunity, lines)
            )
        proposal.status = "accepted"
        proposal.accepted_at = utcnow()
        proposal.invoice_id = invoice.id if invoice is not None else None
        await session.flush()
        await session.refresh(proposal)

        await self._emit(session, principal, proposal, lines, "proposal.accepted")
        log.info(
            "proposal.accepted",
            proposal_id=str(proposal.id),
            opportunity_id=str(opportunity.id),
            invoice_id=str(invoice.id) if invoice is not None else None,
        )
        return proposal, lines

    async def _win(
        self, session: AsyncSession, principal: Principal, opportunity: Opportunity
    ) -> None:
        await opportunity_service.win(session, principal, opportunity.id, if_match=None)

    async def _lines(
        self, session: AsyncSession, proposal: Proposal
    ) -> builtins.list[ProposalLine]:
        lines = await ProposalRepository.from_session(session).lines_of([proposal.id])
        return lines.get(proposal.id, [])

    async def _copy_line_items(
        self, session: AsyncSession, proposal: Proposal, opportunity: Opportunity
    ) -> builtins.list[ProposalLine]:
        copies: builtins.list[ProposalLine] = []
        for item in await line_item_service.lines_of(session, opportunity):
            line = _new_line(
                proposal, len(copies) + 1, item.product_id, item.description
            )
            apply_terms(line, terms_of(item))
            copies.append(line)
        return copies

    async def _build_lines(
        self,
        session: AsyncSession,
        proposal: Proposal,
        payload: Sequence[LineCreate],
    ) -> builtins.list[ProposalLine]:
        lines = []
        for index, requested in enumerate(payload):
            resolved = await resolve_line(
                session,
                proposal.workspace_id,
                proposal.currency,
                requested,
                field=f"lines.{index}.",
            )
            line = _new_line(
                proposal, index + 1, resolved.product_id, resolved.description
            )
            apply_terms(line, resolved.terms)
            lines.append(line)
        return lines

    @staticmethod
    async def _emit(
        session: AsyncSession,
        principal: Principal,
        proposal: Proposal,
        lines: Sequence[ProposalLine],
        event_type: str,
    ) -> None:
        await emit(
            session,
            workspace_id=proposal.workspace_id,
            type=event_type,
            object_type="proposal",
            object_id=proposal.id,
            data=proposal_data(proposal, lines),
            actor=principal.actor,
        )


def _new_line(
    proposal: Proposal,
    position: int,
    product_id: uuid.UUID | None,
    description: str,
) -> ProposalLine:
    return ProposalLine(
        id=ids.new_uuid(),
        workspace_id=proposal.workspace_id,
        proposal_id=proposal.id,
        position=position,
        product_id=product_id,
        description=description,
    )


def _reprice(proposal: Proposal, lines: Sequence[ProposalLine]) -> None:
    totals = price_lines([terms_of(line) for line in lines])
    for line, amounts in zip(lines, totals.lines, strict=True):
        apply_amounts(line, amounts)
    proposal.subtotal = totals.subtotal
    proposal.discount_total = totals.discount_total
    proposal.tax_total = totals.tax_total
    proposal.total = totals.total


def _zone_name(name: str | None) -> str:
    try:
        return ZoneInfo(name or "UTC").key
    except (ValueError, LookupError):
        log.warning("proposal.timezone_invalid", timezone=name)
        return "UTC"


def _check_validity(proposal: Proposal) -> None:
    today = today_in(proposal)
    if proposal.valid_until < today:
        raise InvalidInput(
            f"valid_until {proposal.valid_until.isoformat()} has passed: it is "
            f"already {today.isoformat()} in {proposal.timezone}, the customer's time "
            "zone. Choose today or a later date.",
            errors=[FieldError("valid_until", "is in the past", "date_in_past")],
        )


def _check_transition(proposal: Proposal, target: str) -> None:
    current = status_of(proposal)
    if current == "expired":
        raise ProposalExpired(
            f"Proposal {ids.encode('proposal', proposal.id)} expired after "
            f"{proposal.valid_until.isoformat()} ({proposal.timezone}), so it can no "
            "longer be accepted or rejected. Create a new proposal.",
            current_status=current,
            valid_until=proposal.valid_until.isoformat(),
        )
    if target not in proposal_states.TRANSITIONS[current]:
        raise _transition_error(proposal, f"moved to {target}", None)


def _transition_error(
    proposal: Proposal, action: str, reason: str | None
) -> InvalidProposalTransition:
    current = status_of(proposal)
    allowed = [
        status
        for status in proposal_states.TRANSITIONS[current]
        if status not in proposal_states.DERIVED
    ]
    return InvalidProposalTransition(
        f"Proposal {ids.encode('proposal', proposal.id)} is {current} and cannot be "
        f"{action}{f' ({reason})' if reason else ''}. Allowed next statuses: "
        f"{', '.join(allowed) or 'none'}.",
        current_status=current,
        allowed_transitions=list(allowed),
    )


def _invoice_payload(
    proposal: Proposal, opportunity: Opportunity, lines: Sequence[ProposalLine]
) -> InvoiceCreate:
    return InvoiceCreate(
        customer_id=opportunity.customer_id,
        currency=proposal.currency,
        opportunity_id=opportunity.id,
        memo=f"Proposal {ids.encode('proposal', proposal.id)}",
        lines=[_invoice_line(line) for line in lines],
    )


def _invoice_line(line: ProposalLine) -> InvoiceLineCreate:
    """Copy a line to an invoice line with exactly the same amount, discount and tax.

    Both round half up, take a percent discount off the rounded amount and tax what
    remains line by line, so the invoice shows the proposal's figures.
    """
    discount: DiscountInput | None = None
    if line.discount_percent is not None and line.discount_percent > 0:
        discount = DiscountInput(percent_off=line.discount_percent)
    elif line.discount_amount:
        discount = DiscountInput(amount_off=line.discount_amount)
    return InvoiceLineCreate(
        description=line.description,
        quantity=line.quantity,
        unit_amount_decimal=line.unit_amount,
        tax_rate=line.tax_rate,
        discount=discount,
    )


proposal_service = ProposalService()
