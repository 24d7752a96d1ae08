"""Invoices turn overdue at the end of their due date in their own time zone."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.debt import debt_service
from app.billing.overdue import end_of_day_sql, overdue_at
from app.core import ids
from app.models import Invoice, Workspace
from tests.billing.conftest import Committed
from tests.billing.debt_helpers import (
    event_types,
    record_payment,
    set_due_date,
    unit_of_work,
)
from tests.billing.factories import create_customer, create_open_invoice

DUE = date(2026, 3, 10)


class TestOverdueMoment:
    def test_kiritimati_before_pago_pago(self) -> None:
        kiritimati = overdue_at(DUE, "Pacific/Kiritimati")
        pago_pago = overdue_at(DUE, "Pacific/Pago_Pago")

        assert kiritimati == datetime(2026, 3, 10, 10, tzinfo=UTC)
        assert pago_pago == datetime(2026, 3, 11, 11, tzinfo=UTC)

    def test_dst_start_in_new_york(self) -> None:
        # Clocks went forward on 2026-03-08 at 02:00, so the next midnight is EDT.
        before = overdue_at(date(2026, 3, 7), "America/New_York")
        after = overdue_at(date(2026, 3, 8), "America/New_York")

        assert before == datetime(2026, 3, 8, 5, tzinfo=UTC)
        assert after == datetime(2026, 3, 9, 4, tzinfo=UTC)
        assert after - before == timedelta(hours=23)

    def test_no_due_date(self) -> None:
        assert overdue_at(None, "UTC") is None


class TestOverdueSql:
    async def test_matches_python(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        workspace_id = workspace.id
        customer = await create_customer(session, workspace_id)
        invoice = await create_open_invoice(client, auth, customer)
        cases = [
            (date(2026, 3, 10), "Pacific/Kiritimati"),
            (date(2026, 3, 10), "Pacific/Pago_Pago"),
            (date(2026, 3, 8), "America/New_York"),
            (date(2026, 11, 1), "America/New_York"),
            # Chile skips 2026-09-06 00:00: midnight does not exist there that day.
            (date(2026, 9, 5), "America/Santiago"),
            (date(2026, 10, 24), "Europe/Berlin"),
        ]

        for due, zone in cases:
            await set_due_date(session, invoice["id"], due, zone)
            computed = await session.scalar(
                select(end_of_day_sql(Invoice.due_date)).where(  # type: ignore[arg-type]
                    Invoice.id == ids.decode("invoice", invoice["id"])
                )
            )

            assert computed == overdue_at(due, zone), (due, zone)


class TestOverdueSweep:
    async def test_across_time_zones(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        async with committed.database.session() as session:
            east = await create_customer(
                session, committed.workspace_id, timezone="Pacific/Kiritimati"
            )
            west = await create_customer(
                session, committed.workspace_id, timezone="Pacific/Pago_Pago"
            )
            first = await create_open_invoice(client, auth, east)
            second = await create_open_invoice(client, auth, west)
            await set_due_date(session, first["id"], DUE, "Pacific/Kiritimati")
            await set_due_date(session, second["id"], DUE, "Pacific/Pago_Pago")
        uow = unit_of_work(committed.database.sessionmaker)

        async def sweep(now: datetime) -> None:
            async with uow() as session:
                await debt_service.sweep_overdue(session, batch=500, now=now)

        async def overdue_events(invoice: dict[str, str]) -> int:
            async with committed.database.session() as session:
                types = await event_types(session, invoice["id"], "invoice")
            return types.count("invoice.overdue")

        await sweep(datetime(2026, 3, 10, 9, 59, 59, tzinfo=UTC))
        assert await overdue_events(first) == 0
        assert await overdue_events(second) == 0

        await sweep(datetime(2026, 3, 10, 10, tzinfo=UTC))
        assert await overdue_events(first) == 1
        assert await overdue_events(second) == 0

        await sweep(datetime(2026, 3, 11, 10, 59, 59, tzinfo=UTC))
        assert await overdue_events(second) == 0

        await sweep(datetime(2026, 3, 11, 11, tzinfo=UTC))
        await sweep(datetime(2026, 3, 12, tzinfo=UTC))
        assert await overdue_events(first) == 1
        assert await overdue_events(second) == 1

    async def test_two_workers_emit_once(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        invoices = [
            await create_open_invoice(client, auth, committed.customer)
            for _ in range(6)
        ]
        async with committed.database.session() as session:
            for invoice in invoices:
                await set_due_date(session, invoice["id"], DUE, "Europe/Berlin")
        uow = unit_of_work(committed.database.sessionmaker)
        now = datetime(2026, 4, 1, tzinfo=UTC)

        async def sweep() -> int:
            async with uow() as session:
                return await debt_service.sweep_overdue(session, batch=500, now=now)

        await asyncio.gather(sweep(), sweep(), sweep())
        await sweep()

        async with committed.database.session() as session:
            for invoice in invoices:
                types = await event_types(session, invoice["id"], "invoice")
                assert types.count("invoice.overdue") == 1, invoice["id"]

    async def test_batch_bounds_tied_due_dates(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        invoices = [
            await create_open_invoice(client, auth, committed.customer)
            for _ in range(5)
        ]
        async with committed.database.session() as session:
            for invoice in invoices:
                await set_due_date(session, invoice["id"], DUE, "Europe/Berlin")
        uow = unit_of_work(committed.database.sessionmaker)
        now = datetime(2026, 4, 1, tzinfo=UTC)

        counts = []
        for _ in range(4):
            async with uow() as session:
                counts.append(
                    await debt_service.sweep_overdue(session, batch=2, now=now)
                )

        # Every invoice shares the due date, and each sweep still takes two at most.
        assert counts == [2, 2, 1, 0]

    async def test_paid_invoice_not_overdue(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        invoice = await create_open_invoice(client, auth, committed.customer)
        await record_payment(client, auth, invoice, invoice["total"])
        async with committed.database.session() as session:
            await set_due_date(session, invoice["id"], DUE)

        async with unit_of_work(committed.database.sessionmaker)() as session:
            await debt_service.sweep_overdue(
                session, batch=500, now=datetime(2026, 4, 1, tzinfo=UTC)
            )

        async with committed.database.session() as session:
            types = await event_types(session, invoice["id"], "invoice")
        assert "invoice.overdue" not in types


class TestOverdueView:
    async def test_days_and_since(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        workspace_id = workspace.id
        customer = await create_customer(session, workspace_id, timezone="UTC")
        invoice = await create_open_invoice(client, auth, customer)
        today = datetime.now(UTC).date()
        await set_due_date(session, invoice["id"], today - timedelta(days=5), "UTC")

        response = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)

        body = response.json()
        assert body["overdue"] is True
        assert body["days_overdue"] == 5
        assert body["overdue_since"] == (
            f"{(today - timedelta(days=4)).isoformat()}T00:00:00Z"
        )

    async def test_not_yet_due(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        workspace_id = workspace.id
        customer = await create_customer(session, workspace_id, timezone="UTC")
        invoice = await create_open_invoice(client, auth, customer)

        response = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)

        body = response.json()
        assert body["overdue"] is False
        assert body["days_overdue"] == 0
        assert body["overdue_since"] is None
