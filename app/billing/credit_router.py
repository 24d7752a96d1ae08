"""Credit notes, ``/v1/credit-notes``, and customer credit under invoices and customers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from app.billing.credit import customer_credit_service, transaction_view
from app.billing.credit_notes import credit_note_service, credit_note_view
from app.billing.credit_schemas import (
    ApplyCredit,
    CreditAdjustmentCreate,
    CreditBalanceList,
    CreditNote,
    CreditNoteCreate,
    CreditNotePreview,
    CreditNoteReason,
    CreditNoteStatus,
    CreditNoteVoid,
    CreditSource,
    CustomerCreditTransaction,
)
from app.billing.router import CustomerFilter, _query_id
from app.billing.schemas import Invoice
from app.billing.views import invoice_view
from app.core import ids, money
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute

invoice_credit = APIRouter(
    prefix="/invoices", tags=["credit notes"], route_class=UnitOfWorkRoute
)
credit_notes = APIRouter(
    prefix="/credit-notes", tags=["credit notes"], route_class=UnitOfWorkRoute
)
customer_credit = APIRouter(
    prefix="/customers", tags=["customer credit"], route_class=UnitOfWorkRoute
)


@invoice_credit.post(
    "/{invoice_id}/credit-notes",
    operation_id="credit_notes_create",
    summary="Issue a credit note",
    status_code=status.HTTP_201_CREATED,
    response_model=CreditNote,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def create_credit_note(
    request: Request,
    response: Response,
    invoice_id: str,
    payload: CreditNoteCreate,
    principal: Principal = Depends(require("billing:write")),
) -> CreditNote:
    """Credit lines or a lump amount of an invoice; more than is creditable is 409."""
    note, lines = await credit_note_service.create(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload,
    )
    set_etag(response, note.version)
    response.headers["Location"] = (
        f"/v1/credit-notes/{ids.encode('credit_note', note.id)}"
    )
    return credit_note_view(note, lines)


@invoice_credit.post(
    "/{invoice_id}/credit-notes/preview",
    operation_id="credit_notes_preview",
    summary="Preview a credit note",
    response_model=CreditNotePreview,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def preview_credit_note(
    request: Request,
    invoice_id: str,
    payload: CreditNoteCreate,
    principal: Principal = Depends(require("billing:read")),
) -> CreditNotePreview:
    """Compute a credit note's amounts and the invoice's after it, writing nothing."""
    return await credit_note_service.preview(
        request.state.session,
        principal.workspace_id,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload,
    )


@invoice_credit.post(
    "/{invoice_id}/apply-credit",
    operation_id="invoices_apply_credit",
    summary="Apply customer credit",
    response_model=Invoice,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def apply_credit(
    request: Request,
    response: Response,
    invoice_id: str,
    payload: Annotated[ApplyCredit | None, Body()] = None,
    principal: Principal = Depends(require("billing:write")),
) -> Invoice:
    """Pay an open invoice from its customer's credit in the invoice's currency."""
    invoice, lines = await customer_credit_service.apply_to_invoice(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload or ApplyCredit(),
    )
    set_etag(response, invoice.version)
    return invoice_view(invoice, lines)


@credit_notes.get(
    "",
    operation_id="credit_notes_list",
    summary="List credit notes",
    response_model=Page[CreditNote],
    responses=problem_responses(403),
)
async def list_credit_notes(
    request: Request,
    principal: Principal = Depends(require("billing:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    invoice_id: Annotated[
        str | None, Query(max_length=100, description="Only this invoice, inv_…")
    ] = None,
    customer_id: CustomerFilter = None,
    status: Annotated[
        CreditNoteStatus | None, Query(description="Only this status.")
    ] = None,
    reason: Annotated[
        CreditNoteReason | None, Query(description="Only this reason.")
    ] = None,
) -> Page[CreditNote]:
    """List credit notes with their lines, newest first."""
    rows, next_cursor, has_more = await credit_note_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        invoice_id=_query_id("invoice", invoice_id, "invoice_id"),
        customer_id=_query_id("customer", customer_id, "customer_id"),
        status=status,
        reason=reason,
    )
    return Page[CreditNote](
        data=[credit_note_view(note, lines) for note, lines in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@credit_notes.get(
    "/{credit_note_id}",
    operation_id="credit_notes_get",
    summary="Get a credit note",
    response_model=CreditNote,
    responses=problem_responses(403, 404),
)
async def get_credit_note(
    request: Request,
    response: Response,
    credit_note_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> CreditNote:
    """Fetch one credit note with its lines."""
    note, lines = await credit_note_service.get_with_lines(
        request.state.session,
        principal.workspace_id,
        parse_path_id("credit_note", credit_note_id, "credit note"),
    )
    set_etag(response, note.version)
    return credit_note_view(note, lines)


@credit_notes.post(
    "/{credit_note_id}/void",
    operation_id="credit_notes_void",
    summary="Void a credit note",
    response_model=CreditNote,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def void_credit_note(
    request: Request,
    response: Response,
    credit_note_id: str,
    payload: Annotated[CreditNoteVoid | None, Body()] = None,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> CreditNote:
    """Void a credit note whose credit is unused; used credit is 409."""
    note, lines = await credit_note_service.void(
        request.state.session,
        principal,
        parse_path_id("credit_note", credit_note_id, "credit note"),
        payload,
        if_match=if_match,
    )
    set_etag(response, note.version)
    return credit_note_view(note, lines)


@credit_notes.post(
    "/{credit_note_id}/mark-refund-paid",
    operation_id="credit_notes_mark_refund_paid",
    summary="Mark a credit note's refund paid",
    response_model=CreditNote,
    responses=problem_responses(403, 404, 409, 412),
)
async def mark_credit_note_refund_paid(
    request: Request,
    response: Response,
    credit_note_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> CreditNote:
    """Record that a pending refund was paid out; a void note or no refund is 409."""
    note, lines = await credit_note_service.mark_refund_paid(
        request.state.session,
        principal.workspace_id,
        parse_path_id("credit_note", credit_note_id, "credit note"),
        actor=principal.actor,
        if_match=if_match,
    )
    set_etag(response, note.version)
    return credit_note_view(note, lines)


@customer_credit.get(
    "/{customer_id}/credit-transactions",
    operation_id="customer_credit_transactions_list",
    summary="List credit transactions",
    response_model=Page[CustomerCreditTransaction],
    responses=problem_responses(403, 404),
)
async def list_credit_transactions(
    request: Request,
    customer_id: str,
    principal: Principal = Depends(require("billing:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    currency: Annotated[
        money.CurrencyCode | None, Query(description="Only this currency.")
    ] = None,
    source: Annotated[
        CreditSource | None, Query(description="Only this source.")
    ] = None,
) -> Page[CustomerCreditTransaction]:
    """List the customer's credit ledger, newest first."""
    rows, next_cursor, has_more = await customer_credit_service.list(
        request.state.session,
        principal.workspace_id,
        parse_path_id("customer", customer_id, "customer"),
        limit=limit,
        cursor=cursor,
        currency=currency,
        source=source,
    )
    return Page[CustomerCreditTransaction](
        data=[transaction_view(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@customer_credit.post(
    "/{customer_id}/credit-transactions",
    operation_id="customer_credit_transactions_create",
    summary="Adjust customer credit",
    status_code=status.HTTP_201_CREATED,
    response_model=CustomerCreditTransaction,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def adjust_credit(
    request: Request,
    customer_id: str,
    payload: CreditAdjustmentCreate,
    principal: Principal = Depends(require("billing:write")),
) -> CustomerCreditTransaction:
    """Add or remove credit by hand with a reason; overdrawing the balance is 409."""
    row = await customer_credit_service.adjust(
        request.state.session,
        principal,
        parse_path_id("customer", customer_id, "customer"),
        payload,
    )
    return transaction_view(row)


@customer_credit.get(
    "/{customer_id}/credit-balances",
    operation_id="customer_credit_balances_get",
    summary="Get credit balances",
    response_model=CreditBalanceList,
    responses=problem_responses(403, 404),
)
async def get_credit_balances(
    request: Request,
    customer_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> CreditBalanceList:
    """Show the customer's credit in each currency, its own currency first."""
    balances = await customer_credit_service.balances(
        request.state.session,
        principal.workspace_id,
        parse_path_id("customer", customer_id, "customer"),
    )
    return CreditBalanceList(data=balances)


router = APIRouter()
router.include_router(invoice_credit)
router.include_router(credit_notes)
router.include_router(customer_credit)
