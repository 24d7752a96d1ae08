"""Line items of an opportunity: while it has any, their total is its amount.

Every change locks the opportunity's row, checks its If-Match version, reprices all of
its lines, sets the amount and bumps the version, and emits ``opportunity.updated``,
all in the request's transaction. A closed opportunity's lines cannot change.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.schemas import MAX_LINES
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.models import LineItem, Opportunity
from app.opportunities.catalog_errors import LineItemNotFound, LineItemsLocked
from app.opportunities.line_inputs import (
    apply_amounts,
    apply_terms,
    resolve_line,
    terms_of,
)
from app.opportunities.line_item_repository import LineItemRepository
from app.opportunities.line_item_schemas import LineCreate, LineItemUpdate
from app.opportunities.pricing import DocumentTotals, LineTerms, price_lines
from app.opportunities.service import opportunity_data, opportunity_service

log = structlog.get_logger(__name__)

LinesWithTotals = tuple[Opportunity, list[LineItem], DocumentTotals]


class LineItemService:
    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        opportunity_id: uuid.UUID,
    ) -> LinesWithTotals:
        opportunity = await opportunity_service.get(
            session, workspace_id, opportunity_id
        )
        lines = list(
            await LineItemRepository.from_session(session).lines(opportunity.id)
        )
        return opportunity, lines, price_lines([terms_of(line) for line in lines])

    async def lines_of(
        self, session: AsyncSession, opportunity: Opportunity
    ) -> builtins.list[LineItem]:
        """Return an opportunity's line items, ordered by position."""
        return list(
            await LineItemRepository.from_session(session).lines(opportunity.id)
        )

    async def add(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        payload: LineCreate,
        *,
        if_match: str | None,
    ) -> tuple[Opportunity, LineItem]:
        repository = LineItemRepository.from_session(session)
        opportunity = await self._lock(session, principal, opportunity_id, if_match)
        lines = list(await repository.lines(opportunity.id))
        if len(lines) >= MAX_LINES:
            raise InvalidInput(
                f"The opportunity already has {MAX_LINES} line items, the maximum. "
                "Combine lines, or remove one first.",
                errors=[
                    FieldError("line_items", f"at most {MAX_LINES}", "too_many_lines")
                ],
            )
        resolved = await resolve_line(
            session, opportunity.workspace_id, opportunity.currency, payload, field=""
        )

        line = LineItem(
            id=ids.new_uuid(),
            workspace_id=opportunity.workspace_id,
            opportunity_id=opportunity.id,
            position=await repository.next_position(opportunity.id),
            product_id=resolved.product_id,
            description=resolved.description,
        )
        apply_terms(line, resolved.terms)
        lines.append(line)
        self._reprice(opportunity, lines, changed=line)
        session.add(line)
        await self._save(session, principal, opportunity)
        await session.refresh(line)
        log.info(
            "line_item.added",
            opportunity_id=str(opportunity.id),
            line_item_id=str(line.id),
            product_id=str(line.product_id) if line.product_id else None,
        )
        return opportunity, line

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        line_item_id: uuid.UUID,
        payload: LineItemUpdate,
        *,
        if_match: str | None,
    ) -> tuple[Opportunity, LineItem]:
        opportunity = await self._lock(session, principal, opportunity_id, if_match)
        lines = list(
            await LineItemRepository.from_session(session).lines(opportunity.id)
        )
        line = _find(opportunity, lines, line_item_id)

        changes = payload.model_fields_set
        required = (
            "description",
            "quantity",
            "unit_amount",
            "unit_amount_decimal",
            "tax_rate",
        )
        nulls = [
            name
            for name in required
            if name in changes and getattr(payload, name) is None
        ]
        if nulls:
            raise InvalidInput(
                f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )
        new_unit = (
            payload.unit_amount
            if payload.unit_amount is not None
            else payload.unit_amount_decimal
        )
        if new_unit is not None and line.product_id is not None:
            field = "unit_amount" if "unit_amount" in changes else "unit_amount_decimal"
            raise InvalidInput(
                "A product line keeps the product's unit price. Give a discount "
                "instead, or replace the line with a custom line.",
                errors=[
                    FieldError(
                        field,
                        "not allowed on a product line",
                        "unit_amount_not_allowed",
                    )
                ],
            )
        terms = terms_of(line)
        discount_percent = terms.discount_percent
        discount_amount = terms.discount_amount
        # Setting one kind of discount replaces the other.
        if "discount_percent" in changes:
            discount_percent = payload.discount_percent
            if payload.discount_percent is not None:
                discount_amount = None
        if "discount_amount" in changes:
            discount_amount = payload.discount_amount
            if payload.discount_amount is not None:
                discount_percent = None
        apply_terms(
            line,
            LineTerms(
                quantity=payload.quantity or terms.quantity,
                unit_amount=(
                    terms.unit_amount if new_unit is None else Decimal(new_unit)
                ),
                discount_percent=discount_percent,
                discount_amount=discount_amount,
                tax_rate=(
                    payload.tax_rate if payload.tax_rate is not None else terms.tax_rate
                ),
            ),
        )
        if payload.description is not None:
            line.description = payload.description
        if not session.is_modified(line):
            return opportunity, line

        line.updated_at = utcnow()
        self._reprice(opportunity, lines, changed=line)
        await self._save(session, principal, opportunity)
        await session.refresh(line)
        log.info(
            "line_item.updated",
            opportunity_id=str(opportunity.id),
            line_item_id=str(line.id),
            fields=sorted(changes),
        )
        return opportunity, line

    async def remove(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        line_item_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> Opportunity:
        """Remove a line; after the last one, the amount can be set directly again."""
        repository = LineItemRepository.from_session(session)
        opportunity = await self._lock(session, principal, opportunity_id, if_match)
        lines = list(await repository.lines(opportunity.id))
        line = _find(opportunity, lines, line_item_id)

        await repository.delete(line)
        session.expunge(line)
        lines.remove(line)
        self._reprice(opportunity, lines)
        await self._save(session, principal, opportunity)
        log.info(
            "line_item.removed",
            opportunity_id=str(opportunity.id),
            line_item_id=str(line.id),
            remaining=len(lines),
        )
        return opportunity

    async def _lock(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        if_match: str | None,
    ) -> Opportunity:
        opportunity = await opportunity_service.get(
            session, principal.workspace_id, opportunity_id, for_update=True
        )
        check_if_match(if_match, opportunity.version)
        if opportunity.status != "open":
            encoded = ids.encode("opportunity", opportunity.id)
            raise LineItemsLocked(
                f"Opportunity {encoded} is {opportunity.status}, so its line items "
                f"cannot change. Reopen it first with POST /v1/opportunities/{encoded}"
                "/reopen.",
                current_status=opportunity.status,
            )
        return opportunity

    @staticmethod
    def _reprice(
        opportunity: Opportunity,
        lines: Sequence[LineItem],
        changed: LineItem | None = None,
    ) -> None:
        # The changed line is the request body itself, so its errors name the body's
        # fields. Stored lines are named by their place in the opportunity's line_items.
        prefixes = [
            "" if line is changed else f"line_items.{index}."
            for index, line in enumerate(lines)
        ]
        totals = price_lines([terms_of(line) for line in lines], prefixes=prefixes)
        for line, amounts in zip(lines, totals.lines, strict=True):
            apply_amounts(line, amounts)
        if lines:
            opportunity.amount = totals.total
        # Touch the row so its version moves even when the amount stays the same.
        opportunity.updated_at = utcnow()

    @staticmethod
    async def _save(
        session: AsyncSession, principal: Principal, opportunity: Opportunity
    ) -> None:
        await session.flush()
        await session.refresh(opportunity)
        await emit(
            session,
            workspace_id=opportunity.workspace_id,
            type="opportunity.updated",
            object_type="opportunity",
            object_id=opportunity.id,
            data=opportunity_data(opportunity),
            actor=principal.actor,
        )


def _find(
    opportunity: Opportunity, lines: Sequence[LineItem], line_item_id: uuid.UUID
) -> LineItem:
    for line in lines:
        if line.id == line_item_id:
            return line
    raise LineItemNotFound(
        f"Opportunity {ids.encode('opportunity', opportunity.id)} has no line item "
        f"{ids.encode('line_item', line_item_id)}."
    )


line_item_service = LineItemService()
