"""Attribution and capture: campaigns, partners, capture forms, touches and consents."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin


class Campaign(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A marketing campaign that touches link to, found by id or by its utm_campaign."""

    __tablename__ = "campaigns"
    __table_args__ = (
        Index(
            "uq_campaigns_utm_campaign",
            "workspace_id",
            "utm_campaign",
            unique=True,
            postgresql_where=text("utm_campaign IS NOT NULL"),
        ),
        CheckConstraint(
            "(budget_amount IS NULL) = (budget_currency IS NULL)", name="budget_pair"
        ),
        CheckConstraint(
            "ends_on IS NULL OR starts_on IS NULL OR ends_on >= starts_on",
            name="date_order",
        ),
    )

    name: Mapped[str] = mapped_column(String(200))
    medium: Mapped[str | None] = mapped_column(String(100))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    starts_on: Mapped[date | None]
    ends_on: Mapped[date | None]
    status: Mapped[str] = mapped_column(String(16), default="active")
    budget_amount: Mapped[int | None] = mapped_column(BigInteger)
    budget_currency: Mapped[str | None] = mapped_column(String(3))


class Partner(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A referral partner; its referral code is unique in the workspace."""

    __tablename__ = "partners"
    __table_args__ = (
        Index(
            "uq_partners_referral_code", "workspace_id", "referral_code", unique=True
        ),
    )

    name: Mapped[str] = mapped_column(String(200))
    referral_code: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    active: Mapped[bool] = mapped_column(default=True, server_default="true")


class CaptureForm(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A public capture form: what it collects, where it may be posted from, consent."""

    __tablename__ = "forms"

    name: Mapped[str] = mapped_column(String(200))
    fields: Mapped[list[str]] = mapped_column(default=list)
    attribute_keys: Mapped[list[str]] = mapped_column(default=list)
    required_fields: Mapped[list[str]] = mapped_column(default=list)
    allowed_origins: Mapped[list[str]] = mapped_column(default=list)
    consent_text: Mapped[str | None] = mapped_column(Text)
    consent_version: Mapped[str | None] = mapped_column(String(64))
    success_redirect_url: Mapped[str | None] = mapped_column(Text)
    honeypot_field: Mapped[str] = mapped_column(String(64), default="website_url")
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaigns.id"))
    enabled: Mapped[bool] = mapped_column(default=True, server_default="true")


class FormPublishableKey(Base):
    """Binds a publishable API key to the one capture form it may submit."""

    __tablename__ = "form_publishable_keys"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    form_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("forms.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LeadTouch(IdMixin, WorkspaceMixin, Base):
    """One append-only attribution record of a lead: where a capture came from."""

    __tablename__ = "lead_touches"
    __table_args__ = (
        Index("ix_lead_touches_lead", "lead_id", "id"),
        Index(
            "ix_lead_touches_customer",
            "customer_id",
            "id",
            postgresql_where=text("customer_id IS NOT NULL"),
        ),
        Index(
            "ix_lead_touches_campaign",
            "campaign_id",
            "lead_id",
            postgresql_where=text("campaign_id IS NOT NULL"),
        ),
        Index(
            "ix_lead_touches_partner",
            "partner_id",
            "lead_id",
            postgresql_where=text("partner_id IS NOT NULL"),
        ),
    )

    lead_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE")
    )
    # Set when the lead is converted, so the customer keeps the lead's attribution.
    customer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL")
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    channel: Mapped[str] = mapped_column(String(32))
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("campaigns.id"))
    partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"))
    referral_code: Mapped[str | None] = mapped_column(String(64))
    form_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("forms.id"))
    landing_page: Mapped[str | None] = mapped_column(Text)
    referrer: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LeadConsent(IdMixin, WorkspaceMixin, Base):
    """Consent a lead gave through a form: the text and version shown, when, from where."""

    __tablename__ = "lead_consents"
    __table_args__ = (Index("ix_lead_consents_lead", "lead_id", "id"),)

    lead_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE")
    )
    form_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forms.id"))
    touch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lead_touches.id"))
    consent_text: Mapped[str] = mapped_column(Text)
    consent_version: Mapped[str] = mapped_column(String(64))
    given_at: Mapped[datetime] = mapped_column(server_default=func.now())
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
