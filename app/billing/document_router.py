"""The invoice PDF, sending invoices by email, and the seller's billing profile."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status

from app.billing.document_schemas import (
    BillingProfile,
    BillingProfileUpdate,
    InvoiceSend,
    InvoiceSendCreate,
)
from app.billing.documents import load_invoice_document, render_document
from app.billing.pdf import document_etag
from app.billing.profile import billing_profile_service, billing_profile_view
from app.billing.sends import invoice_send_service, send_view
from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute

invoice_documents = APIRouter(
    prefix="/invoices", tags=["invoices"], route_class=UnitOfWorkRoute
)
billing_profile = APIRouter(
    prefix="/workspace", tags=["workspace"], route_class=UnitOfWorkRoute
)

_PDF_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The invoice as a PDF file.",
        "content": {
            "application/pdf": {"schema": {"type": "string", "format": "binary"}}
        },
    },
    304: {"description": "The PDF matches the If-None-Match ETag; no body."},
    **problem_responses(403, 404),
}


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Compare weakly, as RFC 9110 requires for If-None-Match."""
    if if_none_match is None:
        return False
    tags = [part.strip().removeprefix("W/") for part in if_none_match.split(",")]
    return "*" in tags or etag in tags


@invoice_documents.get(
    "/{invoice_id}/pdf",
    operation_id="invoices_pdf",
    summary="Download the invoice PDF",
    response_class=Response,
    responses=_PDF_RESPONSES,
)
async def get_invoice_pdf(
    request: Request,
    invoice_id: str,
    if_none_match: Annotated[
        str | None,
        Header(
            max_length=1000,
            description="The ETag of a PDF fetched before; a match returns 304.",
        ),
    ] = None,
    principal: Principal = Depends(require("billing:read")),
) -> Response:
    """Render the invoice as a PDF; a draft is stamped DRAFT and a void invoice VOID."""
    document = await load_invoice_document(
        request.state.session,
        principal.workspace_id,
        parse_path_id("invoice", invoice_id, "invoice"),
    )
    etag = document_etag(document)
    # The PDF shows the amount paid and the status, which payments change, so a
    # client revalidates every time; an unchanged PDF then costs a 304.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if _etag_matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    content = await render_document(document)
    headers["Content-Disposition"] = f'inline; filename="{document.filename}"'
    return Response(content=content, media_type="application/pdf", headers=headers)


@invoice_documents.post(
    "/{invoice_id}/send",
    operation_id="invoices_send",
    summary="Email the invoice with its PDF",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InvoiceSend,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def send_invoice(
    request: Request,
    response: Response,
    invoice_id: str,
    payload: InvoiceSendCreate | None = None,
    principal: Principal = Depends(require("billing:write")),
) -> InvoiceSend:
    """Queue an email of an open, paid or uncollectible invoice; a draft is 409.

    The body is optional: without one, the invoice goes to the customer's billing email.
    """
    parsed = parse_path_id("invoice", invoice_id, "invoice")
    send = await invoice_send_service.create(
        request.state.session,
        principal,
        parsed,
        payload or InvoiceSendCreate(),
        request.app.state.settings,
    )
    send_path_id = ids.encode("invoice_send", send.id)
    response.headers["Location"] = f"/v1/invoices/{invoice_id}/sends/{send_path_id}"
    return send_view(send)


@invoice_documents.get(
    "/{invoice_id}/sends/{send_id}",
    operation_id="invoices_sends_get",
    summary="Get one email of an invoice",
    response_model=InvoiceSend,
    responses=problem_responses(403, 404),
)
async def get_invoice_send(
    request: Request,
    invoice_id: str,
    send_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> InvoiceSend:
    """Show one request to email the invoice, with its status and attempts so far."""
    send = await invoice_send_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("invoice", invoice_id, "invoice"),
        parse_path_id("invoice_send", send_id, "invoice email"),
    )
    return send_view(send)


@invoice_documents.get(
    "/{invoice_id}/sends",
    operation_id="invoices_sends_list",
    summary="List the emails of an invoice",
    response_model=Page[InvoiceSend],
    responses=problem_responses(403, 404),
)
async def list_invoice_sends(
    request: Request,
    invoice_id: str,
    principal: Principal = Depends(require("billing:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[InvoiceSend]:
    """List every request to email the invoice, newest first, with its outcome."""
    rows, next_cursor, has_more = await invoice_send_service.list(
        request.state.session,
        principal.workspace_id,
        parse_path_id("invoice", invoice_id, "invoice"),
        limit=limit,
        cursor=cursor,
    )
    return Page[InvoiceSend](
        data=[send_view(send) for send in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@billing_profile.get(
    "/billing-profile",
    operation_id="billing_profile_get",
    summary="Get the billing profile",
    response_model=BillingProfile,
    responses=problem_responses(403),
)
async def get_billing_profile(
    request: Request,
    response: Response,
    principal: Principal = Depends(require("billing:read")),
) -> BillingProfile:
    """Show the seller details printed on invoices; empty fields until first set."""
    profile = await billing_profile_service.get(
        request.state.session, principal.workspace_id
    )
    view = billing_profile_view(profile)
    set_etag(response, view.version)
    return view


@billing_profile.patch(
    "/billing-profile",
    operation_id="billing_profile_update",
    summary="Update the billing profile",
    response_model=BillingProfile,
    responses=problem_responses(403, 412, 413, 415),
)
async def update_billing_profile(
    request: Request,
    response: Response,
    payload: BillingProfileUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> BillingProfile:
    """Set the legal name, address, tax id, contact and payment instructions."""
    profile = await billing_profile_service.update(
        request.state.session, principal, payload, if_match=if_match
    )
    set_etag(response, profile.version)
    return billing_profile_view(profile)


router = APIRouter()
router.include_router(invoice_documents)
router.include_router(billing_profile)
