"""Refunds: money of a payment given back, taken off the invoices it paid.

A refund never exceeds what the payment still has (``amount - amount_refunded -
amount_disputed``), because it is created under the payment's row lock. Which
invoices lose paid amount is set by ``allocations.reverse_allocations``: the named
allocations, or else the unallocated amount first and then the newest allocation.
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
from app.billing.payment_errors import (
    PaymentNotSucceeded,
    RefundExceedsRefundable,
    RefundThroughProvider,
)
from app.billing.payment_schemas import RefundCreate
from app.billing.payments import payment_service
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
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
        self._check_refundable(payment, payload.amount)
        amount = payload.amount or allocation_rules.refundable(payment)
        requested = (
            [
                AllocationRequest(item.invoice_id, item.amount)
                for item in payload.allocations
            ]
            if payload.allocations is not None
            else None
        )

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
            session, payment, refund, requested=requested, actor=principal.actor
        )
        if refunder is not None:
            refund.provider_refund_id = await refunder(payment, refund)
            await session.flush()
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
        actor: str | None,
    ) -> list[AllocationReversal]:
        reversals = await allocation_rules.reverse_allocations(
            session,
            payment,
            refund.amount,
            requested=requested,
            refund_id=refund.id,
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
    def _check_refundable(payment: Payment, amount: int | None) -> None:
        encoded = ids.encode("payment", payment.id)
        if payment.status != "succeeded":
            raise PaymentNotSucceeded(
                f"Payment {encoded} is {payment.status}; only a succeeded payment can "
                "be refunded.",
                current_status=payment.status,
            )
        available = allocation_rules.refundable(payment)
        if available == 0:
            raise RefundExceedsRefundable(
                f"Payment {encoded} has nothing left to refund: it is refunded or "
                "disputed in full.",
                amount_refundable=0,
            )
        if amount is not None and amount > available:
            raise RefundExceedsRefundable(
                f"Payment {encoded} has {available} {payment.currency} (minor units) "
                f"left to refund, less than the {amount} requested. Refund at most "
                f"{available}.",
                amount_refundable=available,
            )


refund_service = RefundService()
