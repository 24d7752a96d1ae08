"""Engine, sessions and the unit of work.

A request gets one ``AsyncSession``. Services ``flush()``; the route layer commits once
after the handler returns and before the response is sent (see ``app.core.routing``).
Jobs deferred with ``defer_job`` during the unit of work wait in ``session.info`` and go
to arq only after the commit; a rollback drops them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import asyncpg
import structlog
from sqlalchemy import TextClause, event, inspect
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.settings import Settings

log = structlog.get_logger(__name__)

_PENDING_JOBS = "pending_jobs"


@dataclass(frozen=True)
class PendingJob:
    """An arq job to enqueue once the surrounding transaction has committed.

    The job is skipped when a job with ``job_id`` is queued or has a result, or when a
    job with ``unless_queued`` as its id is queued or running. ``request_id`` is the id
    of the request that deferred the job; the job's events and log lines carry it.
    """

    function: str
    args: tuple[Any, ...]
    job_id: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    unless_queued: str | None = None
    request_id: str | None = None


def async_url(url: str) -> str:
    """Normalise a PostgreSQL URL to the asyncpg driver."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain) :]
    return url


def create_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        async_url(settings.database_url),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_recycle=1800,
    )
    event.listen(engine.sync_engine.pool, "checkout", _reject_closed_connection)
    return engine


def _reject_closed_connection(
    dbapi_connection: Any, connection_record: Any, connection_proxy: Any
) -> None:
    """Make the pool replace a connection that the server has closed.

    This replaces ``pool_pre_ping``, which sends BEGIN, an empty query and ROLLBACK on
    every checkout with SQLAlchemy's asyncpg driver. A connection that PostgreSQL
    closed while it sat in the pool (a restart, ``pg_terminate_backend``, an idle
    timeout) is already marked closed by asyncpg, so the check costs no round trip. On
    ``DisconnectionError`` the pool discards the connection and checks out another.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed the pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def _keep_state(connection: asyncpg.Connection) -> None:
    """Reset nothing when a connection returns to the autocommit pool.

    asyncpg's default reset costs a round trip per checkout (``RESET ALL``, ``UNLISTEN
    *`` and more). The pool's statements change no session state, and asyncpg rolls
    back a transaction left open before it calls this.
    """


class Database:
    """The engine and session factory of one process."""

    # Whether every session runs on one shared connection, so two transactions
    # cannot be open at once; the test database's sessions do.
    shares_one_connection = False

    def __init__(self, settings: Settings, engine: AsyncEngine | None = None) -> None:
        self.engine = engine or create_engine(settings)
        self.sessionmaker = create_sessionmaker(self.engine)
        self.autocommit_pool_size = settings.database_autocommit_pool_size
        self._autocommit_pool: asyncpg.Pool | None = None
        self._autocommit_lock = asyncio.Lock()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Open a session for work outside a request (jobs, CLI commands)."""
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Any]:
        """Lend an asyncpg connection on which each statement commits on its own.

        It comes from a plain asyncpg pool, opened on first use, which costs less CPU
        per checkout than a session: no ORM, greenlet or pool events. Use it for hot
        paths of one or two statements, such as storing a provider webhook.
        """
        pool = self._autocommit_pool or await self._open_autocommit_pool()
        async with pool.acquire() as connection:
            yield connection

    async def _open_autocommit_pool(self) -> asyncpg.Pool:
        async with self._autocommit_lock:
            if self._autocommit_pool is None:
                url = self.engine.url.set(drivername="postgresql")
                self._autocommit_pool = await asyncpg.create_pool(
                    url.render_as_string(hide_password=False),
                    min_size=0,
                    max_size=self.autocommit_pool_size,
                    reset=_keep_state,
                )
        return self._autocommit_pool

    async def close_autocommit_pool(self) -> None:
        """Close the autocommit pool, if it was opened; the next use opens it again."""
        pool, self._autocommit_pool = self._autocommit_pool, None
        if pool is not None:
            await pool.close()

    async def dispose(self) -> None:
        await self.close_autocommit_pool()
        await self.engine.dispose()


async def driver_connection(session: AsyncSession) -> Any:
    """Return the asyncpg connection under ``session``, for the hottest read paths.

    A statement sent on it skips SQLAlchemy's execution and result layers. It joins the
    transaction the session has begun on the connection, if any, and otherwise runs in a
    transaction of its own, which spares a read the BEGIN and COMMIT round trips. Use it
    for single-statement reads only: nothing sent on it is flushed, tracked or loaded
    into the session.
    """
    connection = await session.connection()
    pooled = await connection.get_raw_connection()
    return pooled.driver_connection


def record_class(columns: tuple[str, ...]) -> type[asyncpg.Record]:
    """Return an asyncpg row class whose columns also read as attributes.

    Each column is a property over ``itemgetter``, so reading one calls no Python
    function.
    """
    namespace = {column: property(itemgetter(column)) for column in columns}
    return type("DriverRow", (asyncpg.Record,), namespace)


@dataclass(frozen=True)
class DriverStatement:
    """A ``text()`` statement compiled once for asyncpg, for the hottest loops.

    ``fetch`` sends it on the session's asyncpg connection (see ``driver_connection``),
    inside the session's transaction, which it begins if no statement has. It skips
    SQLAlchemy's per-statement work: the cache key, the execution context and the
    result rows. Named parameters are passed in the order the compiled SQL numbers
    them. The rows read ``columns`` as attributes.
    """

    sql: str
    names: tuple[str, ...]
    row: type[asyncpg.Record]

    @classmethod
    def compile(
        cls, statement: TextClause, columns: tuple[str, ...] = ()
    ) -> DriverStatement:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        return cls(
            compiled.string, tuple(compiled.positiontup or ()), record_class(columns)
        )

    async def fetch(
        self, session: AsyncSession, parameters: Mapping[str, Any]
    ) -> list[Any]:
        connection = await session.connection()
        pooled = await connection.get_raw_connection()
        adapted: Any = pooled.dbapi_connection
        # SQLAlchemy's asyncpg adapter (2.1) sends BEGIN only before a statement of its
        # own. A statement sent first on the driver would commit on its own and drop
        # its locks at once, so the transaction begins here.
        # NOTE: this calls the adapter's private ``_start_transaction``.
        if adapted._transaction is None:
            await adapted._start_transaction()
        driver: Any = pooled.driver_connection
        rows: list[Any] = await driver.fetch(
            self.sql,
            *(parameters[name] for name in self.names),
            record_class=self.row,
        )
        return rows


def defer_job(
    session: AsyncSession,
    function: str,
    *args: Any,
    job_id: str | None = None,
    unless_queued: str | None = None,
    **kwargs: Any,
) -> PendingJob:
    """Queue an arq job to be sent after ``session`` commits; return it.

    Pass ``unless_queued`` to skip the job while a job with that id is queued or running.
    Until the commit, the caller may add to the returned job's ``kwargs``. The job
    carries the request id bound to the log context, if any: that of the API request,
    or of the job that defers it.
    """
    job = PendingJob(
        function=function,
        args=args,
        job_id=job_id,
        kwargs=kwargs,
        unless_queued=unless_queued,
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
    )
    session.info.setdefault(_PENDING_JOBS, []).append(job)
    return job


def pending_jobs(session: AsyncSession) -> list[PendingJob] | None:
    """Return the list of jobs deferred in the session's current transaction.

    Sending or dropping the jobs replaces the list, so a caller that keeps a reference
    can check whether a later call is still in the same transaction.
    """
    jobs: list[PendingJob] | None = session.info.get(_PENDING_JOBS)
    return jobs


def take_pending_jobs(session: AsyncSession) -> list[PendingJob]:
    """Remove and return the jobs deferred on ``session``."""
    jobs: list[PendingJob] = session.info.pop(_PENDING_JOBS, [])
    return jobs


def drop_pending_jobs(session: AsyncSession) -> None:
    session.info.pop(_PENDING_JOBS, None)


async def refresh_expired(session: AsyncSession, instance: object) -> None:
    """Reload ``instance`` only when a flush expired some of its attributes.

    A flush expires the columns the database computes, such as an ``updated_at``
    left to its ``onupdate``. An instance whose attributes are all loaded needs no
    SELECT. One with expired attributes is refreshed by ``session.refresh``.
    """
    if inspect(instance).expired_attributes:
        await session.refresh(instance)
