"""Reconciliation runs against a local Stripe stand-in, through the worker job."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.reconciliation import job_id
from app.core.clock import utcnow
from app.core.db import Database
from app.core.ids import decode
from app.core.jobs import JobQueue
from app.models import Event, ReconciliationRun, Workspace
from app.settings import Settings
from tests.billing.factories import (
    create_customer,
    create_open_invoice,
    payment_intent,
    stripe_body,
)
from tests.billing.stripe_standin import StripeStandIn
from tests.billing.test_stripe import receive_and_process
from tests.billing.test_stripe_charges import dispute
from tests.conftest import make_workspace_key
from workers import tasks

RUNS = "/v1/reconciliation-runs"


@pytest.fixture
def stripe_ctx(
    database: Database, queue: JobQueue, stripe_settings: Settings
) -> dict[str, Any]:
    return {"db": database, "queue": queue, "settings": stripe_settings}


def remote_intent(
    intent_id: str, amount: int, refunded: int = 0, status: str = "succeeded"
) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": "eur",
        "status": status,
        "latest_charge": {
            "id": f"ch_{intent_id}",
            "object": "charge",
            "amount": amount,
            "amount_refunded": refunded,
            "currency": "eur",
        },
    }


async def record_stripe_payments(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
    ctx: dict[str, Any],
    intent_ids: list[str],
) -> None:
    customer = await create_customer(session, workspace.id)
    for intent_id in intent_ids:
        invoice = await create_open_invoice(client, auth, customer)
        body = stripe_body(
            "payment_intent.succeeded",
            payment_intent(invoice["id"], 10000, intent_id=intent_id),
        )
        row = await receive_and_process(client, session, ctx, body)
        assert row.status == "processed", row.error


async def start_run(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    response = await client.post(RUNS, headers=auth)
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


class TestReconciliationRun:
    async def test_reports_differences(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_ctx: dict[str, Any],
        stripe_api: StripeStandIn,
        redis_client: aioredis.Redis,
    ) -> None:
        await record_stripe_payments(
            stripe_client,
            auth,
            session,
            workspace,
            stripe_ctx,
            ["pi_refunded", "pi_missing", "pi_same"],
        )
        disputed = dispute(dispute_id="dp_remote_lost")
        disputed["payment_intent"] = "pi_same"
        await receive_and_process(
            stripe_client,
            session,
            stripe_ctx,
            stripe_body("charge.dispute.created", disputed),
        )
        stripe_api.payment_intents = {
            "pi_refunded": remote_intent("pi_refunded", 10000, refunded=3000),
            "pi_same": remote_intent("pi_same", 10000),
        }
        stripe_api.disputes = {"dp_remote_lost": {**disputed, "status": "lost"}}

        queued = await start_run(stripe_client, auth)
        run_id = decode("reconciliation_run", queued["id"])
        enqueued = await redis_client.exists(f"arq:job:{job_id(run_id)}")
        status = await tasks.run_reconciliation(stripe_ctx, str(run_id))
        rerun = await tasks.run_reconciliation(stripe_ctx, str(run_id))
        report = (
            await stripe_client.get(f"{RUNS}/{queued['id']}", headers=auth)
        ).json()

        assert queued["status"] == "queued"
        assert queued["id"].startswith("rcn_")
        assert enqueued == 1
        assert status == "completed"
        assert rerun is None
        assert report["status"] == "completed"
        assert report["checked_count"] == 3
        assert report["difference_count"] == 3
        found = {
            (item["provider_id"], item["field"]): (item["local"], item["provider"])
            for item in report["differences"]
        }
        assert found == {
            ("pi_refunded", "amount_refunded"): (0, 3000),
            ("pi_missing", "missing_at_provider"): ("succeeded", None),
            ("dp_remote_lost", "status"): ("open", "lost"),
        }
        paths = [request.path for request in stripe_api.requests]
        assert "/v1/payment_intents/pi_same?expand[0]=latest_charge" in paths
        types = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert types[-1] == "reconciliation_run.completed"
        assert "reconciliation_run.created" in types

    async def test_stripe_failure_fails_run(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_ctx: dict[str, Any],
        stripe_api: StripeStandIn,
    ) -> None:
        await record_stripe_payments(
            stripe_client, auth, session, workspace, stripe_ctx, ["pi_any"]
        )
        stripe_api.fail_with = 401
        queued = await start_run(stripe_client, auth)

        status = await tasks.run_reconciliation(
            stripe_ctx, str(decode("reconciliation_run", queued["id"]))
        )

        assert status == "failed"
        report = (
            await stripe_client.get(f"{RUNS}/{queued['id']}", headers=auth)
        ).json()
        assert report["status"] == "failed"
        assert report["error"].startswith("AuthenticationError")
        assert report["differences"] == []

    async def test_sweep_runs_lost_job(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        stripe_ctx: dict[str, Any],
    ) -> None:
        queued = await start_run(stripe_client, auth)
        fresh = await tasks.sweep_reconciliation_runs(stripe_ctx)
        await session.execute(
            update(ReconciliationRun).values(created_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()

        swept = await tasks.sweep_reconciliation_runs(stripe_ctx)

        assert fresh == 0
        assert swept == 1
        report = (
            await stripe_client.get(f"{RUNS}/{queued['id']}", headers=auth)
        ).json()
        assert report["status"] == "completed"
        assert report["checked_count"] == 0

    async def test_not_configured(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        response = await client.post(RUNS, headers=auth)

        assert response.status_code == 503, response.text
        problem = response.json()
        assert problem["code"] == "provider_api_not_configured"
        assert response.headers["retry-after"] == "300"
        runs = await session.scalar(select(func.count()).select_from(ReconciliationRun))
        assert runs == 0

    async def test_other_workspace_is_404(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        queued = await start_run(stripe_client, auth)
        _, other = await make_workspace_key(session)

        response = await stripe_client.get(f"{RUNS}/{queued['id']}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "reconciliation_run_not_found"
