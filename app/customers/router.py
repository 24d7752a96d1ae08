from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import StorableText
from app.customers.schemas import (
    Contact,
    ContactCreate,
    Customer,
    CustomerCreate,
    CustomerUpdate,
    Domain,
)
from app.customers.service import contact_service, customer_service

router = APIRouter(prefix="/customers", tags=["customers"], route_class=UnitOfWorkRoute)


@router.post(
    "",
    operation_id="customers_create",
    summary="Create a customer",
    status_code=status.HTTP_201_CREATED,
    response_model=Customer,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_customer(
    request: Request,
    response: Response,
    payload: CustomerCreate,
    principal: Principal = Depends(require("sales:write")),
) -> Customer:
    """Create a customer whose currency and time zone default to the workspace's."""
    customer = await customer_service.create(request.state.session, principal, payload)
    set_etag(response, customer.version)
    response.headers["Location"] = (
        f"/v1/customers/{ids.encode('customer', customer.id)}"
    )
    return Customer.model_validate(customer)


@router.get(
    "",
    operation_id="customers_list",
    summary="List customers",
    response_model=Page[Customer],
    responses=problem_responses(403),
)
async def list_customers(
    request: Request,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    email: Annotated[
        StorableText | None,
        Query(max_length=320, description="Exact email, any case."),
    ] = None,
    domain: Annotated[Domain | None, Query(description="Exact domain.")] = None,
    q: Annotated[
        StorableText | None,
        Query(max_length=200, description="Substring of name, email or domain."),
    ] = None,
) -> Page[Customer]:
    """List customers, newest first."""
    rows, next_cursor, has_more = await customer_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        email=email,
        domain=domain,
        query=q,
    )
    return Page[Customer](
        data=[Customer.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/{customer_id}",
    operation_id="customers_get",
    summary="Get a customer",
    response_model=Customer,
    responses=problem_responses(403, 404),
)
async def get_customer(
    request: Request,
    response: Response,
    customer_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> Customer:
    """Fetch one customer by id."""
    customer = await customer_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("customer", customer_id, "customer"),
    )
    set_etag(response, customer.version)
    return Customer.model_validate(customer)


@router.patch(
    "/{customer_id}",
    operation_id="customers_update",
    summary="Update a customer",
    response_model=Customer,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_customer(
    request: Request,
    response: Response,
    customer_id: str,
    payload: CustomerUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Customer:
    """Change fields of a customer. Send If-Match to guard against concurrent edits."""
    customer = await customer_service.update(
        request.state.session,
        principal,
        parse_path_id("customer", customer_id, "customer"),
        payload,
        if_match=if_match,
    )
    set_etag(response, customer.version)
    return Customer.model_validate(customer)


@router.get(
    "/{customer_id}/contacts",
    operation_id="contacts_list",
    summary="List a customer's contacts",
    response_model=Page[Contact],
    responses=problem_responses(403, 404),
)
async def list_contacts(
    request: Request,
    customer_id: str,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Contact]:
    """List the contacts of one customer, newest first."""
    rows, next_cursor, has_more = await contact_service.list(
        request.state.session,
        principal.workspace_id,
        parse_path_id("customer", customer_id, "customer"),
        limit=limit,
        cursor=cursor,
    )
    return Page[Contact](
        data=[Contact.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.post(
    "/{customer_id}/contacts",
    operation_id="contacts_create",
    summary="Add a contact to a customer",
    status_code=status.HTTP_201_CREATED,
    response_model=Contact,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def create_contact(
    request: Request,
    response: Response,
    customer_id: str,
    payload: ContactCreate,
    principal: Principal = Depends(require("sales:write")),
) -> Contact:
    """Add a person at a customer, with an email, a name or both."""
    contact = await contact_service.create(
        request.state.session,
        principal,
        parse_path_id("customer", customer_id, "customer"),
        payload,
    )
    set_etag(response, contact.version)
    return Contact.model_validate(contact)
