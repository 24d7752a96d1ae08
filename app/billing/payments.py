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

from app.billing import allocations as allocation_rules
from app.billing import states
from app.billing.allocations import AllocationRequest
from app.billing.amounts import invoice_amounts
from app.billing.errors import PaymentNotFound
from app.billing.locks import lock_payment
from app.billing.repository import PaymentRepository
from app.billing.schemas import AllocationInput, PaymentCreate
from app.billing.service import invoice_service
from app.billing.views import payment_data
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.db import refresh_expired
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
            allocation_rules.check_allocatable(invoice, customer.id, payload.currency)

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
        elif payload.allocations is not None:
            allocations = await allocation_rules.allocate(
                session,
                payment,
                _requests(payload.allocations),
                actor=principal.actor,
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

    async def add_allocations(
        self,
        session: AsyncSession,
        principal: Principal,
        payment_id: uuid.UUID,
        items: Sequence[AllocationInput],
    ) -> PaymentWithAllocations:
        """Allocate parts of a payment's unallocated amount to invoices."""
        payment = await self.get_for_update(session, principal.workspace_id, payment_id)

        allocations = await allocation_rules.allocate(
            session, payment, _requests(items), actor=principal.actor
        )

        await self.emit_updated(session, payment, allocations, actor=principal.actor)
        return payment, allocations

    async def remove_allocation(
        self,
        session: AsyncSession,
        principal: Principal,
        payment_id: uuid.UUID,
        invoice_id: uuid.UUID,
    ) -> PaymentWithAllocations:
        """Take a payment's allocation off an invoice; the amount becomes unallocated."""
        payment = await self.get_for_update(session, principal.workspace_id, payment_id)

        await allocation_rules.remove_allocation(
            session, payment, invoice_id, actor=principal.actor
        )
        allocations = await allocation_rules.load_allocations(session, payment.id)

        await self.emit_updated(session, payment, allocations, actor=principal.actor)
        return payment, allocations

    async def emit_updated(
        self,
        session: AsyncSession,
        payment: Payment,
        allocations: Sequence[PaymentAllocation],
        *,
        actor: str | None,
        type: str = "payment.updated",
    ) -> None:
        """Emit a payment event with the payment's current state."""
        # Touch the row, so updated_at and the event agree on when it changed.
        payment.updated_at = utcnow()
        await session.flush()
        await session.refresh(payment)
        await emit(
            session,
            workspace_id=payment.workspace_id,
            type=type,
            object_type="payment",
            object_id=payment.id,
            data=payment_data(payment, allocations),
            actor=actor,
        )

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, payment_id: uuid.UUID
    ) -> PaymentWithAllocations:
        repository = PaymentRepository.from_session(session)
        payment = await repository.get(workspace_id, payment_id)
        if payment is None:
            raise _not_found(payment_id)
        allocations = await repository.allocations_of([payment.id])
        return payment, allocations.get(payment.id, [])

    async def get_for_update(
        self, session: AsyncSession, workspace_id: uuid.UUID, payment_id: uuid.UUID
    ) -> Payment:
        """Load and lock a payment: every change of its money holds this lock."""
        locked = await lock_payment(session, workspace_id, payment_id)
        if locked is None:
            raise _not_found(payment_id)
        return locked

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
        inserted = await repository.insert_provider_payment(
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
        if inserted is not None:
            payment = inserted
        else:
            found = await repository.get_by_provider(
                provider, provider_payment_id, for_update=True
            )
            assert found is not None
            payment = found
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

        problems: list[str] = []
        allocations: list[PaymentAllocation] = []
        if status == "succeeded":
            reason = self._unallocatable_reason(payment, invoice)
            if reason is not None:
                problems.append(reason)
            else:
                remaining = invoice_amounts(invoice).amount_remaining
                if amount != remaining:
                    problems.append(
                        f"amount mismatch: invoice {ids.encode('invoice', invoice.id)} "
                        f"expected {remaining} {currency} (minor units) but {amount} "
                        "arrived; the amount that arrived was allocated"
                    )
                allocations.append(
                    await self._allocate(session, payment, invoice, actor=actor)
                )
        # The payment's row is loaded and locked. Only the update of a known payment
        # above expires a column (updated_at), so only then is the row read again.
        await refresh_expired(session, payment)

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
        return ProviderPaymentOutcome(payment, changed=True, problems=problems)

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
    def _unallocatable_reason(payment: Payment, invoice: Invoice) -> str | None:
        """Return why a succeeded provider payment cannot pay ``invoice``, if it cannot."""
        encoded = ids.encode("invoice", invoice.id)
        # An earlier update of the payment may have named another invoice, and the
        # payment stays with the customer and workspace it was first recorded for.
        if (
            payment.customer_id != invoice.customer_id
            or payment.workspace_id != invoice.workspace_id
        ):
            return (
                f"customer mismatch: payment {ids.encode('payment', payment.id)} "
                f"belongs to customer {ids.encode('customer', payment.customer_id)}, "
                f"not to the customer of invoice {encoded}, so the payment was "
                "recorded but not allocated"
            )
        if invoice.status not in states.PAYABLE:
            return (
                f"invoice {encoded} is {invoice.status}, so the payment was recorded "
                "but not allocated"
            )
        if payment.currency != invoice.currency:
            return (
                f"currency mismatch: invoice {encoded} is in {invoice.currency} but the "
                f"payment is in {payment.currency}, so the payment was recorded but "
                "not allocated"
            )
        return None

    @staticmethod
    async def _allocate(
        session: AsyncSession, payment: Payment, invoice: Invoice, *, actor: str | None
    ) -> PaymentAllocation:
        """Allocate all of a new payment to one invoice, overpaying it if need be."""
        allocation = await allocation_rules.add_to_allocation(
            session, payment, invoice.id, payment.amount, existing={}
        )
        await invoice_service.apply_payment(
            session, invoice, payment.amount, actor=actor
        )
        return allocation


def _requests(items: Sequence[AllocationInput]) -> list[AllocationRequest]:
    return [AllocationRequest(item.invoice_id, item.amount) for item in items]


def _not_found(payment_id: uuid.UUID) -> PaymentNotFound:
    return PaymentNotFound(
        f"No payment with id {ids.encode('payment', payment_id)} exists in this "
        "workspace."
    )


payment_service = PaymentService()
