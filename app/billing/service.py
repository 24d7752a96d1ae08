from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import states, terms
from app.billing.amounts import invoice_amounts, refresh_payment_status
from app.billing.errors import (
    InvalidInvoiceTransition,
    InvoiceHasCredit,
    InvoiceHasNoLines,
    InvoiceHasPayments,
    InvoiceNotEditable,
    InvoiceNotFound,
    InvoiceTotalZero,
)
from app.billing.lines import build_lines, discount_entries, recompute_invoice
from app.billing.parties import record_invoice_parties
from app.billing.promises import close_pending_promise
from app.billing.repository import InvoiceRepository
from app.billing.schemas import InvoiceCreate, InvoiceLineCreate, InvoiceUpdate
from app.billing.views import invoice_data
from app.core import ids, money
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.db import refresh_expired
from app.core.errors import FieldError, InvalidInput, with_article
from app.core.events import emit
from app.customers.service import customer_service
from app.models import Customer, Invoice, InvoiceLine
from app.nurture.exits import exit_for_customer
from app.nurture.offer_invoices import (
    check_offer_customer,
    release_invoice,
    reprice_invoice,
)
from app.opportunities.service import opportunity_service

log = structlog.get_logger(__name__)

InvoiceWithLines = tuple[Invoice, list[InvoiceLine]]

# Fields of InvoiceUpdate that may not be null: omit them to keep the current value.
_REQUIRED_ON_UPDATE = (
    "customer_id",
    "currency",
    "lines",
    "series",
    "rounding",
    "tax_calculation",
    "discounts",
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
        payment_terms, terms_days = terms.resolve(
            payload.payment_terms,
            payload.payment_terms_days,
            payload.due_date,
            customer_default=customer.payment_terms_days,
        )

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
            tax_calculation=payload.tax_calculation,
            discounts=discount_entries(payload.discounts),
            amount_paid=0,
            payment_terms=payment_terms,
            payment_terms_days=terms_days,
            due_date=payload.due_date,
            memo=payload.memo,
        )
        lines = await build_lines(session, invoice, payload.lines)
        recompute_invoice(invoice, lines)
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
                f"Invoice {ids.encode('invoice', invoice.id)} is {invoice.status}, and "
                "only a draft invoice can be changed. To correct a finalized invoice, "
                "issue a credit note for it.",
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
        customer_changed = invoice.customer_id != customer.id
        invoice.customer_id = customer.id
        invoice.opportunity_id = opportunity_id
        if customer_changed:
            await check_offer_customer(session, invoice)
        for name in ("currency", "memo", "series", "rounding", "tax_calculation"):
            if name in changes:
                setattr(invoice, name, changes[name])
        if {"payment_terms", "payment_terms_days", "due_date"} & changes.keys():
            invoice.payment_terms, invoice.payment_terms_days = terms.resolve(
                payload.payment_terms,
                payload.payment_terms_days,
                payload.due_date,
                customer_default=customer.payment_terms_days,
            )
            invoice.due_date = payload.due_date
        if payload.discounts is not None:
            # Offer code discounts stay: they are changed through the offer code.
            offer_entries = [
                entry
                for entry in invoice.discounts or []
                if entry.get("source") == "offer_code"
            ]
            invoice.discounts = [*discount_entries(payload.discounts), *offer_entries]
        if payload.lines is not None:
            await repository.delete_lines(invoice.id)
            lines = await build_lines(session, invoice, payload.lines)
            session.add_all(lines)
        elif "currency" in changes or "opportunity_id" in changes:
            await _check_kept_lines(session, invoice, lines)
        recompute_invoice(invoice, lines)
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
        self.check_transition(invoice, "open")
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
        customer_zone = zone_of(
            customer.timezone, log_key="customer_id", object_id=customer.id
        )
        terms.check_explicit_due_date(invoice, now, customer_zone)

        workspace_zone = zone_of(
            await repository.workspace_timezone(invoice.workspace_id),
            log_key="workspace_id",
            object_id=invoice.workspace_id,
        )
        year = now.astimezone(workspace_zone).year
        sequence = await repository.take_number(
            invoice.workspace_id, invoice.series, year
        )
        invoice.number = format_number(invoice.series, year, sequence)
        invoice.status = "open"
        invoice.finalized_at = now
        invoice.timezone = customer_zone.key
        invoice.due_date = terms.due_date(invoice, now, customer_zone)
        invoice.overdue_at = terms.overdue_at(invoice.due_date, customer_zone)
        refresh_payment_status(invoice)
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
        self.check_transition(invoice, "void")
        if invoice.amount_paid > 0:
            raise InvoiceHasPayments(
                f"Invoice {ids.encode('invoice', invoice.id)} has {invoice.amount_paid} "
                f"{invoice.currency} (minor units) paid against it. Refund or "
                "reallocate those payments before voiding it.",
                amount_paid=invoice.amount_paid,
            )
        amounts = invoice_amounts(invoice)
        if amounts.credited_amount or amounts.customer_credit_applied:
            raise InvoiceHasCredit(
                f"Invoice {ids.encode('invoice', invoice.id)} has credit notes or "
                "applied customer credit. Void its credit notes before voiding it.",
                credited_amount=amounts.credited_amount,
                customer_credit_applied=amounts.customer_credit_applied,
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
        await close_pending_promise(
            session, invoice, "canceled", reason="voided", actor=principal.actor
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
        """Add an allocated amount to an invoice the caller holds locked."""
        invoice.amount_paid += amount
        invoice.payment_change_count += 1
        became_paid = await self.record_amounts(session, invoice, actor=actor)
        log.info(
            "invoice.paid" if became_paid else "invoice.payment_applied",
            invoice_id=str(invoice.id),
            amount=amount,
            amount_paid=invoice.amount_paid,
            payment_status=invoice.payment_status,
        )

    async def record_amounts(
        self, session: AsyncSession, invoice: Invoice, *, actor: str | None
    ) -> bool:
        """Settle and emit a locked invoice whose payments or credits just changed.

        The payment status is derived again. The invoice turns paid (``invoice.paid``)
        the first time payments, credit notes and applied credit cover its amount due.
        Any other change of the amounts emits ``invoice.updated``. Returns whether it
        turned paid.
        """
        amounts = invoice_amounts(invoice)
        invoice.payment_status = amounts.payment_status
        became_paid = (
            invoice.status in ("open", "uncollectible")
            and amounts.amount_remaining == 0
        )
        if became_paid:
            invoice.status = "paid"
            invoice.paid_at = utcnow()
        if session.is_modified(invoice):
            # Set here rather than by the column's onupdate, so the flush leaves
            # nothing expired and the event needs no reload of the row.
            invoice.updated_at = utcnow()
        await session.flush()
        await refresh_expired(session, invoice)
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
            await close_pending_promise(
                session, invoice, "kept", reason="paid", actor=actor
            )
            await exit_for_customer(
                session,
                invoice.workspace_id,
                invoice.customer_id,
                "invoice_paid",
                actor,
            )
        return became_paid

    async def remove_payment(
        self,
        session: AsyncSession,
        invoice: Invoice,
        amount: int,
        *,
        actor: str | None,
    ) -> None:
        """Take an allocated amount back from an invoice the caller holds locked.

        A refund, a dispute or a removed allocation calls this. A paid invoice that
        no longer covers its total goes back to the status it was paid from, open or
        uncollectible (``paid_at`` cleared), and the change is an ``invoice.updated``.
        """
        invoice.amount_paid -= amount
        invoice.payment_change_count += 1
        refresh_payment_status(invoice)
        reopened = (
            invoice.status == "paid" and invoice_amounts(invoice).amount_remaining > 0
        )
        if reopened:
            invoice.status = states.unpaid_status(invoice.uncollectible_at)
            invoice.paid_at = None
        await session.flush()
        await session.refresh(invoice)
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)

        await emit(
            session,
            workspace_id=invoice.workspace_id,
            type="invoice.updated",
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=actor,
        )
        log.info(
            "invoice.payment_removed",
            invoice_id=str(invoice.id),
            amount=amount,
            amount_paid=invoice.amount_paid,
            payment_status=invoice.payment_status,
            reopened=reopened,
        )

    @staticmethod
    def check_transition(invoice: Invoice, target: str) -> None:
        allowed = states.TRANSITIONS.get(invoice.status, ())
        if target not in allowed or (invoice.status, target) in states.PAYMENT_DRIVEN:
            # Payments move an invoice into and out of "paid"; no request does.
            offered = [
                status
                for status in allowed
                if (invoice.status, status) not in states.PAYMENT_DRIVEN
            ]
            raise InvalidInvoiceTransition(
                f"{with_article(invoice.status).capitalize()} invoice cannot move to {target}. Allowed next "
                f"statuses: {', '.join(offered) or 'none'}.",
                current_status=invoice.status,
                allowed_transitions=offered,
            )


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


async def _check_kept_lines(
    session: AsyncSession, invoice: Invoice, lines: Sequence[InvoiceLine]
) -> None:
    """Check that kept lines still fit a new currency or opportunity."""
    references = [
        line for line in lines if line.product_id or line.line_item_id is not None
    ]
    if not references:
        return
    await build_lines(session, invoice, [line_payload(line) for line in references])


def line_payload(line: InvoiceLine) -> InvoiceLineCreate:
    """Rebuild the request form of a stored line."""
    return InvoiceLineCreate.model_validate(
        {
            "description": line.description,
            "quantity": Decimal(line.quantity),
            "unit_amount_decimal": Decimal(line.unit_amount),
            "tax_rates": [
                {key: rate[key] for key in ("name", "percentage", "inclusive")}
                for rate in line.tax_rates or []
            ],
            "discount": (
                {"percent_off": Decimal(line.discount_percent)}
                if line.discount_percent is not None
                else {"amount_off": line.discount_amount_off}
                if line.discount_amount_off is not None
                else None
            ),
            "product_id": line.product_id,
            "line_item_id": line.line_item_id,
        }
    )


invoice_service = InvoiceService()
