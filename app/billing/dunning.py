"""Sending each dunning reminder of an invoice once, on its policy's schedule.

A step of a policy is due at ``send_hour`` on the day ``offset_days`` from the due
date, in the invoice's time zone. Each sweep runs in three phases, like the email
steps of nurture sequences:

1. Plan, in one transaction: lock the open invoices with a due step and no
   ``dunning_reminders`` row for it (SKIP LOCKED, so workers share the work), and
   insert the row of the step as ``sending`` with a lease. The unique key on
   ``(invoice_id, step)`` lets each step of an invoice be claimed only once.
2. Send each claimed message, holding no transaction, cut off before the lease ends.
3. Record, per message: mark the row ``sent`` (opening the step's task, if any) or
   schedule a retry, but only if the row still carries this attempt's number.

Rules of the schedule:

- When several steps are due at once (the invoice was finalized late, a policy was
  assigned late, the worker was down), only the latest is sent and the earlier ones
  are recorded as skipped, ``superseded``, so a customer never gets a burst of mail.
- While a promise to pay is pending, a dispute on a payment of the invoice is open,
  or, if the policy names a renewal pipeline, the customer has an open opportunity
  in it, due steps are recorded as skipped with that reason and are never sent late.
  The schedule resumes with the next step due after the pause ends.
- The final action (mark uncollectible, open a task) is not skipped by a pause: it
  waits, and runs once the pause ends.
- Reminders go only to open invoices: a paid, void or uncollectible (also written
  off) invoice gets none, and a step claimed before that change is skipped.

NOTE: a worker that dies after the mail server accepted a reminder but before phase 3
commits leaves a ``sending`` row; once its lease lapses the reminder is sent again
with the same Message-ID. Marking it sent before sending would lose it instead.
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
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.service import activity_service
from app.billing.amounts import invoice_amounts
from app.billing.debt import debt_service
from app.billing.documents import load_invoice_document, render_document
from app.billing.dunning_policies import dunning_policy_service
from app.billing.dunning_schemas import DunningReminder as DunningReminderSchema
from app.billing.overdue import days_overdue, local_instant
from app.core import ids, money
from app.core.clock import utcnow
from app.core.events import emit
from app.models import Customer, DunningPolicy, DunningReminder, Invoice, User
from app.nurture import templates
from app.nurture.compose import header_text
from app.nurture.executors import task_due_at
from app.nurture.mailer import MESSAGE_POLICY, Mailer, MailError
from app.nurture.runner import retry_delay
from app.settings import Settings

log = structlog.get_logger(__name__)

UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]

FINAL_STEP = "final"
MAX_ATTEMPTS = 5
# Invoices planned per sweep; the next sweep takes the rest.
PLAN_BATCH = 100
# How long a paused final action waits before the pause is checked again.
PAUSE_RECHECK = timedelta(hours=1)
# The send must end this long before the lease lapses.
LEASE_MARGIN_SECONDS = 5.0


def step_key(offset_days: int) -> str:
    """Name a step by its offset: ``"-3"``, ``"0"``, ``"+7"``."""
    return f"+{offset_days}" if offset_days > 0 else str(offset_days)


def step_time(invoice: Invoice, policy: DunningPolicy, offset_days: int) -> datetime:
    """Return when the step ``offset_days`` of ``policy`` is due for ``invoice``."""
    assert invoice.due_date is not None
    day = invoice.due_date + timedelta(days=offset_days)
    return local_instant(day, invoice.timezone, policy.send_hour)


def final_time(invoice: Invoice, policy: DunningPolicy) -> datetime | None:
    """Return when the final action is due, or None when the policy has none."""
    if not (policy.mark_uncollectible or policy.final_task) or not policy.steps:
        return None
    last = max(int(step["offset_days"]) for step in policy.steps)
    return step_time(invoice, policy, last + policy.final_action_delay_days)


def display_amount(amount: int, currency: str) -> str:
    """Write minor units as a grouped decimal with the currency: ``1,234.50 EUR``."""
    value = money.from_minor(amount, currency)
    return f"{value:,.{money.exponent(currency)}f} {currency}"


def payment_link(invoice: Invoice) -> str | None:
    """Return the invoice's payment page, once POST .../payment-link created one."""
    return invoice.payment_link_url


def reminder_values(
    invoice: Invoice, customer: Customer, now: datetime
) -> dict[str, str | None]:
    """Map each merge field of a reminder to its value for ``invoice``."""
    remaining = invoice_amounts(invoice).amount_remaining
    return {
        "customer_name": customer.name,
        "invoice_number": invoice.number,
        "amount_due": display_amount(invoice.total, invoice.currency),
        "amount_remaining": display_amount(remaining, invoice.currency),
        "currency": invoice.currency,
        "due_date": invoice.due_date.isoformat() if invoice.due_date else None,
        "days_overdue": str(days_overdue(invoice, now)),
        "payment_link": payment_link(invoice),
    }


def reminder_data(reminder: DunningReminder) -> dict[str, Any]:
    """Serialize a reminder as the API shows it, for events."""
    return DunningReminderSchema.model_validate(reminder).model_dump(mode="json")


def compose_reminder(
    *,
    invoice: Invoice,
    customer: Customer,
    step: dict[str, Any],
    recipient: str,
    mail_from: str,
    reply_to: str | None,
    message_id: str,
    now: datetime,
    attachment: tuple[str, bytes] | None = None,
) -> EmailMessage:
    """Build the email of one reminder; every reminder is built here.

    ``attachment`` is the invoice PDF as a file name and its bytes.

    Raises a permanent ``MailError`` when the address cannot be written in a header.
    """
    values = reminder_values(invoice, customer, now)
    message = EmailMessage(policy=MESSAGE_POLICY)
    try:
        message["From"] = mail_from
        if reply_to:
            message["Reply-To"] = reply_to
        message["To"] = Address(
            display_name=header_text(customer.name), addr_spec=recipient
        )
    except (ValueError, IndexError) as error:
        raise MailError(
            f"The address {recipient!r} cannot be used as a recipient: {error}",
            permanent=True,
        ) from error
    message["Subject"] = header_text(templates.render(str(step["subject"]), values))
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    body = templates.render(str(step["body"]), values)
    message.set_content(body, cte=None if body.isascii() else "quoted-printable")
    if attachment is not None:
        filename, content = attachment
        message.add_attachment(
            content, maintype="application", subtype="pdf", filename=filename
        )
    return message


def message_id_for(reminder_id: uuid.UUID, mail_from: str) -> str:
    _, address = parseaddr(mail_from)
    domain = address.rpartition("@")[2] or "localhost"
    return f"<dunning-reminder.{reminder_id.hex}@{domain}>"


@dataclass(frozen=True)
class Claim:
    """A reminder this worker holds the lease on, with its composed message."""

    reminder_id: uuid.UUID
    invoice_id: uuid.UUID
    attempt: int
    claimed_until: datetime
    message: EmailMessage
    create_task: bool
    task_title: str | None


# Open invoices with a step or a final action that is due and not yet taken. The
# policy is the invoice's, else its customer's, else the workspace default.
_DUE_INVOICES = text(
    """
    WITH effective AS (
        SELECT i.id AS invoice_id,
               coalesce(i.dunning_policy_id, c.dunning_policy_id, d.id) AS policy_id
        FROM invoices i
        JOIN customers c ON c.id = i.customer_id
        LEFT JOIN dunning_policies d
               ON d.workspace_id = i.workspace_id AND d.is_default
        WHERE i.status = 'open' AND i.due_date IS NOT NULL
    )
    SELECT i.id
    FROM invoices i
    JOIN effective e ON e.invoice_id = i.id
    JOIN dunning_policies p ON p.id = e.policy_id
    WHERE EXISTS (
        SELECT 1
        FROM jsonb_array_elements(p.steps) AS s(step)
        CROSS JOIN LATERAL (SELECT (s.step->>'offset_days')::int AS days) o
        WHERE timezone(
                  coalesce(i.timezone, 'UTC'),
                  (i.due_date + o.days)::timestamp
                  + make_interval(hours => p.send_hour)
              ) <= :now
          AND NOT EXISTS (
              SELECT 1 FROM dunning_reminders r
              WHERE r.invoice_id = i.id
                AND r.step = CASE WHEN o.days > 0 THEN '+' || o.days::text
                                  ELSE o.days::text END
          )
    ) OR (
        (p.mark_uncollectible OR p.final_task)
        AND timezone(
                coalesce(i.timezone, 'UTC'),
                (i.due_date + p.final_action_delay_days + (
                    SELECT max((s.step->>'offset_days')::int)
                    FROM jsonb_array_elements(p.steps) AS s(step)
                ))::timestamp + make_interval(hours => p.send_hour)
            ) <= :now
        AND NOT EXISTS (
            SELECT 1 FROM dunning_reminders r
            WHERE r.invoice_id = i.id AND r.step = 'final'
              AND (r.status = 'done' OR r.claimed_until > :now)
        )
    )
    ORDER BY i.due_date, i.id
    LIMIT :batch
    FOR UPDATE OF i SKIP LOCKED
    """
)


class DunningRunner:
    async def run(
        self,
        unit_of_work: UnitOfWork,
        mailer: Mailer,
        settings: Settings,
        *,
        now: datetime | None = None,
    ) -> int:
        """Run one sweep: settle promises, plan due steps, send, record; count sends."""
        now = now or utcnow()
        async with unit_of_work() as session:
            await debt_service.resolve_promises(session, batch=PLAN_BATCH, now=now)
        async with unit_of_work() as session:
            claims = await self.take_over(session, settings, now=now)
            claims += await self.plan(session, settings, now=now)
        sent = 0
        for claim in claims:
            error = await self.send(mailer, claim)
            async with unit_of_work() as session:
                outcome = await self.record(session, claim, error)
            sent += outcome == "sent"
        return sent

    async def plan(
        self, session: AsyncSession, settings: Settings, *, now: datetime
    ) -> list[Claim]:
        """Lock invoices with due steps; skip, claim or act on each step."""
        invoice_ids = (
            await session.scalars(_DUE_INVOICES, {"now": now, "batch": PLAN_BATCH})
        ).all()
        claims: list[Claim] = []
        for invoice_id in invoice_ids:
            invoice = await session.get(Invoice, invoice_id, populate_existing=True)
            assert invoice is not None
            claim = await self._plan_invoice(session, settings, invoice, now)
            if claim is not None:
                claims.append(claim)
        return claims

    async def _plan_invoice(
        self,
        session: AsyncSession,
        settings: Settings,
        invoice: Invoice,
        now: datetime,
    ) -> Claim | None:
        policy, _ = await dunning_policy_service.effective(session, invoice)
        if policy is None:
            return None
        rows = {row.step: row for row in await reminders_of(session, invoice.id)}
        steps = sorted(policy.steps, key=lambda step: int(step["offset_days"]))
        due = [
            step
            for step in steps
            if step_key(int(step["offset_days"])) not in rows
            and step_time(invoice, policy, int(step["offset_days"])) <= now
        ]
        reasons = await debt_service.pause_reasons(session, invoice, policy)

        claim = None
        if due:
            latest = due[-1]
            for step in due if reasons else due[:-1]:
                await self._skip(
                    session,
                    invoice,
                    policy,
                    step,
                    reasons[0] if reasons else "superseded",
                )
            if not reasons:
                claim = await self._claim_new(
                    session, settings, invoice, policy, latest, now
                )
        moment = final_time(invoice, policy)
        final = rows.get(FINAL_STEP)
        if moment is None or moment > now or (final and final.status == "done"):
            return claim
        unfinished = claim is not None or any(
            row.status in ("sending", "retrying") for row in rows.values()
        )
        if unfinished:
            return claim
        if final is None:
            final = DunningReminder(
                id=ids.new_uuid(),
                workspace_id=invoice.workspace_id,
                invoice_id=invoice.id,
                policy_id=policy.id,
                step=FINAL_STEP,
                status="waiting",
                scheduled_at=moment,
                attempts=0,
            )
            session.add(final)
        if reasons:
            final.status = "waiting"
            final.claimed_until = now + PAUSE_RECHECK
            await session.flush()
            return claim
        await self._final_action(session, invoice, policy, final, now)
        return claim

    async def _final_action(
        self,
        session: AsyncSession,
        invoice: Invoice,
        policy: DunningPolicy,
        final: DunningReminder,
        now: datetime,
    ) -> None:
        actor = f"dunning_policy:{ids.encode('dunning_policy', policy.id)}"
        if policy.mark_uncollectible:
            await debt_service.mark_uncollectible_locked(
                session, invoice, "Dunning ended without payment.", actor
            )
        if policy.final_task:
            customer = await session.get(Customer, invoice.customer_id)
            assert customer is not None
            activity = await activity_service.create_worker_task(
                session,
                workspace_id=invoice.workspace_id,
                owner_id=customer.owner_id,
                subject=f"Dunning ended for invoice {invoice.number}"[:300],
                body=(
                    f"{display_amount(invoice_amounts(invoice).amount_remaining, invoice.currency)}"
                    " is still unpaid after the last reminder. Decide whether to "
                    "write it off."
                ),
                due_at=task_due_at(now, 1, customer.timezone),
                actor=actor,
                customer_id=customer.id,
            )
            final.activity_id = activity.id
        final.status = "done"
        final.claimed_until = None
        final.sent_at = now
        await session.flush()
        log.info(
            "dunning.final_action_done",
            invoice_id=str(invoice.id),
            dunning_policy_id=str(policy.id),
            marked_uncollectible=policy.mark_uncollectible,
            task_id=str(final.activity_id) if final.activity_id else None,
        )

    async def _skip(
        self,
        session: AsyncSession,
        invoice: Invoice,
        policy: DunningPolicy,
        step: dict[str, Any],
        reason: str,
    ) -> None:
        offset = int(step["offset_days"])
        row = DunningReminder(
            id=ids.new_uuid(),
            workspace_id=invoice.workspace_id,
            invoice_id=invoice.id,
            policy_id=policy.id,
            step=step_key(offset),
            offset_days=offset,
            status="skipped",
            skip_reason=reason,
            scheduled_at=step_time(invoice, policy, offset),
            attempts=0,
        )
        session.add(row)
        await session.flush()
        await session.refresh(row)
        await _emit(session, row, "dunning_reminder.skipped")
        log.info(
            "dunning_reminder.skipped",
            invoice_id=str(invoice.id),
            step=row.step,
            reason=reason,
        )

    async def _claim_new(
        self,
        session: AsyncSession,
        settings: Settings,
        invoice: Invoice,
        policy: DunningPolicy,
        step: dict[str, Any],
        now: datetime,
    ) -> Claim | None:
        offset = int(step["offset_days"])
        row = DunningReminder(
            id=ids.new_uuid(),
            workspace_id=invoice.workspace_id,
            invoice_id=invoice.id,
            policy_id=policy.id,
            step=step_key(offset),
            offset_days=offset,
            status="sending",
            scheduled_at=step_time(invoice, policy, offset),
            attempts=1,
            claimed_until=now + timedelta(seconds=settings.claim_lease_seconds),
        )
        row.message_id = message_id_for(row.id, settings.mail_from)
        session.add(row)
        await session.flush()
        return await self._compose_claim(session, settings, invoice, row, step, now)

    async def take_over(
        self, session: AsyncSession, settings: Settings, *, now: datetime
    ) -> list[Claim]:
        """Claim again reminders whose lease lapsed or whose retry time came."""
        rows = (
            await session.scalars(
                select(DunningReminder)
                .where(
                    DunningReminder.status.in_(("sending", "retrying")),
                    DunningReminder.claimed_until <= now,
                )
                .order_by(DunningReminder.claimed_until)
                .limit(PLAN_BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
        claims = []
        for row in rows:
            invoice = await session.scalar(
                select(Invoice)
                .where(Invoice.id == row.invoice_id)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            )
            if invoice is None:
                continue
            policy, _ = await dunning_policy_service.effective(session, invoice)
            step = next(
                (
                    step
                    for step in (policy.steps if policy else [])
                    if int(step["offset_days"]) == row.offset_days
                ),
                None,
            )
            reasons = (
                await debt_service.pause_reasons(session, invoice, policy)
                if policy is not None
                else []
            )
            reason = (
                "invoice_closed"
                if invoice.status != "open"
                else "superseded"
                if step is None
                else reasons[0]
                if reasons
                else None
            )
            if reason is not None:
                row.status = "skipped"
                row.skip_reason = reason
                row.claimed_until = None
                await session.flush()
                await session.refresh(row)
                await _emit(session, row, "dunning_reminder.skipped")
                continue
            assert step is not None
            row.status = "sending"
            row.attempts += 1
            row.claimed_until = now + timedelta(seconds=settings.claim_lease_seconds)
            await session.flush()
            log.info(
                "dunning_reminder.taken_over",
                dunning_reminder_id=str(row.id),
                attempt=row.attempts,
            )
            claim = await self._compose_claim(
                session, settings, invoice, row, step, now
            )
            if claim is not None:
                claims.append(claim)
        return claims

    async def _compose_claim(
        self,
        session: AsyncSession,
        settings: Settings,
        invoice: Invoice,
        row: DunningReminder,
        step: dict[str, Any],
        now: datetime,
    ) -> Claim | None:
        customer = await session.get(Customer, invoice.customer_id)
        assert customer is not None and row.message_id is not None
        recipient = customer.billing_email or customer.email
        owner = (
            await session.get(User, customer.owner_id) if customer.owner_id else None
        )
        try:
            if recipient is None:
                raise MailError(
                    f"Customer {ids.encode('customer', customer.id)} has no "
                    "billing_email or email. Set one to receive reminders.",
                    permanent=True,
                )
            document = await load_invoice_document(
                session, invoice.workspace_id, invoice.id
            )
            message = compose_reminder(
                invoice=invoice,
                customer=customer,
                step=step,
                recipient=recipient,
                mail_from=settings.mail_from,
                reply_to=owner.email if owner is not None else None,
                message_id=row.message_id,
                now=now,
                attachment=(document.filename, await render_document(document)),
            )
        except MailError as error:
            await self._fail(session, row, error.message)
            return None
        row.recipient = recipient
        row.subject = str(message["Subject"])[:1000]
        await session.flush()
        assert row.claimed_until is not None
        return Claim(
            reminder_id=row.id,
            invoice_id=invoice.id,
            attempt=row.attempts,
            claimed_until=row.claimed_until,
            message=message,
            create_task=bool(step.get("create_task")),
            task_title=step.get("task_title"),
        )

    async def send(self, mailer: Mailer, claim: Claim) -> MailError | None:
        """Hand one reminder to the mailer; return the error, or None once accepted."""
        budget = (claim.claimed_until - utcnow()).total_seconds() - LEASE_MARGIN_SECONDS
        if budget <= 0:
            return MailError("The lease ended before the reminder could be sent.")
        try:
            await asyncio.wait_for(mailer.send(claim.message), timeout=budget)
        except MailError as error:
            log.warning(
                "dunning_reminder.send_failed",
                dunning_reminder_id=str(claim.reminder_id),
                error=error.message,
                permanent=error.permanent,
            )
            return error
        except TimeoutError:
            return MailError("Sending the reminder timed out before the lease ended.")
        return None

    async def record(
        self, session: AsyncSession, claim: Claim, error: MailError | None
    ) -> str:
        """Store the outcome of a send, unless another attempt took the row over."""
        row = await session.scalar(
            select(DunningReminder)
            .where(
                DunningReminder.id == claim.reminder_id,
                DunningReminder.status == "sending",
                DunningReminder.attempts == claim.attempt,
            )
            .with_for_update()
        )
        if row is None:
            log.warning(
                "dunning_reminder.lease_lost",
                dunning_reminder_id=str(claim.reminder_id),
            )
            return "lease_lost"
        now = utcnow()
        if error is not None:
            if error.permanent or row.attempts >= MAX_ATTEMPTS:
                await self._fail(session, row, error.message)
                return "failed"
            row.status = "retrying"
            row.error = error.message
            row.claimed_until = now + retry_delay(row.attempts)
            await session.flush()
            return "retry_scheduled"

        row.status = "sent"
        row.sent_at = now
        row.claimed_until = None
        row.error = None
        if claim.create_task:
            row.activity_id = await self._open_task(session, claim, now)
        await session.flush()
        await session.refresh(row)
        await _emit(session, row, "dunning_reminder.sent")
        log.info(
            "dunning_reminder.sent",
            dunning_reminder_id=str(row.id),
            invoice_id=str(row.invoice_id),
            step=row.step,
        )
        return "sent"

    async def _open_task(
        self, session: AsyncSession, claim: Claim, now: datetime
    ) -> uuid.UUID:
        invoice = await session.get(Invoice, claim.invoice_id)
        assert invoice is not None
        customer = await session.get(Customer, invoice.customer_id)
        assert customer is not None
        activity = await activity_service.create_worker_task(
            session,
            workspace_id=invoice.workspace_id,
            owner_id=customer.owner_id,
            subject=(
                claim.task_title or f"Follow up on unpaid invoice {invoice.number}"
            )[:300],
            body=f"A payment reminder for invoice {invoice.number} was sent.",
            due_at=task_due_at(now, 1, customer.timezone),
            actor=f"dunning_reminder:{ids.encode('dunning_reminder', claim.reminder_id)}",
            customer_id=customer.id,
        )
        return activity.id

    @staticmethod
    async def _fail(session: AsyncSession, row: DunningReminder, error: str) -> None:
        row.status = "failed"
        row.error = error
        row.claimed_until = None
        await session.flush()
        await session.refresh(row)
        await _emit(session, row, "dunning_reminder.failed")
        log.warning(
            "dunning_reminder.failed", dunning_reminder_id=str(row.id), error=error
        )


async def reminders_of(
    session: AsyncSession, invoice_id: uuid.UUID
) -> Sequence[DunningReminder]:
    rows = await session.scalars(
        select(DunningReminder)
        .where(DunningReminder.invoice_id == invoice_id)
        .order_by(DunningReminder.scheduled_at, DunningReminder.id)
    )
    return rows.all()


async def _emit(session: AsyncSession, row: DunningReminder, type: str) -> None:
    await emit(
        session,
        workspace_id=row.workspace_id,
        type=type,
        object_type="dunning_reminder",
        object_id=row.id,
        data=reminder_data(row),
    )


dunning_runner = DunningRunner()
