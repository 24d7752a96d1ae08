"""Building the email of one step for one lead."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from app.models import Lead
from app.nurture import merge, templates
from app.nurture.mailer import MESSAGE_POLICY, MailError

UNSUBSCRIBE_FIELD = merge.UNSUBSCRIBE_FIELD
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class Recipient:
    """The lead, owner and workspace fields a step may use, copied from their rows."""

    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    phone: str | None
    owner_name: str | None = None
    owner_email: str | None = None
    workspace_name: str | None = None

    @classmethod
    def from_lead(
        cls,
        lead: Lead,
        *,
        owner_name: str | None = None,
        owner_email: str | None = None,
        workspace_name: str | None = None,
    ) -> Recipient:
        # The local part as captured, and the domain in its ASCII (IDNA) form, so an
        # internationalized domain needs no SMTPUTF8 support from the mail server.
        local_part = lead.email.rpartition("@")[0]
        domain = lead.email_normalized.rpartition("@")[2]
        return cls(
            email=f"{local_part}@{domain}",
            first_name=lead.first_name,
            last_name=lead.last_name,
            company=lead.company,
            title=lead.title,
            phone=lead.phone,
            owner_name=owner_name,
            owner_email=owner_email,
            workspace_name=workspace_name,
        )

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    def merge_values(self) -> dict[str, str | None]:
        """Map each merge field of ``templates.LEAD_FIELDS`` to this lead's value."""
        return {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "full_name": self.full_name,
            "email": self.email,
            "company": self.company,
            "title": self.title,
            "phone": self.phone,
        }


def message_id_for(step_run_id: uuid.UUID, mail_from: str) -> str:
    """Build the Message-ID of a step run, on the domain of the sender address."""
    _, address = parseaddr(mail_from)
    domain = address.rpartition("@")[2] or "localhost"
    return f"<step-run.{step_run_id.hex}@{domain}>"


def header_text(value: str) -> str:
    """Replace control characters and line breaks, which could inject a header."""
    cleaned = "".join(
        " " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char
        for char in value
    )
    return " ".join(cleaned.split())


def compose(
    *,
    recipient: Recipient,
    subject: str,
    body_text: str,
    mail_from: str,
    message_id: str,
    unsubscribe_url: str,
    sent_at: datetime,
    reply_to: str | None = None,
    offer: Mapping[str, str | None] | None = None,
) -> EmailMessage:
    """Render a step's templates into a message with one-click unsubscribe headers.

    The body gets the unsubscribe link appended unless it places the link itself
    with ``{{ unsubscribe_url }}``. Raises a permanent ``MailError`` when the lead's
    address cannot be written into a header. ``offer`` gives the values of the
    ``offer.*`` fields of a special-offer step, which render empty without it.
    """
    values = {**merge.lead_values(recipient), **merge.offer_values(offer)}
    body_values: dict[str, str | None] = {**values, UNSUBSCRIBE_FIELD: unsubscribe_url}
    rendered_body = templates.render(body_text, body_values)
    uses_link = any(
        isinstance(part, templates.MergeTag) and part.name == UNSUBSCRIBE_FIELD
        for part in templates.parse(body_text)
    )
    if not uses_link:
        rendered_body = (
            f"{rendered_body}\n\n-- \nTo stop receiving these emails, open "
            f"{unsubscribe_url}\n"
        )

    message = EmailMessage(policy=MESSAGE_POLICY)
    try:
        message["From"] = mail_from
        if reply_to:
            message["Reply-To"] = reply_to
        message["To"] = Address(
            display_name=header_text(recipient.full_name), addr_spec=recipient.email
        )
    except (ValueError, IndexError) as error:
        # NOTE: this includes every address with a non-ASCII local part, because the
        # email package (3.11) rejects those in an Address, so such leads get no mail.
        raise MailError(
            f"The address {recipient.email!r} cannot be used as a recipient: {error}",
            permanent=True,
        ) from error
    message["Subject"] = header_text(templates.render(subject, values))
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = ONE_CLICK
    # Quoted-printable keeps a non-ASCII body 7-bit clean, so sending it does not
    # depend on the server's 8BITMIME extension.
    message.set_content(
        rendered_body, cte=None if rendered_body.isascii() else "quoted-printable"
    )
    return message
