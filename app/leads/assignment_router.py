from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.leads.assignment_rules import (
    assign_lead,
    assignment_rule_service,
    list_assignments,
)
from app.leads.assignment_schemas import (
    AssignmentRule,
    AssignmentRuleCreate,
    AssignmentRuleUpdate,
    LeadAssign,
    LeadAssignmentRecord,
)
from app.leads.schemas import Lead

router = APIRouter(tags=["assignment"], route_class=UnitOfWorkRoute)


@router.post(
    "/assignment-rules",
    operation_id="assignment_rules_create",
    summary="Create an assignment rule",
    status_code=status.HTTP_201_CREATED,
    response_model=AssignmentRule,
    responses=problem_responses(403, 413, 415),
)
async def create_rule(
    request: Request,
    response: Response,
    payload: AssignmentRuleCreate,
    principal: Principal = Depends(require("users:write")),
) -> AssignmentRule:
    """Create a rule that routes matching new leads to a team or a user."""
    rule = await assignment_rule_service.create(
        request.state.session, principal, payload
    )
    set_etag(response, rule.version)
    response.headers["Location"] = (
        f"/v1/assignment-rules/{ids.encode('assignment_rule', rule.id)}"
    )
    return AssignmentRule.model_validate(rule)


@router.get(
    "/assignment-rules",
    operation_id="assignment_rules_list",
    summary="List assignment rules",
    response_model=Page[AssignmentRule],
    responses=problem_responses(403),
)
async def list_rules(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = 200,
) -> Page[AssignmentRule]:
    """List the rules in the order they run: by position, then creation."""
    rows = await assignment_rule_service.list(
        request.state.session, principal.workspace_id, limit=limit + 1
    )
    return Page[AssignmentRule](
        data=[AssignmentRule.model_validate(row) for row in rows[:limit]],
        next_cursor=None,
        has_more=len(rows) > limit,
    )


@router.get(
    "/assignment-rules/{rule_id}",
    operation_id="assignment_rules_get",
    summary="Get an assignment rule",
    response_model=AssignmentRule,
    responses=problem_responses(403, 404),
)
async def get_rule(
    request: Request,
    response: Response,
    rule_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> AssignmentRule:
    """Fetch one assignment rule by id."""
    rule = await assignment_rule_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("assignment_rule", rule_id, "assignment rule"),
    )
    set_etag(response, rule.version)
    return AssignmentRule.model_validate(rule)


@router.patch(
    "/assignment-rules/{rule_id}",
    operation_id="assignment_rules_update",
    summary="Update an assignment rule",
    response_model=AssignmentRule,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_rule(
    request: Request,
    response: Response,
    rule_id: str,
    payload: AssignmentRuleUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("users:write")),
) -> AssignmentRule:
    """Change a rule's criteria, position, strategy or target."""
    rule = await assignment_rule_service.update(
        request.state.session,
        principal,
        parse_path_id("assignment_rule", rule_id, "assignment rule"),
        payload,
        if_match=if_match,
    )
    set_etag(response, rule.version)
    return AssignmentRule.model_validate(rule)


@router.delete(
    "/assignment-rules/{rule_id}",
    operation_id="assignment_rules_delete",
    summary="Delete an assignment rule",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(403, 404),
)
async def delete_rule(
    request: Request,
    rule_id: str,
    principal: Principal = Depends(require("users:write")),
) -> Response:
    """Delete a rule; leads it assigned keep their owner and audit rows."""
    await assignment_rule_service.delete(
        request.state.session,
        principal,
        parse_path_id("assignment_rule", rule_id, "assignment rule"),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/leads/{lead_id}/assign",
    operation_id="leads_assign",
    summary="Assign a lead",
    response_model=Lead,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def assign(
    request: Request,
    response: Response,
    lead_id: str,
    payload: LeadAssign,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> Lead:
    """Set the owner by hand with owner_id, or send {"rule": "auto"} to run the rules."""
    lead = await assign_lead(
        request.state.session,
        principal,
        parse_path_id("lead", lead_id, "lead"),
        payload,
        if_match=if_match,
    )
    set_etag(response, lead.version)
    return Lead.model_validate(lead)


@router.get(
    "/leads/{lead_id}/assignments",
    operation_id="leads_list_assignments",
    summary="List a lead's owner changes",
    response_model=Page[LeadAssignmentRecord],
    responses=problem_responses(403, 404),
)
async def assignments(
    request: Request,
    lead_id: str,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[LeadAssignmentRecord]:
    """List the audit of a lead's owner changes, newest first."""
    rows, next_cursor, has_more = await list_assignments(
        request.state.session,
        principal.workspace_id,
        parse_path_id("lead", lead_id, "lead"),
        limit=limit,
        cursor=cursor,
    )
    return Page[LeadAssignmentRecord](
        data=[LeadAssignmentRecord.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )
