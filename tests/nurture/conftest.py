"""Fixtures of the nurture tests: a real SMTP server, committed data, and factories."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.auth import ALL_SCOPES, Principal
from app.core.db import Database
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.leads.schemas import LeadCreate
from app.leads.service import lead_service
from app.models import Workspace
from app.nurture.schemas import EmailStepCreate, EnrollmentCreate, SequenceCreate
from app.nurture.service import enrollment_service, sequence_service
from app.settings import Settings
from tests.conftest import TestDatabase

JsonObject = dict[str, Any]
# A held send is released by its test well before this; the bound only keeps a
# failing test from hanging the server thread.
HOLD_TIMEOUT_SECONDS = 30.0


class RecordingHandler:
    """An aiosmtpd handler that keeps every message and can refuse recipients."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.refused: dict[str, str] = {}
        self.delay_seconds = 0.0
        self.lock = threading.Lock()
        # data_started is set when a DATA command arrives. When a test assigns an
        # event to hold, the reply waits until the test sets it, so the send stays
        # in flight meanwhile.
        self.data_started = threading.Event()
        self.hold: threading.Event | None = None

    async def handle_RCPT(
        self,
        server: Any,
        session: Any,
        envelope: Any,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refused:
            return self.refused[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # Runs on the controller's own event loop thread, so sleeping here slows the
        # reply without blocking the test.
        self.data_started.set()
        if self.hold is not None:
            await asyncio.to_thread(self.hold.wait, HOLD_TIMEOUT_SECONDS)
        await asyncio.sleep(self.delay_seconds)
        with self.lock:
            self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    """A running SMTP server on 127.0.0.1 and the messages it received."""

    host: str
    port: int
    handler: RecordingHandler

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            envelopes = list(self.handler.envelopes)
        # original_content keeps the bytes as sent, where content may be decoded.
        return [
            message_from_bytes(envelope.original_content, policy=policy.default)
            for envelope in envelopes
        ]

    @property
    def raw_messages(self) -> list[bytes]:
        with self.handler.lock:
            return [
                bytes(envelope.original_content) for envelope in self.handler.envelopes
            ]

    @property
    def recipients(self) -> list[list[str]]:
        with self.handler.lock:
            return [list(envelope.rcpt_tos) for envelope in self.handler.envelopes]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = RecordingHandler()
    port = _free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True
    )
    controller.start()
    try:
        yield SmtpServer(host="127.0.0.1", port=port, handler=handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
            "smtp_timeout_seconds": 5.0,
            "mail_from": "Acme Sales <sales@acme.example>",
            "public_base_url": "https://api.acme.example",
        }
    )


@pytest.fixture
def job_context(
    database: TestDatabase, queue: JobQueue, smtp_settings: Settings
) -> dict[str, Any]:
    return {"db": database, "queue": queue, "settings": smtp_settings}


async def create_sequence(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    steps: list[JsonObject] | None = None,
    name: str = "Welcome",
) -> JsonObject:
    body = {
        "name": name,
        "steps": steps
        or [
            {
                "delay": {"amount": 0, "unit": "minutes"},
                "subject": "Welcome, {{ first_name }}",
                "body_text": "Hello {{ first_name }} at {{ company | your team }}!",
            }
        ],
    }
    response = await client.post("/v1/sequences", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: JsonObject = response.json()
    return data


async def create_lead(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: object
) -> JsonObject:
    body = {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines",
        **fields,
    }
    response = await client.post("/v1/leads", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: JsonObject = response.json()
    return data


async def enroll(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sequence_id: object,
    lead_id: object,
) -> JsonObject:
    response = await client.post(
        f"/v1/sequences/{sequence_id}/enrollments",
        json={"lead_id": lead_id},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    data: JsonObject = response.json()
    return data


@dataclass
class Committed:
    """A workspace whose rows are really committed, for tests across connections."""

    database: Database
    principal: Principal

    async def lead(self, email: str = "ada@example.com") -> uuid.UUID:
        async with self.database.session() as session:
            lead = await lead_service.create(
                session,
                self.principal,
                LeadCreate(email=email, first_name="Ada", company="Analytical"),
            )
            await session.commit()
        return lead.id

    async def sequence(self, steps: list[EmailStepCreate] | None = None) -> uuid.UUID:
        async with self.database.session() as session:
            sequence = await sequence_service.create(
                session,
                self.principal,
                SequenceCreate(
                    name="Committed",
                    steps=steps
                    or [EmailStepCreate(subject="Hi {{ first_name }}", body_text="Hi")],
                ),
            )
            await session.commit()
        sequence_id: uuid.UUID = sequence.id
        return sequence_id

    async def enrollment(self, email: str = "ada@example.com") -> str:
        """Enroll a new lead in a new one-step sequence; return the enrollment's UUID."""
        sequence_id = await self.sequence()
        lead_id = await self.lead(email)
        async with self.database.session() as session:
            enrollment = await enrollment_service.enroll(
                session, self.principal, sequence_id, EnrollmentCreate(lead_id=lead_id)
            )
            await session.commit()
        return str(enrollment.id)


@pytest.fixture
async def committed(
    settings: Settings, engine: AsyncEngine
) -> AsyncIterator[Committed]:
    """Commit for real, outside the per-test transaction; delete the rows afterwards.

    Deleting the workspace cascades to every row the test created in it.
    """
    database = Database(settings, engine=engine)
    workspace_id = new_uuid()
    async with database.session() as session:
        session.add(Workspace(id=workspace_id, name="Committed Test"))
        await session.commit()
    principal = Principal(
        api_key_id=new_uuid(),
        workspace_id=workspace_id,
        scopes=frozenset(ALL_SCOPES),
        kind="secret",
    )
    try:
        yield Committed(database=database, principal=principal)
    finally:
        async with engine.begin() as connection:
            await connection.execute(
                delete(Workspace).where(Workspace.id == workspace_id)
            )
