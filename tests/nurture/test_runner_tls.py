"""SMTP over STARTTLS and implicit TLS, against aiosmtpd with a self-signed certificate."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from app.nurture.mailer import MailError, SmtpMailer, smtp_tls_mode
from app.settings import Settings
from tests.live import free_port


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Generate a self-signed certificate for 127.0.0.1 with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Certificate(cert=cert, key=key)


class Inbox:
    """An aiosmtpd handler that keeps each message and whether TLS carried it."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.encrypted: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.original_content))
        self.encrypted.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 Message accepted"


@dataclass
class TlsServer:
    port: int
    inbox: Inbox


def _server_context(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificate.cert), str(certificate.key))
    return context


@pytest.fixture
def starttls_server(certificate: Certificate) -> Iterator[TlsServer]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=_server_context(certificate),
        require_starttls=True,
    )
    controller.start()
    yield TlsServer(port=port, inbox=inbox)
    controller.stop()


@pytest.fixture
def smtps_server(certificate: Certificate) -> Iterator[TlsServer]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        ssl_context=_server_context(certificate),
    )
    controller.start()
    yield TlsServer(port=port, inbox=inbox)
    controller.stop()


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "sales@acme.example"
    mail["To"] = "ada@example.com"
    mail["Subject"] = "Over TLS"
    mail.set_content("Hello")
    return mail


def mailer(settings: Settings, port: int, **changes: Any) -> SmtpMailer:
    return SmtpMailer(
        settings.model_copy(
            update={
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_timeout_seconds": 5.0,
                **changes,
            }
        )
    )


class TestTlsMode:
    def test_follows_starttls_flag(self, settings: Settings) -> None:
        assert smtp_tls_mode(settings.model_copy(update={"smtp_starttls": True})) == (
            "starttls"
        )
        assert smtp_tls_mode(settings.model_copy(update={"smtp_starttls": False})) == (
            "none"
        )

    def test_explicit_mode_wins(self, settings: Settings) -> None:
        changed = settings.model_copy(
            update={"smtp_starttls": True, "smtp_tls": "implicit"}
        )

        assert smtp_tls_mode(changed) == "implicit"


class TestStartTls:
    async def test_sends_with_ca_file(
        self, settings: Settings, starttls_server: TlsServer, certificate: Certificate
    ) -> None:
        transport = mailer(
            settings,
            starttls_server.port,
            smtp_tls="starttls",
            smtp_ca_file=certificate.cert,
        )

        await transport.send(message())

        assert len(starttls_server.inbox.messages) == 1
        assert starttls_server.inbox.encrypted == [True]

    async def test_untrusted_certificate_fails(
        self, settings: Settings, starttls_server: TlsServer
    ) -> None:
        transport = mailer(settings, starttls_server.port, smtp_tls="starttls")

        with pytest.raises(MailError) as raised:
            await transport.send(message())

        assert "CERTIFICATE_VERIFY_FAILED" in raised.value.message
        assert starttls_server.inbox.messages == []

    async def test_unchecked_certificate_sends(
        self, settings: Settings, starttls_server: TlsServer
    ) -> None:
        transport = mailer(
            settings,
            starttls_server.port,
            smtp_tls="starttls",
            smtp_validate_certs=False,
        )

        await transport.send(message())

        assert starttls_server.inbox.encrypted == [True]

    async def test_plain_refused_by_server(
        self, settings: Settings, starttls_server: TlsServer
    ) -> None:
        transport = mailer(settings, starttls_server.port, smtp_tls="none")

        with pytest.raises(MailError):
            await transport.send(message())

        assert starttls_server.inbox.messages == []


class TestImplicitTls:
    async def test_sends_with_ca_file(
        self, settings: Settings, smtps_server: TlsServer, certificate: Certificate
    ) -> None:
        transport = mailer(
            settings,
            smtps_server.port,
            smtp_tls="implicit",
            smtp_ca_file=certificate.cert,
        )

        await transport.send(message())

        assert len(smtps_server.inbox.messages) == 1
        assert smtps_server.inbox.encrypted == [True]

    async def test_untrusted_certificate_fails(
        self, settings: Settings, smtps_server: TlsServer
    ) -> None:
        transport = mailer(settings, smtps_server.port, smtp_tls="implicit")

        with pytest.raises(MailError):
            await transport.send(message())

        assert smtps_server.inbox.messages == []

    async def test_starttls_against_smtps_fails(
        self, settings: Settings, smtps_server: TlsServer, certificate: Certificate
    ) -> None:
        transport = mailer(
            settings,
            smtps_server.port,
            smtp_tls="starttls",
            smtp_ca_file=certificate.cert,
            smtp_timeout_seconds=2.0,
        )

        with pytest.raises(MailError):
            await transport.send(message())

        assert smtps_server.inbox.messages == []


class TestClientCertificate:
    def test_missing_file_fails_at_start(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        with pytest.raises(OSError):
            mailer(
                settings,
                25,
                smtp_tls="starttls",
                smtp_client_cert=tmp_path / "missing.pem",
            )

    async def test_presents_certificate(
        self, settings: Settings, certificate: Certificate
    ) -> None:
        # This server rejects a handshake without a client certificate it trusts.
        context = _server_context(certificate)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(certificate.cert))
        inbox = Inbox()
        port = free_port()
        controller = Controller(
            inbox, hostname="127.0.0.1", port=port, ssl_context=context
        )
        controller.start()
        try:
            without = mailer(
                settings,
                port,
                smtp_tls="implicit",
                smtp_ca_file=certificate.cert,
                smtp_timeout_seconds=2.0,
            )
            with pytest.raises(MailError):
                await without.send(message())
            transport = mailer(
                settings,
                port,
                smtp_tls="implicit",
                smtp_ca_file=certificate.cert,
                smtp_client_cert=certificate.cert,
                smtp_client_key=certificate.key,
            )

            await transport.send(message())
        finally:
            controller.stop()

        assert len(inbox.messages) == 1
