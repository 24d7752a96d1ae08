"""Reconciliation: compare local provider payments with the provider's own records.

``POST /v1/reconciliation-runs`` stores a queued run and defers ``run_reconciliation``.
The job leases the run, reads the workspace's newest provider payments (up to
``reconciliation_max_payments``) with their disputes, retrieves from Stripe each
PaymentIntent (with its latest charge) and each dispute, and stores every
difference as the run's report. Nothing local is changed. The report is rebuilt
from scratch on each attempt, so a rerun after a crash stores it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import stripe
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.payment_errors import (
    ProviderApiNotConfigured,
    ReconciliationRunNotFound,
)
from app.billing.payment_schemas import ReconciliationRunCreate
from app.billing.payment_views import reconciliation_run_data
from app.billing.providers import stripe as stripe_provider
from app.billing.providers.stripe_api import stripe_client
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.db import defer_job
from app.core.events import emit
from app.models import Dispute, Payment, ReconciliationRun
from app.settings import Settings

log = structlog.get_logger(__name__)

RUN_JOB = "run_reconciliation"
# The sweep leaves fresh runs to the job enqueued after their commit.
SWEEP_GRACE = timedelta(seconds=10)
SWEEP_BATCH = 10

# PaymentIntent statuses as local payment statuses, per Stripe's PaymentIntent
# lifecycle: anything not listed is still in progress, so "pending".
_INTENT_STATUSES = {
    "succeeded": "succeeded",
    "requires_payment_method": "failed",
    "canceled": "failed",
}
Difference = dict[str, Any]


def job_id(run_id: uuid.UUID) -> str:
    return f"{RUN_JOB}:{run_id}"


@dataclass(frozen=True)
class _LocalPayment:
    id: uuid.UUID
    provider_payment_id: str
    status: str
    amount: int
    currency: str
    amount_refunded: int


@dataclass(frozen=True)
class _LocalDispute:
    id: uuid.UUID
    provider_dispute_id: str
    status: str
    amount: int


class ReconciliationService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: ReconciliationRunCreate,
    ) -> ReconciliationRun:
        run = ReconciliationRun(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            provider=payload.provider,
            status="queued",
            attempts=0,
            checked_count=0,
            differences=[],
        )
        session.add(run)
        await session.flush()
        await session.refresh(run)
        defer_job(session, RUN_JOB, str(run.id), job_id=job_id(run.id))

        await self._emit(session, run, "reconciliation_run.created", principal.actor)
        log.info("reconciliation_run.created", reconciliation_run_id=str(run.id))
        return run

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, run_id: uuid.UUID
    ) -> ReconciliationRun:
        run = await session.scalar(
            select(ReconciliationRun).where(
                ReconciliationRun.workspace_id == workspace_id,
                ReconciliationRun.id == run_id,
            )
        )
        if run is None:
            raise ReconciliationRunNotFound(
                "No reconciliation run with id "
                f"{ids.encode('reconciliation_run', run_id)} exists in this workspace."
            )
        return run

    async def claim(
        self, session: AsyncSession, run_id: uuid.UUID, lease: timedelta
    ) -> bool:
        """Lease a queued run, or a running one whose worker's lease lapsed."""
        now = utcnow()
        run = await session.scalar(
            select(ReconciliationRun)
            .where(
                ReconciliationRun.id == run_id,
                ReconciliationRun.status.in_(("queued", "running")),
                (ReconciliationRun.claimed_until.is_(None))
                | (ReconciliationRun.claimed_until < now),
            )
            .with_for_update(skip_locked=True)
        )
        if run is None:
            return False
        _lease(run, now, lease)
        await session.flush()
        return True

    async def claim_due(
        self, session: AsyncSession, lease: timedelta
    ) -> list[uuid.UUID]:
        """Lease unfinished runs whose job was lost or whose worker died."""
        now = utcnow()
        runs = await session.scalars(
            select(ReconciliationRun)
            .where(
                ReconciliationRun.status.in_(("queued", "running")),
                ReconciliationRun.created_at < now - SWEEP_GRACE,
                (ReconciliationRun.claimed_until.is_(None))
                | (ReconciliationRun.claimed_until < now),
            )
            .order_by(ReconciliationRun.created_at)
            .limit(SWEEP_BATCH)
            .with_for_update(skip_locked=True)
        )
        claimed = []
        for run in runs:
            _lease(run, now, lease)
            claimed.append(run.id)
        await session.flush()
        return claimed

    async def load(
        self, session: AsyncSession, run_id: uuid.UUID, settings: Settings
    ) -> tuple[list[_LocalPayment], dict[uuid.UUID, list[_LocalDispute]]]:
        """Read what the run compares: the newest provider payments and their disputes."""
        run = await session.get_one(ReconciliationRun, run_id)
        payments = list(
            await session.scalars(
                select(Payment)
                .where(
                    Payment.workspace_id == run.workspace_id,
                    Payment.provider == run.provider,
                    Payment.provider_payment_id.is_not(None),
                )
                .order_by(Payment.id.desc())
                .limit(settings.reconciliation_max_payments)
            )
        )
        disputes = await session.scalars(
            select(Dispute).where(
                Dispute.payment_id.in_([payment.id for payment in payments]),
                Dispute.provider_dispute_id.is_not(None),
            )
        )
        by_payment: dict[uuid.UUID, list[_LocalDispute]] = {}
        for dispute in disputes:
            assert dispute.provider_dispute_id is not None
            by_payment.setdefault(dispute.payment_id, []).append(
                _LocalDispute(
                    dispute.id,
                    dispute.provider_dispute_id,
                    dispute.status,
                    dispute.amount,
                )
            )
        local = []
        for payment in payments:
            assert payment.provider_payment_id is not None
            local.append(
                _LocalPayment(
                    payment.id,
                    payment.provider_payment_id,
                    payment.status,
                    payment.amount,
                    payment.currency,
                    payment.amount_refunded,
                )
            )
        return local, by_payment

    async def compare(
        self,
        settings: Settings,
        payments: list[_LocalPayment],
        disputes: dict[uuid.UUID, list[_LocalDispute]],
    ) -> list[Difference]:
        """Ask Stripe for every payment and dispute and list what differs."""
        async with stripe_client(settings) as client:
            return await _compare_with(client, payments, disputes)

    async def finish(
        self,
        session: AsyncSession,
        run_id: uuid.UUID,
        *,
        checked_count: int,
        differences: list[Difference] | None,
        error: str | None = None,
    ) -> str:
        """Store a run's report, or its error, and emit its event."""
        run = await session.get_one(ReconciliationRun, run_id, with_for_update=True)
        if run.status != "running":
            return run.status
        run.status = "failed" if error is not None else "completed"
        run.checked_count = checked_count
        run.differences = differences or []
        run.error = error
        run.completed_at = utcnow()
        run.claimed_until = None
        await session.flush()
        await session.refresh(run)

        await self._emit(session, run, f"reconciliation_run.{run.status}", None)
        log_method = log.warning if error is not None else log.info
        log_method(
            f"reconciliation_run.{run.status}",
            reconciliation_run_id=str(run.id),
            checked_count=checked_count,
            difference_count=len(run.differences),
            error=error,
        )
        return run.status

    @staticmethod
    async def _emit(
        session: AsyncSession, run: ReconciliationRun, type: str, actor: str | None
    ) -> None:
        await emit(
            session,
            workspace_id=run.workspace_id,
            type=type,
            object_type="reconciliation_run",
            object_id=run.id,
            data=reconciliation_run_data(run),
            actor=actor,
        )


def _lease(run: ReconciliationRun, now: datetime, lease: timedelta) -> None:
    run.status = "running"
    run.claimed_until = now + lease
    run.attempts += 1
    run.started_at = run.started_at or now


async def _compare_with(
    client: stripe.StripeClient,
    payments: list[_LocalPayment],
    disputes: dict[uuid.UUID, list[_LocalDispute]],
) -> list[Difference]:
    differences: list[Difference] = []
    for payment in payments:
        intent = await _retrieve(
            client.v1.payment_intents.retrieve_async(
                payment.provider_payment_id, {"expand": ["latest_charge"]}
            )
        )
        differences.extend(_payment_differences(payment, intent))
        for dispute in disputes.get(payment.id, []):
            remote = await _retrieve(
                client.v1.disputes.retrieve_async(dispute.provider_dispute_id)
            )
            differences.extend(_dispute_differences(dispute, remote))
    return differences


async def _retrieve(call: Awaitable[Any]) -> dict[str, Any] | None:
    """Return a Stripe object as a dict, or None when Stripe has no such object."""
    try:
        found = await call
    except stripe.InvalidRequestError as error:
        if error.http_status == 404:
            return None
        raise
    result: dict[str, Any] = found.to_dict()
    return result


def _difference(
    object_type: str,
    object_id: uuid.UUID,
    provider_id: str,
    field: str,
    local: Any,
    provider: Any,
) -> Difference:
    return {
        "object_type": object_type,
        "object_id": ids.encode(object_type, object_id),
        "provider_id": provider_id,
        "field": field,
        "local": local,
        "provider": provider,
    }


def _payment_differences(
    payment: _LocalPayment, intent: dict[str, Any] | None
) -> list[Difference]:
    def differ(field: str, local: Any, remote: Any) -> Difference:
        return _difference(
            "payment", payment.id, payment.provider_payment_id, field, local, remote
        )

    if intent is None:
        return [differ("missing_at_provider", payment.status, None)]
    found = []
    remote_status = _INTENT_STATUSES.get(str(intent.get("status")), "pending")
    if remote_status != payment.status:
        found.append(differ("status", payment.status, remote_status))
    try:
        currency = stripe_provider.currency_of(intent)
    except stripe_provider.Unusable as error:
        return [*found, differ("currency", payment.currency, str(error))]
    if currency != payment.currency:
        return [*found, differ("currency", payment.currency, currency)]
    if remote_status == "succeeded":
        found.extend(
            _amount_difference(
                differ, "amount", payment.amount, intent, "amount_received", currency
            )
        )
    charge = intent.get("latest_charge")
    if isinstance(charge, dict):
        found.extend(
            _amount_difference(
                differ,
                "amount_refunded",
                payment.amount_refunded,
                charge,
                "amount_refunded",
                currency,
            )
        )
    return found


def _amount_difference(
    differ: Callable[[str, Any, Any], Difference],
    field: str,
    local: int,
    obj: dict[str, Any],
    name: str,
    currency: str,
) -> list[Difference]:
    try:
        remote = stripe_provider.minor_amount(obj, name, currency)
    except stripe_provider.Unusable as error:
        return [differ(field, local, str(error))]
    return [differ(field, local, remote)] if remote != local else []


def _dispute_differences(
    dispute: _LocalDispute, remote: dict[str, Any] | None
) -> list[Difference]:
    if remote is None:
        return [
            _difference(
                "dispute",
                dispute.id,
                dispute.provider_dispute_id,
                "missing_at_provider",
                dispute.status,
                None,
            )
        ]
    remote_status = stripe_provider.DISPUTE_OUTCOMES.get(
        str(remote.get("status")), "open"
    )
    if remote_status == dispute.status:
        return []
    return [
        _difference(
            "dispute",
            dispute.id,
            dispute.provider_dispute_id,
            "status",
            dispute.status,
            remote_status,
        )
    ]


async def execute(
    unit_of_work: Callable[[], AbstractAsyncContextManager[AsyncSession]],
    settings: Settings,
    run_id: uuid.UUID,
) -> str:
    """Compare a leased run's payments with Stripe and store the report.

    The calls to Stripe run outside any transaction. A Stripe error or a missing API
    key ends the run as failed with the reason, and a new run can be started.
    """
    async with unit_of_work() as session:
        payments, disputes = await reconciliation_service.load(
            session, run_id, settings
        )
    differences: list[Difference] | None = None
    error: str | None = None
    try:
        differences = await reconciliation_service.compare(settings, payments, disputes)
    except (stripe.StripeError, ProviderApiNotConfigured) as failure:
        error = f"{type(failure).__name__}: {failure}"
    async with unit_of_work() as session:
        return await reconciliation_service.finish(
            session,
            run_id,
            checked_count=len(payments) if error is None else 0,
            differences=differences,
            error=error,
        )


reconciliation_service = ReconciliationService()
