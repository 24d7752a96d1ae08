from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import Invoice, Offer, OfferCode, OfferRedemption


class OfferRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> OfferRepository:
        return cls(session)

    async def get(
        self, workspace_id: uuid.UUID, offer_id: uuid.UUID, *, for_update: bool = False
    ) -> Offer | None:
        statement = select(Offer).where(
            Offer.workspace_id == workspace_id, Offer.id == offer_id
        )
        if for_update:
            statement = statement.with_for_update().execution_options(
                populate_existing=True
            )
        return await self.session.scalar(statement)

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
    ) -> tuple[Sequence[Offer], str | None, bool]:
        statement: Select[Any] = select(Offer).where(Offer.workspace_id == workspace_id)
        if status is not None:
            statement = statement.where(Offer.status == status)
        return await paginate(
            self.session, statement, Offer.id, limit=limit, cursor=cursor
        )

    async def codes(
        self, offer_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[OfferCode], str | None, bool]:
        statement: Select[Any] = select(OfferCode).where(OfferCode.offer_id == offer_id)
        return await paginate(
            self.session, statement, OfferCode.id, limit=limit, cursor=cursor
        )

    async def void_issued_codes(self, offer_id: uuid.UUID) -> int:
        result = await self.session.execute(
            update(OfferCode)
            .where(OfferCode.offer_id == offer_id, OfferCode.status == "issued")
            .values(status="void")
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def code_for_lead(
        self, offer_id: uuid.UUID, lead_id: uuid.UUID
    ) -> OfferCode | None:
        return await self.session.scalar(
            select(OfferCode).where(
                OfferCode.offer_id == offer_id, OfferCode.lead_id == lead_id
            )
        )

    async def insert_code(self, values: dict[str, Any]) -> uuid.UUID | None:
        """Insert a code unless a unique key (code, lead, step run) is taken."""
        result = await self.session.execute(
            insert(OfferCode)
            .values(**values)
            .on_conflict_do_nothing()
            .returning(OfferCode.id)
        )
        return result.scalar_one_or_none()

    async def find_code(
        self, workspace_id: uuid.UUID, code: str
    ) -> tuple[uuid.UUID, uuid.UUID] | None:
        """Return the id and offer id of a code, without loading or locking the row."""
        row = (
            await self.session.execute(
                select(OfferCode.id, OfferCode.offer_id).where(
                    OfferCode.workspace_id == workspace_id, OfferCode.code == code
                )
            )
        ).one_or_none()
        return (row[0], row[1]) if row is not None else None

    async def lock_code(self, code_id: uuid.UUID) -> OfferCode:
        code = await self.session.scalar(
            select(OfferCode)
            .where(OfferCode.id == code_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert code is not None
        return code

    async def applied_count(self, offer_id: uuid.UUID) -> int:
        count = await self.session.scalar(
            select(func.count()).where(
                OfferRedemption.offer_id == offer_id,
                OfferRedemption.status == "applied",
            )
        )
        return int(count or 0)

    async def code_counts(self, offer_id: uuid.UUID) -> tuple[int, int]:
        """Return how many codes the offer issued, and how many are redeemed."""
        row = (
            await self.session.execute(
                select(
                    func.count(),
                    func.count().filter(OfferCode.status == "redeemed"),
                ).where(OfferCode.offer_id == offer_id)
            )
        ).one()
        return int(row[0]), int(row[1])

    async def revenue(self, offer_id: uuid.UUID) -> builtins.list[tuple[str, int, int]]:
        """Sum amount_paid of the paid invoices holding a redemption, per currency."""
        rows = await self.session.execute(
            select(
                Invoice.currency,
                func.sum(Invoice.amount_paid),
                func.count(func.distinct(Invoice.id)),
            )
            .join(OfferRedemption, OfferRedemption.invoice_id == Invoice.id)
            .where(
                OfferRedemption.offer_id == offer_id,
                OfferRedemption.status == "applied",
                Invoice.status == "paid",
            )
            .group_by(Invoice.currency)
            .order_by(Invoice.currency)
        )
        return [(currency, int(paid), int(count)) for currency, paid, count in rows]
