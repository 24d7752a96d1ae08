"""Reusable tax rates (``txr_``) that invoice lines name in ``tax_rate_ids``.

A line copies the rate's name, percentage and inclusiveness when it is written, so a
rate changed or deactivated later never alters an existing invoice. Percentage and
inclusiveness cannot change at all: a new rate is a new ``txr_``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.schemas import TaxRateCreate, TaxRateObject, TaxRateUpdate
from app.core import ids, money
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput, NotFound
from app.core.events import emit
from app.core.pagination import paginate
from app.models import TaxRate

log = structlog.get_logger(__name__)


class TaxRateNotFound(NotFound):
    """No tax rate with that id in the caller's workspace."""

    code = "tax_rate_not_found"


def tax_rate_view(rate: TaxRate) -> TaxRateObject:
    return TaxRateObject(
        id=rate.id,
        name=rate.name,
        percentage=money.format_decimal(Decimal(rate.percentage)),
        inclusive=rate.inclusive,
        jurisdiction=rate.jurisdiction,
        active=rate.active,
        version=rate.version,
        created_at=rate.created_at,
        updated_at=rate.updated_at,
    )


def tax_rate_data(rate: TaxRate) -> dict[str, Any]:
    return tax_rate_view(rate).model_dump(mode="json")


class TaxRateService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: TaxRateCreate
    ) -> TaxRate:
        rate = TaxRate(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            name=payload.name,
            percentage=payload.percentage,
            inclusive=payload.inclusive,
            jurisdiction=payload.jurisdiction,
            active=True,
        )
        session.add(rate)
        await session.flush()
        await session.refresh(rate)

        await emit(
            session,
            workspace_id=rate.workspace_id,
            type="tax_rate.created",
            object_type="tax_rate",
            object_id=rate.id,
            data=tax_rate_data(rate),
            actor=principal.actor,
        )
        log.info("tax_rate.created", tax_rate_id=str(rate.id))
        return rate

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        rate_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> TaxRate:
        statement = select(TaxRate).where(
            TaxRate.workspace_id == workspace_id, TaxRate.id == rate_id
        )
        if for_update:
            statement = statement.with_for_update()
        rate = await session.scalar(statement)
        if rate is None:
            raise TaxRateNotFound(
                f"No tax rate with id {ids.encode('tax_rate', rate_id)} exists in "
                "this workspace."
            )
        return rate

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        active: bool | None,
    ) -> tuple[list[TaxRate], str | None, bool]:
        statement = select(TaxRate).where(TaxRate.workspace_id == workspace_id)
        if active is not None:
            statement = statement.where(TaxRate.active == active)
        rows, next_cursor, has_more = await paginate(
            session, statement, TaxRate.id, limit=limit, cursor=cursor
        )
        return list(rows), next_cursor, has_more

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        rate_id: uuid.UUID,
        payload: TaxRateUpdate,
        *,
        if_match: str | None,
    ) -> TaxRate:
        rate = await self.get(session, principal.workspace_id, rate_id, for_update=True)
        check_if_match(if_match, rate.version)
        changes = payload.model_dump(exclude_unset=True)
        nulls = [name for name in ("name", "active") if changes.get(name, 0) is None]
        if nulls:
            raise InvalidInput(
                f"{nulls[0]} cannot be null. Omit it to keep the current value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )
        if not changes:
            return rate

        for name, value in changes.items():
            setattr(rate, name, value)
        rate.updated_at = utcnow()
        await session.flush()
        await session.refresh(rate)

        await emit(
            session,
            workspace_id=rate.workspace_id,
            type="tax_rate.updated",
            object_type="tax_rate",
            object_id=rate.id,
            data=tax_rate_data(rate),
            actor=principal.actor,
        )
        log.info("tax_rate.updated", tax_rate_id=str(rate.id), fields=sorted(changes))
        return rate


tax_rate_service = TaxRateService()
