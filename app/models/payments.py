"""Refunds, reversed allocations and provider reconciliation runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, WorkspaceMixin


class Refund(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """Money of a payment given back to the customer, by API or by the provider."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("provider", "provider_refund_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payments.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="succeeded")
    reason: Mapped[str | None] = mapped_column(String(500))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_refund_id: Mapped[str | None] = mapped_column(String(255))
    refunded_at: Mapped[datetime]


class AllocationReversal(IdMixin, WorkspaceMixin, Base):
    """The part of an allocation that a refund or a dispute took back from an invoice.

    A dispute's reversals are restored when the dispute closes won, and
    ``restored_at`` records when; a refund's are never restored.
    """

    __tablename__ = "allocation_reversals"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "(refund_id IS NULL) <> (dispute_id IS NULL)", name="one_cause"
        ),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payments.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    refund_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("refunds.id", ondelete="CASCADE"), index=True
    )
    dispute_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("disputes.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    restored_at: Mapped[datetime | None]


class ReconciliationRun(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """One comparison of local provider payments with the provider's own records."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        Index(
            "ix_reconciliation_runs_unfinished",
            "created_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    provider: Mapped[str] = mapped_column(String(32))
    # queued, running, completed or failed.
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    checked_count: Mapped[int] = mapped_column(default=0)
    differences: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
