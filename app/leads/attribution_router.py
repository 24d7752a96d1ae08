"""``/v1/campaigns``, ``/v1/partners`` and ``/v1/leads/{lead_id}/touches``."""

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
from app.leads.attribution import campaign_service, list_touches, partner_service
from app.leads.attribution_schemas import (
    Campaign,
    CampaignCreate,
    CampaignStatus,
    CampaignUpdate,
    Partner,
    PartnerCreate,
    PartnerUpdate,
    Touch,
)
from app.leads.service import lead_service

router = APIRouter(route_class=UnitOfWorkRoute)


@router.post(
    "/campaigns",
    tags=["campaigns"],
    operation_id="campaigns_create",
    summary="Create a campaign",
    status_code=status.HTTP_201_CREATED,
    response_model=Campaign,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_campaign(
    request: Request,
    response: Response,
    payload: CampaignCreate,
    principal: Principal = Depends(require("leads:write")),
) -> Campaign:
    """Create a campaign; its utm_campaign must be unique in the workspace."""
    campaign = await campaign_service.create(request.state.session, principal, payload)
    set_etag(response, campaign.version)
    response.headers["Location"] = (
        f"/v1/campaigns/{ids.encode('campaign', campaign.id)}"
    )
    return Campaign.model_validate(campaign)


@router.get(
    "/campaigns",
    tags=["campaigns"],
    operation_id="campaigns_list",
    summary="List campaigns",
    response_model=Page[Campaign],
    responses=problem_responses(403),
)
async def list_campaigns(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[
        CampaignStatus | None, Query(description="Only this status.")
    ] = None,
) -> Page[Campaign]:
    """List campaigns, newest first."""
    rows, next_cursor, has_more = await campaign_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        status=status,
    )
    return Page[Campaign](
        data=[Campaign.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/campaigns/{campaign_id}",
    tags=["campaigns"],
    operation_id="campaigns_get",
    summary="Get a campaign",
    response_model=Campaign,
    responses=problem_responses(403, 404),
)
async def get_campaign(
    request: Request,
    response: Response,
    campaign_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> Campaign:
    """Fetch one campaign by id."""
    campaign = await campaign_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("campaign", campaign_id, "campaign"),
    )
    set_etag(response, campaign.version)
    return Campaign.model_validate(campaign)


@router.patch(
    "/campaigns/{campaign_id}",
    tags=["campaigns"],
    operation_id="campaigns_update",
    summary="Update a campaign",
    response_model=Campaign,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_campaign(
    request: Request,
    response: Response,
    campaign_id: str,
    payload: CampaignUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> Campaign:
    """Change a campaign's fields or archive it; send If-Match to guard against races."""
    campaign = await campaign_service.update(
        request.state.session,
        principal,
        parse_path_id("campaign", campaign_id, "campaign"),
        payload,
        if_match=if_match,
    )
    set_etag(response, campaign.version)
    return Campaign.model_validate(campaign)


@router.post(
    "/partners",
    tags=["partners"],
    operation_id="partners_create",
    summary="Create a partner",
    status_code=status.HTTP_201_CREATED,
    response_model=Partner,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_partner(
    request: Request,
    response: Response,
    payload: PartnerCreate,
    principal: Principal = Depends(require("leads:write")),
) -> Partner:
    """Create a referral partner; its referral code must be unique in the workspace."""
    partner = await partner_service.create(request.state.session, principal, payload)
    set_etag(response, partner.version)
    response.headers["Location"] = f"/v1/partners/{ids.encode('partner', partner.id)}"
    return Partner.model_validate(partner)


@router.get(
    "/partners",
    tags=["partners"],
    operation_id="partners_list",
    summary="List partners",
    response_model=Page[Partner],
    responses=problem_responses(403),
)
async def list_partners(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    active: Annotated[
        bool | None, Query(description="Only active, or only inactive, partners.")
    ] = None,
) -> Page[Partner]:
    """List partners, newest first."""
    rows, next_cursor, has_more = await partner_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        active=active,
    )
    return Page[Partner](
        data=[Partner.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/partners/{partner_id}",
    tags=["partners"],
    operation_id="partners_get",
    summary="Get a partner",
    response_model=Partner,
    responses=problem_responses(403, 404),
)
async def get_partner(
    request: Request,
    response: Response,
    partner_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> Partner:
    """Fetch one partner by id."""
    partner = await partner_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("partner", partner_id, "partner"),
    )
    set_etag(response, partner.version)
    return Partner.model_validate(partner)


@router.patch(
    "/partners/{partner_id}",
    tags=["partners"],
    operation_id="partners_update",
    summary="Update a partner",
    response_model=Partner,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_partner(
    request: Request,
    response: Response,
    partner_id: str,
    payload: PartnerUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> Partner:
    """Change a partner's fields or deactivate it; send If-Match to guard against races."""
    partner = await partner_service.update(
        request.state.session,
        principal,
        parse_path_id("partner", partner_id, "partner"),
        payload,
        if_match=if_match,
    )
    set_etag(response, partner.version)
    return Partner.model_validate(partner)


@router.get(
    "/leads/{lead_id}/touches",
    tags=["leads"],
    operation_id="leads_touches_list",
    summary="List a lead's touches",
    response_model=Page[Touch],
    responses=problem_responses(403, 404),
)
async def list_lead_touches(
    request: Request,
    lead_id: str,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Touch]:
    """List the attribution touches of a lead, newest first."""
    session = request.state.session
    lead = await lead_service.read(
        session, principal.workspace_id, parse_path_id("lead", lead_id, "lead")
    )
    rows, next_cursor, has_more = await list_touches(
        session, lead["id"], limit=limit, cursor=cursor
    )
    return Page[Touch](
        data=[Touch.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )
