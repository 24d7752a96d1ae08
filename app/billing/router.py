"""``/v1/invoices``, ``/v1/payments`` and ``/v1/provider-webhooks``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.billing.document_router import router as documents_router
from app.billing.dunning_router import router as dunning_router
from app.billing.payments import payment_service
from app.billing.payments_router import router as payments_router
from app.billing.schemas import (
    Invoice,
    InvoiceCreate,
    InvoiceStatus,
    InvoiceUpdate,
    Payment,
    PaymentCreate,
    TaxRateCreate,
    TaxRateObject,
    TaxRateUpdate,
)
from app.billing.service import invoice_service
from app.billing.tax_rates import tax_rate_service, tax_rate_view
from app.billing.views import invoice_view, payment_view
from app.core import ids
from app.core.auth import Principal, require
from app.core.clock import utcnow
from app.core.concurrency import IfMatch, set_etag
from app.core.errors import FieldError, InvalidInput
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute

invoices = APIRouter(prefix="/invoices", tags=["invoices"], route_class=UnitOfWorkRoute)
payments = APIRouter(prefix="/payments", tags=["payments"], route_class=UnitOfWorkRoute)
tax_rates = APIRouter(
    prefix="/tax-rates", tags=["tax rates"], route_class=UnitOfWorkRoute
)

CustomerFilter = Annotated[
    str | None, Query(max_length=100, description="Only this customer, cus_…")
]


def _query_id(kind: str, value: str | None, field: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return ids.decode(kind, value)
    except ids.InvalidId as error:
        raise InvalidInput(
            f"{field} must be a {ids.PREFIXES[kind]}_ id; got {value!r}.",
            errors=[FieldError(f"query.{field}", str(error), "invalid_id")],
        ) from error


@invoices.post(
    "",
    operation_id="invoices_create",
    summary="Create a draft invoice",
    status_code=status.HTTP_201_CREATED,
    response_model=Invoice,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def create_invoice(
    request: Request,
    response: Response,
    payload: InvoiceCreate,
    principal: Principal = Depends(require("billing:write")),
) -> Invoice:
    """Create a draft invoice; totals are computed from its lines."""
    invoice, lines = await invoice_service.create(
        request.state.session, principal, payload
    )
    set_etag(response, invoice.version)
    response.headers["Location"] = f"/v1/invoices/{ids.encode('invoice', invoice.id)}"
    return invoice_view(invoice, lines)


@invoices.get(
    "",
    operation_id="invoices_list",
    summary="List invoices",
    response_model=Page[Invoice],
    responses=problem_responses(403),
)
async def list_invoices(
    request: Request,
    principal: Principal = Depends(require("billing:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[
        InvoiceStatus | None, Query(description="Only this status.")
    ] = None,
    customer_id: CustomerFilter = None,
) -> Page[Invoice]:
    """List invoices with their lines, newest first."""
    rows, next_cursor, has_more = await invoice_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        status=status,
        customer_id=_query_id("customer", customer_id, "customer_id"),
    )
    now = utcnow()
    return Page[Invoice](
        data=[invoice_view(invoice, lines, now) for invoice, lines in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@invoices.get(
    "/{invoice_id}",
    operation_id="invoices_get",
    summary="Get an invoice",
    response_model=Invoice,
    responses=problem_responses(403, 404),
)
async def get_invoice(
    request: Request,
    response: Response,
    invoice_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> Invoice:
    """Fetch one invoice with its lines."""
    invoice, lines = await invoice_service.get_with_lines(
        request.state.session,
        principal.workspace_id,
        parse_path_id("invoice", invoice_id, "invoice"),
    )
    set_etag(response, invoice.version)
    return invoice_view(invoice, lines)


@invoices.patch(
    "/{invoice_id}",
    operation_id="invoices_update",
    summary="Update a draft invoice",
    response_model=Invoice,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_invoice(
    request: Request,
    response: Response,
    invoice_id: str,
    payload: InvoiceUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> Invoice:
    """Change a draft invoice; sent lines replace all lines. Not a draft: 409."""
    invoice, lines = await invoice_service.update(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload,
        if_match=if_match,
    )
    set_etag(response, invoice.version)
    return invoice_view(invoice, lines)


@invoices.post(
    "/{invoice_id}/finalize",
    operation_id="invoices_finalize",
    summary="Finalize an invoice",
    response_model=Invoice,
    responses=problem_responses(403, 404, 409, 412),
)
async def finalize_invoice(
    request: Request,
    response: Response,
    invoice_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> Invoice:
    """Number a draft, set its due date and open it; no lines or a zero total is 422."""
    invoice, lines = await invoice_service.finalize(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        if_match=if_match,
    )
    set_etag(response, invoice.version)
    return invoice_view(invoice, lines)


@invoices.post(
    "/{invoice_id}/void",
    operation_id="invoices_void",
    summary="Void an invoice",
    response_model=Invoice,
    responses=problem_responses(403, 404, 409, 412),
)
async def void_invoice(
    request: Request,
    response: Response,
    invoice_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> Invoice:
    """Void an open invoice without payments; it keeps its number."""
    invoice, lines = await invoice_service.void(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        if_match=if_match,
    )
    set_etag(response, invoice.version)
    return invoice_view(invoice, lines)


@payments.post(
    "",
    operation_id="payments_create",
    summary="Record a manual payment",
    status_code=status.HTTP_201_CREATED,
    response_model=Payment,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def create_payment(
    request: Request,
    response: Response,
    payload: PaymentCreate,
    principal: Principal = Depends(require("billing:write")),
) -> Payment:
    """Record a bank transfer, cash or check payment, allocated to invoice_id if sent."""
    payment, allocations = await payment_service.create(
        request.state.session, principal, payload
    )
    response.headers["Location"] = f"/v1/payments/{ids.encode('payment', payment.id)}"
    return payment_view(payment, allocations)


@payments.get(
    "",
    operation_id="payments_list",
    summary="List payments",
    response_model=Page[Payment],
    responses=problem_responses(403),
)
async def list_payments(
    request: Request,
    principal: Principal = Depends(require("billing:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    customer_id: CustomerFilter = None,
    invoice_id: Annotated[
        str | None,
        Query(max_length=100, description="Only payments allocated to this invoice."),
    ] = None,
) -> Page[Payment]:
    """List payments with their allocations, newest first."""
    rows, next_cursor, has_more = await payment_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        customer_id=_query_id("customer", customer_id, "customer_id"),
        invoice_id=_query_id("invoice", invoice_id, "invoice_id"),
    )
    return Page[Payment](
        data=[payment_view(payment, allocations) for payment, allocations in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@payments.get(
    "/{payment_id}",
    operation_id="payments_get",
    summary="Get a payment",
    response_model=Payment,
    responses=problem_responses(403, 404),
)
async def get_payment(
    request: Request,
    payment_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> Payment:
    """Fetch one payment with its allocations."""
    payment, allocations = await payment_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("payment", payment_id, "payment"),
    )
    return payment_view(payment, allocations)


@tax_rates.post(
    "",
    operation_id="tax_rates_create",
    summary="Create a tax rate",
    status_code=status.HTTP_201_CREATED,
    response_model=TaxRateObject,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_tax_rate(
    request: Request,
    response: Response,
    payload: TaxRateCreate,
    principal: Principal = Depends(require("billing:write")),
) -> TaxRateObject:
    """Create a reusable tax rate for invoice lines to name in tax_rate_ids."""
    rate = await tax_rate_service.create(request.state.session, principal, payload)
    set_etag(response, rate.version)
    response.headers["Location"] = f"/v1/tax-rates/{ids.encode('tax_rate', rate.id)}"
    return tax_rate_view(rate)


@tax_rates.get(
    "",
    operation_id="tax_rates_list",
    summary="List tax rates",
    response_model=Page[TaxRateObject],
    responses=problem_responses(403),
)
async def list_tax_rates(
    request: Request,
    principal: Principal = Depends(require("billing:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    active: Annotated[
        bool | None, Query(description="Only active or inactive.")
    ] = None,
) -> Page[TaxRateObject]:
    """List tax rates, newest first."""
    rows, next_cursor, has_more = await tax_rate_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        active=active,
    )
    return Page[TaxRateObject](
        data=[tax_rate_view(rate) for rate in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@tax_rates.get(
    "/{tax_rate_id}",
    operation_id="tax_rates_get",
    summary="Get a tax rate",
    response_model=TaxRateObject,
    responses=problem_responses(403, 404),
)
async def get_tax_rate(
    request: Request,
    response: Response,
    tax_rate_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> TaxRateObject:
    """Fetch one tax rate."""
    rate = await tax_rate_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("tax_rate", tax_rate_id, "tax_rate"),
    )
    set_etag(response, rate.version)
    return tax_rate_view(rate)


@tax_rates.patch(
    "/{tax_rate_id}",
    operation_id="tax_rates_update",
    summary="Update a tax rate",
    response_model=TaxRateObject,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_tax_rate(
    request: Request,
    response: Response,
    tax_rate_id: str,
    payload: TaxRateUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> TaxRateObject:
    """Rename, relocate or deactivate a tax rate; lines already written keep theirs."""
    rate = await tax_rate_service.update(
        request.state.session,
        principal,
        parse_path_id("tax_rate", tax_rate_id, "tax_rate"),
        payload,
        if_match=if_match,
    )
    set_etag(response, rate.version)
    return tax_rate_view(rate)


router = APIRouter()
router.include_router(invoices)
router.include_router(tax_rates)
router.include_router(payments)
router.include_router(payments_router)
router.include_router(dunning_router)
router.include_router(documents_router)
