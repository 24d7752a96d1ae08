"""Allocations, refunds, disputes, payment links and reconciliation runs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from app.billing.disputes import dispute_service
from app.billing.payment_links import payment_link_service
from app.billing.payment_schemas import (
    Dispute,
    DisputeStatus,
    PaymentLink,
    PaymentLinkCreate,
    ReconciliationRun,
    ReconciliationRunCreate,
    Refund,
    RefundCreate,
)
from app.billing.payment_views import (
    dispute_view,
    reconciliation_run_view,
    refund_view,
)
from app.billing.payments import payment_service
from app.billing.providers import stripe as stripe_provider
from app.billing.providers.stripe_api import require_api_key
from app.billing.providers.stripe_refunds import StripeRefunder
from app.billing.reconciliation import reconciliation_service
from app.billing.refunds import refund_service
from app.billing.schemas import Payment, PaymentAllocationsCreate
from app.billing.views import payment_view
from app.core import ids
from app.core.auth import Principal, require
from app.core.errors import FieldError, InvalidInput
from app.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute

payments = APIRouter(prefix="/payments", tags=["payments"], route_class=UnitOfWorkRoute)
invoices = APIRouter(prefix="/invoices", tags=["invoices"], route_class=UnitOfWorkRoute)
disputes = APIRouter(prefix="/disputes", tags=["disputes"], route_class=UnitOfWorkRoute)
reconciliation_runs = APIRouter(
    prefix="/reconciliation-runs",
    tags=["reconciliation runs"],
    route_class=UnitOfWorkRoute,
)


@payments.post(
    "/{payment_id}/allocations",
    operation_id="payments_allocate",
    summary="Allocate a payment to invoices",
    response_model=Payment,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def allocate_payment(
    request: Request,
    payment_id: str,
    payload: PaymentAllocationsCreate,
    principal: Principal = Depends(require("billing:write")),
) -> Payment:
    """Apply parts of the unallocated amount to invoices; exceeding it is a 409."""
    payment, allocations = await payment_service.add_allocations(
        request.state.session,
        principal,
        parse_path_id("payment", payment_id, "payment"),
        payload.allocations,
    )
    return payment_view(payment, allocations)


@payments.delete(
    "/{payment_id}/allocations/{invoice_id}",
    operation_id="payments_remove_allocation",
    summary="Remove a payment's allocation to an invoice",
    response_model=Payment,
    responses=problem_responses(403, 404, 409),
)
async def remove_payment_allocation(
    request: Request,
    payment_id: str,
    invoice_id: str,
    principal: Principal = Depends(require("billing:write")),
) -> Payment:
    """Take the allocation off the invoice; its amount becomes unallocated again."""
    payment, allocations = await payment_service.remove_allocation(
        request.state.session,
        principal,
        parse_path_id("payment", payment_id, "payment"),
        parse_path_id("invoice", invoice_id, "invoice"),
    )
    return payment_view(payment, allocations)


@payments.post(
    "/{payment_id}/refunds",
    operation_id="payments_refund",
    summary="Refund a payment",
    status_code=status.HTTP_201_CREATED,
    response_model=Refund,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def refund_payment(
    request: Request,
    response: Response,
    payment_id: str,
    payload: Annotated[RefundCreate | None, Body()] = None,
    principal: Principal = Depends(require("billing:write")),
) -> Refund:
    """Refund all or part of a payment (in Stripe too), taking it off its invoices.

    Without a body, it refunds everything still refundable.
    """
    refund, reversals = await refund_service.create(
        request.state.session,
        principal,
        parse_path_id("payment", payment_id, "payment"),
        payload or RefundCreate(),
        provider_refunders={
            stripe_provider.PROVIDER: StripeRefunder(
                request.app.state.settings,
                request_key=request.headers.get(IDEMPOTENCY_HEADER),
            )
        },
    )
    response.headers["Location"] = (
        f"/v1/payments/{payment_id}/refunds/{ids.encode('refund', refund.id)}"
    )
    return refund_view(refund, reversals)


@payments.get(
    "/{payment_id}/refunds",
    operation_id="payments_list_refunds",
    summary="List a payment's refunds",
    response_model=Page[Refund],
    responses=problem_responses(403, 404),
)
async def list_payment_refunds(
    request: Request,
    payment_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> Page[Refund]:
    """List every refund of a payment, oldest first, in one page."""
    rows = await refund_service.list_for_payment(
        request.state.session,
        principal.workspace_id,
        parse_path_id("payment", payment_id, "payment"),
    )
    return Page[Refund](
        data=[refund_view(refund, reversals) for refund, reversals in rows],
        next_cursor=None,
        has_more=False,
    )


@disputes.get(
    "",
    operation_id="disputes_list",
    summary="List disputes",
    response_model=Page[Dispute],
    responses=problem_responses(403),
)
async def list_disputes(
    request: Request,
    principal: Principal = Depends(require("billing:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    payment_id: Annotated[
        str | None, Query(max_length=100, description="Only this payment, pay_…")
    ] = None,
    status: Annotated[
        DisputeStatus | None, Query(description="Only this status.")
    ] = None,
) -> Page[Dispute]:
    """List disputes with their reversed allocations, newest first."""
    rows, next_cursor, has_more = await dispute_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        payment_id=_query_payment_id(payment_id),
        status=status,
    )
    return Page[Dispute](
        data=[dispute_view(dispute, reversals) for dispute, reversals in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@disputes.get(
    "/{dispute_id}",
    operation_id="disputes_get",
    summary="Get a dispute",
    response_model=Dispute,
    responses=problem_responses(403, 404),
)
async def get_dispute(
    request: Request,
    dispute_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> Dispute:
    """Fetch one dispute with its reversed allocations."""
    dispute, reversals = await dispute_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("dispute", dispute_id, "dispute"),
    )
    return dispute_view(dispute, reversals)


@invoices.post(
    "/{invoice_id}/payment-link",
    operation_id="invoices_create_payment_link",
    summary="Create a payment link for an invoice",
    response_model=PaymentLink,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def create_payment_link(
    request: Request,
    invoice_id: str,
    payload: PaymentLinkCreate | None = None,
    principal: Principal = Depends(require("billing:write")),
) -> PaymentLink:
    """Create a Stripe Checkout page for what the invoice still owes, or return it."""
    return await payment_link_service.create(
        request.state.session,
        request.app.state.settings,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload or PaymentLinkCreate(),
    )


@reconciliation_runs.post(
    "",
    operation_id="reconciliation_runs_create",
    summary="Start a reconciliation run",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReconciliationRun,
    responses=problem_responses(403, 413, 415),
)
async def create_reconciliation_run(
    request: Request,
    response: Response,
    payload: ReconciliationRunCreate | None = None,
    principal: Principal = Depends(require("billing:write")),
) -> ReconciliationRun:
    """Queue a comparison of this workspace's provider payments with the provider."""
    # Without an API key the run could only fail, so nothing is stored or queued.
    require_api_key(request.app.state.settings)
    run = await reconciliation_service.create(
        request.state.session, principal, payload or ReconciliationRunCreate()
    )
    response.headers["Location"] = (
        f"/v1/reconciliation-runs/{ids.encode('reconciliation_run', run.id)}"
    )
    return reconciliation_run_view(run)


@reconciliation_runs.get(
    "/{run_id}",
    operation_id="reconciliation_runs_get",
    summary="Get a reconciliation run",
    response_model=ReconciliationRun,
    responses=problem_responses(403, 404),
)
async def get_reconciliation_run(
    request: Request,
    run_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> ReconciliationRun:
    """Fetch a run's status and, once completed, the differences it found."""
    run = await reconciliation_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("reconciliation_run", run_id, "reconciliation run"),
    )
    return reconciliation_run_view(run)


def _query_payment_id(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return ids.decode("payment", value)
    except ids.InvalidId as error:
        raise InvalidInput(
            f"payment_id must be a pay_ id; got {value!r}.",
            errors=[FieldError("query.payment_id", str(error), "invalid_id")],
        ) from error


router = APIRouter()
router.include_router(payments)
router.include_router(invoices)
router.include_router(disputes)
router.include_router(reconciliation_runs)
