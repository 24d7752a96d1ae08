from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import driver_connection
from app.core.pagination import paginate
from app.models import (
    CreditNoteNumberSeries,
    Invoice,
    InvoiceLine,
    InvoiceNumberSeries,
    Payment,
    PaymentAllocation,
    ProviderEvent,
    Workspace,
)

NumberCounter = type[InvoiceNumberSeries] | type[CreditNoteNumberSeries]


class InvoiceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> InvoiceRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        invoice_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Invoice | None:
        statement = select(Invoice).where(
            Invoice.workspace_id == workspace_id, Invoice.id == invoice_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def get_any_workspace(
        self, invoice_id: uuid.UUID, *, for_update: bool = False
    ) -> Invoice | None:
        """Load an invoice by id alone, for provider events that name no workspace."""
        statement = select(Invoice).where(Invoice.id == invoice_id)
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def lines(self, invoice_id: uuid.UUID) -> list[InvoiceLine]:
        rows = await self.session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice_id)
            .order_by(InvoiceLine.position)
        )
        return list(rows)

    async def lines_of(
        self, invoice_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[InvoiceLine]]:
        """Load the lines of many invoices in one query."""
        grouped: dict[uuid.UUID, list[InvoiceLine]] = defaultdict(list)
        if not invoice_ids:
            return grouped
        rows = await self.session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id.in_(invoice_ids))
            .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
        )
        for line in rows:
            grouped[line.invoice_id].append(line)
        return grouped

    async def delete_lines(self, invoice_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)
        )

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        customer_id: uuid.UUID | None = None,
    ) -> tuple[Sequence[Invoice], str | None, bool]:
        statement: Select[Invoice] = select(Invoice).where(
            Invoice.workspace_id == workspace_id
        )
        if status is not None:
            statement = statement.where(Invoice.status == status)
        if customer_id is not None:
            statement = statement.where(Invoice.customer_id == customer_id)
        return await paginate(
            self.session, statement, Invoice.id, limit=limit, cursor=cursor
        )

    async def take_number(
        self,
        workspace_id: uuid.UUID,
        series: str,
        year: int,
        *,
        counter: NumberCounter = InvoiceNumberSeries,
    ) -> int:
        """Reserve the next number of a series and year, holding its row lock.

        The insert creates the counter row the first time and does nothing after
        that; the SELECT ... FOR UPDATE then queues concurrent finalizations behind
        this transaction, so each number is used once and a rollback returns it.
        ``counter`` names the table: invoices and credit notes count apart.
        """
        await self.session.execute(
            insert(counter)
            .values(workspace_id=workspace_id, series=series, year=year, next_number=1)
            .on_conflict_do_nothing(index_elements=["workspace_id", "series", "year"])
        )
        number = await self.session.scalar(
            select(counter.next_number)
            .where(
                counter.workspace_id == workspace_id,
                counter.series == series,
                counter.year == year,
            )
            .with_for_update()
        )
        assert number is not None
        await self.session.execute(
            update(counter)
            .where(
                counter.workspace_id == workspace_id,
                counter.series == series,
                counter.year == year,
            )
            .values(next_number=number + 1)
        )
        return number

    async def workspace_timezone(self, workspace_id: uuid.UUID) -> str:
        zone = await self.session.scalar(
            select(Workspace.timezone).where(Workspace.id == workspace_id)
        )
        return zone or "UTC"


class PaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> PaymentRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        payment_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Payment | None:
        statement = select(Payment).where(
            Payment.workspace_id == workspace_id, Payment.id == payment_id
        )
        if for_update:
            # A copy loaded before the lock may be stale; the locked row replaces it.
            statement = statement.with_for_update().execution_options(
                populate_existing=True
            )
        return await self.session.scalar(statement)

    async def get_by_provider(
        self, provider: str, provider_payment_id: str, *, for_update: bool = False
    ) -> Payment | None:
        statement = select(Payment).where(
            Payment.provider == provider,
            Payment.provider_payment_id == provider_payment_id,
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def insert_provider_payment(
        self, values: dict[str, object]
    ) -> Payment | None:
        """Insert a provider payment unless one exists for its provider payment id.

        Return the inserted payment, loaded from the INSERT's RETURNING and locked by
        the insert itself, or None when the provider payment id is already recorded.
        """
        inserted: Payment | None = await self.session.scalar(
            insert(Payment)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["provider", "provider_payment_id"])
            .returning(Payment)
        )
        return inserted

    async def allocations_of(
        self, payment_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[PaymentAllocation]]:
        grouped: dict[uuid.UUID, list[PaymentAllocation]] = defaultdict(list)
        if not payment_ids:
            return grouped
        rows = await self.session.scalars(
            select(PaymentAllocation)
            .where(PaymentAllocation.payment_id.in_(payment_ids))
            .order_by(PaymentAllocation.payment_id, PaymentAllocation.created_at)
        )
        for allocation in rows:
            grouped[allocation.payment_id].append(allocation)
        return grouped

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        customer_id: uuid.UUID | None = None,
        invoice_id: uuid.UUID | None = None,
    ) -> tuple[Sequence[Payment], str | None, bool]:
        statement: Select[Payment] = select(Payment).where(
            Payment.workspace_id == workspace_id
        )
        if customer_id is not None:
            statement = statement.where(Payment.customer_id == customer_id)
        if invoice_id is not None:
            statement = statement.where(
                Payment.id.in_(
                    select(PaymentAllocation.payment_id).where(
                        PaymentAllocation.invoice_id == invoice_id
                    )
                )
            )
        return await paginate(
            self.session, statement, Payment.id, limit=limit, cursor=cursor
        )


# The named event first, then, only if it was claimable, the oldest other claimable
# events. A claimable event is received and not leased by a live claim.
_CLAIM_BATCH = """
WITH requested AS (
    SELECT id FROM provider_events
    WHERE id = $1 AND status = 'received'
        AND (claimed_until IS NULL OR claimed_until < $2)
    FOR UPDATE SKIP LOCKED
),
others AS (
    SELECT id FROM provider_events
    WHERE status = 'received' AND id <> $1
        AND (claimed_until IS NULL OR claimed_until < $2)
        AND EXISTS (SELECT FROM requested)
    ORDER BY received_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE provider_events
SET claimed_until = $3, attempts = attempts + 1
WHERE id IN (SELECT id FROM requested UNION ALL SELECT id FROM others)
RETURNING id, id = $1 AS requested
"""

# The drain's claim: received events with no live lease, oldest first, skipping rows
# another worker is claiming.
_CLAIM_NEXT = """
UPDATE provider_events
SET claimed_until = $2, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM provider_events
    WHERE status = 'received' AND (claimed_until IS NULL OR claimed_until < $1)
    ORDER BY received_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING id, received_at
"""


class ProviderEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> ProviderEventRepository:
        return cls(session)

    async def get(
        self, provider_event_id: uuid.UUID, *, for_update: bool = False
    ) -> ProviderEvent | None:
        statement = select(ProviderEvent).where(ProviderEvent.id == provider_event_id)
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def get_by_event_id(
        self, provider: str, event_id: str, *, for_update: bool = False
    ) -> ProviderEvent | None:
        """Load an event by the provider's own event id, as it is committed now."""
        statement = (
            select(ProviderEvent)
            .where(
                ProviderEvent.provider == provider, ProviderEvent.event_id == event_id
            )
            .execution_options(populate_existing=True)
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def list_newest(
        self,
        *,
        statuses: Sequence[str] = (),
        provider: str | None = None,
        workspace_id: uuid.UUID | None = None,
        limit: int,
    ) -> list[ProviderEvent]:
        """List events newest first by ``received_at``; an empty filter matches all."""
        statement = (
            select(ProviderEvent)
            .order_by(ProviderEvent.received_at.desc(), ProviderEvent.id.desc())
            .limit(limit)
        )
        if statuses:
            statement = statement.where(ProviderEvent.status.in_(statuses))
        if provider is not None:
            statement = statement.where(ProviderEvent.provider == provider)
        if workspace_id is not None:
            statement = statement.where(ProviderEvent.workspace_id == workspace_id)
        return list(await self.session.scalars(statement))

    async def lock_many(
        self, provider_event_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ProviderEvent]:
        """Load and lock events in one statement, in id order, as they are now."""
        rows = await self.session.scalars(
            select(ProviderEvent)
            .where(ProviderEvent.id.in_(provider_event_ids))
            .order_by(ProviderEvent.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return {event.id: event for event in rows}

    async def claim_batch(
        self,
        provider_event_id: uuid.UUID,
        *,
        now: datetime,
        lease_until: datetime,
        limit: int,
    ) -> list[uuid.UUID]:
        """Lease one received event and up to ``limit - 1`` more, oldest first.

        Return nothing when the named event is done or leased elsewhere. Rows that
        another worker has locked are skipped, so concurrent claims never overlap.
        """
        # One statement on the driver connection: outside a transaction it commits on
        # its own, so a claim that finds its event taken costs one round trip.
        driver = await driver_connection(self.session)
        rows = await driver.fetch(
            _CLAIM_BATCH, provider_event_id, now, lease_until, limit - 1
        )
        claimed = sorted(rows, key=lambda row: not row["requested"])
        return [row["id"] for row in claimed]

    async def claim_next(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[uuid.UUID]:
        """Lease up to ``limit`` received events that no one holds, oldest first."""
        # One statement on the driver connection, as in ``claim_batch``.
        driver = await driver_connection(self.session)
        rows = await driver.fetch(_CLAIM_NEXT, now, lease_until, limit)
        return [row["id"] for row in sorted(rows, key=lambda row: row["received_at"])]

    async def claim_due(
        self,
        *,
        now: datetime,
        received_before: datetime,
        lease_until: datetime,
        limit: int,
    ) -> list[uuid.UUID]:
        """Lease up to ``limit`` received events whose job may have been lost."""
        rows = await self.session.scalars(
            select(ProviderEvent)
            .where(
                ProviderEvent.status == "received",
                ProviderEvent.received_at < received_before,
                (ProviderEvent.claimed_until.is_(None))
                | (ProviderEvent.claimed_until < now),
            )
            .order_by(ProviderEvent.received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed = []
        for event in rows:
            event.claimed_until = lease_until
            event.attempts += 1
            claimed.append(event.id)
        await self.session.flush()
        return claimed
