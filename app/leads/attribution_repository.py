"""Queries of campaigns, partners, capture forms, touches and consents."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import (
    ApiKey,
    Campaign,
    CaptureForm,
    FormPublishableKey,
    Lead,
    LeadTouch,
    Partner,
)
from app.models.lead import OPEN_LEAD_STATUSES


class AttributionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> AttributionRepository:
        return cls(session)

    async def get_campaign(
        self, workspace_id: uuid.UUID, campaign_id: uuid.UUID, *, for_update: bool
    ) -> Campaign | None:
        statement = select(Campaign).where(
            Campaign.workspace_id == workspace_id, Campaign.id == campaign_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def find_campaign_by_utm(
        self, workspace_id: uuid.UUID, utm_campaign: str
    ) -> uuid.UUID | None:
        return await self.session.scalar(
            select(Campaign.id).where(
                Campaign.workspace_id == workspace_id,
                Campaign.utm_campaign == utm_campaign,
            )
        )

    async def campaign_exists(
        self, workspace_id: uuid.UUID, campaign_id: uuid.UUID
    ) -> bool:
        found = await self.session.scalar(
            select(Campaign.id).where(
                Campaign.workspace_id == workspace_id, Campaign.id == campaign_id
            )
        )
        return found is not None

    async def list_campaigns(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None,
    ) -> tuple[Sequence[Campaign], str | None, bool]:
        statement: Select[Any] = select(Campaign).where(
            Campaign.workspace_id == workspace_id
        )
        if status is not None:
            statement = statement.where(Campaign.status == status)
        return await paginate(
            self.session, statement, Campaign.id, limit=limit, cursor=cursor
        )

    async def get_partner(
        self, workspace_id: uuid.UUID, partner_id: uuid.UUID, *, for_update: bool
    ) -> Partner | None:
        statement = select(Partner).where(
            Partner.workspace_id == workspace_id, Partner.id == partner_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def find_partner_by_code(
        self, workspace_id: uuid.UUID, referral_code: str
    ) -> Partner | None:
        return await self.session.scalar(
            select(Partner).where(
                Partner.workspace_id == workspace_id,
                Partner.referral_code == referral_code,
            )
        )

    async def list_partners(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        active: bool | None,
    ) -> tuple[Sequence[Partner], str | None, bool]:
        statement: Select[Any] = select(Partner).where(
            Partner.workspace_id == workspace_id
        )
        if active is not None:
            statement = statement.where(Partner.active.is_(active))
        return await paginate(
            self.session, statement, Partner.id, limit=limit, cursor=cursor
        )

    async def add(self, row: Any) -> None:
        self.session.add(row)
        await self.session.flush()

    async def list_touches(
        self, lead_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[LeadTouch], str | None, bool]:
        statement: Select[Any] = select(LeadTouch).where(LeadTouch.lead_id == lead_id)
        return await paginate(
            self.session, statement, LeadTouch.id, limit=limit, cursor=cursor
        )

    async def set_first_touch(self, lead: Lead, touch_id: uuid.UUID) -> None:
        """Point a just-inserted lead at its first touch, keeping its version at 1.

        A Core UPDATE bypasses the ORM's version counter, so the new lead keeps the
        version its ETag already shows; the first touch is part of its creation.
        """
        await self.session.execute(
            update(Lead)
            .where(Lead.id == lead.id)
            .values(first_touch_id=touch_id, last_touch_id=touch_id)
            .execution_options(synchronize_session=False)
        )

    async def get_form(
        self,
        workspace_id: uuid.UUID | None,
        form_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> CaptureForm | None:
        statement = select(CaptureForm).where(CaptureForm.id == form_id)
        if workspace_id is not None:
            statement = statement.where(CaptureForm.workspace_id == workspace_id)
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def list_forms(
        self, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[CaptureForm], str | None, bool]:
        statement: Select[Any] = select(CaptureForm).where(
            CaptureForm.workspace_id == workspace_id
        )
        return await paginate(
            self.session, statement, CaptureForm.id, limit=limit, cursor=cursor
        )

    async def find_form_key(
        self, key_hash: str, form_id: uuid.UUID
    ) -> tuple[uuid.UUID, uuid.UUID, str] | None:
        """Return the id, workspace and kind of an active key, if it may submit the form.

        A secret key matches whatever the form, so that the caller can tell it apart
        from an invalid key; a publishable key matches only the form it is bound to.
        """
        bound = exists().where(
            FormPublishableKey.api_key_id == ApiKey.id,
            FormPublishableKey.form_id == form_id,
        )
        row = (
            await self.session.execute(
                select(ApiKey.id, ApiKey.workspace_id, ApiKey.kind, bound).where(
                    ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)
                )
            )
        ).one_or_none()
        if row is None:
            return None
        key_id, workspace_id, kind, is_bound = row
        if kind != "secret" and not is_bound:
            return None
        return key_id, workspace_id, kind

    async def get_open_lead_for_update(
        self, workspace_id: uuid.UUID, email_normalized: str
    ) -> Lead | None:
        return await self.session.scalar(
            select(Lead)
            .where(
                Lead.workspace_id == workspace_id,
                Lead.email_normalized == email_normalized,
                Lead.status.in_(OPEN_LEAD_STATUSES),
            )
            .with_for_update()
        )


def touched_by(
    statement: Select[Any],
    *,
    campaign_id: uuid.UUID | None,
    partner_id: uuid.UUID | None,
) -> Select[Any]:
    """Keep the leads of ``statement`` with a touch of this campaign or partner."""
    if campaign_id is not None:
        statement = statement.where(
            exists().where(
                LeadTouch.lead_id == Lead.id, LeadTouch.campaign_id == campaign_id
            )
        )
    if partner_id is not None:
        statement = statement.where(
            exists().where(
                LeadTouch.lead_id == Lead.id, LeadTouch.partner_id == partner_id
            )
        )
    return statement
