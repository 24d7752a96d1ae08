"""The PostgreSQL and Redis servers a benchmark runs on, and the guards around them.

The harness drops and recreates the schema of its database and flushes its Redis
database. It therefore runs only on stores that are plainly its own: a database whose
name contains ``bench``, and a Redis database that is empty or was left by a run.
Without ``SALESCYCLE_BENCH_DATABASE_URL`` and ``SALESCYCLE_BENCH_REDIS_URL`` it starts
the embedded servers in ``benchmarks/.data`` instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from sqlalchemy import make_url

from app import embedded
from app.core.db import async_url

DATABASE_URL_ENV = "SALESCYCLE_BENCH_DATABASE_URL"
REDIS_URL_ENV = "SALESCYCLE_BENCH_REDIS_URL"
DATA_DIR = Path(__file__).resolve().parent / ".data"
EMBEDDED_DATABASE = "salescycle_bench"
# Set in the Redis database at the start of a run, so that the next run can tell the
# keys of an interrupted run from keys that another program wrote.
OWNER_KEY = "salescycle-bench:owner"


class BenchSetupError(RuntimeError):
    """The servers are missing or not safe to use for a benchmark."""


@dataclass(frozen=True)
class BenchServers:
    """The stores of a run: a SQLAlchemy URL and a ``redis://`` URL."""

    database_url: str
    redis_url: str


def app_env(servers: BenchServers) -> dict[str, str]:
    """Settings of an api or worker process on the benchmark stores, logging warnings."""
    return {
        "SALESCYCLE_ENV": "production",
        "SALESCYCLE_DATABASE_URL": servers.database_url,
        "SALESCYCLE_REDIS_URL": servers.redis_url,
        "SALESCYCLE_LOG_FORMAT": "json",
        "SALESCYCLE_LOG_LEVEL": "WARNING",
    }


def asyncpg_dsn(url: str) -> str:
    """Render a SQLAlchemy PostgreSQL URL as a DSN that ``asyncpg.connect`` accepts."""
    return (
        make_url(async_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def with_database(url: str, database: str) -> str:
    """Return ``url`` naming another database on the same server."""
    return (
        make_url(async_url(url))
        .set(database=database)
        .render_as_string(hide_password=False)
    )


def database_name(url: str) -> str:
    return make_url(async_url(url)).database or ""


def check_database_name(url: str) -> None:
    """Raise unless the database is named as a benchmark database."""
    name = database_name(url)
    if "bench" not in name:
        raise BenchSetupError(
            f"The benchmark drops the schema of its database, so it only runs on a "
            f"database whose name contains 'bench'; got {name!r}. Point "
            f"{DATABASE_URL_ENV} at one, such as .../salescycle_bench."
        )


@contextmanager
def bench_servers() -> Iterator[BenchServers]:
    """Yield the configured servers, starting embedded ones for any not configured."""
    database_url = os.environ.get(DATABASE_URL_ENV)
    redis_url = os.environ.get(REDIS_URL_ENV)
    if database_url:
        check_database_name(database_url)
    started: list[Any] = []
    try:
        if not database_url:
            url, postgres = embedded.start_postgres(DATA_DIR)
            started.append(postgres)
            database_url = with_database(url, EMBEDDED_DATABASE)
        if not redis_url:
            redis_url, redis_server = embedded.start_redis(DATA_DIR)
            started.append(redis_server)
        yield BenchServers(database_url=async_url(database_url), redis_url=redis_url)
    finally:
        for server in reversed(started):
            stop = getattr(server, "shutdown", None) or server.cleanup
            stop()


async def create_database(url: str) -> None:
    """Create the database of ``url`` on its server unless it exists."""
    name = database_name(url)
    admin = await asyncpg.connect(asyncpg_dsn(with_database(url, "postgres")))
    try:
        exists = await admin.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", name
        )
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def reset_schema(url: str) -> None:
    """Drop every table of the benchmark database; the migrations rebuild them."""
    check_database_name(url)
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


async def claim_redis(client: aioredis.Redis) -> None:
    """Flush the Redis database for a run, if it is empty or a run's leftovers."""
    size = int(await client.dbsize())
    if size and not await client.exists(OWNER_KEY):
        raise BenchSetupError(
            f"The Redis database of the benchmark contains keys that no benchmark run "
            f"created ({size} in all), and a run flushes it. Point {REDIS_URL_ENV} at "
            "an empty Redis database, such as redis://127.0.0.1:6379/13."
        )
    await client.flushdb()
    await client.set(OWNER_KEY, "1")


async def release_redis(client: aioredis.Redis) -> None:
    """Flush the jobs and markers a run left in its Redis database."""
    if await client.exists(OWNER_KEY):
        await client.flushdb()
