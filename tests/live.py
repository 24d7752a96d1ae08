"""Real ``salescycle`` processes for contract and end-to-end tests.

Each process runs in its own process group with a bounded start-up wait, and is stopped
by its process id: SIGINT first, then SIGKILL if it has not exited in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.core.auth import ALL_SCOPES, create_api_key
from app.core.db import Database
from app.core.ids import new_uuid
from app.core.migrate import upgrade
from app.models import Workspace
from app.settings import Settings
from tests.conftest import recreate_database

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Tenant:
    """A committed workspace with an all-scopes key, in a live database."""

    workspace_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def prepare_database(database_url: str) -> Tenant:
    """Recreate the database, migrate it, and commit a workspace with a key."""
    asyncio.run(recreate_database(database_url))
    upgrade(database_url)

    async def seed() -> Tenant:
        database = Database(Settings(database_url=database_url))
        try:
            async with database.session() as session:
                workspace = Workspace(id=new_uuid(), name="Live test")
                session.add(workspace)
                await session.flush()
                created = await create_api_key(
                    session, workspace_id=workspace.id, name="live", scopes=ALL_SCOPES
                )
                await session.commit()
                return Tenant(workspace_id=str(workspace.id), api_key=created.secret)
        finally:
            await database.dispose()

    return asyncio.run(seed())


@contextmanager
def running(
    arguments: list[str], env: dict[str, str], *, ready_url: str | None, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m <arguments>`` until the block ends; wait for ``ready_url``."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", *arguments],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            if ready_url is not None:
                _wait_ready(process, ready_url, log_path)
            yield process
        finally:
            stop(process)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode}:\n{log_path.read_text()[-4000:]}"
            )
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(
        f"{url} did not respond within 60 s:\n{log_path.read_text()[-4000:]}"
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
