from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.leads.scoring_rules import (
    engagement_service,
    scoring_rule_service,
    scoring_settings_service,
)
from app.leads.scoring_schemas import (
    Engagement,
    EngagementCreate,
    ScoringRule,
    ScoringRuleCreate,
    ScoringRuleUpdate,
    ScoringSettings,
    ScoringSettingsUpdate,
)

router = APIRouter(tags=["lead scoring"], route_class=UnitOfWorkRoute)


@router.post(
    "/scoring-rules",
    operation_id="scoring_rules_create",
    summary="Create a scoring rule",
    status_code=status.HTTP_201_CREATED,
    response_model=ScoringRule,
    responses=problem_responses(403, 413, 415),
)
async def create_scoring_rule(
    request: Request,
    response: Response,
    payload: ScoringRuleCreate,
    principal: Principal = Depends(require("leads:write")),
) -> ScoringRule:
    """Create a rule; open leads are rescored in the background."""
    rule = await scoring_rule_service.create(request.state.session, principal, payload)
    set_etag(response, rule.version)
    response.headers["Location"] = (
        f"/v1/scoring-rules/{ids.encode('scoring_rule', rule.id)}"
    )
    return ScoringRule.model_validate(rule)


@router.get(
    "/scoring-rules",
    operation_id="scoring_rules_list",
    summary="List scoring rules",
    response_model=Page[ScoringRule],
    responses=problem_responses(403),
)
async def list_scoring_rules(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ScoringRule]:
    """List the workspace's scoring rules, newest first."""
    rows, next_cursor, has_more = await scoring_rule_service.list(
        request.state.session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return Page[ScoringRule](
        data=[ScoringRule.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/scoring-rules/{rule_id}",
    operation_id="scoring_rules_get",
    summary="Get a scoring rule",
    response_model=ScoringRule,
    responses=problem_responses(403, 404),
)
async def get_scoring_rule(
    request: Request,
    response: Response,
    rule_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> ScoringRule:
    """Fetch one scoring rule by id."""
    rule = await scoring_rule_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("scoring_rule", rule_id, "scoring rule"),
    )
    set_etag(response, rule.version)
    return ScoringRule.model_validate(rule)


@router.patch(
    "/scoring-rules/{rule_id}",
    operation_id="scoring_rules_update",
    summary="Update a scoring rule",
    response_model=ScoringRule,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_scoring_rule(
    request: Request,
    response: Response,
    rule_id: str,
    payload: ScoringRuleUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> ScoringRule:
    """Change a rule; open leads are rescored in the background."""
    rule = await scoring_rule_service.update(
        request.state.session,
        principal,
        parse_path_id("scoring_rule", rule_id, "scoring rule"),
        payload,
        if_match=if_match,
    )
    set_etag(response, rule.version)
    return ScoringRule.model_validate(rule)


@router.delete(
    "/scoring-rules/{rule_id}",
    operation_id="scoring_rules_delete",
    summary="Delete a scoring rule",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 412),
)
async def delete_scoring_rule(
    request: Request,
    rule_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> Response:
    """Delete a rule; open leads are rescored in the background."""
    await scoring_rule_service.delete(
        request.state.session,
        principal,
        parse_path_id("scoring_rule", rule_id, "scoring rule"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/scoring-settings",
    operation_id="scoring_settings_get",
    summary="Get the scoring settings",
    response_model=ScoringSettings,
    responses=problem_responses(403),
)
async def get_scoring_settings(
    request: Request,
    response: Response,
    principal: Principal = Depends(require("leads:read")),
) -> ScoringSettings:
    """Show the sales-ready threshold and the scoring version; the ETag is the version."""
    settings = await scoring_settings_service.read(
        request.state.session, principal.workspace_id
    )
    set_etag(response, settings.scoring_version)
    return settings


@router.patch(
    "/scoring-settings",
    operation_id="scoring_settings_update",
    summary="Update the scoring settings",
    response_model=ScoringSettings,
    responses=problem_responses(403, 412, 413, 415),
)
async def update_scoring_settings(
    request: Request,
    response: Response,
    payload: ScoringSettingsUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> ScoringSettings:
    """Set the sales-ready threshold (null: none); open leads are rescored."""
    settings = await scoring_settings_service.update(
        request.state.session, principal, payload, if_match=if_match
    )
    set_etag(response, settings.scoring_version)
    return settings


@router.post(
    "/leads/{lead_id}/engagements",
    tags=["leads"],
    operation_id="leads_engagements_create",
    summary="Record an engagement",
    status_code=status.HTTP_201_CREATED,
    response_model=Engagement,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def create_engagement(
    request: Request,
    lead_id: str,
    payload: EngagementCreate,
    principal: Principal = Depends(require("leads:write")),
) -> Engagement:
    """Record one engagement event of a lead and rescore the lead."""
    engagement = await engagement_service.record(
        request.state.session,
        principal,
        parse_path_id("lead", lead_id, "lead"),
        payload,
    )
    return Engagement.model_validate(engagement)


@router.get(
    "/leads/{lead_id}/engagements",
    tags=["leads"],
    operation_id="leads_engagements_list",
    summary="List a lead's engagements",
    response_model=Page[Engagement],
    responses=problem_responses(403, 404),
)
async def list_engagements(
    request: Request,
    lead_id: str,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Engagement]:
    """List a lead's engagements, newest recorded first."""
    rows, next_cursor, has_more = await engagement_service.list(
        request.state.session,
        principal.workspace_id,
        parse_path_id("lead", lead_id, "lead"),
        limit=limit,
        cursor=cursor,
    )
    return Page[Engagement](
        data=[Engagement.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )
