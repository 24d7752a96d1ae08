"""Rendering one step for one lead as the runner would, without sending or writing.

An email goes through ``compose``, the function the runner sends with, so the
preview has the same merge values, sender headers and signed unsubscribe link.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import utcnow
from app.leads.service import lead_service
from app.models import Lead, SequenceStep
from app.nurture import merge, templates, unsubscribe
from app.nurture.compose import Recipient, compose, message_id_for
from app.nurture.context import Sender, recipient_for, sender_of
from app.nurture.errors import SequenceStepNotFound, SequenceVersionNotFound
from app.nurture.repository import SequenceRepository
from app.nurture.schemas import (
    EmailPreview,
    StepPreview,
    StepPreviewRequest,
    TaskPreview,
    WebhookPreview,
)
from app.nurture.service import sequence_service
from app.settings import Settings

# The preview has no step run, so its Message-ID and unsubscribe link use this
# placeholder id, which the unsubscribe link rejects.
PREVIEW_RUN_ID = uuid.UUID(int=0)


async def preview_step(
    session: AsyncSession,
    settings: Settings,
    workspace_id: uuid.UUID,
    sequence_id: uuid.UUID,
    position: int,
    payload: StepPreviewRequest,
) -> StepPreview:
    sequence = await sequence_service.get_row(session, workspace_id, sequence_id)
    number = payload.version or sequence.latest_version
    if number > sequence.latest_version:
        raise SequenceVersionNotFound(
            f"Sequence {ids.encode('sequence', sequence.id)} has no version {number}. "
            f"Its versions are 1 to {sequence.latest_version}.",
            latest_version=sequence.latest_version,
        )
    step = await SequenceRepository.from_session(session).step_at(
        sequence.id, number, position
    )
    if step is None:
        raise SequenceStepNotFound(
            f"Version {number} of sequence {ids.encode('sequence', sequence.id)} has "
            f"no step at position {position}."
        )
    lead = await lead_service.get(session, workspace_id, payload.lead_id)
    recipient = await recipient_for(session, lead)

    preview = StepPreview(
        sequence_id=sequence.id,
        sequence_version=number,
        position=position,
        kind=step.kind,
        email=None,
        task=None,
        webhook=None,
    )
    if step.kind == "email":
        sender = sender_of(sequence, settings)
        link = _unsubscribe_link(settings, lead)
        preview.email = _email_preview(step, recipient, sender, link, payload)
    elif step.kind == "task":
        values = merge.lead_values(recipient)
        body = step.config.get("body")
        preview.task = TaskPreview(
            title=templates.render(str(step.config["title"]), values),
            body=templates.render(body, values) if body else None,
            due_in_days=int(step.config.get("due_in_days", 0)),
            assignee_id=lead.owner_id,
        )
    elif step.kind == "webhook":
        # NOTE: the request body is left out, because the runner that sends webhook
        # steps defines it.
        preview.webhook = WebhookPreview(
            url=str(step.config["url"]), headers=dict(step.config.get("headers", {}))
        )
    return preview


def _unsubscribe_link(settings: Settings, lead: Lead) -> str:
    # The token carries the nil UUID as its enrollment, even when the lead has a
    # running one, so a previewed email forwarded or clicked unsubscribes no one.
    token = unsubscribe.UnsubscribeToken(
        workspace_id=lead.workspace_id,
        lead_id=lead.id,
        enrollment_id=PREVIEW_RUN_ID,
    )
    return unsubscribe.unsubscribe_url(
        settings.public_base_url,
        unsubscribe.sign(settings.signing_secret.get_secret_value(), token),
    )


def _email_preview(
    step: SequenceStep,
    recipient: Recipient,
    sender: Sender,
    link: str,
    payload: StepPreviewRequest,
) -> EmailPreview:
    offer = payload.offer.model_dump() if payload.offer is not None else None
    message = compose(
        recipient=recipient,
        subject=step.subject or "",
        body_text=step.body_text or "",
        mail_from=sender.mail_from,
        reply_to=sender.reply_to,
        message_id=message_id_for(PREVIEW_RUN_ID, sender.mail_from),
        unsubscribe_url=link,
        sent_at=utcnow(),
        offer=offer,
    )
    return EmailPreview(
        mail_from=str(message["From"]),
        reply_to=str(message["Reply-To"]) if message["Reply-To"] else None,
        to=str(message["To"]),
        subject=str(message["Subject"]),
        body_text=message.get_content(),
        headers={name: str(value) for name, value in message.items()},
    )
