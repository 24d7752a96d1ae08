"""The seller's billing profile: the details that every invoice of a workspace prints."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.document_schemas import BillingProfile as BillingProfileSchema
from app.billing.document_schemas import BillingProfileUpdate
from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.events import emit
from app.models import BillingProfile

log = structlog.get_logger(__name__)

_ADDRESS_FIELDS = ("line1", "line2", "city", "region", "postal_code", "country")
_PLAIN_FIELDS = (
    "legal_name",
    "email",
    "phone",
    "payment_instructions",
    "invoice_footer",
)


def billing_profile_view(
    profile: BillingProfile | None,
) -> BillingProfileSchema:
    """Shape the profile as the API shows it; a workspace without one gets an empty one."""
    if profile is None:
        return BillingProfileSchema(
            id=None,
            legal_name=None,
            email=None,
            phone=None,
            address=None,
            tax_id=None,
            payment_instructions=None,
            invoice_footer=None,
            version=0,
            created_at=None,
            updated_at=None,
        )
    address = None
    if profile.address_line1 is not None:
        address = {
            name: getattr(profile, f"address_{name}") for name in _ADDRESS_FIELDS
        }
    tax_id = None
    if profile.tax_id is not None:
        tax_id = {"type": profile.tax_id_type, "value": profile.tax_id}
    return BillingProfileSchema.model_validate(
        {
            **{name: getattr(profile, name) for name in _PLAIN_FIELDS},
            "id": profile.id,
            "address": address,
            "tax_id": tax_id,
            "version": profile.version,
            "created_at": profile.created_at,
            "updated_at": profile.updated_at,
        }
    )


def _columns(payload: BillingProfileUpdate) -> dict[str, Any]:
    """Turn the sent fields into column values; an absent field is left out."""
    sent = payload.model_fields_set
    columns: dict[str, Any] = {
        name: getattr(payload, name) for name in _PLAIN_FIELDS if name in sent
    }
    if payload.email is not None:
        columns["email"] = str(payload.email)
    if "address" in sent:
        address = payload.address
        for name in _ADDRESS_FIELDS:
            columns[f"address_{name}"] = getattr(address, name) if address else None
    if "tax_id" in sent:
        columns["tax_id"] = payload.tax_id.value if payload.tax_id else None
        columns["tax_id_type"] = payload.tax_id.type if payload.tax_id else None
    return columns


class BillingProfileService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> BillingProfile | None:
        query = select(BillingProfile).where(
            BillingProfile.workspace_id == workspace_id
        )
        if for_update:
            query = query.with_for_update()
        result: BillingProfile | None = await session.scalar(
            query.execution_options(populate_existing=True)
        )
        return result

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: BillingProfileUpdate,
        *,
        if_match: str | None,
    ) -> BillingProfile:
        """Change the profile, creating it on first use; ``If-Match: "0"`` means none yet.

        The insert skips on conflict and the row is then locked, so two first updates
        that race both land, one after the other.
        """
        workspace_id = principal.workspace_id
        columns = _columns(payload)
        profile = await self.get(session, workspace_id, for_update=True)
        created = False
        if profile is None:
            check_if_match(if_match, 0)
            inserted = await session.scalar(
                insert(BillingProfile)
                .values(
                    id=ids.new_uuid(), workspace_id=workspace_id, version=1, **columns
                )
                .on_conflict_do_nothing(index_elements=["workspace_id"])
                .returning(BillingProfile.id)
            )
            created = inserted is not None
            profile = await self.get(session, workspace_id, for_update=True)
            assert profile is not None
            if not created:
                # Another request created the profile first; its version counts.
                check_if_match(if_match, profile.version)
        else:
            check_if_match(if_match, profile.version)

        if not created:
            for name, value in columns.items():
                setattr(profile, name, value)
            if not session.is_modified(profile):
                return profile
            await session.flush()
            await session.refresh(profile)

        await emit(
            session,
            workspace_id=workspace_id,
            type="billing_profile.updated",
            object_type="billing_profile",
            object_id=profile.id,
            data=billing_profile_view(profile).model_dump(mode="json"),
            actor=principal.actor,
        )
        log.info(
            "billing_profile.updated",
            workspace_id=str(workspace_id),
            fields=sorted(payload.model_fields_set),
        )
        return profile


billing_profile_service = BillingProfileService()
