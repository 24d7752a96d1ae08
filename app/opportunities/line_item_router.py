from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.models import LineItem as LineItemRow
from app.opportunities.line_inputs import priced_line_fields
from app.opportunities.line_item_schemas import (
    LineCreate,
    LineItem,
    LineItemList,
    LineItemUpdate,
)
from app.opportunities.line_items import line_item_service

router = APIRouter(
    route_class=UnitOfWorkRoute,
    prefix="/opportunities/{opportunity_id}/line-items",
    tags=["opportunities"],
)

_ETAG_NOTE = (
    " Line items are versioned with their opportunity: If-Match and the ETag carry "
    "the opportunity's version."
)


def line_item_view(line: LineItemRow) -> LineItem:
    return LineItem(
        id=line.id,
        opportunity_id=line.opportunity_id,
        created_at=line.created_at,
        updated_at=line.updated_at,
        **priced_line_fields(line),
    )


@router.get(
    "",
    operation_id="line_items_list",
    summary="List an opportunity's line items",
    response_model=LineItemList,
    responses=problem_responses(403, 404),
)
async def list_line_items(
    request: Request,
    response: Response,
    opportunity_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> LineItemList:
    """List every line item of an opportunity in order, with their totals."""
    opportunity, lines, totals = await line_item_service.list(
        request.state.session,
        principal.workspace_id,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
    )
    set_etag(response, opportunity.version)
    return LineItemList(
        opportunity_id=opportunity.id,
        opportunity_version=opportunity.version,
        currency=opportunity.currency,
        data=[line_item_view(line) for line in lines],
        subtotal=totals.subtotal,
        discount_total=totals.discount_total,
        tax_total=totals.tax_total,
        total=totals.total,
    )


@router.post(
    "",
    operation_id="line_items_create",
    summary="Add a line item to an opportunity",
    description="Add a product line or a custom line; the opportunity's amount "
    "becomes the total of its lines." + _ETAG_NOTE,
    status_code=status.HTTP_201_CREATED,
    response_model=LineItem,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def create_line_item(
    request: Request,
    response: Response,
    opportunity_id: str,
    payload: LineCreate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> LineItem:
    opportunity, line = await line_item_service.add(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        payload,
        if_match=if_match,
    )
    set_etag(response, opportunity.version)
    response.headers["Location"] = (
        f"/v1/opportunities/{ids.encode('opportunity', opportunity.id)}/line-items/"
        f"{ids.encode('line_item', line.id)}"
    )
    return line_item_view(line)


@router.patch(
    "/{line_item_id}",
    operation_id="line_items_update",
    summary="Update a line item",
    description="Change a line's quantity, discount, tax rate or description, or the "
    "unit price of a custom line." + _ETAG_NOTE,
    response_model=LineItem,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_line_item(
    request: Request,
    response: Response,
    opportunity_id: str,
    line_item_id: str,
    payload: LineItemUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> LineItem:
    opportunity, line = await line_item_service.update(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        parse_path_id("line_item", line_item_id, "line item"),
        payload,
        if_match=if_match,
    )
    set_etag(response, opportunity.version)
    return line_item_view(line)


@router.delete(
    "/{line_item_id}",
    operation_id="line_items_delete",
    summary="Remove a line item",
    description="Remove a line; once none is left, the amount can be set directly "
    "again." + _ETAG_NOTE,
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 409, 412),
)
async def delete_line_item(
    request: Request,
    opportunity_id: str,
    line_item_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Response:
    opportunity = await line_item_service.remove(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        parse_path_id("line_item", line_item_id, "line item"),
        if_match=if_match,
    )
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    set_etag(response, opportunity.version)
    return response
