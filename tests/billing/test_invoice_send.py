"""Emailing invoices with their PDF, against a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import threading
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import redis.asyncio as aioredis
from arq.constants import job_key_prefix
from pypdf import PdfReader
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.sends import invoice_send_service, send_job_id
from app.core.db import Database
from app.core.ids import decode
from app.core.jobs import JobQueue
from app.models import Customer, Event, InvoiceSend, Workspace
from app.settings import Settings
from tests.billing.conftest import Committed
from tests.billing.factories import create_customer, create_invoice, create_open_invoice
from tests.conftest import TestDatabase, make_workspace_key
from tests.nurture.conftest import (  # noqa: F401 - fixtures used by name
    SmtpServer,
    smtp_server,
    smtp_settings,
)
from workers import tasks


def job_context_for(
    database: Database, queue: JobQueue, settings: Settings
) -> dict[str, Any]:
    return {"db": database, "queue": queue, "settings": settings}


async def billed_customer(session: AsyncSession, workspace: Workspace) -> Customer:
    return await create_customer(
        session,
        workspace.id,
        name="Globex",
        email="hello@globex.example",
        billing_email="ap@globex.example",
    )


async def post_send(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice_id: str,
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/v1/invoices/{invoice_id}/send", json=body or {}, headers=auth
    )


async def count_events(session: AsyncSession, type: str) -> int:
    count = await session.scalar(select(func.count()).where(Event.type == type))
    return int(count or 0)


def attachment(message: EmailMessage) -> tuple[str, str | None, bytes]:
    parts = list(message.iter_attachments())
    assert len(parts) == 1
    part = parts[0]
    content = part.get_content()
    assert isinstance(content, bytes)
    return part.get_content_type(), part.get_filename(), content


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


class TestSendInvoice:
    async def test_emails_pdf_to_billing_email(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        database: TestDatabase,
        queue: JobQueue,
        smtp_server: SmtpServer,  # noqa: F811
        smtp_settings: Settings,  # noqa: F811
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)

        response = await post_send(client, auth, invoice["id"])
        send = response.json()
        outcome = await tasks.send_invoice_email(
            job_context_for(database, queue, smtp_settings),
            str(decode("invoice_send", send["id"])),
        )

        assert response.status_code == 202, response.text
        assert response.headers["location"] == (
            f"/v1/invoices/{invoice['id']}/sends/{send['id']}"
        )
        assert send["status"] == "queued"
        assert send["recipients"] == ["ap@globex.example"]
        assert send["subject"] == f"Invoice {invoice['number']} from Acme Test"
        assert outcome == "sent"
        assert smtp_server.recipients == [["ap@globex.example"]]
        message = smtp_server.messages[0]
        assert message["Message-ID"] == send["message_id"]
        assert message["Subject"] == send["subject"]
        assert message["From"] == "Acme Test <sales@acme.example>"
        body = message.get_body(("plain",))
        assert body is not None
        assert "for 100.00 EUR" in body.get_content()
        content_type, filename, content = attachment(message)
        assert content_type == "application/pdf"
        assert filename == f"{invoice['number']}.pdf"
        assert content.startswith(b"%PDF-")
        text = pdf_text(content)
        assert f"Number {invoice['number']}" in text
        assert "Globex" in text
        assert "Total (EUR) 100.00" in text

        listed = await client.get(f"/v1/invoices/{invoice['id']}/sends", headers=auth)
        assert listed.status_code == 200
        [row] = listed.json()["data"]
        assert row["id"] == send["id"]
        assert row["status"] == "sent"
        assert row["attempts"] == 1
        assert row["sent_at"] is not None
        assert row["error"] is None
        fetched = await client.get(response.headers["location"], headers=auth)
        assert fetched.status_code == 200
        assert fetched.json() == row
        assert await count_events(session, "invoice.sent") == 1

    async def test_request_enqueues_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        redis_client: aioredis.Redis,
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)

        send = (await post_send(client, auth, invoice["id"])).json()

        job_id = send_job_id(decode("invoice_send", send["id"]), 0)
        assert await redis_client.exists(f"{job_key_prefix}{job_id}") == 1

    async def test_body_is_optional(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)

        response = await client.post(f"/v1/invoices/{invoice['id']}/send", headers=auth)

        assert response.status_code == 202, response.text
        assert response.json()["recipients"] == ["ap@globex.example"]

    async def test_rerun_sends_once(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        database: TestDatabase,
        queue: JobQueue,
        smtp_server: SmtpServer,  # noqa: F811
        smtp_settings: Settings,  # noqa: F811
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)
        send = (await post_send(client, auth, invoice["id"])).json()
        send_id = str(decode("invoice_send", send["id"]))
        context = job_context_for(database, queue, smtp_settings)

        first = await tasks.send_invoice_email(context, send_id)
        second = await tasks.send_invoice_email(context, send_id)
        swept = await tasks.sweep_invoice_sends(context)

        assert first == "sent"
        assert second == "done"
        assert swept == 0
        assert len(smtp_server.messages) == 1
        assert await count_events(session, "invoice.sent") == 1

    async def test_given_recipients(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        database: TestDatabase,
        queue: JobQueue,
        smtp_server: SmtpServer,  # noqa: F811
        smtp_settings: Settings,  # noqa: F811
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)

        response = await post_send(
            client,
            auth,
            invoice["id"],
            {
                "to": ["cfo@globex.example", "AP@globex.example", "cfo@GLOBEX.example"],
                "subject": "Your invoice",
                "message": "Grüße,\nanbei die Rechnung.",
            },
        )
        send = response.json()
        await tasks.send_invoice_email(
            job_context_for(database, queue, smtp_settings),
            str(decode("invoice_send", send["id"])),
        )

        assert response.status_code == 202, response.text
        assert send["recipients"] == ["cfo@globex.example", "AP@globex.example"]
        assert smtp_server.recipients == [["cfo@globex.example", "AP@globex.example"]]
        message = smtp_server.messages[0]
        assert message["Subject"] == "Your invoice"
        body = message.get_body(("plain",))
        assert body is not None
        assert "anbei die Rechnung." in body.get_content()

    async def test_invalid_recipient_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)

        response = await post_send(
            client, auth, invoice["id"], {"to": ["not-an-email"]}
        )

        assert response.status_code == 422
        fields = [error["field"] for error in response.json()["errors"]]
        assert fields == ["to.0"]
        assert await session.scalar(select(func.count()).select_from(InvoiceSend)) == 0

    async def test_overlong_local_part_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)

        response = await post_send(
            client,
            auth,
            invoice["id"],
            {"to": ["cfo@globex.example", "a" * 65 + "@globex.example"]},
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "to.1"
        assert "has 65 octets, more than the 64" in error["message"]
        assert await session.scalar(select(func.count()).select_from(InvoiceSend)) == 0

    async def test_no_known_recipient_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await post_send(client, auth, invoice["id"])

        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"][0]["field"] == "to"
        assert problem["errors"][0]["code"] == "missing_recipient"

    async def test_draft_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await billed_customer(session, workspace)
        draft = await create_invoice(client, auth, customer)

        response = await post_send(client, auth, draft["id"])

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "invoice_not_sendable"
        assert problem["current_status"] == "draft"
        assert f"/v1/invoices/{draft['id']}/finalize" in problem["detail"]
        assert await session.scalar(select(func.count()).select_from(InvoiceSend)) == 0

    async def test_void_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)
        await client.post(f"/v1/invoices/{invoice['id']}/void", headers=auth)

        response = await post_send(client, auth, invoice["id"])

        assert response.status_code == 409
        assert response.json()["current_status"] == "void"

    async def test_idempotency_key_replays(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)
        headers = {**auth, "Idempotency-Key": "send-once"}
        path = f"/v1/invoices/{invoice['id']}/send"

        first = await client.post(path, json={}, headers=headers)
        second = await client.post(path, json={}, headers=headers)

        assert first.status_code == 202
        assert second.status_code == 202
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json()["id"] == first.json()["id"]
        assert await session.scalar(select(func.count()).select_from(InvoiceSend)) == 1

    async def test_refused_recipient_fails(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        database: TestDatabase,
        queue: JobQueue,
        smtp_server: SmtpServer,  # noqa: F811
        smtp_settings: Settings,  # noqa: F811
    ) -> None:
        smtp_server.handler.refused["ap@globex.example"] = "550 No such user"
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)
        send = (await post_send(client, auth, invoice["id"])).json()

        outcome = await tasks.send_invoice_email(
            job_context_for(database, queue, smtp_settings),
            str(decode("invoice_send", send["id"])),
        )

        assert outcome == "failed"
        listed = await client.get(f"/v1/invoices/{invoice['id']}/sends", headers=auth)
        row = listed.json()["data"][0]
        assert row["status"] == "failed"
        assert "550 No such user" in row["error"]
        assert await count_events(session, "invoice.send_failed") == 1
        assert await count_events(session, "invoice.sent") == 0

    async def test_unreachable_server_retries(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        database: TestDatabase,
        queue: JobQueue,
        smtp_server: SmtpServer,  # noqa: F811
        smtp_settings: Settings,  # noqa: F811
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)
        send = (await post_send(client, auth, invoice["id"])).json()
        send_id = str(decode("invoice_send", send["id"]))
        down = smtp_settings.model_copy(update={"smtp_port": 1})

        failed = await tasks.send_invoice_email(
            job_context_for(database, queue, down), send_id
        )
        early = await tasks.send_invoice_email(
            job_context_for(database, queue, smtp_settings), send_id
        )

        assert failed == "retry"
        assert early == "not_due"
        row = await session.scalar(
            select(InvoiceSend)
            .where(InvoiceSend.id == decode("invoice_send", send["id"]))
            .execution_options(populate_existing=True)
        )
        assert row is not None
        assert row.status == "queued"
        assert row.attempts == 1
        assert row.error is not None
        assert row.next_attempt_at is not None
        assert smtp_server.messages == []

    async def test_lapsed_lease_is_sent_by_sweep(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        database: TestDatabase,
        queue: JobQueue,
        smtp_server: SmtpServer,  # noqa: F811
        smtp_settings: Settings,  # noqa: F811
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)
        send = (await post_send(client, auth, invoice["id"])).json()
        send_id = decode("invoice_send", send["id"])
        # A worker claimed the send, then died: the row is sending, its lease over.
        await session.execute(
            update(InvoiceSend)
            .where(InvoiceSend.id == send_id)
            .values(
                status="sending",
                attempts=1,
                next_attempt_at=func.now() - timedelta(seconds=1),
            )
        )
        await session.commit()
        context = job_context_for(database, queue, smtp_settings)

        async with database.sessionmaker() as sweep_session:
            swept = await invoice_send_service.sweep(sweep_session)
        outcome = await tasks.send_invoice_email(context, str(send_id))

        assert swept == 1
        assert outcome == "sent"
        listed = await client.get(f"/v1/invoices/{invoice['id']}/sends", headers=auth)
        row = listed.json()["data"][0]
        assert row["status"] == "sent"
        assert row["attempts"] == 2
        assert len(smtp_server.messages) == 1

    async def test_leased_send_is_skipped(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        database: TestDatabase,
        queue: JobQueue,
        smtp_server: SmtpServer,  # noqa: F811
        smtp_settings: Settings,  # noqa: F811
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)
        send = (await post_send(client, auth, invoice["id"])).json()
        send_id = decode("invoice_send", send["id"])
        # Another worker holds the send and its lease runs for a minute more.
        await session.execute(
            update(InvoiceSend)
            .where(InvoiceSend.id == send_id)
            .values(
                status="sending",
                attempts=1,
                next_attempt_at=func.now() + timedelta(minutes=1),
            )
        )
        await session.commit()

        outcome = await tasks.send_invoice_email(
            job_context_for(database, queue, smtp_settings), str(send_id)
        )

        assert outcome == "leased"
        assert smtp_server.messages == []

    async def test_other_workspace_sends_are_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)
        _, other = await make_workspace_key(session)

        listed = await client.get(f"/v1/invoices/{invoice['id']}/sends", headers=other)
        sent = await post_send(client, other, invoice["id"])

        assert listed.status_code == 404
        assert sent.status_code == 404

    async def test_send_of_other_invoice_is_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await billed_customer(session, workspace)
        invoice = await create_open_invoice(client, auth, customer)
        other_invoice = await create_open_invoice(client, auth, customer)
        send = (await post_send(client, auth, invoice["id"])).json()
        _, other_key = await make_workspace_key(session)

        wrong_invoice = await client.get(
            f"/v1/invoices/{other_invoice['id']}/sends/{send['id']}", headers=auth
        )
        other_workspace = await client.get(
            f"/v1/invoices/{invoice['id']}/sends/{send['id']}", headers=other_key
        )
        malformed = await client.get(
            f"/v1/invoices/{invoice['id']}/sends/isend_nope", headers=auth
        )

        assert wrong_invoice.status_code == 404
        assert wrong_invoice.json()["code"] == "invoice_send_not_found"
        assert (
            f"/v1/invoices/{other_invoice['id']}/sends"
            in (wrong_invoice.json()["detail"])
        )
        assert other_workspace.status_code == 404
        assert other_workspace.json()["code"] == "invoice_not_found"
        assert malformed.status_code == 404


class TestSendRace:
    async def test_second_worker_skips_send_in_flight(
        self,
        committed: Committed,
        queue: JobQueue,
        smtp_server: SmtpServer,  # noqa: F811
        smtp_settings: Settings,  # noqa: F811
    ) -> None:
        client, auth = committed.client, committed.auth
        invoice = await create_open_invoice(client, auth, committed.customer)
        send = (
            await post_send(client, auth, invoice["id"], {"to": ["ap@globex.example"]})
        ).json()
        send_id = str(decode("invoice_send", send["id"]))
        context = job_context_for(committed.database, queue, smtp_settings)
        release = threading.Event()
        smtp_server.handler.hold = release

        first = asyncio.create_task(tasks.send_invoice_email(context, send_id))
        try:
            started = await asyncio.to_thread(smtp_server.handler.data_started.wait, 30)
            second = await tasks.send_invoice_email(context, send_id)
        finally:
            release.set()
        first_outcome = await first
        third = await tasks.send_invoice_email(context, send_id)

        assert started
        assert second == "leased"
        assert first_outcome == "sent"
        assert third == "done"
        assert len(smtp_server.messages) == 1
