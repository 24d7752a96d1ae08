"""Refunds: money of a payment given back, taken off the invoices it paid.

A refund never exceeds what the payment still has (``amount - amount_refunded -
amount_disputed``), because it is created under the payment's row lock. Which
invoices lose paid amount is set by ``allocations.reverse_allocations``: the named
allocations, or else the unallocated amount first and then the newest allocation.

A refund through the API also never gives back money the customer already got back
another way, so the customer never receives more than they paid:

- from an invoice it takes at most what the invoice received and its credit notes
  have not given back as customer credit or refund (``amount_returnable``);
- the parts it takes from customer credit (the unallocated amount, and the overpaid
  part of an invoice) must still be in the customer's credit balance.

NOTE: refunds and disputes that a provider reports have left already, so they are
recorded without these limits, and the invoice's credit notes can then exceed what
it kept. Nothing flags that invoice yet.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import allocations as allocation_rules
from app.billing.allocations import AllocationRequest
from app.billing.balances import credit_balance, lock_customer_credit
from app.billing.payment_errors import (
    PaymentNotSucceeded,
    RefundExceedsCredit,
    RefundExceedsRefundable,
    RefundThroughProvider,
)
from app.billing.payment_schemas import RefundCreate
from app.billing.payments import payment_service
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.errors import FieldError
from app.models import AllocationReversal, Payment, Refund

log = structlog.get_logger(__name__)

RefundWithReversals = tuple[Refund, list[AllocationReversal]]
# Creates a recorded refund at the payment's provider and returns the provider's id.
ProviderRefunder = Callable[[Payment, Refund], Awaitable[str]]


class RefundService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payment_id: uuid.UUID,
        payload: RefundCreate,
        *,
        provider_refunders: Mapping[str, ProviderRefunder] | None = None,
    ) -> RefundWithReversals:
        """Refund all or part of a payment; a provider's payment through its API.

        The refund and its reversals are written first, and the provider is called
        last, so a rejected request or a failed call changes nothing. If the
        commit fails after the provider refunded, the provider's webhook records it.
        When the provider returns a refund that is recorded already, because its
        webhook arrived before this retry of a request whose response was lost, the
        writes are undone and that refund is returned.
        """
        payment = await payment_service.get_for_update(
            session, principal.workspace_id, payment_id
        )
        encoded = ids.encode("payment", payment.id)
        refunder = None
        if payment.provider is not None:
            refunder = (provider_refunders or {}).get(payment.provider)
            if refunder is None or payment.provider_payment_id is None:
                raise RefundThroughProvider(
                    f"Payment {encoded} came through {payment.provider}, which cannot "
                    "refund through this API. Refund it there; the provider's "
                    "webhook records the refund here.",
                    provider=payment.provider,
                )
        limits = await allocation_rules.refund_limits(session, payment)
        self._check_refundable(payment, limits, payload.amount)
        amount = payload.amount or limits.total
        requested = (
            [
                AllocationRequest(item.invoice_id, item.amount)
                for item in payload.allocations
            ]
            if payload.allocations is not None
            else None
        )

        async with session.begin_nested() as savepoint:
            refund = Refund(
                id=ids.new_uuid(),
                workspace_id=payment.workspace_id,
                payment_id=payment.id,
                amount=amount,
                currency=payment.currency,
                status="succeeded",
                reason=payload.reason,
                provider=payment.provider,
                refunded_at=utcnow(),
            )
            session.add(refund)
            await session.flush()
            reversals = await self._apply(
                session,
                payment,
                refund,
                requested=requested,
                limits=limits,
                actor=principal.actor,
            )
            await self._check_credit_kept(session, payment, limits, amount, reversals)
            recorded: Refund | None = None
            if refunder is not None:
                provider_refund_id = await refunder(payment, refund)
                recorded = await self._find_recorded(
                    session, payment, provider_refund_id
                )
                if recorded is not None:
                    await savepoint.rollback()
                else:
                    refund.provider_refund_id = provider_refund_id
                    await session.flush()

        if recorded is not None:
            return await self._load_recorded(session, recorded, refund)
        await session.refresh(refund)
        return refund, reversals

    async def record_provider_refund(
        self,
        session: AsyncSession,
        payment: Payment,
        *,
        provider_refund_id: str,
        amount: int,
        refunded_at: datetime,
        actor: str,
    ) -> RefundWithReversals | None:
        """Record a refund a provider reports for a locked, succeeded payment.

        Returns None when that provider refund id is recorded already. An amount above
        what is refundable is cut to it, and the caller reports the difference.
        """
        amount = min(amount, allocation_rules.refundable(payment))
        if amount <= 0:
            return None
        result = await session.execute(
            insert(Refund)
            .values(
                id=ids.new_uuid(),
                workspace_id=payment.workspace_id,
                payment_id=payment.id,
                amount=amount,
                currency=payment.currency,
                status="succeeded",
                provider=payment.provider,
                provider_refund_id=provider_refund_id,
                refunded_at=refunded_at,
            )
            .on_conflict_do_nothing(index_elements=["provider", "provider_refund_id"])
            .returning(Refund.id)
        )
        refund_id = result.scalar_one_or_none()
        if refund_id is None:
            return None
        refund = await session.get_one(Refund, refund_id)
        reversals = await self._apply(
            session, payment, refund, requested=None, actor=actor
        )
        return refund, reversals

    async def recorded_provider_refund_ids(
        self, session: AsyncSession, provider: str, provider_refund_ids: list[str]
    ) -> set[str]:
        """Return which of the provider's refund ids are recorded already."""
        recorded = await session.scalars(
            select(Refund.provider_refund_id).where(
                Refund.provider == provider,
                Refund.provider_refund_id.in_(provider_refund_ids),
            )
        )
        return {refund_id for refund_id in recorded if refund_id is not None}

    @staticmethod
    async def _find_recorded(
        session: AsyncSession, payment: Payment, provider_refund_id: str
    ) -> Refund | None:
        return await session.scalar(
            select(Refund).where(
                Refund.payment_id == payment.id,
                Refund.provider == payment.provider,
                Refund.provider_refund_id == provider_refund_id,
            )
        )

    @staticmethod
    async def _load_recorded(
        session: AsyncSession, recorded: Refund, undone: Refund
    ) -> RefundWithReversals:
        log.info(
            "refund.provider_refund_already_recorded",
            payment_id=str(recorded.payment_id),
            refund_id=str(recorded.id),
            undone_refund_id=str(undone.id),
            provider_refund_id=recorded.provider_refund_id,
        )
        await session.refresh(recorded)
        reversals = await allocation_rules.reversals_of(
            session, refund_ids=[recorded.id]
        )
        return recorded, reversals

    async def list_for_payment(
        self, session: AsyncSession, workspace_id: uuid.UUID, payment_id: uuid.UUID
    ) -> list[RefundWithReversals]:
        payment, _ = await payment_service.get(session, workspace_id, payment_id)
        refunds = list(
            await session.scalars(
                select(Refund)
                .where(Refund.payment_id == payment.id)
                .order_by(Refund.created_at, Refund.id)
            )
        )
        reversals = await allocation_rules.reversals_of(
            session, refund_ids=[refund.id for refund in refunds]
        )
        return [
            (refund, [item for item in reversals if item.refund_id == refund.id])
            for refund in refunds
        ]

    async def _apply(
        self,
        session: AsyncSession,
        payment: Payment,
        refund: Refund,
        *,
        requested: list[AllocationRequest] | None,
        limits: allocation_rules.RefundLimits | None = None,
        actor: str | None,
    ) -> list[AllocationReversal]:
        reversals = await allocation_rules.reverse_allocations(
            session,
            payment,
            refund.amount,
            requested=requested,
            refund_id=refund.id,
            limits=limits,
            actor=actor,
        )
        payment.amount_refunded += refund.amount
        allocations = await allocation_rules.load_allocations(session, payment.id)

        await payment_service.emit_updated(
            session, payment, allocations, actor=actor, type="payment.refunded"
        )
        log.info(
            "payment.refunded",
            payment_id=str(payment.id),
            refund_id=str(refund.id),
            amount=refund.amount,
            amount_refunded=payment.amount_refunded,
            invoice_ids=[str(reversal.invoice_id) for reversal in reversals],
        )
        return reversals

    @staticmethod
    async def _check_credit_kept(
        session: AsyncSession,
        payment: Payment,
        limits: allocation_rules.RefundLimits,
        amount: int,
        reversals: list[AllocationReversal],
    ) -> None:
        """Raise when the refund took customer credit the customer has already used.

        Runs after the refund is written, so the balance read under the customer's
        credit lock already counts it. A rejection rolls the whole request back.
        """
        from_credit = amount - sum(reversal.amount for reversal in reversals)
        for reversal in reversals:
            from_credit += min(reversal.amount, limits.overpaid[reversal.invoice_id])
        if from_credit == 0:
            return
        await lock_customer_credit(session, payment.workspace_id, payment.customer_id)
        balance = await credit_balance(
            session, payment.workspace_id, payment.customer_id, payment.currency
        )
        if balance >= 0:
            return
        available = max(balance + from_credit, 0)
        raise RefundExceedsCredit(
            f"Refunding {amount} {payment.currency} (minor units) of payment "
            f"{ids.encode('payment', payment.id)} takes {from_credit} from the "
            f"customer's credit, which has only {available} left: the rest was "
            "applied to invoices or adjusted away. Refund less, or name in "
            "allocations invoices that are not overpaid, since an invoice's "
            "overpaid part is customer credit too.",
            errors=[FieldError("amount", "exceeds the customer's credit", "too_large")],
            credit_available=available,
            amount_from_credit=from_credit,
        )

    @staticmethod
    def _check_refundable(
        payment: Payment,
        limits: allocation_rules.RefundLimits,
        amount: int | None,
    ) -> None:
        encoded = ids.encode("payment", payment.id)
        if payment.status != "succeeded":
            raise PaymentNotSucceeded(
                f"Payment {encoded} is {payment.status}; only a succeeded payment can "
                "be refunded.",
                current_status=payment.status,
            )
        left = allocation_rules.refundable(payment)
        if left == 0:
            raise RefundExceedsRefundable(
                f"Payment {encoded} has nothing left to refund: it is refunded or "
                "disputed in full.",
                errors=[FieldError("amount", "nothing left to refund", "too_large")],
                amount_refundable=0,
            )
        available = limits.total
        credited_back = left - available
        requested = amount if amount is not None else left
        if requested <= available:
            return
        detail = (
            f"Payment {encoded} has {available} {payment.currency} (minor units) "
            f"left to refund, less than the {requested} requested."
        )
        if credited_back:
            detail += (
                f" Credit notes of the invoices it pays already gave {credited_back} "
                "back as customer credit or refund, and a refund never returns that "
                "money a second time."
            )
            if available == 0:
                detail += " Void those credit notes first to refund the payment."
            elif amount is None:
                detail += (
                    f" Send amount {available} to refund the rest, or void those "
                    "credit notes first."
                )
            else:
                detail += (
                    f" Refund at most {available}, or void those credit notes first."
                )
        else:
            detail += f" Refund at most {available}."
        raise RefundExceedsRefundable(
            detail,
            errors=[FieldError("amount", f"must be at most {available}", "too_large")],
            amount_refundable=available,
            amount_credited_back=credited_back,
        )


refund_service = RefundService()
