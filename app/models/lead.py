from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Computed, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin

OPEN_LEAD_STATUSES = ("new", "working", "nurturing", "qualified")


# Keyset listing sorts on (key, id) within a workspace; each sort has its own index.
LISTING_INDEXES = (
    Index("ix_leads_workspace_updated", "workspace_id", "updated_at", "id"),
    Index("ix_leads_workspace_score", "workspace_id", "score", "id"),
    Index(
        "ix_leads_workspace_last_name",
        "workspace_id",
        text("coalesce(last_name, '')"),
        "id",
    ),
    Index("ix_leads_tags", "tags", postgresql_using="gin"),
    Index(
        "ix_leads_attributes",
        "attributes",
        postgresql_using="gin",
        postgresql_ops={"attributes": "jsonb_path_ops"},
    ),
    Index(
        "ix_leads_workspace_scored_version",
        "workspace_id",
        "scored_version",
        postgresql_where=text("status IN ('new', 'working', 'nurturing', 'qualified')"),
    ),
    Index(
        "ix_leads_rescore_at",
        "rescore_at",
        postgresql_where=text("rescore_at IS NOT NULL"),
    ),
)


class Lead(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A person showing interest, with raw fields and normalized identity keys."""

    __tablename__ = "leads"
    __table_args__ = (
        # One open lead per normalized email in a workspace.
        Index(
            "uq_leads_open_email",
            "workspace_id",
            "email_normalized",
            unique=True,
            postgresql_where=text(
                "status IN ('new', 'working', 'nurturing', 'qualified')"
            ),
        ),
        Index("ix_leads_workspace_created", "workspace_id", "created_at", "id"),
        # Secondary duplicate signals: leads sharing a phone number or company domain.
        Index("ix_leads_workspace_phone", "workspace_id", "phone_normalized"),
        Index("ix_leads_workspace_company_domain", "workspace_id", "company_domain"),
        Index("ix_leads_workspace_owner", "workspace_id", "owner_id"),
        # The leads converted into a customer, whose enrollments its invoices and
        # opportunities can exit.
        Index(
            "ix_leads_workspace_customer",
            "workspace_id",
            "customer_id",
            postgresql_where=text("customer_id IS NOT NULL"),
        ),
        *LISTING_INDEXES,
    )

    email: Mapped[str] = mapped_column(String(320))
    email_normalized: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    # E.164, such as +4930123456; at most 15 digits after the plus sign.
    phone_normalized: Mapped[str | None] = mapped_column(String(16))
    company_domain: Mapped[str | None] = mapped_column(String(253))
    timezone: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32), default="api")
    status: Mapped[str] = mapped_column(String(32), default="new")
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    notes: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    customer_id: Mapped[uuid.UUID | None]
    contact_id: Mapped[uuid.UUID | None]
    opportunity_id: Mapped[uuid.UUID | None]
    converted_at: Mapped[datetime | None]
    status_reason: Mapped[str | None] = mapped_column(String(500))
    status_changed_at: Mapped[datetime | None]
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("leads.id", ondelete="SET NULL")
    )
    erased_at: Mapped[datetime | None]
    erased_by: Mapped[str | None] = mapped_column(String(200))
    # The first and latest rows of lead_touches, kept here so lists need no join.
    first_touch_id: Mapped[uuid.UUID | None]
    last_touch_id: Mapped[uuid.UUID | None]
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), default=list, server_default="{}"
    )
    # The lowered name, email and company that the q filter of GET /v1/leads matches.
    search_text: Mapped[str] = mapped_column(
        Text,
        Computed(
            "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' "
            "|| email_normalized || ' ' || coalesce(company, ''))",
            persisted=True,
        ),
    )
    score: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    score_breakdown: Mapped[list[Any]] = mapped_column(
        default=list, server_default="[]"
    )
    sales_ready_at: Mapped[datetime | None]
    # The workspace's scoring_version that the score was computed with; the sweep
    # rescores open leads below the current one.
    scored_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When decaying engagement points next change the score; null when they never do.
    rescore_at: Mapped[datetime | None]
