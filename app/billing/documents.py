"""The seller's billing profile, and loading an invoice as the document its PDF prints.

``render_invoice_pdf`` is the one call other features use to get an invoice's PDF, for
example to attach it to a reminder email.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import pdf
from app.billing.document_schemas import BillingProfile as BillingProfileSchema
from app.billing.document_schemas import BillingProfileUpdate
from app.billing.service import invoice_service
from app.billing.views import invoice_view
from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.events import emit
from app.customers.service import customer_service
from app.models import BillingProfile
from app.workspaces.service import get_workspace

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


async def load_invoice_document(
    session: AsyncSession, workspace_id: uuid.UUID, invoice_id: uuid.UUID
) -> pdf.InvoiceDocument:
    """Load an invoice with its seller and buyer as the PDF prints them.

    Raises ``InvoiceNotFound`` when the invoice is not in the workspace.
    """
    invoice, lines = await invoice_service.get_with_lines(
        session, workspace_id, invoice_id
    )
    customer = await customer_service.get(session, workspace_id, invoice.customer_id)
    workspace = await get_workspace(session, workspace_id)
    profile = await billing_profile_service.get(session, workspace_id)
    # NOTE: the seller and buyer are read as they are now, so a finalized invoice's
    # PDF shows a later change of either address.
    return pdf.invoice_document(
        invoice_view(invoice, lines),
        profile,
        customer,
        workspace_name=workspace.name,
    )


async def render_document(document: pdf.InvoiceDocument) -> bytes:
    """Render in a worker thread, so the event loop keeps serving during a render."""
    return await asyncio.to_thread(pdf.render, document)


async def render_invoice_pdf(
    session: AsyncSession, workspace_id: uuid.UUID, invoice_id: uuid.UUID
) -> bytes:
    """Return the PDF of an invoice, as ``GET /v1/invoices/{id}/pdf`` serves it.

    Raises ``InvoiceNotFound`` when the invoice is not in the workspace.
    """
    document = await load_invoice_document(session, workspace_id, invoice_id)
    return await render_document(document)
