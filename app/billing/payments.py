"""Payments and their allocation to invoices.

A payment is allocated to an invoice while the invoice row is locked, and the unique
keys on ``(payment_id, invoice_id)`` and ``(provider, provider_payment_id)`` make sure
that neither a retried request nor a replayed provider event counts money twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import states
from app.billing.amounts import invoice_amounts
from app.billing.errors import InvoiceNotPayable, PaymentMismatch, PaymentNotFound
from app.billing.repository import PaymentRepository
from app.billing.schemas import PaymentCreate
from app.billing.service import invoice_service
from app.billing.views import payment_data
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.customers.service import customer_service
from app.models import Invoice, Payment, PaymentAllocation

log = structlog.get_logger(__name__)

PaymentWithAllocations = tuple[Payment, list[PaymentAllocation]]

# How far in the future received_at may lie, for clocks that run a little fast.
MAX_CLOCK_SKEW = timedelta(minutes=5)

# Order of provider payment statuses at the same provider timestamp: a later rank
# wins a tie, and "succeeded" is final whatever arrives after it.
_RANK = {"pending": 0, "failed": 1, "succeeded": 2}


@dataclass
class ProviderPaymentOutcome:
    """Result of recording one provider update of a payment."""

    payment: Payment
    changed: bool
    # Why the update was not applied: "duplicate" or "stale"; None when it was.
    skipped: str | None = None
    # Mismatches that a person should review, such as another amount than expected.
    problems: list[str] = field(default_factory=list)


class PaymentService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: PaymentCreate
    ) -> PaymentWithAllocations:
        """Record money received outside a provider, allocated to an invoice if named."""
        customer = await customer_service.get(
            session, principal.workspace_id, payload.customer_id
        )
        now = utcnow()
        received_at = payload.received_at or now
        if received_at > now + MAX_CLOCK_SKEW:
            raise InvalidInput(
                "received_at lies in the future. Send the time the money arrived.",
                errors=[FieldError("received_at", "is in the future", "in_future")],
            )
        invoice = None
        if payload.invoice_id is not None:
            invoice = await invoice_service.get(
                session, principal.workspace_id, payload.invoice_id, for_update=True
            )
            self._check_allocatable(invoice, customer.id, payload.currency)

        payment = Payment(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            customer_id=customer.id,
            amount=payload.amount,
            currency=payload.currency,
            method=payload.method,
            status="succeeded",
            received_at=received_at,
            reference=payload.reference,
        )
        session.add(payment)
        await session.flush()
        allocations = []
        if invoice is not None:
            allocations.append(
                await self._allocate(session, payment, invoice, actor=principal.actor)
            )
        await session.refresh(payment)

        await emit(
            session,
            workspace_id=payment.workspace_id,
            type="payment.succeeded",
            object_type="payment",
            object_id=payment.id,
            data=payment_data(payment, allocations),
            actor=principal.actor,
        )
        log.info(
            "payment.recorded",
            payment_id=str(payment.id),
            customer_id=str(customer.id),
            invoice_id=str(invoice.id) if invoice is not None else None,
            amount=payment.amount,
            currency=payment.currency,
        )
        return payment, allocations

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, payment_id: uuid.UUID
    ) -> PaymentWithAllocations:
        repository = PaymentRepository.from_session(session)
        payment = await repository.get(workspace_id, payment_id)
        if payment is None:
            raise PaymentNotFound(
                f"No payment with id {ids.encode('payment', payment_id)} exists in "
                "this workspace."
            )
        allocations = await repository.allocations_of([payment.id])
        return payment, allocations.get(payment.id, [])

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        customer_id: uuid.UUID | None = None,
        invoice_id: uuid.UUID | None = None,
    ) -> tuple[list[PaymentWithAllocations], str | None, bool]:
        repository = PaymentRepository.from_session(session)
        rows, next_cursor, has_more = await repository.list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            customer_id=customer_id,
            invoice_id=invoice_id,
        )
        allocations = await repository.allocations_of([row.id for row in rows])
        return (
            [(payment, allocations.get(payment.id, [])) for payment in rows],
            next_cursor,
            has_more,
        )

    async def record_provider_payment(
        self,
        session: AsyncSession,
        *,
        invoice: Invoice,
        provider: str,
        provider_payment_id: str,
        status: str,
        amount: int,
        currency: str,
        method: str,
        occurred_at: datetime,
        actor: str,
    ) -> ProviderPaymentOutcome:
        """Apply one provider update of a payment for ``invoice``, locked by the caller.

        The first update inserts the payment. Later ones apply only when they are
        newer than the last applied one, and nothing moves a payment out of
        "succeeded", so replays and late, older events change nothing.
        """
        if status not in _RANK:
            raise ValueError(f"unknown provider payment status {status!r}")
        repository = PaymentRepository.from_session(session)
        inserted_id = await repository.insert_provider_payment(
            {
                "id": ids.new_uuid(),
                "workspace_id": invoice.workspace_id,
                "customer_id": invoice.customer_id,
                "amount": amount,
                "currency": currency,
                "method": method,
                "provider": provider,
                "provider_payment_id": provider_payment_id,
                "status": status,
                "received_at": occurred_at,
                "provider_updated_at": occurred_at,
            }
        )
        payment = await repository.get_by_provider(
            provider, provider_payment_id, for_update=True
        )
        assert payment is not None
        if inserted_id is None:
            skipped = self._skip_reason(payment, status, occurred_at)
            if skipped is not None:
                log.info(
                    "payment.provider_update_skipped",
                    payment_id=str(payment.id),
                    provider_payment_id=provider_payment_id,
                    reason=skipped,
                    current_status=payment.status,
                    update_status=status,
                )
                return ProviderPaymentOutcome(payment, changed=False, skipped=skipped)
            payment.status = status
            payment.amount = amount
            payment.currency = currency
            payment.provider_updated_at = occurred_at
            if status == "succeeded":
                payment.received_at = occurred_at
            await session.flush()

        problems: Sequence[str] = ()
        allocations: list[PaymentAllocation] = []
        if status == "succeeded":
            problems = self._provider_problems(invoice, amount, currency)
            if invoice.status in states.PAYABLE and currency == invoice.currency:
                allocations.append(
                    await self._allocate(session, payment, invoice, actor=actor)
                )
        await session.refresh(payment)

        await emit(
            session,
            workspace_id=payment.workspace_id,
            type=f"payment.{status}",
            object_type="payment",
            object_id=payment.id,
            data=payment_data(payment, allocations),
            actor=actor,
        )
        log.info(
            "payment.provider_update_applied",
            payment_id=str(payment.id),
            provider=provider,
            provider_payment_id=provider_payment_id,
            status=status,
            invoice_id=str(invoice.id),
            problems=problems,
        )
        return ProviderPaymentOutcome(payment, changed=True, problems=list(problems))

    @staticmethod
    def _skip_reason(
        payment: Payment, status: str, occurred_at: datetime
    ) -> str | None:
        if payment.status == "succeeded":
            return "duplicate" if status == "succeeded" else "stale"
        last = payment.provider_updated_at
        if last is not None and occurred_at < last:
            return "stale"
        if status == payment.status:
            return "duplicate"
        if (
            last is not None
            and occurred_at == last
            and _RANK[status] < _RANK[payment.status]
        ):
            return "stale"
        return None

    @staticmethod
    def _provider_problems(
        invoice: Invoice, amount: int, currency: str
    ) -> Sequence[str]:
        encoded = ids.encode("invoice", invoice.id)
        if invoice.status not in states.PAYABLE:
            return [
                f"invoice {encoded} is {invoice.status}, so the payment was recorded "
                "but not allocated"
            ]
        if currency != invoice.currency:
            return [
                f"currency mismatch: invoice {encoded} is in {invoice.currency} but the "
                f"payment is in {currency}, so the payment was recorded but not "
                "allocated"
            ]
        remaining = invoice_amounts(invoice).amount_remaining
        if amount != remaining:
            return [
                f"amount mismatch: invoice {encoded} expected {remaining} {currency} "
                f"(minor units) but {amount} arrived; the amount that arrived was "
                "allocated"
            ]
        return []

    @staticmethod
    def _check_allocatable(
        invoice: Invoice, customer_id: uuid.UUID, currency: str
    ) -> None:
        encoded = ids.encode("invoice", invoice.id)
        if invoice.status not in states.PAYABLE:
            raise InvoiceNotPayable(
                f"Invoice {encoded} is {invoice.status}; payments can be allocated "
                "only to open, uncollectible or paid invoices.",
                current_status=invoice.status,
            )
        if invoice.customer_id != customer_id:
            raise PaymentMismatch(
                f"Invoice {encoded} belongs to customer "
                f"{ids.encode('customer', invoice.customer_id)}, not to "
                f"{ids.encode('customer', customer_id)}. Record the payment for the "
                "invoice's customer.",
                errors=[
                    FieldError("invoice_id", "belongs to another customer", "mismatch")
                ],
            )
        if invoice.currency != currency:
            raise PaymentMismatch(
                f"Invoice {encoded} is in {invoice.currency}, the payment in "
                f"{currency}. Record the payment in the invoice's currency.",
                errors=[
                    FieldError(
                        "currency",
                        f"must be {invoice.currency}, the invoice's currency",
                        "mismatch",
                    )
                ],
            )

    @staticmethod
    async def _allocate(
        session: AsyncSession, payment: Payment, invoice: Invoice, *, actor: str | None
    ) -> PaymentAllocation:
        allocation = PaymentAllocation(
            id=ids.new_uuid(),
            workspace_id=payment.workspace_id,
            payment_id=payment.id,
            invoice_id=invoice.id,
            amount=payment.amount,
            created_at=utcnow(),
        )
        session.add(allocation)
        await session.flush()
        await invoice_service.apply_payment(
            session, invoice, payment.amount, actor=actor
        )
        return allocation


payment_service = PaymentService()
