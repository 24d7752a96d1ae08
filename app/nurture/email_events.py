"""Engagement events posted by an external email service, and the secret that signs them.

The ``generic`` provider posts one JSON event per request (``GenericEmailEvent``),
signed per Standard Webhooks with the workspace's ``whsec_`` secret: the headers
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` carry ``v1,<base64
HMAC-SHA256>`` of ``"{webhook-id}.{timestamp}.{raw body}"``. A timestamp more than
five minutes from our clock is rejected, so a captured request cannot be replayed
later.

A verified event is stored in the ``email_events`` inbox, unique on (workspace,
provider, event id): a redelivery, even a concurrent one, waits for the first insert
and then changes nothing. The event is matched to a lead by the Message-ID of a step
run, else by the recipient address. A match is recorded as a lead engagement through
``EngagementService.record_for_lead``, as the engagements API does, so the lead is
rescored and the exit rules apply. All of it happens in the request's transaction.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, cast

import structlog
from sqlalchemy import case, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.errors import DomainError, NotFound, Unauthenticated
from app.core.events import emit
from app.leads.normalize import normalize_email
from app.leads.scoring_rules import engagement_service
from app.leads.scoring_schemas import EngagementCreate, EngagementType
from app.leads.service import lead_service
from app.models import EmailEvent, EmailEventSecret, Lead
from app.models.lead import OPEN_LEAD_STATUSES
from app.nurture.email_event_schemas import (
    EmailEventReceipt,
    EmailEventStatus,
    GenericEmailEvent,
)
from app.nurture.email_event_schemas import EmailEventSecret as EmailEventSecretSchema
from app.nurture.sources import step_run_by_message_id
from app.webhooks import signing

log = structlog.get_logger(__name__)

GENERIC = "generic"
PROVIDERS = (GENERIC,)
TOLERANCE = timedelta(minutes=5)
# Twelve digits of Unix seconds reach past the year 33000.
MAX_TIMESTAMP_DIGITS = 12
# After a rotation the replaced secret stays valid this long, so events the email
# service signed before it switched secrets still verify.
ROTATION_GRACE = timedelta(hours=24)
# The engagement type each event type records; a soft bounce records none.
ENGAGEMENT_TYPES: dict[str, EngagementType] = {
    "opened": "email_opened",
    "clicked": "email_clicked",
    "replied": "replied",
    "bounced": "email_bounced",
    "unsubscribed": "unsubscribed",
    "complained": "unsubscribed",
    "webinar_registered": "webinar_registered",
    "webinar_attended": "webinar_attended",
}


class UnknownEmailProvider(NotFound):
    """No email-service provider with that name is supported."""

    code = "email_provider_not_found"


class InvalidEmailEventSignature(Unauthenticated):
    """The signature headers are missing, stale or match no secret of the workspace."""

    code = "invalid_signature"
    title = "Invalid signature"


def endpoint_path(provider: str, workspace_id: uuid.UUID) -> str:
    return (
        f"/v1/email-events/{provider}?workspace_id="
        f"{ids.encode('workspace', workspace_id)}"
    )


def check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise UnknownEmailProvider(
            f"No email-service provider named {provider!r} exists. Supported: "
            f"{', '.join(PROVIDERS)}."
        )


class EmailEventSecretService:
    async def rotate(
        self, session: AsyncSession, principal: Principal
    ) -> tuple[EmailEventSecretSchema, bool]:
        """Create the workspace's secret, or replace it and keep the old one 24 h.

        Returns the secret and whether it was created rather than rotated.
        """
        now = utcnow()
        secret = signing.generate_secret()
        inserted = await session.scalar(
            insert(EmailEventSecret)
            .values(
                id=ids.new_uuid(),
                workspace_id=principal.workspace_id,
                secret=secret,
            )
            .on_conflict_do_nothing(index_elements=["workspace_id"])
            .returning(EmailEventSecret.id)
        )
        row = await session.scalar(
            select(EmailEventSecret)
            .where(EmailEventSecret.workspace_id == principal.workspace_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert row is not None
        if inserted is None:
            row.previous_secret = row.secret
            row.previous_expires_at = now + ROTATION_GRACE
            row.secret = secret
            await session.flush()
            await session.refresh(row)

        view = EmailEventSecretSchema(
            secret=row.secret,
            previous_secret_expires_at=row.previous_expires_at,
            endpoint_path=endpoint_path(GENERIC, row.workspace_id),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        await emit(
            session,
            workspace_id=row.workspace_id,
            type="email_event_secret.rotated",
            object_type="email_event_secret",
            object_id=row.id,
            data=view.model_dump(mode="json", exclude={"secret"}),
            actor=principal.actor,
        )
        log.info(
            "email_event_secret.rotated",
            workspace_id=str(row.workspace_id),
            created=inserted is not None,
        )
        return view, inserted is not None


class EmailEventService:
    async def verify(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID | None,
        headers: dict[str, str | None],
        body: bytes,
    ) -> None:
        """Raise ``InvalidEmailEventSignature`` unless the body is signed and fresh."""
        message_id = headers.get("webhook-id")
        timestamp_text = headers.get("webhook-timestamp")
        signature = headers.get("webhook-signature")
        if not message_id or not timestamp_text or not signature:
            raise _invalid(
                "The webhook-id, webhook-timestamp and webhook-signature headers are "
                "required."
            )
        # int() also reads signs, spaces and other scripts' digits, and a number of
        # more than 308 digits overflows the float comparison below.
        if not (
            timestamp_text.isascii()
            and timestamp_text.isdigit()
            and len(timestamp_text) <= MAX_TIMESTAMP_DIGITS
        ):
            raise _invalid("webhook-timestamp must be Unix seconds.")
        timestamp = int(timestamp_text)
        now = utcnow()
        if abs(now.timestamp() - timestamp) > TOLERANCE.total_seconds():
            raise _invalid(
                "webhook-timestamp is more than 5 minutes from the server's clock. "
                "Sign each request when sending it."
            )

        secrets = await self._secrets(session, workspace_id)
        if not secrets or not signing.verify(
            secrets, message_id, timestamp, signature, body
        ):
            raise _invalid(
                "The signature matches no email event secret of this workspace. Sign "
                "the raw body with the secret from POST /v1/email-event-secrets."
            )

    @staticmethod
    async def _secrets(
        session: AsyncSession, workspace_id: uuid.UUID | None
    ) -> list[str]:
        if workspace_id is None:
            return []
        row = await session.scalar(
            select(EmailEventSecret).where(
                EmailEventSecret.workspace_id == workspace_id
            )
        )
        if row is None:
            return []
        secrets = [row.secret]
        if (
            row.previous_secret is not None
            and row.previous_expires_at is not None
            and row.previous_expires_at > utcnow()
        ):
            secrets.append(row.previous_secret)
        return secrets

    async def receive(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        provider: str,
        event: GenericEmailEvent,
    ) -> EmailEventReceipt:
        """Store a verified event once and record its engagement if it matches a lead."""
        row_id = ids.new_uuid()
        inserted = await session.scalar(
            insert(EmailEvent)
            .values(
                id=row_id,
                workspace_id=workspace_id,
                provider=provider,
                event_id=event.id,
                type=event.type,
                occurred_at=event.occurred_at,
                message_id=event.message_id,
                email=event.email,
                details=event.metadata,
                status="unmatched",
            )
            .on_conflict_do_nothing(
                index_elements=["workspace_id", "provider", "event_id"]
            )
            .returning(EmailEvent.id)
        )
        if inserted is None:
            existing = await session.scalar(
                select(EmailEvent).where(
                    EmailEvent.workspace_id == workspace_id,
                    EmailEvent.provider == provider,
                    EmailEvent.event_id == event.id,
                )
            )
            assert existing is not None
            log.info(
                "email_event.duplicate",
                email_event_id=str(existing.id),
                provider=provider,
                external_event_id=event.id,
            )
            return _receipt(existing, duplicate=True)

        row = await session.get_one(EmailEvent, row_id)
        await self._apply(session, row, event, provider)
        await session.flush()
        await session.refresh(row)

        receipt = _receipt(row, duplicate=False)
        await emit(
            session,
            workspace_id=workspace_id,
            type="email_event.received",
            object_type="email_event",
            object_id=row.id,
            data=receipt.model_dump(mode="json", exclude={"duplicate"}),
            actor=_actor(provider),
        )
        log.info(
            "email_event.received",
            email_event_id=str(row.id),
            provider=provider,
            event_type=event.type,
            status=row.status,
            lead_id=str(row.lead_id) if row.lead_id else None,
        )
        return receipt

    async def _apply(
        self,
        session: AsyncSession,
        row: EmailEvent,
        event: GenericEmailEvent,
        provider: str,
    ) -> None:
        lead_id, message_id = await self._match(session, row.workspace_id, event)
        if lead_id is None:
            return
        lead = await lead_service.get(
            session, row.workspace_id, lead_id, for_update=True
        )
        row.lead_id = lead.id
        if lead.erased_at is not None or (
            event.type == "bounced" and event.bounce_type == "soft"
        ):
            row.status = "ignored"
            return

        engagement = await engagement_service.record_for_lead(
            session,
            lead,
            EngagementCreate(
                type=ENGAGEMENT_TYPES[event.type],
                occurred_at=event.occurred_at,
                metadata=event.metadata,
                message_id=message_id,
            ),
            _actor(provider),
        )
        row.engagement_id = engagement.id
        row.status = "recorded"

    @staticmethod
    async def _match(
        session: AsyncSession, workspace_id: uuid.UUID, event: GenericEmailEvent
    ) -> tuple[uuid.UUID | None, str | None]:
        """Return the lead the event is about, and the Message-ID that matched it."""
        if event.message_id is not None:
            found = await step_run_by_message_id(
                session, workspace_id, event.message_id
            )
            if found is not None:
                return found[1].lead_id, event.message_id
        if event.email is None:
            return None, None
        try:
            email = normalize_email(event.email)
        except DomainError:
            return None, None
        # The open lead with the address if there is one (at most one exists), else
        # the newest closed one.
        lead_id = await session.scalar(
            select(Lead.id)
            .where(Lead.workspace_id == workspace_id, Lead.email_normalized == email)
            .order_by(
                case((Lead.status.in_(OPEN_LEAD_STATUSES), 0), else_=1),
                Lead.id.desc(),
            )
            .limit(1)
        )
        return lead_id, None


def _receipt(row: EmailEvent, *, duplicate: bool) -> EmailEventReceipt:
    return EmailEventReceipt(
        id=row.id,
        status=cast(EmailEventStatus, row.status),
        duplicate=duplicate,
        lead_id=row.lead_id,
        engagement_id=row.engagement_id,
        received_at=row.received_at,
    )


def _actor(provider: str) -> str:
    return f"email_service:{provider}"


def _invalid(detail: str) -> InvalidEmailEventSignature:
    return InvalidEmailEventSignature(detail)


def signature_headers(headers: Any) -> dict[str, str | None]:
    """Pick the Standard Webhooks headers out of a request's headers."""
    return {
        name: headers.get(name)
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }


email_event_secret_service = EmailEventSecretService()
email_event_service = EmailEventService()
