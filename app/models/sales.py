from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, column_property, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin

CUSTOMER_KINDS = ("company", "individual")
CONTACT_ROLES = ("decision_maker", "billing", "technical", "champion")


class Customer(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A company or person that buys; invoices are addressed to it."""

    __tablename__ = "customers"
    __table_args__ = (
        # One customer per company domain in a workspace; creates and conversions
        # insert with ON CONFLICT against this index, so two cannot both pass.
        Index(
            "uq_customers_workspace_domain",
            "workspace_id",
            "domain",
            unique=True,
            postgresql_where=text("domain IS NOT NULL"),
        ),
        Index("ix_customers_workspace_owner", "workspace_id", "owner_id", "id"),
        Index("ix_customers_workspace_created", "workspace_id", "created_at", "id"),
        CheckConstraint("kind IN ('company', 'individual')", name="kind"),
        CheckConstraint("(tax_id IS NULL) = (tax_id_type IS NULL)", name="tax_id_pair"),
    )

    kind: Mapped[str] = mapped_column(
        String(16), default="company", server_default="company"
    )
    name: Mapped[str] = mapped_column(String(300))
    legal_name: Mapped[str | None] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(320))
    billing_email: Mapped[str | None] = mapped_column(String(320))
    domain: Mapped[str | None] = mapped_column(String(253))
    billing_address_line1: Mapped[str | None] = mapped_column(String(200))
    billing_address_line2: Mapped[str | None] = mapped_column(String(200))
    billing_address_city: Mapped[str | None] = mapped_column(String(200))
    billing_address_region: Mapped[str | None] = mapped_column(String(200))
    billing_address_postal_code: Mapped[str | None] = mapped_column(String(32))
    # ISO 3166-1 alpha-2, upper-case.
    billing_address_country: Mapped[str | None] = mapped_column(String(2))
    tax_id: Mapped[str | None] = mapped_column(String(64))
    tax_id_type: Mapped[str | None] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # A BCP 47 tag in its canonical form, such as "en-GB".
    language: Mapped[str | None] = mapped_column(String(35))
    payment_terms_days: Mapped[int] = mapped_column(default=30)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    source_lead_id: Mapped[uuid.UUID | None]
    # The dunning policy of this customer's invoices; null follows the workspace
    # default. An invoice's own policy wins over it.
    dunning_policy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("dunning_policies.id", ondelete="SET NULL")
    )


class Contact(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A person at a customer."""

    __tablename__ = "contacts"
    __table_args__ = (
        # One contact per normalized email at a customer.
        Index(
            "uq_contacts_customer_email",
            "customer_id",
            "email_normalized",
            unique=True,
            postgresql_where=text("email_normalized IS NOT NULL"),
        ),
        Index("ix_contacts_workspace_email", "workspace_id", "email_normalized"),
        CheckConstraint(
            "roles <@ ARRAY['decision_maker', 'billing', 'technical', 'champion']"
            "::text[]",
            name="roles",
        ),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str | None] = mapped_column(String(320))
    # The lead rules: trimmed, IDNA domain, lower-cased.
    email_normalized: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(200))
    # E.164, such as +4930123456, for contacts written since phones were normalized.
    phone: Mapped[str | None] = mapped_column(String(32))
    roles: Mapped[list[str]] = mapped_column(
        ARRAY(Text), default=list, server_default="{}"
    )


class Pipeline(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """An ordered set of stages that opportunities move through.

    The pipeline and its stages are one aggregate: every stage change bumps the
    pipeline's ``version``, so one ETag covers the whole shape.
    """

    __tablename__ = "pipelines"
    __table_args__ = (
        Index(
            "uq_pipelines_default",
            "workspace_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )

    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(default=False)
    archived_at: Mapped[datetime | None]


class Stage(IdMixin, WorkspaceMixin, Base):
    """A step of a pipeline; ``probability`` is the win chance in percent."""

    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("pipeline_id", "position"),)

    pipeline_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pipelines.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int]
    probability: Mapped[int]
    is_won: Mapped[bool] = mapped_column(default=False)
    is_lost: Mapped[bool] = mapped_column(default=False)
    # Days without activity after which an open opportunity in the stage is rotting;
    # null turns rotting off for the stage.
    rotting_days: Mapped[int | None] = mapped_column(Integer)
    # Opportunity fields that must be set before an opportunity enters the stage.
    required_fields: Mapped[list[str]] = mapped_column(
        default=list, server_default=text("'[]'::jsonb")
    )


class LostReason(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A workspace-defined reason that a lost opportunity names."""

    __tablename__ = "lost_reasons"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))


class Opportunity(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A potential sale to a customer, moving through a pipeline's stages."""

    __tablename__ = "opportunities"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("status IN ('open', 'won', 'lost')", name="status"),
        CheckConstraint(
            "probability_override BETWEEN 0 AND 100", name="probability_override"
        ),
        CheckConstraint(
            "status <> 'lost' OR lost_reason_id IS NOT NULL", name="lost_reason"
        ),
        Index("ix_opportunities_workspace_stage", "workspace_id", "stage_id", "id"),
        Index("ix_opportunities_workspace_owner", "workspace_id", "owner_id", "id"),
        Index("ix_opportunities_workspace_created", "workspace_id", "created_at", "id"),
        Index("ix_opportunities_workspace_amount", "workspace_id", "amount", "id"),
        Index(
            "ix_opportunities_workspace_close_date",
            "workspace_id",
            text("coalesce(expected_close_date, '9999-12-31'::date)"),
            "id",
        ),
        Index(
            "ix_opportunities_rotting_due",
            "last_activity_at",
            postgresql_where=text("status = 'open' AND NOT rotting"),
        ),
    )

    name: Mapped[str] = mapped_column(String(300))
    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    lead_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("leads.id", ondelete="SET NULL")
    )
    pipeline_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipelines.id"))
    stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stages.id"))
    status: Mapped[str] = mapped_column(String(16), default="open")
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    expected_close_date: Mapped[date | None]
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # The per-opportunity win chance in percent; null follows the stage's probability.
    probability_override: Mapped[int | None] = mapped_column(Integer)
    competitors: Mapped[list[str]] = mapped_column(
        default=list, server_default=text("'[]'::jsonb")
    )
    stage_entered_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # The last activity, update or stage change; the rotting sweep measures from it.
    last_activity_at: Mapped[datetime] = mapped_column(server_default=func.now())
    rotting: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    rotting_since: Mapped[datetime | None]
    won_at: Mapped[datetime | None]
    lost_at: Mapped[datetime | None]
    lost_reason_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("lost_reasons.id", ondelete="RESTRICT"), index=True
    )
    lost_note: Mapped[str | None] = mapped_column(String(2000))
    # The probability of the current stage, loaded with every SELECT of the row.
    stage_probability: Mapped[int] = column_property(
        select(Stage.probability)
        .where(Stage.id == stage_id)
        .correlate_except(Stage)
        .scalar_subquery()
    )


class StageTransition(IdMixin, WorkspaceMixin, Base):
    """One move of an opportunity between stages, so time in stage is data.

    Rows are only appended. ``opportunity_version`` is the version the opportunity had
    when it left ``from_stage_id`` (0 for its creation); the unique key on it means two
    moves made from the same version cannot both be recorded.
    """

    __tablename__ = "stage_transitions"
    __table_args__ = (UniqueConstraint("opportunity_id", "opportunity_version"),)

    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE"), index=True
    )
    from_stage_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stages.id"))
    to_stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stages.id"))
    at: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(String(200))
    opportunity_version: Mapped[int] = mapped_column(Integer)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    seconds_in_previous_stage: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(1000))


class Objection(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A customer's objection raised on an opportunity, and how it was handled."""

    __tablename__ = "objections"
    __table_args__ = (
        CheckConstraint(
            "category IN ('price', 'timing', 'competitor', 'authority', 'need', "
            "'other')",
            name="category",
        ),
        CheckConstraint("status IN ('open', 'resolved', 'lost_on')", name="status"),
        Index("ix_objections_opportunity", "opportunity_id", "id"),
    )

    opportunity_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE")
    )
    category: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(String(4000))
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolution_notes: Mapped[str | None] = mapped_column(String(4000))
    blocking: Mapped[bool] = mapped_column(default=False)
    resolved_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(200))
