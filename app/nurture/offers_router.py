"""``/v1/offers`` and ``POST /v1/invoices/{id}/redeem-offer``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.billing.schemas import Invoice
from app.billing.views import invoice_view
from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.nurture.offer_schemas import (
    Offer,
    OfferCode,
    OfferCreate,
    OfferRedeem,
    OfferStatus,
)
from app.nurture.offer_views import offer_view
from app.nurture.offers import offer_service

router = APIRouter(route_class=UnitOfWorkRoute)


@router.post(
    "/offers",
    tags=["offers"],
    operation_id="offers_create",
    summary="Create an offer",
    status_code=status.HTTP_201_CREATED,
    response_model=Offer,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_offer(
    request: Request,
    response: Response,
    payload: OfferCreate,
    principal: Principal = Depends(require("nurture:write")),
) -> Offer:
    """Create a percent or amount discount for special-offer steps to issue."""
    offer = await offer_service.create(request.state.session, principal, payload)
    set_etag(response, offer.version)
    response.headers["Location"] = f"/v1/offers/{ids.encode('offer', offer.id)}"
    return offer_view(offer)


@router.get(
    "/offers",
    tags=["offers"],
    operation_id="offers_list",
    summary="List offers",
    response_model=Page[Offer],
    responses=problem_responses(403),
)
async def list_offers(
    request: Request,
    principal: Principal = Depends(require("nurture:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[
        OfferStatus | None, Query(description="Only this status.")
    ] = None,
) -> Page[Offer]:
    """List offers, newest first, without their stats."""
    rows, next_cursor, has_more = await offer_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        status=status,
    )
    return Page[Offer](data=rows, next_cursor=next_cursor, has_more=has_more)


@router.get(
    "/offers/{offer_id}",
    tags=["offers"],
    operation_id="offers_get",
    summary="Get an offer",
    response_model=Offer,
    responses=problem_responses(403, 404),
)
async def get_offer(
    request: Request,
    response: Response,
    offer_id: str,
    principal: Principal = Depends(require("nurture:read")),
) -> Offer:
    """Fetch an offer with its code counts and the paid revenue traced to it."""
    offer, view = await offer_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("offer", offer_id, "offer"),
    )
    set_etag(response, offer.version)
    return view


@router.get(
    "/offers/{offer_id}/codes",
    tags=["offers"],
    operation_id="offers_list_codes",
    summary="List an offer's codes",
    response_model=Page[OfferCode],
    responses=problem_responses(403, 404),
)
async def list_offer_codes(
    request: Request,
    offer_id: str,
    principal: Principal = Depends(require("nurture:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[OfferCode]:
    """List the codes issued for an offer, newest first."""
    rows, next_cursor, has_more = await offer_service.codes(
        request.state.session,
        principal.workspace_id,
        parse_path_id("offer", offer_id, "offer"),
        limit=limit,
        cursor=cursor,
    )
    return Page[OfferCode](data=rows, next_cursor=next_cursor, has_more=has_more)


@router.post(
    "/offers/{offer_id}/archive",
    tags=["offers"],
    operation_id="offers_archive",
    summary="Archive an offer",
    response_model=Offer,
    responses=problem_responses(403, 404, 409, 412),
)
async def archive_offer(
    request: Request,
    response: Response,
    offer_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> Offer:
    """Stop issuing an offer and void its unredeemed codes; already archived is 409."""
    offer = await offer_service.archive(
        request.state.session,
        principal,
        parse_path_id("offer", offer_id, "offer"),
        if_match=if_match,
    )
    set_etag(response, offer.version)
    return offer_view(offer)


@router.post(
    "/invoices/{invoice_id}/redeem-offer",
    tags=["invoices"],
    operation_id="invoices_redeem_offer",
    summary="Redeem an offer code on a draft invoice",
    response_model=Invoice,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def redeem_offer(
    request: Request,
    response: Response,
    invoice_id: str,
    payload: OfferRedeem,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> Invoice:
    """Add an offer code's discount to a draft invoice of the lead's customer."""
    invoice, lines = await offer_service.redeem(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload,
        if_match=if_match,
    )
    set_etag(response, invoice.version)
    return invoice_view(invoice, lines)
