from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin


class Offer(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A discount that special-offer steps hand out as one code per lead.

    ``discount_kind`` is ``percent`` (``percent_off``) or ``amount`` (``amount_off``
    minor units of ``currency``).
    """

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint(
            "(discount_kind = 'percent' AND percent_off IS NOT NULL "
            "AND amount_off IS NULL AND currency IS NULL) OR "
            "(discount_kind = 'amount' AND percent_off IS NULL "
            "AND amount_off IS NOT NULL AND currency IS NOT NULL)",
            name="discount",
        ),
    )

    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    discount_kind: Mapped[str] = mapped_column(String(16))
    percent_off: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    amount_off: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    expires_at: Mapped[datetime | None]
    valid_for_days: Mapped[int | None]
    single_use: Mapped[bool] = mapped_column(default=True)
    max_redemptions: Mapped[int | None]
    code_prefix: Mapped[str] = mapped_column(String(12), default="")
    archived_at: Mapped[datetime | None]


class OfferCode(IdMixin, WorkspaceMixin, Base):
    """The code of one offer issued to one lead, by the step run that emailed it.

    ``invoice_id``, ``redeemed_at``, ``discount_amount`` and ``currency`` describe the
    latest redemption; ``offer_redemptions`` keeps every one.
    """

    __tablename__ = "offer_codes"
    __table_args__ = (
        UniqueConstraint("workspace_id", "code"),
        UniqueConstraint("offer_id", "lead_id"),
        UniqueConstraint("step_run_id"),
        Index("ix_offer_codes_offer", "offer_id", "id"),
    )

    offer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("offers.id", ondelete="CASCADE")
    )
    lead_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    enrollment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    step_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("step_runs.id", ondelete="SET NULL")
    )
    code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="issued")
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    redeemed_at: Mapped[datetime | None]
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="SET NULL")
    )
    discount_amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))


class OfferRedemption(IdMixin, WorkspaceMixin, Base):
    """One use of an offer code on an invoice; ``released`` once that invoice is void.

    An invoice has at most one applied redemption, and the discount lines it adds
    are the invoice lines with a negative unit amount.
    """

    __tablename__ = "offer_redemptions"
    __table_args__ = (
        Index(
            "uq_offer_redemptions_applied_invoice",
            "invoice_id",
            unique=True,
            postgresql_where=text("status = 'applied'"),
        ),
        Index("ix_offer_redemptions_offer", "offer_id", "status"),
    )

    offer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("offers.id", ondelete="CASCADE")
    )
    offer_code_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("offer_codes.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default="applied")
    discount_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    redeemed_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
