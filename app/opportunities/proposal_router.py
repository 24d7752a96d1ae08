from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.errors import Forbidden
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import OpportunityId
from app.opportunities.proposal_schemas import (
    Proposal,
    ProposalAccept,
    ProposalCreate,
    ProposalReject,
    ProposalStatus,
    ProposalUpdate,
)
from app.opportunities.proposals import proposal_service, proposal_view

router = APIRouter(route_class=UnitOfWorkRoute, tags=["proposals"])


@router.post(
    "/opportunities/{opportunity_id}/proposals",
    operation_id="proposals_create",
    summary="Draft a proposal for an opportunity",
    status_code=status.HTTP_201_CREATED,
    response_model=Proposal,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def create_proposal(
    request: Request,
    response: Response,
    opportunity_id: str,
    payload: ProposalCreate,
    principal: Principal = Depends(require("sales:write")),
) -> Proposal:
    """Draft a proposal with the opportunity's line items, or with the lines sent."""
    proposal, lines = await proposal_service.create(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        payload,
    )
    set_etag(response, proposal.version)
    response.headers["Location"] = (
        f"/v1/proposals/{ids.encode('proposal', proposal.id)}"
    )
    return proposal_view(proposal, lines)


@router.get(
    "/proposals",
    operation_id="proposals_list",
    summary="List proposals",
    response_model=Page[Proposal],
    responses=problem_responses(403),
)
async def list_proposals(
    request: Request,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    opportunity_id: Annotated[
        OpportunityId | None, Query(description="Only this opportunity's proposals.")
    ] = None,
    status: Annotated[
        ProposalStatus | None,
        Query(description="Only this status; sent excludes expired proposals."),
    ] = None,
) -> Page[Proposal]:
    """List proposals, newest first."""
    rows, next_cursor, has_more = await proposal_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        opportunity_id=opportunity_id,
        status=status,
    )
    return Page[Proposal](
        data=[proposal_view(proposal, lines) for proposal, lines in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/proposals/{proposal_id}",
    operation_id="proposals_get",
    summary="Get a proposal",
    response_model=Proposal,
    responses=problem_responses(403, 404),
)
async def get_proposal(
    request: Request,
    response: Response,
    proposal_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> Proposal:
    """Fetch one proposal with its lines."""
    proposal, lines = await proposal_service.get_with_lines(
        request.state.session,
        principal.workspace_id,
        parse_path_id("proposal", proposal_id, "proposal"),
    )
    set_etag(response, proposal.version)
    return proposal_view(proposal, lines)


@router.patch(
    "/proposals/{proposal_id}",
    operation_id="proposals_update",
    summary="Update a draft proposal",
    response_model=Proposal,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_proposal(
    request: Request,
    response: Response,
    proposal_id: str,
    payload: ProposalUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Proposal:
    """Change a draft's terms, validity or lines; a sent proposal is 409."""
    proposal, lines = await proposal_service.update(
        request.state.session,
        principal,
        parse_path_id("proposal", proposal_id, "proposal"),
        payload,
        if_match=if_match,
    )
    set_etag(response, proposal.version)
    return proposal_view(proposal, lines)


@router.post(
    "/proposals/{proposal_id}/send",
    operation_id="proposals_send",
    summary="Mark a proposal as sent",
    response_model=Proposal,
    responses=problem_responses(403, 404, 409, 412),
)
async def send_proposal(
    request: Request,
    response: Response,
    proposal_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Proposal:
    """Freeze a draft as sent; without lines, or past its validity date, is 422."""
    proposal, lines = await proposal_service.send(
        request.state.session,
        principal,
        parse_path_id("proposal", proposal_id, "proposal"),
        if_match=if_match,
    )
    set_etag(response, proposal.version)
    return proposal_view(proposal, lines)


@router.post(
    "/proposals/{proposal_id}/accept",
    operation_id="proposals_accept",
    summary="Record that the customer accepted a proposal",
    response_model=Proposal,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def accept_proposal(
    request: Request,
    response: Response,
    proposal_id: str,
    payload: ProposalAccept,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Proposal:
    """Accept a sent proposal, by default winning the opportunity and invoicing it."""
    if payload.win_opportunity and "billing:write" not in principal.scopes:
        raise Forbidden(
            "Accepting with win_opportunity creates an invoice, which needs the "
            "scope 'billing:write'. Use a key that has it, or send "
            "win_opportunity false.",
            missing_scope="billing:write",
        )
    proposal, lines = await proposal_service.accept(
        request.state.session,
        principal,
        parse_path_id("proposal", proposal_id, "proposal"),
        payload,
        if_match=if_match,
    )
    set_etag(response, proposal.version)
    return proposal_view(proposal, lines)


@router.post(
    "/proposals/{proposal_id}/reject",
    operation_id="proposals_reject",
    summary="Record that the customer rejected a proposal",
    response_model=Proposal,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def reject_proposal(
    request: Request,
    response: Response,
    proposal_id: str,
    payload: ProposalReject,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Proposal:
    """Reject a sent proposal, with an optional reason; an expired one is 409."""
    proposal, lines = await proposal_service.reject(
        request.state.session,
        principal,
        parse_path_id("proposal", proposal_id, "proposal"),
        payload,
        if_match=if_match,
    )
    set_etag(response, proposal.version)
    return proposal_view(proposal, lines)
