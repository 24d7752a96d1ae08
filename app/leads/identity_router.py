"""Routes of lead identity: batch create, duplicates, merge, erasure and export."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from app.core.auth import Principal, require
from app.core.clock import utcnow
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import Problem, problem_responses
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.leads.batch import create_batch
from app.leads.dedupe import find_candidates
from app.leads.identity import IdentityKeys
from app.leads.identity_schemas import (
    DuplicateCandidate,
    DuplicateCandidates,
    LeadBatchCreate,
    LeadBatchItem,
    LeadBatchResult,
    LeadExport,
    LeadMerge,
)
from app.leads.merge import merge_leads
from app.leads.privacy import erase_lead, export_lead
from app.leads.schemas import Lead
from app.leads.service import lead_service

router = APIRouter(prefix="/leads", tags=["leads"], route_class=UnitOfWorkRoute)


@router.post(
    "/batch",
    operation_id="leads_batch_create",
    summary="Create leads in a batch",
    response_model=LeadBatchResult,
    responses=problem_responses(403, 409, 413, 415),
)
async def batch_create_leads(
    request: Request,
    payload: LeadBatchCreate,
    principal: Principal = Depends(require("leads:write")),
) -> LeadBatchResult:
    """Create up to 1,000 leads, with a created, duplicate or invalid result per item."""
    results = await create_batch(
        request.state.session,
        principal,
        payload,
        default_phone_region=request.app.state.settings.default_phone_region,
    )
    items = [
        LeadBatchItem(
            index=result.index,
            status=result.status,
            lead=Lead.model_validate(result.lead) if result.lead is not None else None,
            error=Problem.model_validate(result.error) if result.error else None,
        )
        for result in results
    ]
    return LeadBatchResult(
        created=sum(item.status == "created" for item in items),
        duplicates=sum(item.status == "duplicate" for item in items),
        invalid=sum(item.status == "invalid" for item in items),
        items=items,
    )


@router.get(
    "/{lead_id}/duplicates",
    operation_id="leads_duplicates",
    summary="List a lead's candidate duplicates",
    response_model=DuplicateCandidates,
    responses=problem_responses(403, 404),
)
async def list_duplicates(
    request: Request,
    lead_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> DuplicateCandidates:
    """List unmerged leads sharing this lead's email, phone or company domain."""
    session = request.state.session
    lead = await lead_service.get(
        session, principal.workspace_id, parse_path_id("lead", lead_id, "lead")
    )
    keys = IdentityKeys(
        lead.email_normalized, lead.phone_normalized, lead.company_domain
    )
    candidates = await find_candidates(
        session, principal.workspace_id, keys, exclude_id=lead.id
    )
    return DuplicateCandidates(
        data=[
            DuplicateCandidate(
                lead_id=candidate.lead_id,
                status=candidate.status,
                matched_keys=candidate.matched_keys,
            )
            for candidate in candidates
        ]
    )


@router.post(
    "/{lead_id}/merge",
    operation_id="leads_merge",
    summary="Merge a duplicate into a lead",
    response_model=Lead,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def merge(
    request: Request,
    response: Response,
    lead_id: str,
    payload: LeadMerge,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> Lead:
    """Merge duplicate_id into this lead, which survives; If-Match guards this lead."""
    survivor = await merge_leads(
        request.state.session,
        principal,
        parse_path_id("lead", lead_id, "lead"),
        payload.duplicate_id,
        if_match=if_match,
    )
    set_etag(response, survivor.version)
    return Lead.model_validate(survivor)


@router.post(
    "/{lead_id}/erase",
    operation_id="leads_erase",
    summary="Erase a lead's personal data",
    response_model=Lead,
    responses=problem_responses(403, 404, 412),
)
async def erase(
    request: Request,
    response: Response,
    lead_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> Lead:
    """Remove the lead's personal data, also from its earlier events; keep the rest."""
    lead = await erase_lead(
        request.state.session,
        principal,
        parse_path_id("lead", lead_id, "lead"),
        if_match=if_match,
    )
    set_etag(response, lead.version)
    return Lead.model_validate(lead)


@router.get(
    "/{lead_id}/export",
    operation_id="leads_export",
    summary="Export everything stored about a lead",
    response_model=LeadExport,
    responses=problem_responses(403, 404),
)
async def export(
    request: Request,
    lead_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> LeadExport:
    """Return every stored datum about the lead: the lead, its events and enrollments."""
    session = request.state.session
    lead = await lead_service.get(
        session, principal.workspace_id, parse_path_id("lead", lead_id, "lead")
    )
    return LeadExport(
        lead_id=lead.id,
        exported_at=utcnow(),
        data=await export_lead(session, lead),
    )
