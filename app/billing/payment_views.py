"""Shaping refunds, disputes and reconciliation runs into their API representations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.billing.payment_schemas import AllocationReversal as AllocationReversalSchema
from app.billing.payment_schemas import Dispute as DisputeSchema
from app.billing.payment_schemas import ReconciliationRun as ReconciliationRunSchema
from app.billing.payment_schemas import Refund as RefundSchema
from app.models import AllocationReversal, Dispute, ReconciliationRun, Refund


def _reversals(
    reversals: Sequence[AllocationReversal],
) -> list[AllocationReversalSchema]:
    return [
        AllocationReversalSchema(
            invoice_id=reversal.invoice_id,
            amount=reversal.amount,
            restored=reversal.restored_at is not None,
        )
        for reversal in reversals
    ]


def refund_view(
    refund: Refund, reversals: Sequence[AllocationReversal]
) -> RefundSchema:
    return RefundSchema(
        id=refund.id,
        payment_id=refund.payment_id,
        amount=refund.amount,
        currency=refund.currency,
        status="succeeded",
        reason=refund.reason,
        provider=refund.provider,
        provider_refund_id=refund.provider_refund_id,
        reversals=_reversals(reversals),
        refunded_at=refund.refunded_at,
        created_at=refund.created_at,
    )


def dispute_view(
    dispute: Dispute, reversals: Sequence[AllocationReversal]
) -> DisputeSchema:
    return DisputeSchema(
        id=dispute.id,
        payment_id=dispute.payment_id,
        amount=dispute.amount,
        currency=dispute.currency,
        status=dispute.status,
        reason=dispute.reason,
        provider=dispute.provider,
        provider_dispute_id=dispute.provider_dispute_id,
        reversals=_reversals(reversals),
        opened_at=dispute.opened_at,
        closed_at=dispute.closed_at,
        created_at=dispute.created_at,
        updated_at=dispute.updated_at,
    )


def dispute_data(
    dispute: Dispute, reversals: Sequence[AllocationReversal]
) -> dict[str, Any]:
    """Serialize a dispute as the API shows it, for events."""
    return dispute_view(dispute, reversals).model_dump(mode="json")


def reconciliation_run_view(run: ReconciliationRun) -> ReconciliationRunSchema:
    return ReconciliationRunSchema.model_validate(
        {
            "id": run.id,
            "provider": run.provider,
            "status": run.status,
            "checked_count": run.checked_count,
            "difference_count": len(run.differences),
            "differences": run.differences,
            "error": run.error,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
            "created_at": run.created_at,
        }
    )


def reconciliation_run_data(run: ReconciliationRun) -> dict[str, Any]:
    """Serialize a reconciliation run as the API shows it, for events."""
    return reconciliation_run_view(run).model_dump(mode="json")
