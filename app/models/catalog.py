"""The product catalogue, opportunity line items and proposals."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from app.models.base import (
    Base,
    IdMixin,
    TimestampMixin,
    VersionMixin,
    WorkspaceMixin,
    money_column,
)


class Product(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """Something sold, with at most one price per currency."""

    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("workspace_id", "sku"),
        CheckConstraint(
            "recurring_interval IN ('month', 'year')", name="recurring_interval"
        ),
    )

    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    sku: Mapped[str | None] = mapped_column(String(100))
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(7, 4), default=Decimal(0))
    # Null for a one-off sale; otherwise the product is billed every month or year.
    recurring_interval: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(default=True)
    archived_at: Mapped[datetime | None]


class ProductPrice(WorkspaceMixin, Base):
    """A product's unit price in one currency, in minor units (fractions allowed)."""

    __tablename__ = "product_prices"

    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    unit_amount: Mapped[Decimal] = mapped_column(Numeric(30, 12))


class PricedLineMixin:
    """The columns of a priced line, shared by line items and proposal lines.

    ``amount`` is quantity x unit amount rounded to minor units, ``discount`` the part
    of it taken off, ``tax_amount`` the tax on what remains, and ``total`` is
    ``amount - discount + tax_amount``.
    """

    position: Mapped[int]
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    unit_amount: Mapped[Decimal] = mapped_column(Numeric(30, 12))
    discount_percent: Mapped[Decimal | None] = mapped_column(Numeric(7, 4))
    discount_amount: Mapped[int | None] = mapped_column(BigInteger)
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(7, 4), default=Decimal(0))
    amount: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger)
    tax_amount: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)

    @declared_attr
    def product_id(cls) -> Mapped[uuid.UUID | None]:
        # A line keeps its own copy of the price, so deleting a product keeps it.
        return mapped_column(ForeignKey("products.id", ondelete="SET NULL"), index=True)


class LineItem(PricedLineMixin, IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """A product or custom line of an opportunity; their total is its amount."""

    __tablename__ = "opportunity_line_items"
    __table_args__ = (
        UniqueConstraint("opportunity_id", "position"),
        CheckConstraint(
            "discount_percent IS NULL OR discount_amount IS NULL", name="one_discount"
        ),
    )

    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE")
    )


class Proposal(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """The priced offer sent to a customer for an opportunity."""

    __tablename__ = "proposals"
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'sent', 'accepted', 'rejected')", name="status"
        ),
        # One accepted proposal per opportunity, even when two accepts race.
        Index(
            "uq_proposals_accepted",
            "opportunity_id",
            unique=True,
            postgresql_where=text("status = 'accepted'"),
        ),
        # The sent proposals whose expiry has not been announced, for the sweep.
        Index(
            "ix_proposals_expiring",
            "valid_until",
            postgresql_where=text("status = 'sent' AND expiry_notified_at IS NULL"),
        ),
    )

    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="draft")
    currency: Mapped[str] = mapped_column(String(3))
    terms: Mapped[str | None] = mapped_column(Text)
    # A calendar date in ``timezone``, the customer's IANA zone when the proposal was
    # created; the proposal expires once that date has passed there.
    valid_until: Mapped[date]
    timezone: Mapped[str] = mapped_column(String(64))
    subtotal: Mapped[int] = money_column()
    discount_total: Mapped[int] = money_column()
    tax_total: Mapped[int] = money_column()
    total: Mapped[int] = money_column()
    sent_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    rejected_at: Mapped[datetime | None]
    rejection_reason: Mapped[str | None] = mapped_column(String(500))
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="SET NULL")
    )
    # When the sweep emitted proposal.expired. The status reads expired from the end
    # of ``valid_until`` whether or not the sweep has run.
    expiry_notified_at: Mapped[datetime | None]


class ProposalLine(PricedLineMixin, IdMixin, WorkspaceMixin, Base):
    """A line of a proposal, copied from the opportunity or edited in the draft."""

    __tablename__ = "proposal_lines"
    __table_args__ = (
        UniqueConstraint("proposal_id", "position"),
        CheckConstraint(
            "discount_percent IS NULL OR discount_amount IS NULL", name="one_discount"
        ),
    )

    proposal_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("proposals.id", ondelete="CASCADE")
    )
