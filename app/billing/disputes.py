"""Disputes: a customer's chargeback of a payment, opened and closed by its provider.

Opening a dispute takes the disputed amount out of the payment like a refund does
(the unallocated amount first, then the newest allocation) and records each reversal
under the dispute. Closing it won gives the reversals back to their invoices; closing
it lost keeps them reversed, because the money went back to the customer.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import allocations as allocation_rules
from app.billing.payment_errors import DisputeNotFound
from app.billing.payment_views import dispute_data
from app.billing.payments import payment_service
from app.core import ids
from app.core.events import emit
from app.core.pagination import paginate
from app.models import AllocationReversal, Dispute, Payment

log = structlog.get_logger(__name__)

DisputeWithReversals = tuple[Dispute, list[AllocationReversal]]
OUTCOMES = frozenset({"won", "lost"})


class DisputeService:
    async def open(
        self,
        session: AsyncSession,
        payment: Payment,
        *,
        amount: int,
        reason: str | None,
        provider: str,
        provider_dispute_id: str,
        opened_at: datetime,
        actor: str,
    ) -> DisputeWithReversals | None:
        """Open a dispute on a locked, succeeded payment; None if it exists already.

        An amount above what the payment still has is cut to it, so a payment never
        gives back more than it received.
        """
        held = min(amount, allocation_rules.refundable(payment))
        result = await session.execute(
            insert(Dispute)
            .values(
                id=ids.new_uuid(),
                workspace_id=payment.workspace_id,
                payment_id=payment.id,
                amount=held,
                currency=payment.currency,
                status="open",
                reason=reason[:100] if reason else None,
                provider=provider,
                provider_dispute_id=provider_dispute_id,
                opened_at=opened_at,
            )
            .on_conflict_do_nothing(index_elements=["provider", "provider_dispute_id"])
            .returning(Dispute.id)
        )
        dispute_id = result.scalar_one_or_none()
        if dispute_id is None:
            return None
        dispute = await session.get_one(Dispute, dispute_id)

        reversals = []
        if held > 0:
            reversals = await allocation_rules.reverse_allocations(
                session,
                payment,
                held,
                requested=None,
                dispute_id=dispute.id,
                actor=actor,
            )
        payment.amount_disputed += held
        await session.refresh(dispute)
        allocations = await allocation_rules.load_allocations(session, payment.id)

        await emit(
            session,
            workspace_id=dispute.workspace_id,
            type="dispute.created",
            object_type="dispute",
            object_id=dispute.id,
            data=dispute_data(dispute, reversals),
            actor=actor,
        )
        await payment_service.emit_updated(
            session, payment, allocations, actor=actor, type="payment.disputed"
        )
        log.info(
            "dispute.created",
            dispute_id=str(dispute.id),
            payment_id=str(payment.id),
            amount=held,
            reported_amount=amount,
        )
        return dispute, reversals

    async def close(
        self,
        session: AsyncSession,
        dispute: Dispute,
        payment: Payment,
        *,
        outcome: str,
        closed_at: datetime,
        actor: str,
    ) -> DisputeWithReversals | None:
        """Close an open dispute, both rows locked; None if it is closed already."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown dispute outcome {outcome!r}")
        if dispute.status != "open":
            return None

        if outcome == "won":
            payment.amount_disputed -= dispute.amount
            await session.flush()
            await allocation_rules.restore_reversals(
                session, payment, dispute.id, actor=actor
            )
        dispute.status = outcome
        dispute.closed_at = closed_at
        await session.flush()
        await session.refresh(dispute)
        reversals = await allocation_rules.reversals_of(
            session, dispute_ids=[dispute.id]
        )
        allocations = await allocation_rules.load_allocations(session, payment.id)

        await emit(
            session,
            workspace_id=dispute.workspace_id,
            type="dispute.closed",
            object_type="dispute",
            object_id=dispute.id,
            data=dispute_data(dispute, reversals),
            actor=actor,
        )
        await payment_service.emit_updated(session, payment, allocations, actor=actor)
        log.info(
            "dispute.closed",
            dispute_id=str(dispute.id),
            payment_id=str(payment.id),
            outcome=outcome,
            amount=dispute.amount,
        )
        return dispute, reversals

    async def get_by_provider(
        self, session: AsyncSession, provider: str, provider_dispute_id: str
    ) -> Dispute | None:
        return await session.scalar(
            select(Dispute)
            .where(
                Dispute.provider == provider,
                Dispute.provider_dispute_id == provider_dispute_id,
            )
            .with_for_update()
        )

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, dispute_id: uuid.UUID
    ) -> DisputeWithReversals:
        dispute = await session.scalar(
            select(Dispute).where(
                Dispute.workspace_id == workspace_id, Dispute.id == dispute_id
            )
        )
        if dispute is None:
            raise DisputeNotFound(
                f"No dispute with id {ids.encode('dispute', dispute_id)} exists in "
                "this workspace."
            )
        reversals = await allocation_rules.reversals_of(
            session, dispute_ids=[dispute.id]
        )
        return dispute, reversals

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        payment_id: uuid.UUID | None = None,
        status: str | None = None,
    ) -> tuple[list[DisputeWithReversals], str | None, bool]:
        statement: Select[Dispute] = select(Dispute).where(
            Dispute.workspace_id == workspace_id
        )
        if payment_id is not None:
            statement = statement.where(Dispute.payment_id == payment_id)
        if status is not None:
            statement = statement.where(Dispute.status == status)
        rows, next_cursor, has_more = await paginate(
            session, statement, Dispute.id, limit=limit, cursor=cursor
        )
        reversals = await allocation_rules.reversals_of(
            session, dispute_ids=[dispute.id for dispute in rows]
        )
        return (
            [
                (dispute, [item for item in reversals if item.dispute_id == dispute.id])
                for dispute in rows
            ],
            next_cursor,
            has_more,
        )


dispute_service = DisputeService()
