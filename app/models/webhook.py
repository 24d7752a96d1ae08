from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin


class WebhookEndpoint(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A URL that receives signed events of the types it subscribes to.

    After a secret rotation, ``previous_secret`` keeps signing alongside the new secret
    until ``previous_secret_expires_at``. ``failing_since`` is the time of the first
    failed attempt after the last success; it is null while the endpoint is healthy.
    ``headers`` are extra request headers the receiver asked for, sent on every
    attempt.

    ``catch_up_pending`` is true from the endpoint's creation until a job has given
    it a delivery of each event its transaction raced with: an event emitted after
    the endpoint's transaction began, and dispatched before it committed, when the
    dispatch could not see the endpoint yet.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index(
            "ix_webhook_endpoints_catch_up_pending",
            "created_at",
            postgresql_where=text("catch_up_pending"),
        ),
    )

    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    secret: Mapped[str] = mapped_column(String(200))
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_expires_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    failing_since: Mapped[datetime | None]
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    catch_up_pending: Mapped[bool] = mapped_column(
        default=False, server_default=text("false")
    )


class WebhookDelivery(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """One event owed to one endpoint; its id is the ``webhook-id`` on every attempt.

    ``attempt_limit`` caps ``attempts`` for this delivery; null means the
    ``webhook_max_attempts`` setting. A manual retry sets it to one more attempt.
    ``claimed_until`` is the lease of the worker sending it, and ``claimed_by`` the
    delivery loop that leased it. One loop at a time sends to an endpoint.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        # Finds an endpoint's leased deliveries, to cap its requests in flight.
        Index(
            "ix_webhook_deliveries_leased",
            "endpoint_id",
            "claimed_until",
            postgresql_where=text("claimed_until IS NOT NULL"),
        ),
        Index("ix_webhook_deliveries_event_id", "event_id"),
        # Finds each endpoint's due deliveries, so one endpoint's backlog does not
        # hide another's.
        Index(
            "ix_webhook_deliveries_pending",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    attempt_limit: Mapped[int | None]
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    claimed_by: Mapped[uuid.UUID | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None]


class WebhookAttempt(IdMixin, Base):
    """The outcome of one HTTP request made for a delivery."""

    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int]
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class WebhookRecovery(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """A request to send again an endpoint's failed deliveries created since ``since``,
    and with ``include_missing`` to create the deliveries it never had.

    A job works through the failed deliveries in id order (``stage`` "failed"), then
    through the events of the window in id order (``stage`` "missing").
    ``last_delivery_id`` and ``last_event_id`` are how far it got, saved in the
    transaction of each batch, so a job that dies resumes there. Only deliveries that
    failed, and events emitted, before the recovery was requested are taken.
    """

    __tablename__ = "webhook_recoveries"
    __table_args__ = (
        Index(
            "ix_webhook_recoveries_pending",
            "updated_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    since: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    recovered_count: Mapped[int] = mapped_column(default=0)
    last_delivery_id: Mapped[uuid.UUID | None]
    include_missing: Mapped[bool] = mapped_column(
        default=False, server_default=text("false")
    )
    stage: Mapped[str] = mapped_column(
        String(16), default="failed", server_default="failed"
    )
    missing_count: Mapped[int] = mapped_column(default=0, server_default="0")
    last_event_id: Mapped[uuid.UUID | None]
    completed_at: Mapped[datetime | None]
