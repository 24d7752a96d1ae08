from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.money import CurrencyCode
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import StorableText
from app.opportunities.product_schemas import Product, ProductCreate, ProductUpdate
from app.opportunities.products import product_service, product_view

router = APIRouter(route_class=UnitOfWorkRoute, prefix="/products", tags=["products"])


@router.post(
    "",
    operation_id="products_create",
    summary="Create a product",
    status_code=status.HTTP_201_CREATED,
    response_model=Product,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_product(
    request: Request,
    response: Response,
    payload: ProductCreate,
    principal: Principal = Depends(require("sales:write")),
) -> Product:
    """Add a product to the catalogue; a SKU already used in the workspace is 409."""
    product, prices = await product_service.create(
        request.state.session, principal, payload
    )
    set_etag(response, product.version)
    response.headers["Location"] = f"/v1/products/{ids.encode('product', product.id)}"
    return product_view(product, prices)


@router.get(
    "",
    operation_id="products_list",
    summary="List products",
    response_model=Page[Product],
    responses=problem_responses(403),
)
async def list_products(
    request: Request,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    q: Annotated[
        StorableText | None,
        Query(max_length=200, description="Substring of name, SKU or description."),
    ] = None,
    active: Annotated[
        bool | None,
        Query(description="true for active products only, false for archived ones."),
    ] = None,
    currency: Annotated[
        CurrencyCode | None,
        Query(description="Only products with a price in this currency."),
    ] = None,
) -> Page[Product]:
    """List products, newest first."""
    rows, next_cursor, has_more = await product_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        query=q,
        active=active,
        currency=currency,
    )
    return Page[Product](
        data=[product_view(product, prices) for product, prices in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/{product_id}",
    operation_id="products_get",
    summary="Get a product",
    response_model=Product,
    responses=problem_responses(403, 404),
)
async def get_product(
    request: Request,
    response: Response,
    product_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> Product:
    """Fetch one product with its prices."""
    product, prices = await product_service.get_with_prices(
        request.state.session,
        principal.workspace_id,
        parse_path_id("product", product_id, "product"),
    )
    set_etag(response, product.version)
    return product_view(product, prices)


@router.patch(
    "/{product_id}",
    operation_id="products_update",
    summary="Update a product",
    response_model=Product,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_product(
    request: Request,
    response: Response,
    product_id: str,
    payload: ProductUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Product:
    """Change a product; prices, when sent, replace all of its prices."""
    product, prices = await product_service.update(
        request.state.session,
        principal,
        parse_path_id("product", product_id, "product"),
        payload,
        if_match=if_match,
    )
    set_etag(response, product.version)
    return product_view(product, prices)


@router.delete(
    "/{product_id}",
    operation_id="products_delete",
    summary="Delete a product",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 412),
)
async def delete_product(
    request: Request,
    product_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Response:
    """Delete a product; lines that used it keep their description and price."""
    await product_service.delete(
        request.state.session,
        principal,
        parse_path_id("product", product_id, "product"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
