"""Fixtures: real PostgreSQL and Redis, migrations applied once, a rollback per test.

The servers are the ones named by ``SALESCYCLE_TEST_DATABASE_URL`` and
``SALESCYCLE_TEST_REDIS_URL``, or embedded ones started for the session when unset.
Each test runs inside a transaction that is rolled back afterwards. The app's own
commits become savepoint releases inside it, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app import embedded
from app.core.auth import ALL_SCOPES, create_api_key
from app.core.db import Database, async_url
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.core.migrate import upgrade
from app.main import create_app
from app.models import Workspace
from app.settings import Settings


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str


def sibling_database_url(url: str, suffix: str) -> str:
    """Return ``url`` naming a second test database, ``<its database>_<suffix>``.

    Deriving the name from the main test database keeps two test runs on one server,
    each with its own main database, from dropping each other's second databases.
    """
    parsed = make_url(url)
    database = f"{parsed.database or 'postgres'}_{suffix}"
    return parsed.set(database=database).render_as_string(hide_password=False)


def _asyncpg_dsn(url: str) -> str:
    return (
        make_url(async_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


async def recreate_database(url: str) -> None:
    parsed = make_url(async_url(url))
    database = parsed.database or "postgres"
    admin = _asyncpg_dsn(parsed.set(database="postgres").render_as_string(False))
    connection = await asyncpg.connect(admin)
    try:
        exists = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", database
        )
        if not exists:
            await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    database_url = os.environ.get("SALESCYCLE_TEST_DATABASE_URL")
    redis_url = os.environ.get("SALESCYCLE_TEST_REDIS_URL")
    started: list[Any] = []
    folder = Path(tempfile.mkdtemp(prefix="salescycle-test-"))
    if not database_url:
        database_url, postgres = embedded.start_postgres(folder)
        started.append(postgres)
    if not redis_url:
        redis_url, redis_server = embedded.start_redis(folder)
        started.append(redis_server)
    asyncio.run(recreate_database(database_url))
    upgrade(database_url)
    os.environ["SALESCYCLE_DATABASE_URL"] = database_url
    os.environ["SALESCYCLE_REDIS_URL"] = redis_url
    yield Servers(database_url=database_url, redis_url=redis_url)
    for server in reversed(started):
        stop = getattr(server, "shutdown", None) or server.cleanup
        stop()


@pytest.fixture(scope="session")
def settings(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        env="test",
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        data_dir=tmp_path_factory.mktemp("data"),
        log_format="console",
        log_level="WARNING",
        auth_cache_seconds=0,
        webhook_allow_private_hosts=["127.0.0.1", "localhost"],
        webhook_allow_http=True,
        stripe_webhook_secret="whsec_test_secret",
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(async_url(settings.database_url), pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            await transaction.rollback()


class TestDatabase(Database):
    """A ``Database`` whose sessions join the test's outer transaction."""

    __test__ = False
    shares_one_connection = True

    def __init__(self, connection: AsyncConnection) -> None:
        self.engine = connection.engine
        self.sessionmaker = async_sessionmaker(
            bind=connection,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Any]:
        """Lend the test's connection, where the statements run in a savepoint."""
        async with self.sessionmaker() as session:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            yield raw.driver_connection
            await session.commit()

    async def dispose(self) -> None:
        return None


@pytest.fixture
def database(connection: AsyncConnection) -> TestDatabase:
    return TestDatabase(connection)


@pytest.fixture
async def session(database: TestDatabase) -> AsyncIterator[AsyncSession]:
    async with database.sessionmaker() as session:
        yield session


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    pool = await JobQueue(settings.redis_url).pool()
    await pool.flushdb()
    yield pool
    await pool.flushdb()
    await pool.aclose()


@pytest.fixture
async def queue(
    settings: Settings, redis_client: aioredis.Redis
) -> AsyncIterator[JobQueue]:
    queue = JobQueue(settings.redis_url)
    yield queue
    await queue.close()


@pytest.fixture
async def client(
    settings: Settings, database: TestDatabase, queue: JobQueue
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database=database, queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
async def workspace(session: AsyncSession) -> Workspace:
    workspace = Workspace(id=new_uuid(), name="Acme Test")
    session.add(workspace)
    await session.commit()
    return workspace


@pytest.fixture
async def api_key(session: AsyncSession, workspace: Workspace) -> str:
    created = await create_api_key(
        session, workspace_id=workspace.id, name="test", scopes=ALL_SCOPES
    )
    await session.commit()
    return created.secret


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


async def make_workspace_key(
    session: AsyncSession, *, scopes: tuple[str, ...] = ALL_SCOPES, name: str = "other"
) -> tuple[Workspace, dict[str, str]]:
    """Create another workspace with a key; return it and its auth headers."""
    workspace = Workspace(id=new_uuid(), name=name)
    session.add(workspace)
    await session.flush()
    created = await create_api_key(
        session, workspace_id=workspace.id, name=name, scopes=scopes
    )
    await session.commit()
    return workspace, {"Authorization": f"Bearer {created.secret}"}
