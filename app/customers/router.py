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
from app.core.schemas import StorableText, Timestamp, UserId
from app.customers.schemas import (
    Contact,
    ContactCreate,
    ContactRole,
    ContactUpdate,
    Customer,
    CustomerCreate,
    CustomerKind,
    CustomerUpdate,
    Domain,
)
from app.customers.service import contact_service, customer_service

router = APIRouter(prefix="/customers", tags=["customers"], route_class=UnitOfWorkRoute)
contacts_router = APIRouter(
    prefix="/contacts", tags=["customers"], route_class=UnitOfWorkRoute
)


@router.post(
    "",
    operation_id="customers_create",
    summary="Create a customer",
    status_code=status.HTTP_201_CREATED,
    response_model=Customer,
    responses={
        200: {
            "description": "on_duplicate was 'link' and a customer with the same "
            "domain exists; it is returned unchanged.",
            "model": Customer,
        },
        **problem_responses(403, 409, 413, 415),
    },
)
async def create_customer(
    request: Request,
    response: Response,
    payload: CustomerCreate,
    principal: Principal = Depends(require("sales:write")),
) -> Customer:
    """Create a customer; a customer with the same domain is a 409 unless linked."""
    session = request.state.session
    outcome = await customer_service.create(session, principal, payload)
    customer = outcome.customer
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    set_etag(response, customer.version)
    response.headers["Location"] = (
        f"/v1/customers/{ids.encode('customer', customer.id)}"
    )
    return await customer_service.view(session, customer)


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
        Query(
            max_length=200,
            description="Case-insensitive substring of name, legal name, email or "
            "domain.",
        ),
    ] = None,
    owner_id: Annotated[UserId | None, Query(description="Owning user.")] = None,
    kind: Annotated[CustomerKind | None, Query()] = None,
    created_after: Annotated[
        Timestamp | None, Query(description="Created strictly after this time.")
    ] = None,
    created_before: Annotated[
        Timestamp | None, Query(description="Created strictly before this time.")
    ] = None,
) -> Page[Customer]:
    """List customers, newest first."""
    session = request.state.session
    rows, next_cursor, has_more = await customer_service.list(
        session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        email=email,
        domain=domain,
        query=q,
        owner_id=owner_id,
        kind=kind,
        created_after=created_after,
        created_before=created_before,
    )
    return Page[Customer](
        data=await customer_service.views(session, principal.workspace_id, rows),
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
    """Fetch one customer by id, with its credit balance."""
    session = request.state.session
    customer = await customer_service.get(
        session,
        principal.workspace_id,
        parse_path_id("customer", customer_id, "customer"),
    )
    set_etag(response, customer.version)
    return await customer_service.view(session, customer)


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
    session = request.state.session
    customer = await customer_service.update(
        session,
        principal,
        parse_path_id("customer", customer_id, "customer"),
        payload,
        if_match=if_match,
    )
    set_etag(response, customer.version)
    return await customer_service.view(session, customer)


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
    role: Annotated[
        ContactRole | None, Query(description="Only contacts with this role.")
    ] = None,
) -> Page[Contact]:
    """List the contacts of one customer, newest first."""
    rows, next_cursor, has_more = await contact_service.list(
        request.state.session,
        principal.workspace_id,
        parse_path_id("customer", customer_id, "customer"),
        limit=limit,
        cursor=cursor,
        role=role,
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
    """Add a person at a customer; a second contact with one email is a 409."""
    contact = await contact_service.create(
        request.state.session,
        principal,
        parse_path_id("customer", customer_id, "customer"),
        payload,
        default_phone_region=request.app.state.settings.default_phone_region,
    )
    set_etag(response, contact.version)
    response.headers["Location"] = f"/v1/contacts/{ids.encode('contact', contact.id)}"
    return Contact.model_validate(contact)


@contacts_router.get(
    "/{contact_id}",
    operation_id="contacts_get",
    summary="Get a contact",
    response_model=Contact,
    responses=problem_responses(403, 404),
)
async def get_contact(
    request: Request,
    response: Response,
    contact_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> Contact:
    """Fetch one contact by id."""
    contact = await contact_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("contact", contact_id, "contact"),
    )
    set_etag(response, contact.version)
    return Contact.model_validate(contact)


@contacts_router.patch(
    "/{contact_id}",
    operation_id="contacts_update",
    summary="Update a contact",
    response_model=Contact,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_contact(
    request: Request,
    response: Response,
    contact_id: str,
    payload: ContactUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Contact:
    """Change fields of a contact. Send If-Match to guard against concurrent edits."""
    contact = await contact_service.update(
        request.state.session,
        principal,
        parse_path_id("contact", contact_id, "contact"),
        payload,
        if_match=if_match,
        default_phone_region=request.app.state.settings.default_phone_region,
    )
    set_etag(response, contact.version)
    return Contact.model_validate(contact)


@contacts_router.delete(
    "/{contact_id}",
    operation_id="contacts_delete",
    summary="Delete a contact",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(403, 404, 409, 412),
)
async def delete_contact(
    request: Request,
    contact_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Response:
    """Delete a contact that no activity, opportunity or converted lead names."""
    await contact_service.delete(
        request.state.session,
        principal,
        parse_path_id("contact", contact_id, "contact"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
