"""Turning a requested line into its priced terms, from a product or as sent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids, money
from app.core.errors import FieldError, InvalidInput
from app.models.catalog import PricedLineMixin
from app.opportunities.catalog_errors import ProductNotFound, ProductUnavailable
from app.opportunities.line_item_schemas import LineCreate
from app.opportunities.pricing import LineAmounts, LineTerms
from app.opportunities.products import product_service


@dataclass(frozen=True)
class ResolvedLine:
    product_id: uuid.UUID | None
    description: str
    terms: LineTerms


async def resolve_line(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    currency: str,
    line: LineCreate,
    *,
    field: str,
) -> ResolvedLine:
    """Price ``line`` in ``currency``; a product line takes the product's price.

    An unknown product is a 422 on ``<field>.product_id``. An archived product, or one
    without a price in ``currency``, is a 409 that names the product, the currency and
    the currencies the product is priced in.
    """
    if line.product_id is None:
        assert line.description is not None and line.unit_amount_exact is not None
        return ResolvedLine(
            product_id=None,
            description=line.description,
            terms=LineTerms(
                quantity=line.quantity,
                unit_amount=line.unit_amount_exact,
                discount_percent=line.discount_percent,
                discount_amount=line.discount_amount,
                tax_rate=line.tax_rate if line.tax_rate is not None else Decimal(0),
            ),
        )

    encoded = ids.encode("product", line.product_id)
    try:
        product = await product_service.get(session, workspace_id, line.product_id)
    except ProductNotFound as error:
        raise InvalidInput(
            f"No product with id {encoded} exists in this workspace.",
            errors=[
                FieldError(
                    f"{field}product_id",
                    f"no product {encoded} here",
                    "product_not_found",
                )
            ],
        ) from error
    if not product.active:
        raise ProductUnavailable(
            f"Product {encoded} is archived, so it cannot be added to a line. Restore "
            "it with PATCH active=true, or choose another product.",
            product_id=encoded,
            reason="archived",
        )
    unit_amount = await product_service.price(session, product, currency)
    if unit_amount is None:
        priced_in = await product_service.currencies(session, product)
        raise ProductUnavailable(
            f"Product {encoded} has no price in {currency}, the currency of this "
            f"line. It is priced in: {', '.join(priced_in) or 'no currency'}. Add a "
            f"{currency} price to the product, or send a custom line.",
            product_id=encoded,
            currency=currency,
            priced_in=priced_in,
            reason="no_price_in_currency",
        )
    return ResolvedLine(
        product_id=product.id,
        description=line.description or product.name,
        terms=LineTerms(
            quantity=line.quantity,
            unit_amount=unit_amount,
            discount_percent=line.discount_percent,
            discount_amount=line.discount_amount,
            tax_rate=line.tax_rate if line.tax_rate is not None else product.tax_rate,
        ),
    )


def terms_of(line: PricedLineMixin) -> LineTerms:
    return LineTerms(
        quantity=line.quantity,
        unit_amount=line.unit_amount,
        discount_percent=line.discount_percent,
        discount_amount=line.discount_amount,
        tax_rate=line.tax_rate,
    )


def apply_terms(line: PricedLineMixin, terms: LineTerms) -> None:
    line.quantity = terms.quantity
    line.unit_amount = terms.unit_amount
    line.discount_percent = terms.discount_percent
    line.discount_amount = terms.discount_amount
    line.tax_rate = terms.tax_rate


def apply_amounts(line: PricedLineMixin, amounts: LineAmounts) -> None:
    line.amount = amounts.amount
    line.discount = amounts.discount
    line.tax_amount = amounts.tax_amount
    line.total = amounts.total


def priced_line_fields(line: PricedLineMixin) -> dict[str, Any]:
    """Render the columns every priced line shares, as the API shows them."""
    unit = line.unit_amount
    whole = unit == unit.to_integral_value()
    return {
        "product_id": line.product_id,
        "position": line.position,
        "description": line.description,
        "quantity": money.format_decimal(line.quantity),
        "unit_amount": int(unit) if whole else None,
        "unit_amount_decimal": money.format_decimal(unit),
        "discount_percent": (
            money.format_decimal(line.discount_percent)
            if line.discount_percent is not None
            else None
        ),
        "discount_amount": line.discount_amount,
        "tax_rate": money.format_decimal(line.tax_rate),
        "amount": line.amount,
        "discount": line.discount,
        "tax_amount": line.tax_amount,
        "total": line.total,
    }
