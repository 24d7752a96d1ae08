"""Sending email: over SMTP with aiosmtplib, or into an outbox folder in dev.

``create_mailer`` picks the transport from the settings. With ``smtp_host`` set,
messages go to that server. In ``env == "dev"`` without it, each message is written as
an ``.eml`` file under ``data_dir / "outbox"``. Anywhere else without it, every send
fails with a ``MailError`` that names the missing setting, so a misconfigured
production worker records failed steps and retries them instead of dropping mail.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from email.message import EmailMessage
from email.policy import EmailPolicy, default
from pathlib import Path
from typing import Protocol

import aiosmtplib
import structlog

from app.settings import Settings

log = structlog.get_logger(__name__)

# RFC 5322 allows header lines of up to 998 characters. At Python's default of 78,
# the email package cannot fold the unbroken URL in List-Unsubscribe and turns it into
# an RFC 2047 encoded word, which mail clients do not read as a link.
MESSAGE_POLICY: EmailPolicy[EmailMessage] = default.clone(max_line_length=998)
_WIRE_POLICY = MESSAGE_POLICY.clone(linesep="\r\n")
_WIRE_UTF8_POLICY = MESSAGE_POLICY.clone(linesep="\r\n", utf8=True)


class MailError(Exception):
    """A failure to hand one message over for delivery.

    ``permanent`` means sending it again cannot succeed. ``bounced`` means the server
    rejected the recipient permanently (a 5xx reply to RCPT TO), so the address
    should receive no more mail.
    """

    def __init__(
        self, message: str, *, permanent: bool = False, bounced: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent or bounced
        self.bounced = bounced


class Mailer(Protocol):
    """A transport that accepts one message or raises ``MailError``."""

    async def send(self, message: EmailMessage) -> None: ...


def smtp_tls_mode(settings: Settings) -> str:
    """Return starttls, implicit or none; ``smtp_tls`` wins over ``smtp_starttls``."""
    if settings.smtp_tls is not None:
        return settings.smtp_tls
    return "starttls" if settings.smtp_starttls else "none"


def smtp_tls_context(settings: Settings) -> ssl.SSLContext:
    """Build the TLS context of SMTP connections from the ``smtp_*`` settings.

    Raises ``OSError`` or ``ssl.SSLError`` for a missing or invalid CA, certificate
    or key file, so a worker with a broken setting fails at start-up.
    """
    context = ssl.create_default_context(
        cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None
    )
    if not settings.smtp_validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.smtp_client_cert is not None:
        context.load_cert_chain(
            str(settings.smtp_client_cert),
            str(settings.smtp_client_key) if settings.smtp_client_key else None,
        )
    return context


class SmtpMailer:
    """A transport that opens one SMTP connection per message."""

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None:
            raise ValueError("SmtpMailer needs settings.smtp_host")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.tls_mode = smtp_tls_mode(settings)
        self.tls_context = (
            smtp_tls_context(settings) if self.tls_mode != "none" else None
        )
        self.timeout = settings.smtp_timeout_seconds

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    async def send(self, message: EmailMessage) -> None:
        sender: str = message["From"].addresses[0].addr_spec
        recipients: list[str] = [
            address.addr_spec for address in message["To"].addresses
        ]
        utf8 = not all(address.isascii() for address in (sender, *recipients))
        # Serialized here rather than by aiosmtplib, which would refold the headers at
        # 78 characters and so encode the List-Unsubscribe URL.
        raw = message.as_bytes(policy=_WIRE_UTF8_POLICY if utf8 else _WIRE_POLICY)
        try:
            await aiosmtplib.send(
                raw,
                sender=sender,
                recipients=recipients,
                mail_options=["SMTPUTF8"] if utf8 else [],
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=(
                    self.password.get_secret_value()
                    if self.password is not None
                    else None
                ),
                use_tls=self.tls_mode == "implicit",
                # True requires STARTTLS, and False never sends it: a server that does
                # not offer it fails the send instead of getting mail in clear.
                start_tls=self.tls_mode == "starttls",
                tls_context=self.tls_context,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            raise self._recipient_error(error) from error
        except aiosmtplib.SMTPDataError as error:
            raise MailError(
                f"The SMTP server {self.server} rejected the message: "
                f"{error.code} {error.message}",
                permanent=500 <= error.code < 600,
            ) from error
        except aiosmtplib.SMTPResponseException as error:
            raise MailError(
                f"The SMTP server {self.server} replied {error.code} {error.message}"
            ) from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise MailError(
                f"Sending to the SMTP server {self.server} failed: {error!r}"
            ) from error

    def _recipient_error(self, error: aiosmtplib.SMTPRecipientsRefused) -> MailError:
        codes = [rejection.code for rejection in error.recipients]
        replies = "; ".join(
            f"{rejection.recipient}: {rejection.code} {rejection.message}"
            for rejection in error.recipients
        )
        return MailError(
            f"The SMTP server {self.server} rejected the recipient: {replies}",
            bounced=bool(codes) and all(500 <= code < 600 for code in codes),
        )


class OutboxMailer:
    """Writes each message as ``<Message-ID>.eml`` into a folder, for development.

    The file name comes from the Message-ID, so sending the same message again
    replaces its file instead of adding a second one.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: EmailMessage) -> None:
        try:
            path = await asyncio.to_thread(self._write, message)
        except OSError as error:
            raise MailError(
                f"Writing the message into {self.folder} failed: {error}"
            ) from error
        log.info("mail.written", path=str(path), message_id=message["Message-ID"])

    def _write(self, message: EmailMessage) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(message["Message-ID"]).strip("<>"))
        path = self.folder / f"{name}.eml"
        partial = path.with_suffix(".eml.partial")
        partial.write_bytes(message.as_bytes())
        os.replace(partial, path)
        return path


class UnconfiguredMailer:
    """Fails every send, because no SMTP server is configured outside dev."""

    def __init__(self, env: str) -> None:
        self.env = env

    async def send(self, message: EmailMessage) -> None:
        raise MailError(
            f"No SMTP server is configured (env {self.env!r}). Set SALESCYCLE_SMTP_HOST "
            "and the other SALESCYCLE_SMTP_* settings, or use env 'dev' to write "
            "messages into the outbox folder."
        )


def create_mailer(settings: Settings) -> Mailer:
    """Choose the transport the settings describe."""
    if settings.smtp_host is not None:
        return SmtpMailer(settings)
    if settings.env == "dev":
        return OutboxMailer(settings.data_dir / "outbox")
    return UnconfiguredMailer(settings.env)
