from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import APIRouter, Depends, Request

from app.core.auth import Principal, require
from app.core.db import Database
from app.core.jobs import JobQueue
from app.core.routing import UnitOfWorkRoute
from app.main import create_app
from app.settings import Settings


class SlowHandler:
    """A POST route that holds its transaction open until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    def router(self) -> APIRouter:
        router = APIRouter(route_class=UnitOfWorkRoute)

        @router.post("/v1/test-slow", status_code=201)
        async def slow(
            request: Request, principal: Principal = Depends(require("leads:write"))
        ) -> dict[str, int]:
            self.calls += 1
            self.started.set()
            await self.release.wait()
            return {"call": self.calls}

        return router


class TestConcurrentIdempotency:
    async def test_second_request_while_running_is_409(
        self, settings: Settings, committed_key: tuple[Database, str]
    ) -> None:
        database, secret = committed_key
        handler = SlowHandler()
        app = create_app(
            settings, database=database, queue=JobQueue(settings.redis_url)
        )
        app.include_router(handler.router())
        headers = {
            "Authorization": f"Bearer {secret}",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as http:
            first = asyncio.create_task(
                http.post("/v1/test-slow", json={}, headers=headers)
            )
            await asyncio.wait_for(handler.started.wait(), timeout=10)
            second = await http.post("/v1/test-slow", json={}, headers=headers)
            handler.release.set()
            first_response = await first
            third = await http.post("/v1/test-slow", json={}, headers=headers)

        assert second.status_code == 409
        assert second.json()["code"] == "idempotency_key_in_use"
        assert first_response.status_code == 201
        assert third.status_code == 201
        assert third.headers["idempotent-replayed"] == "true"
        assert third.json() == {"call": 1}
        assert handler.calls == 1

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/v1/leads", {"email": "replay@example.com"}),
            (
                "/v1/webhook-endpoints",
                {"url": "http://127.0.0.1:9/hooks", "event_types": ["*"]},
            ),
        ],
    )
    async def test_parallel_replays_all_replay(
        self,
        settings: Settings,
        committed_key: tuple[Database, str],
        path: str,
        body: dict[str, object],
    ) -> None:
        database, secret = committed_key
        app = create_app(
            settings, database=database, queue=JobQueue(settings.redis_url)
        )
        headers = {
            "Authorization": f"Bearer {secret}",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as http:
            first = await http.post(path, json=body, headers=headers)
            replays = await asyncio.gather(
                *(http.post(path, json=body, headers=headers) for _ in range(5))
            )

        assert first.status_code == 201, first.text
        assert [replay.status_code for replay in replays] == [201] * 5
        for replay in replays:
            assert replay.headers["idempotent-replayed"] == "true"
            assert replay.json() == first.json()
