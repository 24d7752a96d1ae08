"""Emailing an invoice with its PDF attached, once per request, from a background job.

``POST /v1/invoices/{id}/send`` inserts an ``invoice_sends`` row and defers a job. The
job runs in three phases, as nurture steps do:

1. claim: lock the row, count the attempt and take a lease, then commit;
2. deliver: render the PDF and hand the message to the SMTP server, outside any
   transaction;
3. record: lock the row again and store ``sent`` (emitting ``invoice.sent``) or the
   error, unless another worker took the row over meanwhile.

A duplicate job, an arq retry or the sweep finds the row sent, or leased by another
worker, and does nothing. Every attempt sends the same Message-ID.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import pdf
from app.billing.document_schemas import InvoiceSend as InvoiceSendSchema
from app.billing.document_schemas import InvoiceSendCreate
from app.billing.documents import load_invoice_document, render_document
from app.billing.errors import InvoiceNotSendable, InvoiceSendNotFound
from app.billing.profile import billing_profile_service
from app.billing.repository import InvoiceRepository
from app.billing.service import invoice_service
from app.billing.views import invoice_data
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.db import defer_job
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.core.pagination import paginate
from app.customers.service import customer_service
from app.models import Invoice, InvoiceSend
from app.nurture.compose import header_text
from app.nurture.mailer import MESSAGE_POLICY, Mailer, MailError
from app.nurture.runner import LEASE_MARGIN_SECONDS, retry_delay
from app.settings import Settings
from app.workspaces.service import get_workspace

log = structlog.get_logger(__name__)

SEND_JOB = "send_invoice_email"
# An invoice that is open, paid or uncollectible has a number and can be sent. A
# draft may still change, and a void invoice requests no payment.
SENDABLE = frozenset({"open", "paid", "uncollectible"})
MAX_ATTEMPTS = 6
SWEEP_BATCH = 100

Outcome = Literal[
    "sent", "retry", "failed", "missing", "done", "leased", "not_due", "lease_lost"
]
UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]


def send_view(send: InvoiceSend) -> InvoiceSendSchema:
    return InvoiceSendSchema.model_validate(send)


def send_job_id(send_id: uuid.UUID, attempt: int) -> str:
    """Build the job id of one attempt of a send, so a duplicate enqueue is dropped."""
    return f"invoice-send:{send_id.hex}:{attempt}"


def message_id_for(send_id: uuid.UUID, mail_from: str) -> str:
    """Build the send's Message-ID on the domain of the sender address."""
    _, address = parseaddr(mail_from)
    domain = address.rpartition("@")[2] or "localhost"
    return f"<invoice-send.{send_id.hex}@{domain}>"


def _unique(addresses: Sequence[str]) -> list[str]:
    """Drop repeated addresses, compared without case, keeping the first spelling."""
    seen: set[str] = set()
    unique = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique


def _not_sendable(invoice: Invoice) -> InvoiceNotSendable:
    encoded = ids.encode("invoice", invoice.id)
    if invoice.status == "draft":
        hint = (
            f"Finalize it first with POST /v1/invoices/{encoded}/finalize, which "
            "numbers it and sets its due date."
        )
    else:
        hint = "Only open, paid or uncollectible invoices can be sent."
    return InvoiceNotSendable(
        f"Invoice {encoded} is {invoice.status}. {hint}",
        current_status=invoice.status,
    )


@dataclass(frozen=True)
class SendClaim:
    """The leased attempt of a send and the invoice as its PDF prints it."""

    send_id: uuid.UUID
    attempt: int
    lease_until: datetime
    recipients: tuple[str, ...]
    subject: str
    body: str
    message_id: str
    reply_to: str | None
    document: pdf.InvoiceDocument


def default_body(document: pdf.InvoiceDocument) -> str:
    """Write the plain-text body used when the request sends no message."""
    due = f", due on {document.due_date}" if document.due_date else ""
    amount_due = document.totals[-1][1]
    lines = [
        "Hello,",
        "",
        f"please find attached invoice {document.number} for {amount_due} "
        f"{document.currency}{due}.",
    ]
    if document.payment_url:
        lines += ["", f"Pay online: {document.payment_url}"]
    lines += ["", "Kind regards,", document.seller.name]
    return "\n".join(lines) + "\n"


def compose_invoice_email(
    claim: SendClaim, pdf_bytes: bytes, *, mail_from: str, sent_at: datetime
) -> EmailMessage:
    """Build the email with the PDF attached; raise a permanent MailError on a bad address."""
    message = EmailMessage(policy=MESSAGE_POLICY)
    try:
        display_name, from_address = parseaddr(mail_from)
        sender_name = header_text(claim.document.seller.name) or display_name
        message["From"] = Address(display_name=sender_name, addr_spec=from_address)
        if claim.reply_to:
            message["Reply-To"] = claim.reply_to
        message["To"] = [Address(addr_spec=address) for address in claim.recipients]
    except (ValueError, IndexError) as error:
        raise MailError(
            f"An address of this send cannot be written into a header: {error}",
            permanent=True,
        ) from error
    message["Subject"] = header_text(claim.subject)
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = claim.message_id
    message.set_content(
        claim.body, cte=None if claim.body.isascii() else "quoted-printable"
    )
    message.add_attachment(
        pdf_bytes,
        maintype="application",
        subtype="pdf",
        filename=claim.document.filename,
    )
    return message


class InvoiceSendService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        payload: InvoiceSendCreate,
        settings: Settings,
    ) -> InvoiceSend:
        """Record a request to email the invoice and defer the job that sends it."""
        invoice = await invoice_service.get(session, principal.workspace_id, invoice_id)
        if invoice.status not in SENDABLE:
            raise _not_sendable(invoice)
        customer = await customer_service.get(
            session, principal.workspace_id, invoice.customer_id
        )
        recipients = list(payload.to or [])
        if not recipients:
            default = customer.billing_email or customer.email
            if default is None:
                raise InvalidInput(
                    f"Customer {ids.encode('customer', customer.id)} has no "
                    "billing_email or email. Send the recipients in 'to', or set the "
                    "customer's billing_email.",
                    errors=[
                        FieldError("to", "no recipient is known", "missing_recipient")
                    ],
                )
            recipients = [default]
        profile = await billing_profile_service.get(session, principal.workspace_id)
        seller = (profile.legal_name if profile else None) or (
            await get_workspace(session, principal.workspace_id)
        ).name

        send_id = ids.new_uuid()
        now = utcnow()
        send = InvoiceSend(
            id=send_id,
            workspace_id=principal.workspace_id,
            invoice_id=invoice.id,
            recipients=_unique(recipients),
            subject=payload.subject or f"Invoice {invoice.number} from {seller}",
            message=payload.message,
            message_id=message_id_for(send_id, settings.mail_from),
            status="queued",
            attempts=0,
            next_attempt_at=now,
            actor=principal.actor,
        )
        session.add(send)
        await session.flush()
        await session.refresh(send)
        defer_job(session, SEND_JOB, str(send.id), job_id=send_job_id(send.id, 0))
        log.info(
            "invoice_send.queued",
            invoice_id=str(invoice.id),
            invoice_send_id=str(send.id),
            recipient_count=len(send.recipients),
        )
        return send

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        invoice_id: uuid.UUID,
        send_id: uuid.UUID,
    ) -> InvoiceSend:
        """Return one email of the invoice, or raise NotFound when the invoice or the
        email is missing."""
        await invoice_service.get(session, workspace_id, invoice_id)
        send = await session.scalar(
            select(InvoiceSend).where(
                InvoiceSend.workspace_id == workspace_id,
                InvoiceSend.invoice_id == invoice_id,
                InvoiceSend.id == send_id,
            )
        )
        if send is None:
            raise InvoiceSendNotFound(
                f"Invoice {ids.encode('invoice', invoice_id)} has no email "
                f"{ids.encode('invoice_send', send_id)}. List its emails with GET "
                f"/v1/invoices/{ids.encode('invoice', invoice_id)}/sends."
            )
        return send

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        invoice_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[InvoiceSend], str | None, bool]:
        """List an invoice's sends, newest first."""
        await invoice_service.get(session, workspace_id, invoice_id)
        query = select(InvoiceSend).where(
            InvoiceSend.workspace_id == workspace_id,
            InvoiceSend.invoice_id == invoice_id,
        )
        rows, next_cursor, has_more = await paginate(
            session, query, InvoiceSend.id, limit=limit, cursor=cursor
        )
        return list(rows), next_cursor, has_more

    async def run(
        self,
        unit_of_work: UnitOfWork,
        mailer: Mailer,
        settings: Settings,
        send_id: uuid.UUID,
    ) -> Outcome:
        """Make one attempt of a send; safe to call any number of times."""
        async with unit_of_work() as session:
            claim = await self.claim(session, send_id, settings)
        if not isinstance(claim, SendClaim):
            log.info(
                "invoice_send.skipped", invoice_send_id=str(send_id), outcome=claim
            )
            return claim
        error = await self.deliver(claim, mailer, settings)
        async with unit_of_work() as session:
            return await self.record(session, claim, error)

    async def claim(
        self, session: AsyncSession, send_id: uuid.UUID, settings: Settings
    ) -> SendClaim | Outcome:
        """Phase 1: count the attempt and lease the send, or return why not."""
        send = await session.scalar(
            select(InvoiceSend)
            .where(InvoiceSend.id == send_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if send is None:
            return "missing"
        if send.status in ("sent", "failed"):
            return "done"
        now = utcnow()
        if send.next_attempt_at is not None and send.next_attempt_at > now:
            return "leased" if send.status == "sending" else "not_due"
        invoice = await invoice_service.get(
            session, send.workspace_id, send.invoice_id, for_update=True
        )
        if invoice.status not in SENDABLE:
            await self._finish_failed(
                session,
                send,
                invoice,
                f"Invoice {ids.encode('invoice', invoice.id)} became {invoice.status} "
                "before it was sent.",
            )
            return "failed"

        send.status = "sending"
        send.attempts += 1
        send.next_attempt_at = now + timedelta(seconds=settings.step_lease_seconds)
        await session.flush()
        document = await load_invoice_document(
            session, send.workspace_id, send.invoice_id
        )
        profile = await billing_profile_service.get(session, send.workspace_id)
        return SendClaim(
            send_id=send.id,
            attempt=send.attempts,
            lease_until=send.next_attempt_at,
            recipients=tuple(send.recipients),
            subject=send.subject,
            body=send.message or default_body(document),
            message_id=send.message_id,
            reply_to=profile.email if profile else None,
            document=document,
        )

    async def deliver(
        self, claim: SendClaim, mailer: Mailer, settings: Settings
    ) -> MailError | None:
        """Phase 2: render the PDF and send the email within the lease."""
        budget = (claim.lease_until - utcnow()).total_seconds() - LEASE_MARGIN_SECONDS
        try:
            if budget <= 0:
                raise MailError("The lease lapsed before the email could be sent.")
            async with asyncio.timeout(budget):
                pdf_bytes = await render_document(claim.document)
                message = compose_invoice_email(
                    claim, pdf_bytes, mail_from=settings.mail_from, sent_at=utcnow()
                )
                await mailer.send(message)
        except MailError as error:
            return error
        except TimeoutError:
            return MailError(
                f"Sending timed out after {budget:.0f} s, before the lease would lapse."
            )
        except Exception as error:
            # Recorded as a failed attempt, so a fault in rendering or in the mail
            # library is retried and finally fails the send instead of looping.
            log.exception("invoice_send.crashed", invoice_send_id=str(claim.send_id))
            return MailError(f"Sending failed unexpectedly: {error!r}")
        return None

    async def record(
        self, session: AsyncSession, claim: SendClaim, error: MailError | None
    ) -> Outcome:
        """Phase 3: store the outcome of the attempt, and emit on sent or failed."""
        send = await session.scalar(
            select(InvoiceSend)
            .where(InvoiceSend.id == claim.send_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if send is None:
            return "missing"
        if send.status != "sending" or send.attempts != claim.attempt:
            # NOTE: a worker that outlived its lease lost the row to another attempt.
            # When both reached the SMTP server, the recipients got the message twice,
            # with the same Message-ID.
            log.warning(
                "invoice_send.lease_lost",
                invoice_send_id=str(send.id),
                attempt=claim.attempt,
                sent=error is None,
            )
            return "lease_lost"
        invoice = await invoice_service.get(
            session, send.workspace_id, send.invoice_id, for_update=True
        )
        now = utcnow()

        if error is None:
            send.status = "sent"
            send.sent_at = now
            send.error = None
            send.next_attempt_at = None
            await self._emit(session, invoice, "invoice.sent", send)
            log.info(
                "invoice_send.sent",
                invoice_send_id=str(send.id),
                invoice_id=str(invoice.id),
                attempt=claim.attempt,
                message_id=send.message_id,
            )
            return "sent"
        if error.permanent or claim.attempt >= MAX_ATTEMPTS:
            await self._finish_failed(session, send, invoice, error.message)
            return "failed"
        send.status = "queued"
        send.error = error.message
        send.next_attempt_at = now + retry_delay(claim.attempt)
        await session.flush()
        defer_job(
            session,
            SEND_JOB,
            str(send.id),
            job_id=send_job_id(send.id, claim.attempt),
            _defer_until=send.next_attempt_at,
        )
        log.warning(
            "invoice_send.retry",
            invoice_send_id=str(send.id),
            attempt=claim.attempt,
            error=error.message,
            next_attempt_at=send.next_attempt_at.isoformat(),
        )
        return "retry"

    async def sweep(self, session: AsyncSession, *, batch: int = SWEEP_BATCH) -> int:
        """Defer a job for each due send whose job was lost or whose lease lapsed.

        NOTE: a worker that crashed after the SMTP server accepted the email, but
        before phase 3 committed, leaves the send ``sending``. Once its lease lapses,
        the next attempt sends the email again, with the same Message-ID.
        """
        rows = await session.execute(
            select(InvoiceSend.id, InvoiceSend.attempts)
            .where(
                InvoiceSend.status.in_(("queued", "sending")),
                InvoiceSend.next_attempt_at <= utcnow(),
            )
            .order_by(InvoiceSend.next_attempt_at)
            .limit(batch)
        )
        count = 0
        for send_id, attempts in rows:
            defer_job(
                session, SEND_JOB, str(send_id), job_id=send_job_id(send_id, attempts)
            )
            count += 1
        if count:
            log.info("invoice_send.swept", count=count)
        return count

    async def _finish_failed(
        self, session: AsyncSession, send: InvoiceSend, invoice: Invoice, error: str
    ) -> None:
        send.status = "failed"
        send.error = error
        send.next_attempt_at = None
        await self._emit(session, invoice, "invoice.send_failed", send)
        log.warning(
            "invoice_send.failed",
            invoice_send_id=str(send.id),
            invoice_id=str(invoice.id),
            attempts=send.attempts,
            error=error,
        )

    async def _emit(
        self, session: AsyncSession, invoice: Invoice, type: str, send: InvoiceSend
    ) -> None:
        await session.flush()
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)
        await emit(
            session,
            workspace_id=invoice.workspace_id,
            type=type,
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=send.actor,
        )


invoice_send_service = InvoiceSendService()
