from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Select, delete, exists, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import Product, ProductPrice


def _contains(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class ProductRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> ProductRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        product_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Product | None:
        statement = select(Product).where(
            Product.workspace_id == workspace_id, Product.id == product_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        query: str | None = None,
        active: bool | None = None,
        currency: str | None = None,
    ) -> tuple[Sequence[Product], str | None, bool]:
        statement: Select[Product] = select(Product).where(
            Product.workspace_id == workspace_id
        )
        if query:
            pattern = _contains(query)
            statement = statement.where(
                Product.name.ilike(pattern)
                | Product.sku.ilike(pattern)
                | Product.description.ilike(pattern)
            )
        if active is not None:
            statement = statement.where(Product.active.is_(active))
        if currency is not None:
            statement = statement.where(
                exists().where(
                    ProductPrice.product_id == Product.id,
                    ProductPrice.currency == currency,
                )
            )
        return await paginate(
            self.session, statement, Product.id, limit=limit, cursor=cursor
        )

    async def prices_of(
        self, product_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, builtins.list[ProductPrice]]:
        """Load the prices of several products in one query, ordered by currency."""
        if not product_ids:
            return {}
        rows = await self.session.scalars(
            select(ProductPrice)
            .where(ProductPrice.product_id.in_(product_ids))
            .order_by(ProductPrice.product_id, ProductPrice.currency)
        )
        prices: dict[uuid.UUID, builtins.list[ProductPrice]] = {}
        for row in rows:
            prices.setdefault(row.product_id, []).append(row)
        return prices

    async def price(self, product_id: uuid.UUID, currency: str) -> Decimal | None:
        return await self.session.scalar(
            select(ProductPrice.unit_amount).where(
                ProductPrice.product_id == product_id,
                ProductPrice.currency == currency,
            )
        )

    async def replace_prices(
        self, product: Product, prices: Sequence[tuple[str, Decimal]]
    ) -> None:
        await self.session.execute(
            delete(ProductPrice).where(ProductPrice.product_id == product.id)
        )
        if prices:
            await self.session.execute(
                insert(ProductPrice),
                [
                    {
                        "product_id": product.id,
                        "workspace_id": product.workspace_id,
                        "currency": currency,
                        "unit_amount": unit_amount,
                    }
                    for currency, unit_amount in prices
                ],
            )

    async def sku_taken(
        self, workspace_id: uuid.UUID, sku: str, *, other_than: uuid.UUID | None
    ) -> uuid.UUID | None:
        statement = select(Product.id).where(
            Product.workspace_id == workspace_id, Product.sku == sku
        )
        if other_than is not None:
            statement = statement.where(Product.id != other_than)
        return await self.session.scalar(statement)

    async def delete(self, product: Product) -> None:
        await self.session.execute(delete(Product).where(Product.id == product.id))
