"""Fixtures for webhook tests: a real HTTP receiver on 127.0.0.1, the sender, job ctx.

The receiver is an aiohttp.web server on a free port of 127.0.0.1. Tests script its
responses (status, headers, body, delay) and read back every request it received.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.auth import ALL_SCOPES, create_api_key
from app.core.db import Database
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.main import create_app
from app.models import Workspace
from app.settings import Settings
from app.webhooks.sender import WebhookSender
from tests.conftest import TestDatabase


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_seconds: float = 0.0
    close_connection: bool = False


class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and sends scripted replies.

    ``peak_active`` is the most requests it has handled at once.
    """

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.scripted: list[ScriptedResponse] = []
        self.default = ScriptedResponse()
        self.active = 0
        self.peak_active = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/hooks") -> str:
        return self.base_url + path

    def respond_with(self, *responses: ScriptedResponse) -> None:
        """Queue responses for the next requests; later ones get ``default``."""
        self.scripted.extend(responses)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            ReceivedRequest(
                method=request.method,
                path=request.path_qs,
                headers=dict(request.headers),
                body=await request.read(),
            )
        )
        scripted = self.scripted.pop(0) if self.scripted else self.default
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            if scripted.delay_seconds:
                await asyncio.sleep(scripted.delay_seconds)
        finally:
            self.active -= 1
        if scripted.close_connection and request.transport is not None:
            # Drop the connection without a status line, as a crashing receiver does.
            request.transport.abort()
            raise web.HTTPInternalServerError()
        return web.Response(
            status=scripted.status, headers=scripted.headers, body=scripted.body
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


class RawReceiver:
    """A TCP server on 127.0.0.1 that responds to every HTTP request with fixed bytes.

    It plays a receiver whose responses break HTTP in ways that aiohttp.web
    would refuse to send, such as header values that are not UTF-8.
    """

    def __init__(self) -> None:
        self.response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        self.port = 0
        self._server: asyncio.Server | None = None

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(self.response)
            await writer.drain()
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def raw_receiver() -> AsyncIterator[RawReceiver]:
    server = RawReceiver()
    await server.start()
    yield server
    await server.stop()


class StaticResolver(AbstractResolver):
    """Resolves host names from a table, standing in for the internet's DNS."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.queries: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.queries.append(host)
        if host not in self.table:
            raise OSError(f"{host} has no address")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        return None


def static_resolve(
    table: dict[str, list[str]],
) -> Callable[[str, int], Awaitable[list[Any]]]:
    """Build a ``check_webhook_url`` resolve function from a table."""

    async def resolve(host: str, port: int) -> list[Any]:
        if host not in table:
            raise OSError(f"{host} has no address")
        return [ipaddress.ip_address(address) for address in table[host]]

    return resolve


@pytest.fixture
async def sender(settings: Settings) -> AsyncIterator[WebhookSender]:
    instance = WebhookSender(settings)
    yield instance
    await instance.close()


@pytest.fixture
def ctx(
    database: TestDatabase,
    queue: JobQueue,
    settings: Settings,
    sender: WebhookSender,
) -> dict[str, Any]:
    return {
        "db": database,
        "queue": queue,
        "settings": settings,
        "webhook_sender": sender,
        "job_id": "test-job",
        "job_try": 1,
    }


@dataclass
class Committed:
    """A database whose sessions commit for real, for tests across connections."""

    database: Database
    workspace: Workspace
    auth: dict[str, str]
    ctx: dict[str, Any]


@pytest.fixture
async def committed(
    engine: AsyncEngine,
    settings: Settings,
    queue: JobQueue,
    sender: WebhookSender,
) -> AsyncIterator[Committed]:
    """Commit for real; delete the workspace, and every row in it, afterwards."""
    database = Database(settings, engine=engine)
    workspace = Workspace(id=new_uuid(), name="Committed Test")
    async with database.session() as session:
        session.add(workspace)
        await session.flush()
        created = await create_api_key(
            session, workspace_id=workspace.id, name="committed", scopes=ALL_SCOPES
        )
        await session.commit()
    ctx = {
        "db": database,
        "queue": queue,
        "settings": settings,
        "webhook_sender": sender,
    }
    yield Committed(
        database=database,
        workspace=workspace,
        auth={"Authorization": f"Bearer {created.secret}"},
        ctx=ctx,
    )
    async with database.session() as session:
        await session.execute(delete(Workspace).where(Workspace.id == workspace.id))
        await session.commit()


@pytest.fixture
async def committed_api(
    settings: Settings, queue: JobQueue, committed: Committed
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client whose requests commit, each on its own connection."""
    app = create_app(settings, database=committed.database, queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
        yield api


async def fresh(session: AsyncSession, model: type[Any], row_id: uuid.UUID) -> Any:
    """Load a row again, bypassing the session's identity map."""
    return await session.get(model, row_id, populate_existing=True)
