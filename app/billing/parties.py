"""The seller and buyer an invoice prints: fixed at finalization, live on a draft."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import pdf
from app.billing.profile import billing_profile_service
from app.core.clock import utcnow
from app.customers.service import customer_service
from app.models import Customer, Invoice, InvoiceParties
from app.workspaces.service import get_workspace


async def current_parties(
    session: AsyncSession, workspace_id: uuid.UUID, customer: Customer
) -> pdf.Parties:
    """Build the parties from the billing profile and the customer as they are now."""
    profile = await billing_profile_service.get(session, workspace_id)
    workspace = await get_workspace(session, workspace_id)
    return pdf.parties_from(profile, customer, workspace_name=workspace.name)


async def record_invoice_parties(
    session: AsyncSession, invoice: Invoice, customer: Customer
) -> None:
    """Store the parties of an invoice being finalized, in the same transaction.

    A second call for the same invoice keeps the first record.
    """
    parties = await current_parties(session, invoice.workspace_id, customer)
    await session.execute(
        insert(InvoiceParties)
        .values(
            invoice_id=invoice.id,
            workspace_id=invoice.workspace_id,
            parties=parties.to_json(),
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["invoice_id"])
    )


async def invoice_parties(session: AsyncSession, invoice: Invoice) -> pdf.Parties:
    """Return the parties recorded at finalization, or the current ones.

    A draft has no record and shows the current details; so does an invoice
    finalized before parties were recorded.
    """
    recorded = await session.scalar(
        select(InvoiceParties.parties).where(
            InvoiceParties.invoice_id == invoice.id,
            InvoiceParties.workspace_id == invoice.workspace_id,
        )
    )
    if recorded is not None:
        return pdf.Parties.from_json(recorded)
    customer = await customer_service.get(
        session, invoice.workspace_id, invoice.customer_id
    )
    return await current_parties(session, invoice.workspace_id, customer)
