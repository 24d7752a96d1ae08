"""Deadlocks and serialization failures in PostgreSQL become a retryable 503."""

from __future__ import annotations

import asyncio
import random
import uuid

import httpx
import pytest
from fastapi import APIRouter, Depends, Request
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from app.core.auth import Principal, require
from app.core.db import Database
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.core.routing import UnitOfWorkRoute, is_transaction_conflict
from app.main import create_app
from app.models import Workspace
from app.settings import Settings


class CrossedLocks:
    """A POST route that takes two advisory locks, the second once both hold a first.

    Two requests that name the locks in opposite orders deadlock for sure, and
    PostgreSQL aborts one of them after its ``deadlock_timeout`` (1 s by default).
    """

    def __init__(self) -> None:
        self.base = random.randrange(1 << 40)
        self.holding = {0: asyncio.Event(), 1: asyncio.Event()}

    def router(self) -> APIRouter:
        router = APIRouter(route_class=UnitOfWorkRoute)

        @router.post("/v1/test-locks/{first}/{second}", status_code=201)
        async def lock(
            first: int,
            second: int,
            request: Request,
            principal: Principal = Depends(require("leads:write")),
        ) -> dict[str, int]:
            session = request.state.session
            statement = text("SELECT pg_advisory_xact_lock(:key)")
            await session.execute(statement, {"key": self.base + first})
            self.holding[first].set()
            await asyncio.wait_for(self.holding[second].wait(), timeout=10)
            await session.execute(statement, {"key": self.base + second})
            return {"first": first}

        return router


class TestTransactionConflict:
    async def test_deadlock_is_503(
        self, settings: Settings, committed_key: tuple[Database, str]
    ) -> None:
        database, secret = committed_key
        locks = CrossedLocks()
        app = create_app(
            settings, database=database, queue=JobQueue(settings.redis_url)
        )
        app.include_router(locks.router())
        auth = {"Authorization": f"Bearer {secret}"}
        keys = {path: str(uuid.uuid4()) for path in ("0/1", "1/0")}
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as http:
            responses = await asyncio.gather(
                *(
                    http.post(
                        f"/v1/test-locks/{path}",
                        json={},
                        headers={**auth, "Idempotency-Key": key},
                    )
                    for path, key in keys.items()
                )
            )
            failed_path, failed = next(
                (path, response)
                for path, response in zip(keys, responses, strict=True)
                if response.status_code != 201
            )
            retried = await http.post(
                f"/v1/test-locks/{failed_path}",
                json={},
                headers={**auth, "Idempotency-Key": keys[failed_path]},
            )

        assert sorted(response.status_code for response in responses) == [201, 503]
        assert failed.headers["content-type"] == "application/problem+json"
        assert failed.headers["retry-after"] == "1"
        problem = failed.json()
        assert problem["code"] == "concurrent_conflict"
        assert problem["type"] == "urn:problem:salescycle:concurrent_conflict"
        assert "changed nothing" in problem["detail"]
        assert retried.status_code == 201
        assert "idempotent-replayed" not in retried.headers

    async def test_serialization_failure_detected(
        self, committed_key: tuple[Database, str]
    ) -> None:
        database, _ = committed_key
        workspace_id = new_uuid()
        async with database.session() as session:
            session.add(Workspace(id=workspace_id, name="before"))
            await session.commit()
        rename = update(Workspace).where(Workspace.id == workspace_id)

        try:
            async with database.session() as reader, database.session() as writer:
                await reader.execute(
                    text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                )
                await reader.scalar(
                    text("SELECT name FROM workspaces WHERE id = :id"),
                    {"id": workspace_id},
                )
                await writer.execute(rename.values(name="writer"))
                await writer.commit()
                with pytest.raises(DBAPIError) as raised:
                    await reader.execute(rename.values(name="reader"))
                await reader.rollback()
        finally:
            async with database.session() as session:
                await session.execute(
                    delete(Workspace).where(Workspace.id == workspace_id)
                )
                await session.commit()

        assert is_transaction_conflict(raised.value)
        assert not is_transaction_conflict(RuntimeError("unrelated"))
