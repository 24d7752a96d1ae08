"""Credit notes: partial or full credits of a finalized invoice.

A credit note credits invoice lines or a lump amount including tax, as
``app.billing.credit_drafts`` computes them. Its total goes to up to
three places: it reduces the invoice's amount due, it becomes customer credit, or it
is owed back as a refund.

Every check runs while the invoice row is locked, so concurrent credit notes of one
invoice are serialized and their totals can never exceed the invoice total. Numbers
are taken from ``credit_note_number_series`` in the same transaction, gapless per
series and year.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import invoice_amounts
from app.billing.balances import credit_balance, lock_customer_credit
from app.billing.credit import customer_credit_service
from app.billing.credit_drafts import (
    Draft,
    DraftLine,
    build_draft,
    creditable_lines,
    earlier_credits,
    invalid_credit_note,
)
from app.billing.credit_errors import (
    CreditExceedsInvoice,
    CreditNoteNotFound,
    CreditNoteNotVoidable,
    CreditNoteRefundNotPending,
)
from app.billing.credit_schemas import CreditNote as CreditNoteSchema
from app.billing.credit_schemas import (
    CreditNoteCreate,
    CreditNotePreview,
    CreditNoteVoid,
)
from app.billing.credit_schemas import CreditNoteLine as CreditNoteLineSchema
from app.billing.locks import lock_payment
from app.billing.repository import InvoiceRepository, PaymentRepository
from app.billing.service import format_number, invoice_service, zone_of
from app.core import ids, money
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError
from app.core.events import emit
from app.core.pagination import paginate
from app.models import (
    CreditNote,
    CreditNoteLine,
    CreditNoteNumberSeries,
    Invoice,
    PaymentAllocation,
)

log = structlog.get_logger(__name__)

CreditNoteWithLines = tuple[CreditNote, list[CreditNoteLine]]


def line_view(line: CreditNoteLine | DraftLine) -> CreditNoteLineSchema:
    return CreditNoteLineSchema(
        id=getattr(line, "id", None),
        invoice_line_id=line.invoice_line_id,
        description=line.description,
        quantity=(
            money.format_decimal(Decimal(line.quantity))
            if line.quantity is not None
            else None
        ),
        tax_rate=money.format_decimal(Decimal(line.tax_rate)),
        amount=line.amount,
        tax_amount=line.tax_amount,
    )


def credit_note_view(
    note: CreditNote, lines: Sequence[CreditNoteLine]
) -> CreditNoteSchema:
    return CreditNoteSchema(
        id=note.id,
        number=note.number,
        series=note.series,
        invoice_id=note.invoice_id,
        customer_id=note.customer_id,
        status=note.status,
        reason=note.reason,
        memo=note.memo,
        currency=note.currency,
        subtotal=note.subtotal,
        tax_total=note.tax_total,
        total=note.total,
        amount_reduced=note.amount_reduced,
        amount_credited=note.amount_credited,
        refund_amount=note.refund_amount,
        refund_status=note.refund_status,
        refund_payment_id=note.refund_payment_id,
        lines=[line_view(line) for line in sorted(lines, key=lambda row: row.position)],
        void_reason=note.void_reason,
        voided_at=note.voided_at,
        version=note.version,
        created_at=note.created_at,
        updated_at=note.updated_at,
    )


def credit_note_data(
    note: CreditNote, lines: Sequence[CreditNoteLine]
) -> dict[str, Any]:
    """Serialize a credit note as the API shows it, for events."""
    return credit_note_view(note, lines).model_dump(mode="json")


async def emit_credit_note(
    session: AsyncSession,
    note: CreditNote,
    lines: Sequence[CreditNoteLine],
    event_type: str,
    *,
    actor: str | None,
) -> None:
    await emit(
        session,
        workspace_id=note.workspace_id,
        type=event_type,
        object_type="credit_note",
        object_id=note.id,
        data=credit_note_data(note, lines),
        actor=actor,
    )


async def lines_of_credit_notes(
    session: AsyncSession, credit_note_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[CreditNoteLine]]:
    """Load the lines of many credit notes in one query."""
    grouped: dict[uuid.UUID, list[CreditNoteLine]] = defaultdict(list)
    if not credit_note_ids:
        return grouped
    rows = await session.scalars(
        select(CreditNoteLine)
        .where(CreditNoteLine.credit_note_id.in_(credit_note_ids))
        .order_by(CreditNoteLine.credit_note_id, CreditNoteLine.position)
    )
    for line in rows:
        grouped[line.credit_note_id].append(line)
    return grouped


class CreditNoteService:
    async def preview(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        invoice_id: uuid.UUID,
        payload: CreditNoteCreate,
    ) -> CreditNotePreview:
        """Compute a credit note and the invoice's amounts after it, writing nothing."""
        invoice = await invoice_service.get(session, workspace_id, invoice_id)
        draft = await self._draft(session, invoice, payload)
        if payload.refund_payment_id is not None:
            await self._check_refund_payment(session, invoice, payload, draft)
        before = invoice_amounts(invoice)
        due_after = before.amount_due - draft.amount_reduced
        return CreditNotePreview(
            invoice_id=invoice.id,
            currency=invoice.currency,
            subtotal=draft.subtotal,
            tax_total=draft.tax_total,
            total=draft.total,
            amount_reduced=draft.amount_reduced,
            amount_credited=draft.amount_credited,
            refund_amount=draft.refund_amount,
            lines=[line_view(line) for line in draft.lines],
            creditable_before=before.creditable,
            creditable_after=before.creditable - draft.total,
            invoice_amount_due_after=due_after,
            invoice_amount_remaining_after=max(due_after - before.amount_paid, 0),
        )

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        payload: CreditNoteCreate,
    ) -> CreditNoteWithLines:
        """Issue a credit note for an invoice and move its total where it goes."""
        repository = InvoiceRepository.from_session(session)
        if payload.refund_payment_id is not None:
            # The payment before the invoice, as a refund locks them. The checks
            # below report a missing payment.
            await lock_payment(
                session, principal.workspace_id, payload.refund_payment_id
            )
        invoice = await invoice_service.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        draft = await self._draft(session, invoice, payload)
        if payload.refund_payment_id is not None:
            await self._check_refund_payment(session, invoice, payload, draft)

        zone = zone_of(
            await repository.workspace_timezone(invoice.workspace_id),
            log_key="workspace_id",
            object_id=invoice.workspace_id,
        )
        year = utcnow().astimezone(zone).year
        sequence = await repository.take_number(
            invoice.workspace_id, payload.series, year, counter=CreditNoteNumberSeries
        )
        note = CreditNote(
            id=ids.new_uuid(),
            workspace_id=invoice.workspace_id,
            invoice_id=invoice.id,
            customer_id=invoice.customer_id,
            series=payload.series,
            number=format_number(payload.series, year, sequence),
            status="issued",
            reason=payload.reason,
            memo=payload.memo,
            currency=invoice.currency,
            subtotal=draft.subtotal,
            tax_total=draft.tax_total,
            total=draft.total,
            amount_reduced=draft.amount_reduced,
            amount_credited=draft.amount_credited,
            refund_amount=draft.refund_amount,
            refund_status="pending" if draft.refund_amount else None,
            refund_payment_id=payload.refund_payment_id,
        )
        session.add(note)
        await session.flush()
        lines = [
            CreditNoteLine(
                id=ids.new_uuid(),
                workspace_id=note.workspace_id,
                credit_note_id=note.id,
                invoice_line_id=line.invoice_line_id,
                position=position,
                description=line.description,
                quantity=line.quantity,
                tax_rate=line.tax_rate,
                amount=line.amount,
                tax_amount=line.tax_amount,
            )
            for position, line in enumerate(draft.lines, start=1)
        ]
        session.add_all(lines)
        await session.flush()

        if draft.amount_credited:
            await customer_credit_service.record(
                session,
                workspace_id=note.workspace_id,
                customer_id=note.customer_id,
                currency=note.currency,
                amount=draft.amount_credited,
                source="credit_note",
                actor=principal.actor,
                credit_note_id=note.id,
                invoice_id=invoice.id,
                description=f"Credit note {note.number}",
            )
        invoice.pre_payment_credit_notes_amount += draft.amount_reduced
        invoice.post_payment_credit_notes_amount += (
            draft.amount_credited + draft.refund_amount
        )
        await invoice_service.record_amounts(session, invoice, actor=principal.actor)
        await session.refresh(note)

        await emit_credit_note(
            session, note, lines, "credit_note.created", actor=principal.actor
        )
        log.info(
            "credit_note.created",
            credit_note_id=str(note.id),
            invoice_id=str(invoice.id),
            number=note.number,
            total=note.total,
            amount_reduced=note.amount_reduced,
            amount_credited=note.amount_credited,
            refund_amount=note.refund_amount,
        )
        return note, lines

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        credit_note_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> CreditNote:
        statement = select(CreditNote).where(
            CreditNote.workspace_id == workspace_id, CreditNote.id == credit_note_id
        )
        if for_update:
            statement = statement.with_for_update()
        note = await session.scalar(statement)
        if note is None:
            raise CreditNoteNotFound(
                f"No credit note with id {ids.encode('credit_note', credit_note_id)} "
                "exists in this workspace."
            )
        return note

    async def get_with_lines(
        self, session: AsyncSession, workspace_id: uuid.UUID, credit_note_id: uuid.UUID
    ) -> CreditNoteWithLines:
        note = await self.get(session, workspace_id, credit_note_id)
        lines = await lines_of_credit_notes(session, [note.id])
        return note, lines.get(note.id, [])

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        invoice_id: uuid.UUID | None = None,
        customer_id: uuid.UUID | None = None,
        status: str | None = None,
        reason: str | None = None,
    ) -> tuple[list[CreditNoteWithLines], str | None, bool]:
        statement: Select[CreditNote] = select(CreditNote).where(
            CreditNote.workspace_id == workspace_id
        )
        if invoice_id is not None:
            statement = statement.where(CreditNote.invoice_id == invoice_id)
        if customer_id is not None:
            statement = statement.where(CreditNote.customer_id == customer_id)
        if status is not None:
            statement = statement.where(CreditNote.status == status)
        if reason is not None:
            statement = statement.where(CreditNote.reason == reason)
        rows, next_cursor, has_more = await paginate(
            session, statement, CreditNote.id, limit=limit, cursor=cursor
        )
        lines = await lines_of_credit_notes(session, [row.id for row in rows])
        return (
            [(note, lines.get(note.id, [])) for note in rows],
            next_cursor,
            has_more,
        )

    async def void(
        self,
        session: AsyncSession,
        principal: Principal,
        credit_note_id: uuid.UUID,
        payload: CreditNoteVoid | None,
        *,
        if_match: str | None,
    ) -> CreditNoteWithLines:
        """Void a credit note whose credit is unused, and give the invoice it back.

        Customer credit is fungible, so the credit counts as used when the
        customer's balance in its currency has fallen below the credited amount.
        """
        found = await self.get(session, principal.workspace_id, credit_note_id)
        # The invoice before the note, in the order app.billing.locks sets.
        invoice = await invoice_service.get(
            session, principal.workspace_id, found.invoice_id, for_update=True
        )
        note = await self.get(
            session, principal.workspace_id, credit_note_id, for_update=True
        )
        await session.refresh(note)
        check_if_match(if_match, note.version)
        encoded = ids.encode("credit_note", note.id)
        if note.status == "void":
            raise CreditNoteNotVoidable(
                f"Credit note {encoded} is void already.", current_status=note.status
            )
        if note.refund_status == "succeeded":
            raise CreditNoteNotVoidable(
                f"The refund of credit note {encoded} has been paid out, so the note "
                "can no longer be voided.",
                current_status=note.status,
                refund_status=note.refund_status,
            )
        if note.amount_reduced and invoice.status not in ("open", "uncollectible"):
            raise CreditNoteNotVoidable(
                f"Credit note {encoded} lowered the amount due of invoice "
                f"{ids.encode('invoice', invoice.id)}, which is {invoice.status} now. "
                "Voiding the note would ask for money again on a settled invoice.",
                current_status=note.status,
                invoice_status=invoice.status,
            )
        if note.amount_credited:
            await lock_customer_credit(session, note.workspace_id, note.customer_id)
            balance = await credit_balance(
                session, note.workspace_id, note.customer_id, note.currency
            )
            if balance < note.amount_credited:
                raise CreditNoteNotVoidable(
                    f"Credit note {encoded} added {note.amount_credited} "
                    f"{note.currency} (minor units) of customer credit, but only "
                    f"{max(balance, 0)} is left: the rest has been used.",
                    current_status=note.status,
                    amount_credited=note.amount_credited,
                    available=max(balance, 0),
                )

        if note.amount_credited:
            await customer_credit_service.record(
                session,
                workspace_id=note.workspace_id,
                customer_id=note.customer_id,
                currency=note.currency,
                amount=-note.amount_credited,
                source="credit_note",
                actor=principal.actor,
                credit_note_id=note.id,
                invoice_id=invoice.id,
                description=f"Credit note {note.number} voided",
            )
        note.status = "void"
        note.voided_at = utcnow()
        note.void_reason = payload.reason if payload is not None else None
        if note.refund_status == "pending":
            note.refund_status = "canceled"
        invoice.pre_payment_credit_notes_amount -= note.amount_reduced
        invoice.post_payment_credit_notes_amount -= (
            note.amount_credited + note.refund_amount
        )
        await invoice_service.record_amounts(session, invoice, actor=principal.actor)
        await session.refresh(note)
        lines = (await lines_of_credit_notes(session, [note.id])).get(note.id, [])

        await emit_credit_note(
            session, note, lines, "credit_note.voided", actor=principal.actor
        )
        log.info(
            "credit_note.voided",
            credit_note_id=str(note.id),
            invoice_id=str(invoice.id),
            number=note.number,
        )
        return note, lines

    async def mark_refund_paid(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        credit_note_id: uuid.UUID,
        *,
        actor: str | None,
        if_match: str | None = None,
    ) -> CreditNoteWithLines:
        """Record that a credit note's refund was paid out; a rerun changes nothing.

        Only an issued note with a pending refund can be marked, and from then on it
        can no longer be voided. A void note, whose refund is canceled, or a note
        without a refund raises ``CreditNoteRefundNotPending``.
        """
        note = await self.get(session, workspace_id, credit_note_id, for_update=True)
        await session.refresh(note)
        check_if_match(if_match, note.version)
        lines = (await lines_of_credit_notes(session, [note.id])).get(note.id, [])
        if note.refund_status == "succeeded":
            return note, lines
        if note.refund_status != "pending":
            encoded = ids.encode("credit_note", note.id)
            detail = (
                f"Credit note {encoded} is void, so its refund is canceled and must "
                "not be paid out."
                if note.status == "void"
                else f"Credit note {encoded} refunds nothing (refund_amount 0), so "
                "there is no refund to mark paid."
            )
            raise CreditNoteRefundNotPending(
                detail,
                current_status=note.status,
                refund_status=note.refund_status,
            )

        note.refund_status = "succeeded"
        await session.flush()
        await session.refresh(note)

        await emit_credit_note(session, note, lines, "credit_note.updated", actor=actor)
        log.info("credit_note.refund_paid", credit_note_id=str(note.id))
        return note, lines

    async def _draft(
        self, session: AsyncSession, invoice: Invoice, payload: CreditNoteCreate
    ) -> Draft:
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)
        earlier = await earlier_credits(session, invoice.id)
        return build_draft(invoice, creditable_lines(lines), earlier, payload)

    @staticmethod
    async def _check_refund_payment(
        session: AsyncSession,
        invoice: Invoice,
        payload: CreditNoteCreate,
        draft: Draft,
    ) -> None:
        assert payload.refund_payment_id is not None
        payment_id = payload.refund_payment_id
        encoded = ids.encode("payment", payment_id)
        payment = await PaymentRepository.from_session(session).get(
            invoice.workspace_id, payment_id
        )
        if payment is None:
            raise invalid_credit_note(
                f"No payment with id {encoded} exists in this workspace.",
                "refund_payment_id",
                "not found",
                "not_found",
            )
        if payment.customer_id != invoice.customer_id:
            raise invalid_credit_note(
                f"Payment {encoded} was made by another customer than the invoice's. "
                "Name a payment of this customer.",
                "refund_payment_id",
                "belongs to another customer",
                "mismatch",
            )
        if payment.currency != invoice.currency or payment.status != "succeeded":
            raise invalid_credit_note(
                f"Payment {encoded} is {payment.status} in {payment.currency}; a refund "
                f"needs a succeeded payment in {invoice.currency}.",
                "refund_payment_id",
                "not a succeeded payment in the invoice's currency",
                "mismatch",
            )
        # The refund goes back through the payment that paid this invoice, so it can
        # be at most what the payment still pays of it, less the refunds of earlier
        # notes of this invoice through the same payment.
        allocated = await session.scalar(
            select(PaymentAllocation.amount).where(
                PaymentAllocation.payment_id == payment.id,
                PaymentAllocation.invoice_id == invoice.id,
            )
        )
        if allocated is None:
            raise invalid_credit_note(
                f"Payment {encoded} pays no part of invoice "
                f"{ids.encode('invoice', invoice.id)}, so the refund cannot go back "
                "through it. Name a payment allocated to this invoice, or drop "
                "refund_payment_id.",
                "refund_payment_id",
                "not allocated to this invoice",
                "not_allocated",
            )
        owed = await session.scalar(
            select(func.coalesce(func.sum(CreditNote.refund_amount), 0)).where(
                CreditNote.refund_payment_id == payment.id,
                CreditNote.invoice_id == invoice.id,
                CreditNote.status == "issued",
            )
        )
        left = max(allocated - int(owed or 0), 0)
        if draft.refund_amount > left:
            raise CreditExceedsInvoice(
                f"Payment {encoded} pays {allocated} {payment.currency} (minor units) "
                f"of invoice {ids.encode('invoice', invoice.id)}, and credit notes "
                f"already refund {int(owed or 0)} through it, so {left} is left to "
                f"refund, less than the {draft.refund_amount} requested. Refund at "
                "most that through this payment, or credit the rest to the customer.",
                errors=[
                    FieldError(
                        "refund_amount",
                        f"must be at most {left} through this payment",
                        "too_large",
                    )
                ],
                payment_refundable=left,
            )


credit_note_service = CreditNoteService()
