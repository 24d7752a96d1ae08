"""Loading what a step's message needs besides the step: recipient data and sender."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Lead, User, Workspace
from app.models import Sequence as SequenceRow
from app.nurture.compose import Recipient
from app.settings import Settings


async def recipient_for(session: AsyncSession, lead: Lead) -> Recipient:
    """Copy the lead, its owner's name and address and the workspace's name."""
    owner = None
    if lead.owner_id is not None:
        owner = await session.get(User, lead.owner_id)
    workspace = await session.get(Workspace, lead.workspace_id)
    return Recipient.from_lead(
        lead,
        owner_name=owner.name if owner is not None else None,
        owner_email=owner.email if owner is not None else None,
        workspace_name=workspace.name if workspace is not None else None,
    )


@dataclass(frozen=True)
class Sender:
    """The From and Reply-To headers of a sequence's emails."""

    mail_from: str
    reply_to: str | None


def sender_of(sequence: SequenceRow, settings: Settings) -> Sender:
    return Sender(
        mail_from=sequence.mail_from or settings.mail_from, reply_to=sequence.reply_to
    )
