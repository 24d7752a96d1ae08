"""Dunning reminders: sent once each on the policy's schedule, paused and resumed."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.disputes import dispute_service
from app.billing.dunning import dunning_runner
from app.billing.overdue import local_instant
from app.core import ids
from app.models import Activity, Dispute, Payment, Workspace
from app.nurture.mailer import SmtpMailer
from app.settings import Settings
from tests.billing.conftest import Committed
from tests.billing.debt_helpers import (
    UnitOfWork,
    event_types,
    record_payment,
    set_due_date,
    unit_of_work,
)
from tests.billing.factories import create_customer, create_open_invoice
from tests.conftest import TestDatabase
from tests.nurture.conftest import SmtpServer, smtp_server
from tests.opportunities.test_pipeline_admin import create_pipeline
from tests.users.factories import create_user

__all__ = ["smtp_server"]

ZONE = "America/New_York"
STEPS = [
    {
        "offset_days": -3,
        "subject": "Invoice {{ invoice_number }} is due on {{ due_date }}",
        "body": "Dear {{ customer_name }}, {{ amount_remaining }} is due soon. "
        "Pay at {{ payment_link | your usual bank account }}.",
    },
    {
        "offset_days": 0,
        "subject": "Invoice {{ invoice_number }} is due today",
        "body": "{{ amount_remaining }} of {{ amount_due }} is due today.",
    },
    {
        "offset_days": 7,
        "subject": "Invoice {{ invoice_number }} is {{ days_overdue }} days overdue",
        "body": "Please pay {{ amount_remaining }}.",
        "create_task": True,
        "task_title": "Call about the overdue invoice",
    },
]


@pytest.fixture
def mail_settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
            "smtp_timeout_seconds": 5.0,
            "mail_from": "Acme Billing <billing@acme.example>",
        }
    )


@dataclass
class Dunning:
    """An open invoice due in 30 days under a default policy, and how to run it."""

    client: httpx.AsyncClient
    auth: dict[str, str]
    uow: UnitOfWork
    settings: Settings
    smtp: SmtpServer
    invoice: dict[str, Any]
    policy: dict[str, Any]
    owner_id: str
    due: date

    def at(self, offset_days: int, hour: int = 9) -> datetime:
        return local_instant(self.due + timedelta(days=offset_days), ZONE, hour)

    async def run(self, now: datetime) -> int:
        return await dunning_runner.run(
            self.uow, SmtpMailer(self.settings), self.settings, now=now
        )

    async def state(self) -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/invoices/{self.invoice['id']}/dunning", headers=self.auth
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def statuses(self) -> dict[str, tuple[str, str | None]]:
        state = await self.state()
        return {
            item["step"]: (item["status"], item["skip_reason"])
            for item in state["reminders"]
        }


async def open_dunning(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace_id: Any,
    uow: UnitOfWork,
    settings: Settings,
    smtp: SmtpServer,
    *,
    billing_email: str | None = "ap@initech.example",
    **policy_fields: Any,
) -> Dunning:
    owner = await create_user(client, auth)
    customer = await create_customer(
        session,
        workspace_id,
        name="Initech",
        timezone=ZONE,
        billing_email=billing_email,
        owner_id=ids.decode("user", owner["id"]),
    )
    body = {"name": "Standard", "is_default": True, "steps": STEPS, **policy_fields}
    response = await client.post("/v1/dunning-policies", json=body, headers=auth)
    assert response.status_code == 201, response.text
    invoice = await create_open_invoice(client, auth, customer)
    due = datetime.now(UTC).date() + timedelta(days=30)
    await set_due_date(session, invoice["id"], due, ZONE)
    return Dunning(
        client=client,
        auth=auth,
        uow=uow,
        settings=settings,
        smtp=smtp,
        invoice=invoice,
        policy=response.json(),
        owner_id=owner["id"],
        due=due,
    )


@pytest.fixture
async def dunning(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
    database: TestDatabase,
    mail_settings: Settings,
    smtp_server: SmtpServer,
) -> Dunning:
    return await open_dunning(
        client,
        auth,
        session,
        workspace.id,
        unit_of_work(database.sessionmaker),
        mail_settings,
        smtp_server,
        mark_uncollectible=True,
        final_task=True,
        final_action_delay_days=3,
    )


def body_of(message: EmailMessage) -> str:
    """Return the plain-text body of a reminder, beside its PDF attachment."""
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def pay(dunning: Dunning, amount: int) -> None:
    await record_payment(dunning.client, dunning.auth, dunning.invoice, amount)


class TestSchedule:
    async def test_each_step_once(
        self, dunning: Dunning, session: AsyncSession
    ) -> None:
        number = dunning.invoice["number"]

        assert await dunning.run(dunning.at(-3) - timedelta(seconds=1)) == 0
        assert await dunning.run(dunning.at(-3)) == 1
        assert await dunning.run(dunning.at(-3)) == 0
        assert await dunning.run(dunning.at(0)) == 1
        assert await dunning.run(dunning.at(7)) == 1
        assert await dunning.run(dunning.at(8)) == 0

        messages = dunning.smtp.messages
        assert [message["Subject"] for message in messages] == [
            f"Invoice {number} is due on {dunning.due.isoformat()}",
            f"Invoice {number} is due today",
            f"Invoice {number} is 7 days overdue",
        ]
        first = messages[0]
        assert first["To"].addresses[0].addr_spec == "ap@initech.example"
        assert str(first["Message-ID"]).startswith("<dunning-reminder.")
        assert "100.00 EUR is due soon" in body_of(first)
        assert "Pay at your usual bank account." in body_of(first)
        assert "100.00 EUR of 100.00 EUR" in body_of(messages[1])
        attachments = list(first.iter_attachments())
        assert [part.get_content_type() for part in attachments] == ["application/pdf"]
        assert attachments[0].get_filename() == f"{number}.pdf"
        pdf_text = "\n".join(
            page.extract_text()
            for page in PdfReader(io.BytesIO(attachments[0].get_content())).pages
        )
        assert number in pdf_text
        statuses = await dunning.statuses()
        assert statuses == {
            "-3": ("sent", None),
            "0": ("sent", None),
            "+7": ("sent", None),
        }
        state = await dunning.state()
        task_id = next(
            item["activity_id"] for item in state["reminders"] if item["step"] == "+7"
        )
        task = await session.get(Activity, ids.decode("activity", task_id))
        assert task is not None
        assert task.subject == "Call about the overdue invoice"
        assert task.owner_id == ids.decode("user", dunning.owner_id)
        assert task.customer_id == ids.decode(
            "customer", dunning.invoice["customer_id"]
        )

    async def test_final_action(self, dunning: Dunning, session: AsyncSession) -> None:
        await dunning.run(dunning.at(7))

        await dunning.run(dunning.at(10) - timedelta(seconds=1))
        before = await dunning.client.get(
            f"/v1/invoices/{dunning.invoice['id']}", headers=dunning.auth
        )
        await dunning.run(dunning.at(10))
        await dunning.run(dunning.at(11))

        assert before.json()["status"] == "open"
        after = await dunning.client.get(
            f"/v1/invoices/{dunning.invoice['id']}", headers=dunning.auth
        )
        assert after.json()["status"] == "uncollectible"
        types = await event_types(session, dunning.invoice["id"], "invoice")
        assert types.count("invoice.marked_uncollectible") == 1
        statuses = await dunning.statuses()
        assert statuses["final"] == ("done", None)
        state = await dunning.state()
        final = next(item for item in state["reminders"] if item["step"] == "final")
        assert final["activity_id"] is not None

    async def test_late_start_sends_latest(self, dunning: Dunning) -> None:
        sent = await dunning.run(dunning.at(7))

        assert sent == 1
        assert len(dunning.smtp.messages) == 1
        assert await dunning.statuses() == {
            "-3": ("skipped", "superseded"),
            "0": ("skipped", "superseded"),
            "+7": ("sent", None),
        }

    async def test_paid_invoice_gets_none(self, dunning: Dunning) -> None:
        await pay(dunning, dunning.invoice["total"])

        sent = await dunning.run(dunning.at(7))

        assert sent == 0
        assert dunning.smtp.messages == []
        assert await dunning.statuses() == {}

    async def test_refunded_write_off_gets_none(self, dunning: Dunning) -> None:
        client, auth, invoice = dunning.client, dunning.auth, dunning.invoice
        requester = await create_user(client, auth)
        approver = await create_user(client, auth, role="manager")
        written_off = await client.post(
            f"/v1/invoices/{invoice['id']}/write-off",
            json={"reason": "Gone quiet", "approver_id": approver["id"]},
            headers={**auth, "On-Behalf-Of": requester["id"]},
        )
        assert written_off.status_code == 200, written_off.text
        payment = await record_payment(client, auth, invoice, invoice["total"])
        refunded = await client.post(
            f"/v1/payments/{payment['id']}/refunds", json={}, headers=auth
        )
        assert refunded.status_code == 201, refunded.text

        sent = await dunning.run(dunning.at(7))

        assert sent == 0
        assert dunning.smtp.messages == []
        assert await dunning.statuses() == {}
        after = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        assert after.json()["status"] == "uncollectible"

    async def test_no_address_fails(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        database: TestDatabase,
        mail_settings: Settings,
        smtp_server: SmtpServer,
    ) -> None:
        dunning = await open_dunning(
            client,
            auth,
            session,
            workspace.id,
            unit_of_work(database.sessionmaker),
            mail_settings,
            smtp_server,
            billing_email=None,
        )

        await dunning.run(dunning.at(-3))

        assert smtp_server.messages == []
        assert await dunning.statuses() == {"-3": ("failed", None)}
        state = await dunning.state()
        assert "has no billing_email or email" in state["reminders"][0]["error"]
        reminder_id = state["reminders"][0]["id"]
        assert await event_types(session, reminder_id, "dunning_reminder") == [
            "dunning_reminder.failed"
        ]


class TestPauses:
    async def test_promise_broken_resumes(
        self, dunning: Dunning, session: AsyncSession
    ) -> None:
        promised = dunning.due + timedelta(days=5)
        response = await dunning.client.post(
            f"/v1/invoices/{dunning.invoice['id']}/promises-to-pay",
            json={"promised_date": promised.isoformat(), "amount": 5000, "note": "CFO"},
            headers=dunning.auth,
        )
        assert response.status_code == 201, response.text
        promise = response.json()

        await dunning.run(dunning.at(0))
        paused = await dunning.state()
        await dunning.run(dunning.at(7))

        assert paused["paused"] is True
        assert paused["pause_reasons"] == ["promise_to_pay"]
        assert await dunning.statuses() == {
            "-3": ("skipped", "promise_to_pay"),
            "0": ("skipped", "promise_to_pay"),
            "+7": ("sent", None),
        }
        assert len(dunning.smtp.messages) == 1
        assert await event_types(session, promise["id"], "promise_to_pay") == [
            "promise_to_pay.created",
            "promise_to_pay.broken",
        ]
        assert promise["recorded_by"] is not None

    async def test_promise_kept_by_payment(
        self, dunning: Dunning, session: AsyncSession
    ) -> None:
        promised = dunning.due + timedelta(days=5)
        response = await dunning.client.post(
            f"/v1/invoices/{dunning.invoice['id']}/promises-to-pay",
            json={"promised_date": promised.isoformat(), "amount": 4000},
            headers=dunning.auth,
        )
        assert response.status_code == 201, response.text
        await pay(dunning, 4000)

        await dunning.run(dunning.at(-3))

        state = await dunning.state()
        assert state["promises_to_pay"][0]["status"] == "kept"
        assert await dunning.statuses() == {"-3": ("sent", None)}
        assert "60.00 EUR is due soon" in body_of(dunning.smtp.messages[0])

    async def test_open_dispute(
        self, dunning: Dunning, session: AsyncSession, workspace: Workspace
    ) -> None:
        await pay(dunning, 1000)
        payments = await dunning.client.get(
            f"/v1/payments?invoice_id={dunning.invoice['id']}", headers=dunning.auth
        )
        payment = payments.json()["data"][0]
        session.add(
            Dispute(
                id=ids.new_uuid(),
                workspace_id=workspace.id,
                payment_id=ids.decode("payment", payment["id"]),
                amount=1000,
                currency="EUR",
                status="open",
                opened_at=datetime.now(UTC),
            )
        )
        await session.commit()

        await dunning.run(dunning.at(0))

        assert await dunning.statuses() == {
            "-3": ("skipped", "dispute"),
            "0": ("skipped", "dispute"),
        }
        assert dunning.smtp.messages == []

    async def test_dispute_reversing_whole_allocation(
        self, dunning: Dunning, session: AsyncSession
    ) -> None:
        payment = await record_payment(
            dunning.client, dunning.auth, dunning.invoice, 1000
        )
        locked = await session.get_one(
            Payment, ids.decode("payment", payment["id"]), with_for_update=True
        )
        await dispute_service.open(
            session,
            locked,
            amount=1000,
            reason="fraudulent",
            provider="stripe",
            provider_dispute_id="dp_whole_allocation",
            opened_at=datetime.now(UTC),
            actor="test",
        )
        await session.commit()

        await dunning.run(dunning.at(0))

        state = await dunning.state()
        assert state["pause_reasons"] == ["dispute"]
        assert await dunning.statuses() == {
            "-3": ("skipped", "dispute"),
            "0": ("skipped", "dispute"),
        }
        assert dunning.smtp.messages == []

    async def test_renewal_opportunity(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        database: TestDatabase,
        mail_settings: Settings,
        smtp_server: SmtpServer,
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        dunning = await open_dunning(
            client,
            auth,
            session,
            workspace.id,
            unit_of_work(database.sessionmaker),
            mail_settings,
            smtp_server,
            renewal_pipeline_id=pipeline["id"],
        )
        response = await client.post(
            "/v1/opportunities",
            json={
                "customer_id": dunning.invoice["customer_id"],
                "name": "Renewal 2027",
                "pipeline_id": pipeline["id"],
            },
            headers=auth,
        )
        assert response.status_code == 201, response.text

        await dunning.run(dunning.at(0))

        assert await dunning.statuses() == {
            "-3": ("skipped", "renewal"),
            "0": ("skipped", "renewal"),
        }
        state = await dunning.state()
        assert state["pause_reasons"] == ["renewal"]

    async def test_final_waits_for_pause(self, dunning: Dunning) -> None:
        await dunning.run(dunning.at(7))
        promised = dunning.due + timedelta(days=12)
        response = await dunning.client.post(
            f"/v1/invoices/{dunning.invoice['id']}/promises-to-pay",
            json={"promised_date": promised.isoformat(), "amount": 5000},
            headers=dunning.auth,
        )
        assert response.status_code == 201, response.text

        await dunning.run(dunning.at(10))
        waiting = await dunning.statuses()
        await dunning.run(dunning.at(13))

        assert waiting["final"] == ("waiting", None)
        assert (await dunning.statuses())["final"] == ("done", None)


class TestCrashWindow:
    async def test_lapsed_lease_resends_same_message(
        self, dunning: Dunning, mail_settings: Settings
    ) -> None:
        now = dunning.at(-3)
        async with dunning.uow() as session:
            [lost] = await dunning_runner.plan(session, mail_settings, now=now)
        later = now + timedelta(seconds=mail_settings.claim_lease_seconds + 1)
        async with dunning.uow() as session:
            [retry] = await dunning_runner.take_over(session, mail_settings, now=later)

        error = await dunning_runner.send(SmtpMailer(mail_settings), retry)
        async with dunning.uow() as session:
            late = await dunning_runner.record(session, lost, None)
        async with dunning.uow() as session:
            recorded = await dunning_runner.record(session, retry, error)

        assert error is None
        assert late == "lease_lost"
        assert recorded == "sent"
        assert retry.attempt == 2
        assert retry.message["Message-ID"] == lost.message["Message-ID"]
        assert len(dunning.smtp.messages) == 1
        state = await dunning.state()
        assert state["reminders"][0]["attempts"] == 2


class TestTwoWorkers:
    async def test_each_reminder_once(
        self, committed: Committed, mail_settings: Settings, smtp_server: SmtpServer
    ) -> None:
        uow = unit_of_work(committed.database.sessionmaker)
        async with committed.database.session() as session:
            runs = [
                await open_dunning(
                    committed.client,
                    committed.auth,
                    session,
                    committed.workspace_id,
                    uow,
                    mail_settings,
                    smtp_server,
                )
                for _ in range(3)
            ]
        now = runs[0].at(0)

        results = await asyncio.gather(*(runs[0].run(now) for _ in range(3)))

        assert sum(results) == 3
        assert len(smtp_server.messages) == 3
        for run in runs:
            assert await run.statuses() == {
                "-3": ("skipped", "superseded"),
                "0": ("sent", None),
            }


class TestMailErrors:
    async def test_transient_error_retries(
        self, dunning: Dunning, smtp_server: SmtpServer
    ) -> None:
        smtp_server.handler.refused["ap@initech.example"] = "451 4.3.0 Try again later"

        first = await dunning.run(dunning.at(-3))
        retrying = await dunning.statuses()
        smtp_server.handler.refused.clear()
        second = await dunning.run(dunning.at(-3) + timedelta(hours=2))

        assert first == 0
        assert retrying == {"-3": ("retrying", None)}
        assert second == 1
        assert len(smtp_server.messages) == 1
        state = await dunning.state()
        assert state["reminders"][0]["status"] == "sent"
        assert state["reminders"][0]["attempts"] == 2

    async def test_bounce_fails(
        self, dunning: Dunning, smtp_server: SmtpServer, session: AsyncSession
    ) -> None:
        smtp_server.handler.refused["ap@initech.example"] = "550 5.1.1 No such user"

        await dunning.run(dunning.at(-3))
        await dunning.run(dunning.at(-3) + timedelta(hours=2))

        assert await dunning.statuses() == {"-3": ("failed", None)}
        state = await dunning.state()
        assert "550" in state["reminders"][0]["error"]
        assert await event_types(
            session, state["reminders"][0]["id"], "dunning_reminder"
        ) == ["dunning_reminder.failed"]
