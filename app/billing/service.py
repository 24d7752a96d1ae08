from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import states
from app.billing.errors import (
    InvalidInvoiceTransition,
    InvoiceHasNoLines,
    InvoiceNotEditable,
    InvoiceNotFound,
    InvoiceTotalZero,
)
from app.billing.parties import record_invoice_parties
from app.billing.repository import InvoiceRepository
from app.billing.schemas import InvoiceCreate, InvoiceLineCreate, InvoiceUpdate
from app.billing.totals import LineInput, invoice_totals
from app.billing.views import invoice_data
from app.core import ids, money
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import Conflict, FieldError, InvalidInput, with_article
from app.core.events import emit
from app.customers.service import customer_service
from app.models import Customer, Invoice, InvoiceLine
from app.nurture.exits import exit_for_customer
from app.nurture.offer_invoices import release_invoice, reprice_invoice
from app.opportunities.service import opportunity_service

log = structlog.get_logger(__name__)

InvoiceWithLines = tuple[Invoice, list[InvoiceLine]]

# Fields of InvoiceUpdate that may not be null: omit them to keep the current value.
_REQUIRED_ON_UPDATE = (
    "customer_id",
    "currency",
    "lines",
    "payment_terms_days",
    "series",
    "rounding",
)


def format_number(series: str, year: int, number: int) -> str:
    """Write an invoice number such as ``INV-2026-000123``."""
    return f"{series}-{year}-{number:06d}"


def zone_of(name: str | None, *, log_key: str, object_id: uuid.UUID) -> ZoneInfo:
    """Return the IANA zone ``name``, or UTC (logged) when the stored name is invalid."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        log.warning(
            "billing.timezone_invalid", timezone=name, **{log_key: str(object_id)}
        )
        return ZoneInfo("UTC")


class InvoiceService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: InvoiceCreate
    ) -> InvoiceWithLines:
        customer = await customer_service.get(
            session, principal.workspace_id, payload.customer_id
        )
        currency = payload.currency or money.validate_currency(customer.currency)
        if payload.opportunity_id is not None:
            await check_opportunity(
                session, principal.workspace_id, payload.opportunity_id, customer
            )
        rounding = money.Rounding(payload.rounding)

        invoice = Invoice(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            customer_id=customer.id,
            opportunity_id=payload.opportunity_id,
            status=states.INITIAL,
            payment_status="unpaid",
            series=payload.series,
            currency=currency,
            rounding=rounding.value,
            amount_paid=0,
            payment_terms_days=(
                payload.payment_terms_days
                if payload.payment_terms_days is not None
                else customer.payment_terms_days
            ),
            memo=payload.memo,
        )
        lines = build_lines(invoice, payload.lines, rounding)
        session.add(invoice)
        await session.flush()
        session.add_all(lines)
        await session.flush()
        await session.refresh(invoice)

        await emit(
            session,
            workspace_id=invoice.workspace_id,
            type="invoice.created",
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=principal.actor,
        )
        log.info(
            "invoice.created",
            invoice_id=str(invoice.id),
            customer_id=str(customer.id),
            line_count=len(lines),
        )
        return invoice, lines

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        invoice_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Invoice:
        invoice = await InvoiceRepository.from_session(session).get(
            workspace_id, invoice_id, for_update=for_update
        )
        if invoice is None:
            raise InvoiceNotFound(
                f"No invoice with id {ids.encode('invoice', invoice_id)} exists in "
                "this workspace."
            )
        return invoice

    async def get_with_lines(
        self, session: AsyncSession, workspace_id: uuid.UUID, invoice_id: uuid.UUID
    ) -> InvoiceWithLines:
        invoice = await self.get(session, workspace_id, invoice_id)
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)
        return invoice, lines

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        customer_id: uuid.UUID | None = None,
    ) -> tuple[list[InvoiceWithLines], str | None, bool]:
        repository = InvoiceRepository.from_session(session)
        rows, next_cursor, has_more = await repository.list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            status=status,
            customer_id=customer_id,
        )
        lines = await repository.lines_of([invoice.id for invoice in rows])
        return (
            [(invoice, lines.get(invoice.id, [])) for invoice in rows],
            next_cursor,
            has_more,
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        payload: InvoiceUpdate,
        *,
        if_match: str | None,
    ) -> InvoiceWithLines:
        repository = InvoiceRepository.from_session(session)
        invoice = await self.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        check_if_match(if_match, invoice.version)
        if invoice.status != "draft":
            raise InvoiceNotEditable(
                f"Invoice {ids.encode('invoice', invoice.id)} is {invoice.status}; only "
                "a draft invoice can be changed.",
                current_status=invoice.status,
            )

        changes = payload.model_dump(exclude_unset=True)
        # model_dump renders ids as prefixed strings; the service works with UUIDs.
        for name in ("customer_id", "opportunity_id"):
            if name in changes:
                changes[name] = getattr(payload, name)
        nulls = [name for name in _REQUIRED_ON_UPDATE if changes.get(name, 0) is None]
        if nulls:
            raise InvalidInput(
                f"{nulls[0]} cannot be null. Omit it to keep the current value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )
        lines = await repository.lines(invoice.id)
        if not changes:
            return invoice, lines

        customer_id = changes.get("customer_id", invoice.customer_id)
        customer = await customer_service.get(
            session, principal.workspace_id, customer_id
        )
        opportunity_id = changes.get("opportunity_id", invoice.opportunity_id)
        if opportunity_id is not None and (
            "opportunity_id" in changes or "customer_id" in changes
        ):
            await check_opportunity(
                session, principal.workspace_id, opportunity_id, customer
            )
        invoice.customer_id = customer.id
        invoice.opportunity_id = opportunity_id
        for name in ("currency", "payment_terms_days", "memo", "series", "rounding"):
            if name in changes:
                setattr(invoice, name, changes[name])
        if "lines" in changes or "rounding" in changes:
            rounding = money.Rounding(invoice.rounding)
            line_inputs = (
                payload.lines
                if payload.lines is not None
                else [_line_payload(line) for line in lines]
            )
            await repository.delete_lines(invoice.id)
            lines = build_lines(invoice, line_inputs, rounding)
            session.add_all(lines)
        lines = await reprice_invoice(session, invoice, lines)
        # Touch the row so its version moves even when only the lines changed.
        invoice.updated_at = utcnow()
        await session.flush()
        await session.refresh(invoice)

        await emit(
            session,
            workspace_id=invoice.workspace_id,
            type="invoice.updated",
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=principal.actor,
        )
        log.info("invoice.updated", invoice_id=str(invoice.id), fields=sorted(changes))
        return invoice, lines

    async def finalize(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> InvoiceWithLines:
        """Number a draft invoice, set its due date and open it for payment.

        An invoice without lines, or whose total is zero, is rejected with a 422:
        there is nothing to collect, and a number once taken can never be released.
        """
        repository = InvoiceRepository.from_session(session)
        invoice = await self.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        check_if_match(if_match, invoice.version)
        self._check_transition(invoice, "open")
        lines = await repository.lines(invoice.id)
        if not lines:
            raise InvoiceHasNoLines(
                f"Invoice {ids.encode('invoice', invoice.id)} has no lines. Add at least "
                "one line with PATCH before finalizing it.",
                errors=[FieldError("lines", "at least one line is required", "empty")],
            )
        if invoice.total == 0:
            raise InvoiceTotalZero(
                f"Invoice {ids.encode('invoice', invoice.id)} totals 0 "
                f"{invoice.currency}. Change its lines so that it bills something, or "
                "delete the draft.",
                errors=[FieldError("lines", "the total is zero", "zero_total")],
            )
        customer = await customer_service.get(
            session, invoice.workspace_id, invoice.customer_id
        )

        now = utcnow()
        workspace_zone = zone_of(
            await repository.workspace_timezone(invoice.workspace_id),
            log_key="workspace_id",
            object_id=invoice.workspace_id,
        )
        year = now.astimezone(workspace_zone).year
        sequence = await repository.take_number(
            invoice.workspace_id, invoice.series, year
        )
        customer_zone = zone_of(
            customer.timezone, log_key="customer_id", object_id=customer.id
        )
        invoice.number = format_number(invoice.series, year, sequence)
        invoice.status = "open"
        invoice.finalized_at = now
        invoice.timezone = customer_zone.key
        invoice.due_date = now.astimezone(customer_zone).date() + timedelta(
            days=invoice.payment_terms_days
        )
        invoice.payment_status = states.payment_status(
            invoice.total, invoice.amount_paid
        )
        await record_invoice_parties(session, invoice, customer)
        await session.flush()
        await session.refresh(invoice)

        await emit(
            session,
            workspace_id=invoice.workspace_id,
            type="invoice.finalized",
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=principal.actor,
        )
        log.info(
            "invoice.finalized",
            invoice_id=str(invoice.id),
            number=invoice.number,
            due_date=invoice.due_date.isoformat(),
        )
        return invoice, lines

    async def void(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> InvoiceWithLines:
        """Void an open invoice; it keeps its number, so the series stays gapless."""
        invoice = await self.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        check_if_match(if_match, invoice.version)
        self._check_transition(invoice, "void")
        if invoice.amount_paid > 0:
            raise Conflict(
                f"Invoice {ids.encode('invoice', invoice.id)} has {invoice.amount_paid} "
                f"{invoice.currency} (minor units) paid against it. Refund or "
                "reallocate those payments before voiding it.",
                code="invoice_has_payments",
                amount_paid=invoice.amount_paid,
            )

        invoice.status = "void"
        invoice.voided_at = utcnow()
        await release_invoice(session, invoice, actor=principal.actor)
        await session.flush()
        await session.refresh(invoice)
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)

        await emit(
            session,
            workspace_id=invoice.workspace_id,
            type="invoice.voided",
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=principal.actor,
        )
        log.info("invoice.voided", invoice_id=str(invoice.id), number=invoice.number)
        return invoice, lines

    async def apply_payment(
        self,
        session: AsyncSession,
        invoice: Invoice,
        amount: int,
        *,
        actor: str | None,
    ) -> None:
        """Add an allocated amount to an invoice the caller holds locked.

        The invoice turns paid (``invoice.paid``) the first time its payments cover
        the total; any other change of the amounts is an ``invoice.updated``.
        """
        invoice.amount_paid += amount
        invoice.payment_status = states.payment_status(
            invoice.total, invoice.amount_paid
        )
        became_paid = (
            invoice.status in ("open", "uncollectible")
            and invoice.amount_paid >= invoice.total
        )
        if became_paid:
            invoice.status = "paid"
            invoice.paid_at = utcnow()
        await session.flush()
        await session.refresh(invoice)
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)

        await emit(
            session,
            workspace_id=invoice.workspace_id,
            type="invoice.paid" if became_paid else "invoice.updated",
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=actor,
        )
        if became_paid:
            await exit_for_customer(
                session,
                invoice.workspace_id,
                invoice.customer_id,
                "invoice_paid",
                actor,
            )
        log.info(
            "invoice.paid" if became_paid else "invoice.payment_applied",
            invoice_id=str(invoice.id),
            amount=amount,
            amount_paid=invoice.amount_paid,
            payment_status=invoice.payment_status,
        )

    @staticmethod
    def _check_transition(invoice: Invoice, target: str) -> None:
        allowed = states.TRANSITIONS.get(invoice.status, ())
        if target not in allowed:
            # "paid" is reached by payments, never requested, so it is not offered.
            offered = [status for status in allowed if status != "paid"]
            raise InvalidInvoiceTransition(
                f"{with_article(invoice.status).capitalize()} invoice cannot move to {target}. Allowed next "
                f"statuses: {', '.join(offered) or 'none'}.",
                current_status=invoice.status,
                allowed_transitions=offered,
            )


def build_lines(
    invoice: Invoice,
    payload: Sequence[InvoiceLineCreate],
    rounding: money.Rounding,
) -> list[InvoiceLine]:
    inputs = [
        LineInput(
            quantity=line.quantity,
            unit_amount=line.unit_amount_exact,
            tax_rate=line.tax_rate,
        )
        for line in payload
    ]
    totals = invoice_totals(inputs, rounding)
    invoice.subtotal = totals.subtotal
    invoice.tax_total = totals.tax_total
    invoice.total = totals.total
    return [
        InvoiceLine(
            id=ids.new_uuid(),
            workspace_id=invoice.workspace_id,
            invoice_id=invoice.id,
            position=position,
            description=line.description,
            quantity=line.quantity,
            unit_amount=line.unit_amount_exact,
            tax_rate=line.tax_rate,
            amount=computed.amount,
            tax_amount=computed.tax_amount,
        )
        for position, (line, computed) in enumerate(
            zip(payload, totals.lines, strict=True), start=1
        )
    ]


async def check_opportunity(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    opportunity_id: uuid.UUID,
    customer: Customer,
) -> None:
    opportunity = await opportunity_service.get(session, workspace_id, opportunity_id)
    encoded = ids.encode("opportunity", opportunity_id)
    if opportunity.customer_id != customer.id:
        raise InvalidInput(
            f"Opportunity {encoded} belongs to another customer than "
            f"{ids.encode('customer', customer.id)}. Invoice that customer, or "
            "name an opportunity of this one.",
            errors=[
                FieldError(
                    "opportunity_id",
                    "belongs to another customer",
                    "customer_mismatch",
                )
            ],
        )


def _line_payload(line: InvoiceLine) -> InvoiceLineCreate:
    """Rebuild the input of a stored line, to recompute it under another rounding."""
    return InvoiceLineCreate(
        description=line.description,
        quantity=line.quantity,
        unit_amount_decimal=line.unit_amount,
        tax_rate=line.tax_rate,
    )


invoice_service = InvoiceService()
