"""``/v1/dunning-policies``, and the collection endpoints of invoices and customers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from app.billing.debt import debt_service
from app.billing.dunning import reminders_of
from app.billing.dunning_policies import dunning_policy_service
from app.billing.dunning_schemas import (
    DunningAssignment,
    DunningPolicy,
    DunningPolicyAssign,
    DunningPolicyCreate,
    DunningPolicyUpdate,
    DunningReminder,
    InvoiceDunning,
    MarkUncollectible,
    PromiseToPay,
    PromiseToPayCreate,
    WriteOffCreate,
)
from app.billing.schemas import Invoice
from app.billing.service import invoice_service
from app.billing.views import invoice_view
from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute

policies = APIRouter(
    prefix="/dunning-policies", tags=["dunning"], route_class=UnitOfWorkRoute
)
collection = APIRouter(tags=["dunning"], route_class=UnitOfWorkRoute)


@policies.post(
    "",
    operation_id="dunning_policies_create",
    summary="Create a dunning policy",
    status_code=status.HTTP_201_CREATED,
    response_model=DunningPolicy,
    responses=problem_responses(403, 413, 415),
)
async def create_policy(
    request: Request,
    response: Response,
    payload: DunningPolicyCreate,
    principal: Principal = Depends(require("billing:write")),
) -> DunningPolicy:
    """Create a reminder schedule relative to the due date of invoices."""
    policy = await dunning_policy_service.create(
        request.state.session, principal, payload
    )
    set_etag(response, policy.version)
    response.headers["Location"] = (
        f"/v1/dunning-policies/{ids.encode('dunning_policy', policy.id)}"
    )
    return DunningPolicy.model_validate(policy)


@policies.get(
    "",
    operation_id="dunning_policies_list",
    summary="List dunning policies",
    response_model=Page[DunningPolicy],
    responses=problem_responses(403),
)
async def list_policies(
    request: Request,
    principal: Principal = Depends(require("billing:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[DunningPolicy]:
    """List the workspace's dunning policies, newest first."""
    rows, next_cursor, has_more = await dunning_policy_service.list(
        request.state.session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return Page[DunningPolicy](
        data=[DunningPolicy.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@policies.get(
    "/{policy_id}",
    operation_id="dunning_policies_get",
    summary="Get a dunning policy",
    response_model=DunningPolicy,
    responses=problem_responses(403, 404),
)
async def get_policy(
    request: Request,
    response: Response,
    policy_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> DunningPolicy:
    """Fetch one dunning policy."""
    policy = await dunning_policy_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("dunning_policy", policy_id, "dunning policy"),
    )
    set_etag(response, policy.version)
    return DunningPolicy.model_validate(policy)


@policies.patch(
    "/{policy_id}",
    operation_id="dunning_policies_update",
    summary="Update a dunning policy",
    response_model=DunningPolicy,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_policy(
    request: Request,
    response: Response,
    policy_id: str,
    payload: DunningPolicyUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> DunningPolicy:
    """Change a policy; sent steps replace all steps, sent reminders stay sent."""
    policy = await dunning_policy_service.update(
        request.state.session,
        principal,
        parse_path_id("dunning_policy", policy_id, "dunning policy"),
        payload,
        if_match=if_match,
    )
    set_etag(response, policy.version)
    return DunningPolicy.model_validate(policy)


@policies.delete(
    "/{policy_id}",
    operation_id="dunning_policies_delete",
    summary="Delete a dunning policy",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 412),
)
async def delete_policy(
    request: Request,
    policy_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> Response:
    """Delete a policy; invoices and customers using it fall back to the default."""
    await dunning_policy_service.delete(
        request.state.session,
        principal,
        parse_path_id("dunning_policy", policy_id, "dunning policy"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@collection.put(
    "/invoices/{invoice_id}/dunning-policy",
    operation_id="invoices_set_dunning_policy",
    summary="Set an invoice's dunning policy",
    response_model=DunningAssignment,
    responses=problem_responses(403, 404, 412, 415),
)
async def set_invoice_policy(
    request: Request,
    response: Response,
    invoice_id: str,
    payload: DunningPolicyAssign,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> DunningAssignment:
    """Give one invoice its own policy, or null to follow its customer's."""
    invoice = await dunning_policy_service.assign_to_invoice(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload.dunning_policy_id,
        if_match=if_match,
    )
    set_etag(response, invoice.version)
    return DunningAssignment(dunning_policy_id=invoice.dunning_policy_id)


@collection.put(
    "/customers/{customer_id}/dunning-policy",
    operation_id="customers_set_dunning_policy",
    summary="Set a customer's dunning policy",
    response_model=DunningAssignment,
    responses=problem_responses(403, 404, 412, 415),
)
async def set_customer_policy(
    request: Request,
    response: Response,
    customer_id: str,
    payload: DunningPolicyAssign,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> DunningAssignment:
    """Give a customer's invoices a policy, or null to follow the workspace default."""
    customer = await dunning_policy_service.assign_to_customer(
        request.state.session,
        principal,
        parse_path_id("customer", customer_id, "customer"),
        payload.dunning_policy_id,
        if_match=if_match,
    )
    set_etag(response, customer.version)
    return DunningAssignment(dunning_policy_id=customer.dunning_policy_id)


@collection.get(
    "/invoices/{invoice_id}/dunning",
    operation_id="invoices_get_dunning",
    summary="Get an invoice's dunning state",
    response_model=InvoiceDunning,
    responses=problem_responses(403, 404),
)
async def get_invoice_dunning(
    request: Request,
    invoice_id: str,
    principal: Principal = Depends(require("billing:read")),
) -> InvoiceDunning:
    """Show the policy that applies, whether it is paused, reminders and promises."""
    session = request.state.session
    invoice = await invoice_service.get(
        session,
        principal.workspace_id,
        parse_path_id("invoice", invoice_id, "invoice"),
    )
    policy, source = await dunning_policy_service.effective(session, invoice)
    reasons = (
        await debt_service.pause_reasons(session, invoice, policy)
        if policy is not None
        else []
    )
    return InvoiceDunning(
        invoice_id=invoice.id,
        policy_id=policy.id if policy is not None else None,
        policy_source=source,
        paused=bool(reasons),
        pause_reasons=reasons,
        reminders=[
            DunningReminder.model_validate(row)
            for row in await reminders_of(session, invoice.id)
        ],
        promises_to_pay=[
            PromiseToPay.model_validate(row)
            for row in await debt_service.promises_of(session, invoice.id)
        ],
    )


@collection.post(
    "/invoices/{invoice_id}/promises-to-pay",
    operation_id="invoices_record_promise_to_pay",
    summary="Record a promise to pay",
    status_code=status.HTTP_201_CREATED,
    response_model=PromiseToPay,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def record_promise(
    request: Request,
    invoice_id: str,
    payload: PromiseToPayCreate,
    principal: Principal = Depends(require("billing:write")),
) -> PromiseToPay:
    """Pause reminders until the customer pays the amount by the date, or fails to."""
    promise = await debt_service.record_promise(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload,
    )
    return PromiseToPay.model_validate(promise)


@collection.post(
    "/invoices/{invoice_id}/mark-uncollectible",
    operation_id="invoices_mark_uncollectible",
    summary="Mark an invoice uncollectible",
    response_model=Invoice,
    responses=problem_responses(403, 404, 409, 412, 415),
)
async def mark_uncollectible(
    request: Request,
    response: Response,
    invoice_id: str,
    payload: MarkUncollectible | None = None,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> Invoice:
    """Stop collecting an open invoice; a later payment still records and pays it."""
    invoice, lines = await debt_service.mark_uncollectible(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload or MarkUncollectible(),
        if_match=if_match,
    )
    set_etag(response, invoice.version)
    return invoice_view(invoice, lines)


@collection.post(
    "/invoices/{invoice_id}/write-off",
    operation_id="invoices_write_off",
    summary="Write off an invoice",
    response_model=Invoice,
    responses=problem_responses(403, 404, 409, 412, 415),
)
async def write_off(
    request: Request,
    response: Response,
    invoice_id: str,
    payload: WriteOffCreate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("billing:write")),
) -> Invoice:
    """Write off what an invoice still owes, with a reason and a manager's approval.

    On-Behalf-Of must name the requesting user, and approver_id another active user
    with the role manager or admin.
    """
    invoice, lines = await debt_service.write_off(
        request.state.session,
        principal,
        parse_path_id("invoice", invoice_id, "invoice"),
        payload,
        if_match=if_match,
    )
    set_etag(response, invoice.version)
    return invoice_view(invoice, lines)


router = APIRouter()
router.include_router(policies)
router.include_router(collection)
