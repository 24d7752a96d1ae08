from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import OutputModel
from app.nurture.executors import sequence_secret
from app.nurture.service import sequence_service
from app.nurture.settings_service import (
    NurtureSettingsUpdate,
    NurtureSettingsView,
    nurture_settings_service,
)

router = APIRouter(tags=["sequences"], route_class=UnitOfWorkRoute)


@router.get(
    "/nurture-settings",
    operation_id="nurture_settings_get",
    summary="Get the nurture settings",
    response_model=NurtureSettingsView,
    responses=problem_responses(403),
)
async def get_nurture_settings(
    request: Request,
    response: Response,
    principal: Principal = Depends(require("nurture:read")),
) -> NurtureSettingsView:
    """Show the per-lead email frequency cap; the ETag is the version."""
    settings = await nurture_settings_service.read(
        request.state.session, principal.workspace_id
    )
    set_etag(response, settings.version)
    return settings


@router.patch(
    "/nurture-settings",
    operation_id="nurture_settings_update",
    summary="Update the nurture settings",
    response_model=NurtureSettingsView,
    responses=problem_responses(403, 412, 413, 415),
)
async def update_nurture_settings(
    request: Request,
    response: Response,
    payload: NurtureSettingsUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> NurtureSettingsView:
    """Set the per-lead email frequency cap (email_cap_count null: no cap)."""
    settings = await nurture_settings_service.update(
        request.state.session, principal, payload, if_match=if_match
    )
    set_etag(response, settings.version)
    return settings


class SequenceWebhookSecret(OutputModel):
    object: Literal["sequence_webhook_secret"] = "sequence_webhook_secret"
    secret: str = Field(
        description="The whsec_ secret that signs the requests of the sequence's "
        "webhook steps, per Standard Webhooks."
    )


@router.get(
    "/sequences/{sequence_id}/webhook-secret",
    operation_id="sequences_webhook_secret_get",
    summary="Get a sequence's webhook signing secret",
    response_model=SequenceWebhookSecret,
    responses=problem_responses(403, 404),
)
async def get_sequence_webhook_secret(
    request: Request,
    sequence_id: str,
    principal: Principal = Depends(require("nurture:write")),
) -> SequenceWebhookSecret:
    """Show the secret that signs the sequence's webhook steps, creating it if missing."""
    session = request.state.session
    sequence = await sequence_service.get_row(
        session,
        principal.workspace_id,
        parse_path_id("sequence", sequence_id, "sequence"),
    )
    return SequenceWebhookSecret(secret=await sequence_secret(session, sequence.id))
