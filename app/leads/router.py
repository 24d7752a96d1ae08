from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import CampaignId, PartnerId, Timestamp, UserId
from app.customers.schemas import Contact
from app.customers.service import customer_service
from app.leads import paths as _paths  # noqa: F401  (registers lead_id)
from app.leads.conversion import Match, convert_lead
from app.leads.listing import DEFAULT_SORT, AttributeFilters, LeadSort, ListCursor
from app.leads.schemas import (
    ConversionMatch,
    Lead,
    LeadConversion,
    LeadConvert,
    LeadCreate,
    LeadSource,
    LeadStatus,
    LeadUpdate,
    Tag,
)
from app.leads.service import lead_service
from app.opportunities.schemas import Opportunity

router = APIRouter(prefix="/leads", tags=["leads"], route_class=UnitOfWorkRoute)


@router.post(
    "",
    operation_id="leads_create",
    summary="Create a lead",
    status_code=status.HTTP_201_CREATED,
    response_model=Lead,
    responses={
        200: {
            "description": "Merged into the open lead with the same email.",
            "model": Lead,
        },
        **problem_responses(403, 409, 413, 415),
    },
)
async def create_lead(
    request: Request,
    response: Response,
    payload: LeadCreate,
    principal: Principal = Depends(require("leads:write")),
) -> Lead:
    """Create a lead; an open lead with the same email is a 409 unless asked to merge."""
    outcome = await lead_service.create_or_merge(
        request.state.session,
        principal,
        payload,
        default_phone_region=request.app.state.settings.default_phone_region,
    )
    lead = outcome.lead
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    set_etag(response, lead.version)
    response.headers["Location"] = f"/v1/leads/{ids.encode('lead', lead.id)}"
    return Lead.model_validate(lead)


@router.get(
    "",
    operation_id="leads_list",
    summary="List leads",
    response_model=Page[Lead],
    responses=problem_responses(403),
)
async def list_leads(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: ListCursor = None,
    status: Annotated[
        list[LeadStatus] | None,
        Query(description="Only these statuses; repeat the parameter for several."),
    ] = None,
    owner_id: Annotated[UserId | None, Query(description="Only this owner.")] = None,
    email: Annotated[
        str | None, Query(max_length=320, description="Exact email.")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Case-insensitive substring of name, email or company.",
        ),
    ] = None,
    created_after: Annotated[Timestamp | None, Query()] = None,
    created_before: Annotated[Timestamp | None, Query()] = None,
    campaign_id: Annotated[
        CampaignId | None,
        Query(description="Only leads with a touch of this campaign."),
    ] = None,
    partner_id: Annotated[
        PartnerId | None, Query(description="Only leads with a touch of this partner.")
    ] = None,
    source: Annotated[
        list[LeadSource] | None,
        Query(description="Only these sources; repeat the parameter for several."),
    ] = None,
    score_min: Annotated[int | None, Query(ge=-1_000_000, le=1_000_000)] = None,
    score_max: Annotated[int | None, Query(ge=-1_000_000, le=1_000_000)] = None,
    tag: Annotated[
        list[Tag] | None,
        Query(max_length=20, description="Only leads with every one of these tags."),
    ] = None,
    updated_after: Annotated[Timestamp | None, Query()] = None,
    updated_before: Annotated[Timestamp | None, Query()] = None,
    attribute: AttributeFilters = None,
    sort: Annotated[
        LeadSort, Query(description="Sort key; a leading - sorts descending.")
    ] = DEFAULT_SORT,
) -> Page[Lead]:
    """List leads, filtered and sorted; newest first by default."""
    rows, next_cursor, has_more = await lead_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        status=status,
        owner_id=owner_id,
        email=email,
        query=q,
        created_after=created_after,
        created_before=created_before,
        campaign_id=campaign_id,
        partner_id=partner_id,
        sources=source,
        score_min=score_min,
        score_max=score_max,
        tags=tag,
        updated_after=updated_after,
        updated_before=updated_before,
        attribute_filters=attribute,
        sort=sort,
    )
    return Page[Lead](
        data=[Lead.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/{lead_id:lead_id}",
    operation_id="leads_get",
    summary="Get a lead",
    response_model=Lead,
    responses=problem_responses(403, 404),
)
async def get_lead(
    request: Request,
    response: Response,
    lead_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> Lead:
    """Fetch one lead by id."""
    lead = await lead_service.read(
        request.state.session,
        principal.workspace_id,
        parse_path_id("lead", lead_id, "lead"),
    )
    set_etag(response, lead["version"])
    return Lead.model_validate(dict(lead))


@router.patch(
    "/{lead_id:lead_id}",
    operation_id="leads_update",
    summary="Update a lead",
    response_model=Lead,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_lead(
    request: Request,
    response: Response,
    lead_id: str,
    payload: LeadUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> Lead:
    """Change fields or the status of a lead; send If-Match to guard against races."""
    lead = await lead_service.update(
        request.state.session,
        principal,
        parse_path_id("lead", lead_id, "lead"),
        payload,
        if_match=if_match,
        default_phone_region=request.app.state.settings.default_phone_region,
    )
    set_etag(response, lead.version)
    return Lead.model_validate(lead)


@router.post(
    "/{lead_id}/convert",
    operation_id="leads_convert",
    summary="Convert a lead",
    response_model=LeadConversion,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def convert(
    request: Request,
    response: Response,
    lead_id: str,
    payload: LeadConvert | None = None,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> LeadConversion:
    """Turn an open lead into a customer, a contact and an opportunity, atomically."""
    session = request.state.session
    conversion = await convert_lead(
        session,
        principal,
        parse_path_id("lead", lead_id, "lead"),
        payload or LeadConvert(),
        if_match=if_match,
        default_phone_region=request.app.state.settings.default_phone_region,
    )
    set_etag(response, conversion.lead.version)
    customer, contact, opportunity = (
        conversion.customer,
        conversion.contact,
        conversion.opportunity,
    )
    return LeadConversion(
        dry_run=conversion.dry_run,
        lead_id=conversion.lead.id,
        customer_id=customer.id if customer is not None else None,
        contact_id=contact.id if contact is not None else None,
        opportunity_id=opportunity.id if opportunity is not None else None,
        customer_created=conversion.customer_created,
        customer_match=_match(conversion.customer_match),
        contact_created=conversion.contact_created,
        contact_match=_match(conversion.contact_match),
        opportunity_created=conversion.opportunity_created,
        activities_linked=conversion.activities_linked,
        touches_linked=conversion.touches_linked,
        exited_enrollment_ids=list(conversion.exited_enrollment_ids),
        lead=Lead.model_validate(conversion.lead),
        customer=(
            await customer_service.view(session, customer)
            if customer is not None
            else None
        ),
        contact=Contact.model_validate(contact) if contact is not None else None,
        opportunity=(
            Opportunity.model_validate(opportunity) if opportunity is not None else None
        ),
    )


def _match(match: Match | None) -> ConversionMatch | None:
    if match is None:
        return None
    return ConversionMatch.model_validate({"key": match.key, "value": match.value})
