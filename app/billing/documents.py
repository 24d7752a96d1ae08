"""Loading an invoice as the document its PDF prints, and rendering it.

``render_invoice_pdf`` is the one call other features use to get an invoice's PDF, for
example to attach it to a reminder email.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import pdf
from app.billing.parties import invoice_parties
from app.billing.service import invoice_service
from app.billing.views import invoice_view


async def load_invoice_document(
    session: AsyncSession, workspace_id: uuid.UUID, invoice_id: uuid.UUID
) -> pdf.InvoiceDocument:
    """Load an invoice with its seller and buyer as the PDF prints them.

    Raises ``InvoiceNotFound`` when the invoice is not in the workspace.
    """
    invoice, lines = await invoice_service.get_with_lines(
        session, workspace_id, invoice_id
    )
    parties = await invoice_parties(session, invoice)
    return pdf.invoice_document(invoice_view(invoice, lines), parties)


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
