"""Campaigns, partners and the touches that attribute each lead to its sources.

Every lead gets a first touch when it is created, and another touch for each later
capture of the same person. Touches are append-only; the lead keeps the ids of its
first and latest touch, so revenue can be traced to first-touch and last-touch sources.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import Conflict, FieldError, InvalidInput
from app.core.events import emit
from app.leads.attribution_errors import (
    CampaignNotFound,
    DuplicateReferralCode,
    DuplicateUtmCampaign,
    PartnerNotFound,
)
from app.leads.attribution_repository import AttributionRepository
from app.leads.attribution_schemas import Campaign as CampaignSchema
from app.leads.attribution_schemas import (
    CampaignCreate,
    CampaignUpdate,
    LeadAttribution,
    PartnerCreate,
    PartnerUpdate,
)
from app.leads.attribution_schemas import Partner as PartnerSchema
from app.models import Campaign, Lead, LeadTouch, Partner

log = structlog.get_logger(__name__)


class CaptureAttribution(LeadAttribution):
    """Attribution of a public capture: the form, and a referral code that may be stale.

    A visitor's link may carry a referral code that no active partner has any more;
    a capture keeps such a code on the touch without a partner instead of failing.
    """

    form_id: uuid.UUID | None = None


async def record_touch(
    session: AsyncSession,
    lead: Lead,
    *,
    channel: str,
    attribution: LeadAttribution | None,
) -> LeadTouch:
    """Append a touch to ``lead`` and make it the lead's latest touch.

    ``channel`` is the lead's declared source; ``api`` is refined from the attribution
    (partner, referral or campaign). An unknown campaign or partner, or a referral code
    no active partner has, raises ``InvalidInput`` naming the ``attribution`` field.
    The first touch of a new lead does not change its version; a later touch does.
    """
    repository = AttributionRepository.from_session(session)
    values = await _resolve(repository, lead.workspace_id, attribution)
    touch = LeadTouch(
        id=ids.new_uuid(),
        workspace_id=lead.workspace_id,
        lead_id=lead.id,
        channel=_refine_channel(channel, values),
        occurred_at=utcnow(),
        **values,
    )
    await repository.add(touch)

    if lead.first_touch_id is None:
        await repository.set_first_touch(lead, touch.id)
        set_committed_value(lead, "first_touch_id", touch.id)
        set_committed_value(lead, "last_touch_id", touch.id)
    else:
        lead.last_touch_id = touch.id
    log.info(
        "lead.touch_recorded",
        lead_id=str(lead.id),
        touch_id=str(touch.id),
        channel=touch.channel,
    )
    return touch


def _refine_channel(channel: str, values: dict[str, Any]) -> str:
    if channel != "api":
        return channel
    if values["partner_id"] is not None and values["referral_code"] is None:
        return "partner"
    if values["referral_code"] is not None:
        return "referral"
    if values["campaign_id"] is not None:
        return "campaign"
    return channel


async def _resolve(
    repository: AttributionRepository,
    workspace_id: uuid.UUID,
    attribution: LeadAttribution | None,
) -> dict[str, Any]:
    attribution = attribution or LeadAttribution()
    values: dict[str, Any] = {
        name: getattr(attribution, name) for name in LeadAttribution.model_fields
    }
    values["form_id"] = getattr(attribution, "form_id", None)
    lenient = isinstance(attribution, CaptureAttribution)

    campaign_id = values["campaign_id"]
    if campaign_id is not None:
        if not await repository.campaign_exists(workspace_id, campaign_id):
            raise _unknown(
                "attribution.campaign_id",
                f"No campaign with id {ids.encode('campaign', campaign_id)} exists in "
                "this workspace. Create it first, or omit campaign_id.",
            )
    elif values["utm_campaign"] is not None:
        values["campaign_id"] = await repository.find_campaign_by_utm(
            workspace_id, values["utm_campaign"]
        )

    partner_id = values["partner_id"]
    if partner_id is not None:
        partner = await repository.get_partner(
            workspace_id, partner_id, for_update=False
        )
        if partner is None:
            raise _unknown(
                "attribution.partner_id",
                f"No partner with id {ids.encode('partner', partner_id)} exists in "
                "this workspace. Create it first, or omit partner_id.",
            )
    code = values["referral_code"]
    if code is not None:
        partner = await repository.find_partner_by_code(workspace_id, code)
        if partner is not None and partner.active:
            values["partner_id"] = partner.id
        elif not lenient:
            raise _unknown(
                "attribution.referral_code",
                f"No active partner has the referral code {code!r}. Check the code, "
                "or omit referral_code.",
            )
    return values


def _unknown(field: str, detail: str) -> InvalidInput:
    return InvalidInput(detail, errors=[FieldError(field, "not found", "not_found")])


async def list_touches(
    session: AsyncSession, lead_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[Sequence[LeadTouch], str | None, bool]:
    """List a lead's touches newest first; the caller has checked the lead's workspace."""
    return await AttributionRepository.from_session(session).list_touches(
        lead_id, limit=limit, cursor=cursor
    )


def _required_not_null(changes: dict[str, Any], names: tuple[str, ...]) -> None:
    nulls = [name for name in names if name in changes and changes[name] is None]
    if nulls:
        raise InvalidInput(
            f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
            errors=[
                FieldError(name, "cannot be null", "null_not_allowed") for name in nulls
            ],
        )


async def _flush_unique(session: AsyncSession, error: Conflict) -> None:
    """Flush in a savepoint, raising ``error`` when a unique index rejects the row."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as integrity_error:
        raise error from integrity_error


class CampaignService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: CampaignCreate
    ) -> Campaign:
        values = payload.model_dump()
        _check_campaign(values)
        campaign = Campaign(
            id=ids.new_uuid(), workspace_id=principal.workspace_id, **values
        )
        session.add(campaign)
        await _flush_unique(session, _duplicate_utm(campaign.utm_campaign))
        await session.refresh(campaign)

        await _emit_campaign(session, principal, campaign, "campaign.created")
        return campaign

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        campaign_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Campaign:
        campaign = await AttributionRepository.from_session(session).get_campaign(
            workspace_id, campaign_id, for_update=for_update
        )
        if campaign is None:
            raise CampaignNotFound(
                f"No campaign with id {ids.encode('campaign', campaign_id)} exists in "
                "this workspace."
            )
        return campaign

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None,
    ) -> tuple[Sequence[Campaign], str | None, bool]:
        return await AttributionRepository.from_session(session).list_campaigns(
            workspace_id, limit=limit, cursor=cursor, status=status
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        campaign_id: uuid.UUID,
        payload: CampaignUpdate,
        *,
        if_match: str | None,
    ) -> Campaign:
        campaign = await self.get(
            session, principal.workspace_id, campaign_id, for_update=True
        )
        check_if_match(if_match, campaign.version)

        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        _required_not_null(changes, ("name", "status"))
        if changes.get("budget_amount", ...) is None:
            changes.setdefault("budget_currency", None)
        merged = {
            name: changes.get(name, getattr(campaign, name))
            for name in CampaignCreate.model_fields
        }
        _check_campaign(merged)
        for name, value in changes.items():
            setattr(campaign, name, value)
        if not session.is_modified(campaign):
            return campaign
        await _flush_unique(session, _duplicate_utm(campaign.utm_campaign))
        await session.refresh(campaign)

        await _emit_campaign(session, principal, campaign, "campaign.updated")
        return campaign


def _check_campaign(values: dict[str, Any]) -> None:
    errors = []
    if (values["budget_amount"] is None) != (values["budget_currency"] is None):
        errors.append(
            FieldError(
                "budget_currency"
                if values["budget_amount"] is not None
                else "budget_amount",
                "budget_amount and budget_currency go together",
                "budget_incomplete",
            )
        )
    starts, ends = values["starts_on"], values["ends_on"]
    if starts is not None and ends is not None and ends < starts:
        errors.append(FieldError("ends_on", "is before starts_on", "date_order"))
    if errors:
        raise InvalidInput(
            "The campaign is invalid: give budget_amount together with "
            "budget_currency, and an ends_on no earlier than starts_on.",
            errors=errors,
        )


def _duplicate_utm(utm_campaign: str | None) -> DuplicateUtmCampaign:
    return DuplicateUtmCampaign(
        f"Another campaign of this workspace has the utm_campaign {utm_campaign!r}. "
        "Choose another value.",
        errors=[FieldError("utm_campaign", "already in use", "duplicate")],
    )


async def _emit_campaign(
    session: AsyncSession, principal: Principal, campaign: Campaign, type: str
) -> None:
    await emit(
        session,
        workspace_id=campaign.workspace_id,
        type=type,
        object_type="campaign",
        object_id=campaign.id,
        data=CampaignSchema.model_validate(campaign).model_dump(mode="json"),
        actor=principal.actor,
    )
    log.info(type, campaign_id=str(campaign.id))


class PartnerService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: PartnerCreate
    ) -> Partner:
        partner = Partner(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            **payload.model_dump(),
        )
        session.add(partner)
        await _flush_unique(session, _duplicate_code(partner.referral_code))
        await session.refresh(partner)

        await _emit_partner(session, principal, partner, "partner.created")
        return partner

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        partner_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Partner:
        partner = await AttributionRepository.from_session(session).get_partner(
            workspace_id, partner_id, for_update=for_update
        )
        if partner is None:
            raise PartnerNotFound(
                f"No partner with id {ids.encode('partner', partner_id)} exists in "
                "this workspace."
            )
        return partner

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        active: bool | None,
    ) -> tuple[Sequence[Partner], str | None, bool]:
        return await AttributionRepository.from_session(session).list_partners(
            workspace_id, limit=limit, cursor=cursor, active=active
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        partner_id: uuid.UUID,
        payload: PartnerUpdate,
        *,
        if_match: str | None,
    ) -> Partner:
        partner = await self.get(
            session, principal.workspace_id, partner_id, for_update=True
        )
        check_if_match(if_match, partner.version)

        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        _required_not_null(changes, ("name", "referral_code", "active"))
        for name, value in changes.items():
            setattr(partner, name, value)
        if not session.is_modified(partner):
            return partner
        await _flush_unique(session, _duplicate_code(partner.referral_code))
        await session.refresh(partner)

        await _emit_partner(session, principal, partner, "partner.updated")
        return partner


def _duplicate_code(referral_code: str) -> DuplicateReferralCode:
    return DuplicateReferralCode(
        f"Another partner of this workspace has the referral code {referral_code!r}. "
        "Choose another code.",
        errors=[FieldError("referral_code", "already in use", "duplicate")],
    )


async def _emit_partner(
    session: AsyncSession, principal: Principal, partner: Partner, type: str
) -> None:
    await emit(
        session,
        workspace_id=partner.workspace_id,
        type=type,
        object_type="partner",
        object_id=partner.id,
        data=PartnerSchema.model_validate(partner).model_dump(mode="json"),
        actor=principal.actor,
    )
    log.info(type, partner_id=str(partner.id))


campaign_service = CampaignService()
partner_service = PartnerService()
