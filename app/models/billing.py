from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Numeric,
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
    money_column,
)


class Invoice(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A bill to a customer; amounts are integers in the currency's minor unit."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("workspace_id", "number"),
        Index(
            "ix_invoices_open_due",
            "due_date",
            postgresql_where=text("status = 'open'"),
        ),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    opportunity_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("opportunities.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default="draft")
    payment_status: Mapped[str] = mapped_column(String(16), default="unpaid")
    series: Mapped[str] = mapped_column(String(16), default="INV")
    number: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    rounding: Mapped[str] = mapped_column(String(16), default="half_up")
    subtotal: Mapped[int] = money_column()
    tax_total: Mapped[int] = money_column()
    total: Mapped[int] = money_column()
    amount_paid: Mapped[int] = money_column()
    payment_terms_days: Mapped[int] = mapped_column(default=30)
    due_date: Mapped[date | None]
    # The customer's IANA time zone at finalization: due_date is a calendar date there,
    # and the invoice turns overdue once that date has passed there.
    timezone: Mapped[str | None] = mapped_column(String(64))
    memo: Mapped[str | None] = mapped_column(Text)
    finalized_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]
    # The customer's Stripe Checkout page for this invoice, and the session behind it.
    payment_link_url: Mapped[str | None] = mapped_column(Text)
    payment_link_session_id: Mapped[str | None] = mapped_column(String(255))


class InvoiceLine(IdMixin, WorkspaceMixin, Base):
    """A line of an invoice: quantity times unit amount, plus tax."""

    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position"),)

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE")
    )
    position: Mapped[int]
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    unit_amount: Mapped[Decimal] = mapped_column(Numeric(30, 12))
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(7, 4), default=Decimal(0))
    amount: Mapped[int] = mapped_column(BigInteger)
    tax_amount: Mapped[int] = mapped_column(BigInteger)


class InvoiceNumberSeries(WorkspaceMixin, Base):
    """The next free number of a series in a year; locked to number gaplessly."""

    __tablename__ = "invoice_number_series"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    series: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    next_number: Mapped[int] = mapped_column(default=1)


class Payment(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """Money received from a customer, manually or through a payment provider."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("provider", "provider_payment_id"),)

    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_payment_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="succeeded")
    received_at: Mapped[datetime]
    reference: Mapped[str | None] = mapped_column(String(200))
    # Creation time of the newest provider event applied to this payment; an older
    # event that arrives later is not applied, so a payment never moves backwards.
    provider_updated_at: Mapped[datetime | None]
    # Sum of the payment's refunds, and of its open or lost disputes. What remains of
    # amount after both is what allocations may use.
    amount_refunded: Mapped[int] = money_column()
    amount_disputed: Mapped[int] = money_column()


class PaymentAllocation(IdMixin, WorkspaceMixin, Base):
    """The part of a payment applied to one invoice."""

    __tablename__ = "payment_allocations"
    __table_args__ = (UniqueConstraint("payment_id", "invoice_id"),)

    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payments.id", ondelete="CASCADE")
    )
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class Dispute(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """A customer's challenge of a payment through its provider (a chargeback).

    While a dispute is open, the disputed amount is taken back from the invoices the
    payment was allocated to; it is given back if the dispute closes in the seller's
    favour.
    """

    __tablename__ = "disputes"
    __table_args__ = (
        UniqueConstraint("provider", "provider_dispute_id"),
        Index(
            "ix_disputes_open_payment",
            "payment_id",
            postgresql_where=text("status = 'open'"),
        ),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payments.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # open, won (the seller keeps the money) or lost (the money went back).
    status: Mapped[str] = mapped_column(String(16), default="open")
    reason: Mapped[str | None] = mapped_column(String(100))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_dispute_id: Mapped[str | None] = mapped_column(String(255))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class ProviderEvent(IdMixin, Base):
    """A verified webhook from a payment provider, stored once per provider event id."""

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index(
            "ix_provider_events_pending",
            "received_at",
            postgresql_where=text("status = 'received'"),
        ),
        Index(
            "ix_provider_events_held",
            "received_at",
            postgresql_where=text("status = 'held'"),
        ),
    )

    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    provider_created_at: Mapped[datetime | None]
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default="received")
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_until: Mapped[datetime | None]
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
