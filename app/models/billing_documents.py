"""The seller's billing profile and the record of each invoice sent by email."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import (
    Base,
    IdMixin,
    TimestampMixin,
    VersionMixin,
    WorkspaceMixin,
)


class BillingProfile(IdMixin, TimestampMixin, VersionMixin, Base):
    """The seller details that a workspace's invoices show: one row per workspace."""

    __tablename__ = "billing_profiles"
    __table_args__ = (
        CheckConstraint("(tax_id IS NULL) = (tax_id_type IS NULL)", name="tax_id_pair"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), unique=True
    )
    legal_name: Mapped[str | None] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    address_city: Mapped[str | None] = mapped_column(String(200))
    address_region: Mapped[str | None] = mapped_column(String(200))
    address_postal_code: Mapped[str | None] = mapped_column(String(32))
    # ISO 3166-1 alpha-2, upper-case.
    address_country: Mapped[str | None] = mapped_column(String(2))
    tax_id: Mapped[str | None] = mapped_column(String(64))
    tax_id_type: Mapped[str | None] = mapped_column(String(16))
    # Free text printed under "How to pay": bank name, IBAN, BIC, reference to quote.
    payment_instructions: Mapped[str | None] = mapped_column(Text)
    invoice_footer: Mapped[str | None] = mapped_column(Text)


class InvoiceSend(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """One request to email an invoice with its PDF, and what became of it.

    The row is inserted with the request and carries the Message-ID of the email, so
    every attempt sends the same message. ``status`` moves ``queued → sending →
    sent | failed``; ``sending`` holds a lease (``claimed_until``) that a crashed
    worker lets lapse.
    """

    __tablename__ = "invoice_sends"
    __table_args__ = (
        UniqueConstraint("message_id"),
        CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed')", name="status"
        ),
        Index("ix_invoice_sends_invoice_id", "invoice_id", "id"),
        Index(
            "ix_invoice_sends_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'sending')"),
        ),
    )

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE")
    )
    recipients: Mapped[list[str]]
    subject: Mapped[str] = mapped_column(String(300))
    message: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    # When the next attempt is due: set while queued, and to the lease's end while
    # sending, so one index finds both new work and lapsed leases.
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(200))


class InvoiceParties(WorkspaceMixin, Base):
    """The seller and buyer of an invoice as they were when it was finalized.

    An issued invoice keeps the names and addresses it was issued with, so its PDF
    does not change when the customer or the billing profile changes later.
    ``parties`` is ``app.billing.pdf.Parties`` as JSON.
    """

    __tablename__ = "invoice_parties"

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True
    )
    parties: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
