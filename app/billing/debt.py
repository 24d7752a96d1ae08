"""Overdue invoices, promises to pay, and debt given up: uncollectible and written off.

``sweep_overdue`` marks each open invoice overdue once, at the end of its due date in
its time zone, and emits ``invoice.overdue``. A promise to pay is kept once payments
recorded after it add up to its amount by the end of its date, and broken otherwise.
``resolve_promises`` settles both outcomes. A write-off is requested by the active user
that On-Behalf-Of names and approved by another active user whose role is manager or
admin.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import invoice_amounts
from app.billing.dunning_schemas import (
    MarkUncollectible,
    PauseReason,
    PromiseToPayCreate,
    WriteOffCreate,
)
from app.billing.errors import (
    InvalidInvoiceTransition,
    InvoiceAlreadyWrittenOff,
    PromiseAlreadyPending,
    WriteOffApproverNotPermitted,
    WriteOffNotApproved,
    WriteOffRequesterMissing,
)
from app.billing.overdue import COLLECTING, end_of_day_sql, local_date, overdue_at_sql
from app.billing.promises import (
    close_pending_promise,
    promise_data,
    resolve_promise,
)
from app.billing.repository import InvoiceRepository
from app.billing.service import InvoiceWithLines, invoice_service
from app.billing.views import invoice_data
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.models import (
    AllocationReversal,
    Dispute,
    DunningPolicy,
    Invoice,
    Opportunity,
    PaymentAllocation,
    PromiseToPay,
    User,
)
from app.users.service import user_service

log = structlog.get_logger(__name__)

# The furthest ahead a promise may be dated.
MAX_PROMISE_DAYS = 365
# The user roles that may approve a write-off.
WRITE_OFF_APPROVER_ROLES = ("manager", "admin")


def _check_write_off_approval(requester: uuid.UUID | None, approver: User) -> None:
    """Enforce the four-eyes rule: a known requester and another user who may approve."""
    if requester is None:
        raise WriteOffRequesterMissing(
            "A write-off needs the user who requests it. Send their usr_ id in the "
            "On-Behalf-Of header, so that another user can approve it.",
            errors=[
                FieldError(
                    "header.On-Behalf-Of",
                    "missing, or not a usr_ id",
                    "requester_required",
                )
            ],
        )
    encoded = ids.encode("user", approver.id)
    if requester == approver.id:
        raise WriteOffNotApproved(
            f"User {encoded} requested this write-off and cannot also approve it. "
            "Send another active manager or admin as approver_id.",
            errors=[
                FieldError(
                    "approver_id",
                    "is the user who requested the write-off",
                    "approver_is_requester",
                )
            ],
        )
    if approver.role not in WRITE_OFF_APPROVER_ROLES:
        raise WriteOffApproverNotPermitted(
            f"User {encoded} has the role {approver.role}, and only a manager or an "
            "admin can approve a write-off. Send such a user as approver_id, or give "
            f"this user one of those roles with PATCH /v1/users/{encoded}.",
            errors=[
                FieldError(
                    "approver_id",
                    f"role {approver.role} cannot approve; manager or admin can",
                    "approver_not_permitted",
                )
            ],
            approver_role=approver.role,
            allowed_roles=list(WRITE_OFF_APPROVER_ROLES),
        )


class DebtService:
    async def emit_invoice(
        self, session: AsyncSession, invoice: Invoice, type: str, actor: str | None
    ) -> None:
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)
        await emit(
            session,
            workspace_id=invoice.workspace_id,
            type=type,
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=actor,
        )

    async def sweep_overdue(
        self, session: AsyncSession, *, batch: int, now: datetime | None = None
    ) -> int:
        """Mark open invoices past their overdue moment; emit invoice.overdue once each.

        Only rows without ``overdue_notified_at`` are taken, and SKIP LOCKED lets
        several workers sweep at once without taking one invoice twice.
        """
        now = now or utcnow()
        # No zone is more than 14 hours ahead of UTC, so an invoice whose due date is
        # later than tomorrow in UTC cannot be overdue. The partial index serves this.
        latest_due = now.date() + timedelta(days=1)
        due = (
            select(Invoice.id)
            .where(
                Invoice.status == "open",
                Invoice.overdue_notified_at.is_(None),
                Invoice.due_date <= latest_due,
                overdue_at_sql() <= now,
            )
            .order_by(Invoice.due_date, Invoice.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
            .cte("due")
            .prefix_with("MATERIALIZED")
        )
        claimed = list(
            (
                await session.scalars(
                    update(Invoice)
                    .where(
                        Invoice.id == due.c.id, Invoice.overdue_notified_at.is_(None)
                    )
                    .values(overdue_notified_at=now)
                    .returning(Invoice.id)
                    .execution_options(synchronize_session=False)
                )
            ).all()
        )
        for invoice_id in claimed:
            invoice = await session.get(Invoice, invoice_id, populate_existing=True)
            assert invoice is not None
            await self.emit_invoice(session, invoice, "invoice.overdue", None)
            log.info(
                "invoice.overdue",
                invoice_id=str(invoice_id),
                due_date=invoice.due_date.isoformat() if invoice.due_date else None,
                timezone=invoice.timezone,
            )
        return len(claimed)

    async def mark_uncollectible(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        payload: MarkUncollectible,
        *,
        if_match: str | None,
    ) -> InvoiceWithLines:
        """Move an open invoice to uncollectible; a later payment still settles it."""
        invoice = await invoice_service.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        check_if_match(if_match, invoice.version)
        invoice_service.check_transition(invoice, "uncollectible")

        await self.mark_uncollectible_locked(
            session, invoice, payload.reason, principal.actor
        )
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)
        return invoice, lines

    async def mark_uncollectible_locked(
        self,
        session: AsyncSession,
        invoice: Invoice,
        reason: str | None,
        actor: str | None,
    ) -> None:
        """Mark an open invoice the caller holds locked uncollectible, with its event."""
        invoice.status = "uncollectible"
        invoice.uncollectible_at = utcnow()
        invoice.uncollectible_reason = reason
        await session.flush()
        await session.refresh(invoice)

        await self.emit_invoice(session, invoice, "invoice.marked_uncollectible", actor)
        log.info("invoice.marked_uncollectible", invoice_id=str(invoice.id))

    async def write_off(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        payload: WriteOffCreate,
        *,
        if_match: str | None,
    ) -> InvoiceWithLines:
        """Write off what an open or uncollectible invoice still owes, approved."""
        invoice = await invoice_service.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        check_if_match(if_match, invoice.version)
        encoded = ids.encode("invoice", invoice.id)
        if invoice.written_off_at is not None:
            raise InvoiceAlreadyWrittenOff(
                f"Invoice {encoded} was written off at "
                f"{invoice.written_off_at.isoformat()}; a write-off happens once.",
                current_status=invoice.status,
            )
        if invoice.status not in COLLECTING:
            invoice_service.check_transition(invoice, "uncollectible")
        approver = await user_service.require_active(
            session, principal.workspace_id, payload.approver_id, "approver_id"
        )
        requester = await user_service.acting_user(session, principal)
        _check_write_off_approval(requester, approver)

        now = utcnow()
        if invoice.status == "open":
            invoice.status = "uncollectible"
            invoice.uncollectible_at = now
            invoice.uncollectible_reason = payload.reason
        invoice.written_off_at = now
        invoice.written_off_amount = invoice_amounts(invoice).amount_remaining
        invoice.amount_paid_at_write_off = invoice.amount_paid
        invoice.write_off_reason = payload.reason
        invoice.write_off_requested_by = principal.actor
        invoice.write_off_approved_by = approver.id
        await session.flush()
        await session.refresh(invoice)

        await self.emit_invoice(
            session, invoice, "invoice.written_off", principal.actor
        )
        await close_pending_promise(
            session, invoice, "canceled", reason="written_off", actor=principal.actor
        )
        log.info(
            "invoice.written_off",
            invoice_id=str(invoice.id),
            amount=invoice.written_off_amount,
            approver_id=str(approver.id),
        )
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)
        return invoice, lines

    async def record_promise(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        payload: PromiseToPayCreate,
    ) -> PromiseToPay:
        """Record a promise to pay; reminders pause until it is kept or broken."""
        invoice = await invoice_service.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        encoded = ids.encode("invoice", invoice.id)
        if invoice.status not in COLLECTING:
            raise InvalidInvoiceTransition(
                f"Invoice {encoded} is {invoice.status}; a promise to pay can be "
                "recorded only for an open or uncollectible invoice.",
                current_status=invoice.status,
            )
        remaining = invoice_amounts(invoice).amount_remaining
        if payload.amount > remaining:
            raise InvalidInput(
                f"amount {payload.amount} exceeds the {remaining} {invoice.currency} "
                f"(minor units) that invoice {encoded} still owes. Send at most that.",
                errors=[
                    FieldError(
                        "amount", f"must be at most {remaining}", "exceeds_remaining"
                    )
                ],
            )
        today = local_date(utcnow(), invoice.timezone)
        if not today <= payload.promised_date <= today + timedelta(MAX_PROMISE_DAYS):
            raise InvalidInput(
                f"promised_date {payload.promised_date.isoformat()} must lie between "
                f"{today.isoformat()} (today in {invoice.timezone or 'UTC'}) and "
                f"{MAX_PROMISE_DAYS} days later.",
                errors=[
                    FieldError(
                        "promised_date",
                        f"must be from {today.isoformat()} to {MAX_PROMISE_DAYS} "
                        "days later",
                        "out_of_range",
                    )
                ],
            )
        pending = await session.scalar(
            select(PromiseToPay.id).where(
                PromiseToPay.invoice_id == invoice.id, PromiseToPay.status == "pending"
            )
        )
        if pending is not None:
            raise PromiseAlreadyPending(
                f"Invoice {encoded} has the pending promise to pay "
                f"{ids.encode('promise_to_pay', pending)}. Wait until it is kept or "
                "broken before recording another.",
                promise_to_pay_id=ids.encode("promise_to_pay", pending),
            )

        promise = PromiseToPay(
            id=ids.new_uuid(),
            workspace_id=invoice.workspace_id,
            invoice_id=invoice.id,
            promised_date=payload.promised_date,
            amount=payload.amount,
            currency=invoice.currency,
            amount_paid_at_promise=invoice.amount_paid,
            status="pending",
            recorded_by=principal.actor,
            note=payload.note,
        )
        session.add(promise)
        await session.flush()
        await session.refresh(promise)

        await emit(
            session,
            workspace_id=promise.workspace_id,
            type="promise_to_pay.created",
            object_type="promise_to_pay",
            object_id=promise.id,
            data=promise_data(promise),
            actor=principal.actor,
        )
        log.info(
            "promise_to_pay.created",
            promise_to_pay_id=str(promise.id),
            invoice_id=str(invoice.id),
        )
        return promise

    async def promises_of(
        self, session: AsyncSession, invoice_id: uuid.UUID
    ) -> list[PromiseToPay]:
        rows = await session.scalars(
            select(PromiseToPay)
            .where(PromiseToPay.invoice_id == invoice_id)
            .order_by(PromiseToPay.id)
        )
        return list(rows.all())

    async def resolve_promises(
        self, session: AsyncSession, *, batch: int, now: datetime | None = None
    ) -> int:
        """Settle pending promises: kept once paid, broken once their date has ended."""
        now = now or utcnow()
        paid_since = Invoice.amount_paid - PromiseToPay.amount_paid_at_promise
        rows = (
            await session.execute(
                select(PromiseToPay, Invoice)
                .join(Invoice, Invoice.id == PromiseToPay.invoice_id)
                .where(
                    PromiseToPay.status == "pending",
                    or_(
                        paid_since >= PromiseToPay.amount,
                        Invoice.status == "paid",
                        end_of_day_sql(PromiseToPay.promised_date) <= now,  # type: ignore[arg-type]
                    ),
                )
                .order_by(PromiseToPay.promised_date)
                .limit(batch)
                .with_for_update(of=PromiseToPay, skip_locked=True)
            )
        ).all()
        for promise, invoice in rows:
            kept = (
                invoice.amount_paid - promise.amount_paid_at_promise >= promise.amount
                or invoice.status == "paid"
            )
            await resolve_promise(
                session, promise, "kept" if kept else "broken", reason="sweep", now=now
            )
        return len(rows)

    async def pause_reasons(
        self, session: AsyncSession, invoice: Invoice, policy: DunningPolicy
    ) -> list[PauseReason]:
        """List why reminders for ``invoice`` pause now; empty when they run."""
        reasons: list[PauseReason] = []
        pending = await session.scalar(
            select(
                exists().where(
                    PromiseToPay.invoice_id == invoice.id,
                    PromiseToPay.status == "pending",
                )
            )
        )
        if pending:
            reasons.append("promise_to_pay")
        # A dispute that reversed all of a payment's allocation to the invoice has
        # deleted that allocation, so its reversal links the dispute to the invoice.
        disputed = await session.scalar(
            select(
                or_(
                    exists().where(
                        PaymentAllocation.invoice_id == invoice.id,
                        Dispute.payment_id == PaymentAllocation.payment_id,
                        Dispute.status == "open",
                    ),
                    exists().where(
                        AllocationReversal.invoice_id == invoice.id,
                        Dispute.id == AllocationReversal.dispute_id,
                        Dispute.status == "open",
                    ),
                )
            )
        )
        if disputed:
            reasons.append("dispute")
        if policy.renewal_pipeline_id is not None:
            renewing = await session.scalar(
                select(
                    exists().where(
                        and_(
                            Opportunity.customer_id == invoice.customer_id,
                            Opportunity.pipeline_id == policy.renewal_pipeline_id,
                            Opportunity.status == "open",
                        )
                    )
                )
            )
            if renewing:
                reasons.append("renewal")
        return reasons


debt_service = DebtService()
