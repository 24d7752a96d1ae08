"""The product catalogue: products with one price per currency, archived or active."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids, money
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import Conflict, FieldError, InvalidInput
from app.core.events import emit
from app.models import Product, ProductPrice
from app.opportunities.catalog_errors import ProductNotFound, SkuTaken
from app.opportunities.product_repository import ProductRepository
from app.opportunities.product_schemas import (
    PriceInput,
    ProductCreate,
    ProductUpdate,
    RecurringOut,
    price_view,
)
from app.opportunities.product_schemas import Product as ProductSchema

log = structlog.get_logger(__name__)

ProductWithPrices = tuple[Product, list[ProductPrice]]

# PATCH may clear description, sku and recurring with null, but not these.
_REQUIRED_ON_UPDATE = ("name", "prices", "tax_rate", "active")


def product_view(product: Product, prices: Sequence[ProductPrice]) -> ProductSchema:
    return ProductSchema(
        id=product.id,
        name=product.name,
        description=product.description,
        sku=product.sku,
        prices=[price_view(price.currency, price.unit_amount) for price in prices],
        tax_rate=money.format_decimal(product.tax_rate),
        recurring=(
            RecurringOut.model_validate({"interval": product.recurring_interval})
            if product.recurring_interval is not None
            else None
        ),
        active=product.active,
        archived_at=product.archived_at,
        version=product.version,
        created_at=product.created_at,
        updated_at=product.updated_at,
    )


def product_data(product: Product, prices: Sequence[ProductPrice]) -> dict[str, Any]:
    """Serialize a product as the API shows it, for events."""
    return product_view(product, prices).model_dump(mode="json")


class ProductService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: ProductCreate
    ) -> ProductWithPrices:
        product = Product(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            name=payload.name,
            description=payload.description,
            sku=payload.sku,
            tax_rate=payload.tax_rate,
            recurring_interval=(
                payload.recurring.interval if payload.recurring else None
            ),
            active=payload.active,
            archived_at=None if payload.active else utcnow(),
        )
        session.add(product)
        await self._flush_unique_sku(session, product)
        repository = ProductRepository.from_session(session)
        await repository.replace_prices(product, _price_rows(payload.prices))
        await session.refresh(product)
        prices = (await repository.prices_of([product.id])).get(product.id, [])

        await emit(
            session,
            workspace_id=product.workspace_id,
            type="product.created",
            object_type="product",
            object_id=product.id,
            data=product_data(product, prices),
            actor=principal.actor,
        )
        log.info("product.created", product_id=str(product.id), sku=product.sku)
        return product, prices

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        product_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Product:
        product = await ProductRepository.from_session(session).get(
            workspace_id, product_id, for_update=for_update
        )
        if product is None:
            raise ProductNotFound(
                f"No product with id {ids.encode('product', product_id)} exists in "
                "this workspace."
            )
        return product

    async def get_with_prices(
        self, session: AsyncSession, workspace_id: uuid.UUID, product_id: uuid.UUID
    ) -> ProductWithPrices:
        product = await self.get(session, workspace_id, product_id)
        prices = await ProductRepository.from_session(session).prices_of([product.id])
        return product, prices.get(product.id, [])

    async def price(
        self, session: AsyncSession, product: Product, currency: str
    ) -> Decimal | None:
        """Return the product's unit price in ``currency``, in minor units, if it has one."""
        return await ProductRepository.from_session(session).price(product.id, currency)

    async def currencies(
        self, session: AsyncSession, product: Product
    ) -> builtins.list[str]:
        prices = await ProductRepository.from_session(session).prices_of([product.id])
        return [price.currency for price in prices.get(product.id, [])]

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        query: str | None = None,
        active: bool | None = None,
        currency: str | None = None,
    ) -> tuple[list[ProductWithPrices], str | None, bool]:
        repository = ProductRepository.from_session(session)
        rows, next_cursor, has_more = await repository.list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            query=query,
            active=active,
            currency=currency,
        )
        prices = await repository.prices_of([product.id for product in rows])
        return (
            [(product, prices.get(product.id, [])) for product in rows],
            next_cursor,
            has_more,
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        product_id: uuid.UUID,
        payload: ProductUpdate,
        *,
        if_match: str | None,
    ) -> ProductWithPrices:
        """Change a product; archiving or restoring emits its own event type."""
        repository = ProductRepository.from_session(session)
        product = await self.get(
            session, principal.workspace_id, product_id, for_update=True
        )
        check_if_match(if_match, product.version)

        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        nulls = [
            name
            for name in _REQUIRED_ON_UPDATE
            if name in changes and changes[name] is None
        ]
        if nulls:
            raise InvalidInput(
                f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )
        was_active = product.active
        for name in ("name", "description", "sku", "tax_rate", "active"):
            if name in changes:
                setattr(product, name, changes[name])
        if "recurring" in changes:
            recurring = changes["recurring"]
            product.recurring_interval = recurring.interval if recurring else None
        if product.active != was_active:
            product.archived_at = None if product.active else utcnow()
        if "prices" in changes:
            await repository.replace_prices(product, _price_rows(changes["prices"]))
            # Touch the row so its version moves even when only the prices changed.
            product.updated_at = utcnow()
        if not session.is_modified(product):
            prices = (await repository.prices_of([product.id])).get(product.id, [])
            return product, prices
        await self._flush_unique_sku(session, product)
        await session.refresh(product)
        prices = (await repository.prices_of([product.id])).get(product.id, [])

        if product.active == was_active:
            event_type = "product.updated"
        else:
            event_type = "product.restored" if product.active else "product.archived"
        await emit(
            session,
            workspace_id=product.workspace_id,
            type=event_type,
            object_type="product",
            object_id=product.id,
            data=product_data(product, prices),
            actor=principal.actor,
        )
        log.info(event_type, product_id=str(product.id), fields=sorted(changes))
        return product, prices

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        product_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        """Delete a product; line items and proposal lines keep their copied prices."""
        repository = ProductRepository.from_session(session)
        product = await self.get(
            session, principal.workspace_id, product_id, for_update=True
        )
        check_if_match(if_match, product.version)
        prices = (await repository.prices_of([product.id])).get(product.id, [])
        data = product_data(product, prices)

        await repository.delete(product)
        await emit(
            session,
            workspace_id=product.workspace_id,
            type="product.deleted",
            object_type="product",
            object_id=product.id,
            data=data,
            actor=principal.actor,
        )
        log.info("product.deleted", product_id=str(product.id))

    async def _flush_unique_sku(self, session: AsyncSession, product: Product) -> None:
        """Flush, raising ``SkuTaken`` when another product of the workspace has the SKU.

        The lookup names the other product; the unique index, flushed in a savepoint,
        still decides when two requests take the same SKU at once.
        """
        if product.sku is not None:
            existing = await ProductRepository.from_session(session).sku_taken(
                product.workspace_id, product.sku, other_than=product.id
            )
            if existing is not None:
                raise _sku_taken(product.sku, existing)
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError as error:
            if product.sku is None:
                raise
            raise _sku_taken(product.sku, None) from error


def _price_rows(prices: Sequence[PriceInput]) -> list[tuple[str, Decimal]]:
    return [(price.currency, price.unit_amount_exact) for price in prices]


def _sku_taken(sku: str, existing: uuid.UUID | None) -> Conflict:
    encoded = ids.encode("product", existing) if existing is not None else None
    return SkuTaken(
        f"SKU {sku!r} is already used by product {encoded or 'another product'}. "
        "Choose another SKU, or update that product.",
        errors=[FieldError("sku", "already used in this workspace", "sku_taken")],
        existing_product_id=encoded,
    )


product_service = ProductService()
