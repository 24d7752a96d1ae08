"""The effects of the step kinds other than email: task, webhook and wait.

``task`` and ``wait`` steps take effect inside the claim transaction, so the unique
step run row that the same transaction inserts guards the effect: a second worker or a
duplicate job finds the row and creates no second task. ``webhook`` steps send an HTTP
request, so they follow the email path (claim, send without a transaction, record),
with the step run id as the ``webhook-id`` that a receiver deduplicates retries by.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.service import activity_service
from app.core import ids
from app.leads.serialize import lead_data
from app.models import Enrollment, Lead, Sequence, SequenceStep
from app.nurture.mailer import MailError
from app.webhooks import backoff
from app.webhooks.errors import InvalidWebhookUrl
from app.webhooks.sender import AttemptResult, OutgoingRequest, WebhookSender
from app.webhooks.signing import generate_secret
from app.webhooks.url_safety import parse_webhook_url

log = structlog.get_logger(__name__)

EFFECT_KINDS = frozenset({"task", "wait"})
WEBHOOK_EVENT_TYPE = "enrollment.step"
DEFAULT_TASK_TITLE = "Follow up with {name}"
MAX_TASK_DUE_DAYS = 3650
# A request header a step's config may not set, because the signature or the
# transport owns it.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


@dataclass(frozen=True)
class WebhookCall:
    """A webhook step's request, built in the claim transaction."""

    url: str
    body: bytes
    headers: dict[str, str]
    secret: str


def task_due_at(now: datetime, due_in_days: int, timezone: str | None) -> datetime:
    """Add ``due_in_days`` calendar days to ``now`` in the IANA zone ``timezone``.

    Counting in local time keeps the hour across a DST change. Without a valid zone
    the days are counted in UTC.
    """
    zone: ZoneInfo | None = None
    if timezone:
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
    if zone is None:
        return now + timedelta(days=due_in_days)
    local = now.astimezone(zone)
    due_local = (local.replace(tzinfo=None) + timedelta(days=due_in_days)).replace(
        tzinfo=zone
    )
    return due_local.astimezone(now.tzinfo)


def _due_in_days(config: dict[str, Any]) -> int:
    value = config.get("due_in_days", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return min(max(value, 0), MAX_TASK_DUE_DAYS)


async def create_task(
    session: AsyncSession,
    enrollment: Enrollment,
    step: SequenceStep,
    lead: Lead,
    now: datetime,
    *,
    zone: ZoneInfo,
) -> uuid.UUID:
    """Create the task activity of a ``task`` step, for the lead's owner.

    ``zone`` is the one that schedules the enrollment's steps (``schedule.pick_zone``),
    so the due date counts days in the lead's, else the sequence's, else the
    workspace's zone.
    """
    config = step.config or {}
    name = " ".join(part for part in (lead.first_name, lead.last_name) if part)
    title = str(
        config.get("title") or DEFAULT_TASK_TITLE.format(name=name or lead.email)
    )
    body = config.get("body")
    activity = await activity_service.create_lead_task(
        session,
        workspace_id=enrollment.workspace_id,
        lead_id=lead.id,
        owner_id=lead.owner_id,
        subject=title[:300],
        body=str(body) if body else None,
        due_at=task_due_at(now, _due_in_days(config), zone.key),
        actor=f"enrollment:{ids.encode('enrollment', enrollment.id)}",
    )
    log.info(
        "enrollment.task_created",
        enrollment_id=str(enrollment.id),
        activity_id=str(activity.id),
        position=step.position,
    )
    return activity.id


async def sequence_secret(session: AsyncSession, sequence_id: uuid.UUID) -> str:
    """Return the sequence's webhook signing secret, creating it on first use.

    The conditional UPDATE makes two workers that race agree on one secret: the
    second waits for the first's row lock, then finds the secret set.
    """
    await session.execute(
        update(Sequence)
        .where(Sequence.id == sequence_id, Sequence.webhook_secret.is_(None))
        .values(webhook_secret=generate_secret())
        .execution_options(synchronize_session=False)
    )
    secret = await session.scalar(
        select(Sequence.webhook_secret).where(Sequence.id == sequence_id)
    )
    assert secret is not None
    return secret


def _extra_headers(config: dict[str, Any]) -> dict[str, str]:
    headers = config.get("headers") or {}
    if not isinstance(headers, dict):
        return {}
    return {
        str(name): str(value)
        for name, value in headers.items()
        if str(name).lower() not in RESERVED_HEADERS
    }


async def build_webhook_call(
    session: AsyncSession,
    enrollment: Enrollment,
    step: SequenceStep,
    lead: Lead,
    run_id: uuid.UUID,
    started_at: datetime,
) -> WebhookCall:
    """Build the signed request's parts: its body is an event-like JSON object."""
    config = step.config or {}
    payload = {
        "id": str(run_id),
        "type": WEBHOOK_EVENT_TYPE,
        "created_at": started_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "enrollment": {
                "id": ids.encode("enrollment", enrollment.id),
                "sequence_id": ids.encode("sequence", enrollment.sequence_id),
                "lead_id": ids.encode("lead", enrollment.lead_id),
                "status": enrollment.status,
            },
            "lead": lead_data(lead),
            "step": {
                "id": ids.encode("sequence_step", step.id),
                "position": step.position,
                "kind": step.kind,
            },
        },
    }
    return WebhookCall(
        url=str(config.get("url") or ""),
        body=json.dumps(payload, separators=(",", ":"), default=str).encode(),
        headers=_extra_headers(config),
        secret=await sequence_secret(session, enrollment.sequence_id),
    )


@dataclass(frozen=True)
class WebhookFailure:
    """A failed webhook request as the runner records it."""

    error: MailError
    retry_after_seconds: float | None


def _failure(result: AttemptResult, now: datetime) -> WebhookFailure:
    status = result.status_code
    if status is None:
        return WebhookFailure(
            MailError(f"The webhook request failed: {result.error}"), None
        )
    # 408 and 429 mean "try later", but any other 4xx would fail the same way again.
    permanent = 400 <= status < 500 and status not in (408, 429)
    retry_after = None
    if status in backoff.RETRY_AFTER_STATUSES:
        retry_after = backoff.parse_retry_after(result.retry_after, now)
    excerpt = f": {result.response_excerpt[:200]}" if result.response_excerpt else ""
    return WebhookFailure(
        MailError(
            f"The webhook receiver responded with HTTP {status}{excerpt}",
            permanent=permanent,
        ),
        retry_after,
    )


async def send_webhook(
    sender: WebhookSender, call: WebhookCall, message_id: str, now: datetime
) -> WebhookFailure | None:
    """POST the signed request once; return None on a 2xx response.

    ``WebhookSender`` resolves and dials through the webhook URL checks, follows no
    redirect (a 3xx is a failure) and stops at ``webhook_timeout_seconds``.
    """
    try:
        parse_webhook_url(call.url)
    except InvalidWebhookUrl as error:
        return WebhookFailure(MailError(error.detail, permanent=True), None)
    request = OutgoingRequest(
        url=call.url,
        message_id=message_id,
        body=call.body,
        signing_secrets=(call.secret,),
    )
    result = await sender.send(request, extra_headers=call.headers)
    if result.succeeded:
        return None
    return _failure(result, now)
