"""Invoice lines as stored rows: building them from requests and recomputing totals.

``recompute_invoice`` is the one place that writes the computed amounts of an invoice
and its lines. It reads only the inputs stored on the rows (quantity, unit amount,
discount, tax rates, the invoice discounts and policies), so any caller that changed
an input (a PATCH, an offer code) calls it and gets the same figures.

This module imports no billing service, so ``app.nurture`` can call it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import totals
from app.billing.schemas import DiscountInput, InvoiceLineCreate
from app.core import ids, money
from app.core.errors import FieldError, InvalidInput
from app.models import (
    Invoice,
    InvoiceLine,
    LineItem,
    Product,
    ProductPrice,
    TaxRate,
)

# The name of the single exclusive rate sent as ``tax_rate``.
DEFAULT_TAX_NAME = "Tax"


def tax_specs(line: InvoiceLine) -> tuple[totals.TaxSpec, ...]:
    return tuple(
        totals.TaxSpec(
            name=str(rate["name"]),
            rate=Decimal(str(rate["percentage"])),
            inclusive=bool(rate["inclusive"]),
        )
        for rate in line.tax_rates or []
    )


def line_spec(line: InvoiceLine) -> totals.LineSpec:
    discount = None
    if line.discount_percent is not None:
        discount = totals.DiscountSpec(percent_off=Decimal(line.discount_percent))
    elif line.discount_amount_off is not None:
        discount = totals.DiscountSpec(amount_off=line.discount_amount_off)
    return totals.LineSpec(
        quantity=Decimal(line.quantity),
        unit_amount=Decimal(line.unit_amount),
        taxes=tax_specs(line),
        discount=discount,
    )


def invoice_discount_specs(invoice: Invoice) -> list[totals.DiscountSpec]:
    specs = []
    for entry in invoice.discounts or []:
        if entry.get("percent_off") is not None:
            specs.append(
                totals.DiscountSpec(percent_off=Decimal(str(entry["percent_off"])))
            )
        else:
            specs.append(totals.DiscountSpec(amount_off=int(entry["amount_off"])))
    return specs


def discount_entries(
    discounts: Sequence[DiscountInput], *, source: str = "manual"
) -> list[dict[str, Any]]:
    """Store request discounts as invoice discount entries; amounts come later."""
    return [
        {
            "source": source,
            "percent_off": (
                money.format_decimal(item.percent_off)
                if item.percent_off is not None
                else None
            ),
            "amount_off": item.amount_off,
            "amount": 0,
        }
        for item in discounts
    ]


def recompute_invoice(invoice: Invoice, lines: Sequence[InvoiceLine]) -> None:
    """Recompute and store every computed amount of ``invoice`` and its ``lines``.

    Raise ``AmountTooLarge`` (a 422) when a line or the total exceeds the maximum.
    """
    ordered = sorted(lines, key=lambda line: line.position)
    result = totals.compute_document(
        [line_spec(line) for line in ordered],
        discounts=invoice_discount_specs(invoice),
        tax_calculation=totals.TaxCalculation(invoice.tax_calculation or "line"),
        rounding=money.Rounding(invoice.rounding),
    )
    for line, computed in zip(ordered, result.lines, strict=True):
        line.amount = computed.amount
        line.discount_amount = computed.discount_amount
        line.taxable_amount = computed.taxable_amount
        line.tax_amount = computed.tax_amount
        line.total = computed.total
        line.taxes = [_tax_json(tax) for tax in computed.taxes]
    entries = [dict(entry) for entry in invoice.discounts or []]
    for entry, taken in zip(entries, result.invoice_discounts, strict=True):
        entry["amount"] = taken
    invoice.discounts = entries
    invoice.subtotal = result.subtotal
    invoice.total_discount = result.total_discount
    invoice.total_excluding_tax = result.total_excluding_tax
    invoice.tax_total = result.tax_total
    invoice.total = result.total


def _tax_json(tax: totals.TaxAmount) -> dict[str, Any]:
    return {
        "name": tax.spec.name,
        "rate": money.format_decimal(tax.spec.rate),
        "inclusive": tax.spec.inclusive,
        "taxable_amount": tax.taxable_amount,
        "amount": tax.amount,
    }


async def build_lines(
    session: AsyncSession,
    invoice: Invoice,
    payload: Sequence[InvoiceLineCreate],
) -> list[InvoiceLine]:
    """Create the rows for request lines, resolving products and line items.

    Raise ``InvalidInput`` naming ``lines.<index>.<field>`` for a product that is not
    in the workspace, archived or without a price in the invoice's currency (when no
    unit amount is sent), or a line item that is not of the invoice's opportunity.
    The computed amounts are set by ``recompute_invoice``.
    """
    products = await _products(session, invoice, payload)
    await _check_line_items(session, invoice, payload)
    tax_rates = await _tax_rates(session, invoice, payload)

    rows = []
    for position, line in enumerate(payload, start=1):
        product = products.get(line.product_id) if line.product_id else None
        unit_amount = line.unit_amount_exact
        if unit_amount is None:
            assert product is not None
            unit_amount = product[1]
        description = line.description
        if description is None:
            assert product is not None
            description = product[0].name[:500]
        if line.tax_rate_ids is not None:
            rates = [tax_rates[rate_id] for rate_id in line.tax_rate_ids]
        else:
            rates = _rates(line, product[0] if product else None)
        rows.append(
            InvoiceLine(
                id=ids.new_uuid(),
                workspace_id=invoice.workspace_id,
                invoice_id=invoice.id,
                position=position,
                description=description,
                quantity=line.quantity,
                unit_amount=unit_amount,
                tax_rates=rates,
                tax_rate=sum(
                    (Decimal(rate["percentage"]) for rate in rates), Decimal(0)
                ),
                discount_percent=line.discount.percent_off if line.discount else None,
                discount_amount_off=line.discount.amount_off if line.discount else None,
                product_id=line.product_id,
                line_item_id=line.line_item_id,
                amount=0,
                discount_amount=0,
                taxable_amount=0,
                tax_amount=0,
                total=0,
                taxes=[],
            )
        )
    return rows


def _rates(line: InvoiceLineCreate, product: Product | None) -> list[dict[str, Any]]:
    if line.tax_rates is not None:
        return [
            {
                "name": rate.name,
                "percentage": money.format_decimal(rate.percentage),
                "inclusive": rate.inclusive,
            }
            for rate in line.tax_rates
        ]
    rate = line.tax_rate
    if rate is None and product is not None:
        rate = Decimal(product.tax_rate)
    if rate is None or rate == 0:
        return []
    return [
        {
            "name": DEFAULT_TAX_NAME,
            "percentage": money.format_decimal(rate),
            "inclusive": False,
        }
    ]


async def _products(
    session: AsyncSession, invoice: Invoice, payload: Sequence[InvoiceLineCreate]
) -> dict[uuid.UUID, tuple[Product, Decimal | None]]:
    wanted = {line.product_id for line in payload if line.product_id is not None}
    if not wanted:
        return {}
    rows = await session.execute(
        select(Product, ProductPrice.unit_amount)
        .outerjoin(
            ProductPrice,
            (ProductPrice.product_id == Product.id)
            & (ProductPrice.currency == invoice.currency),
        )
        .where(Product.workspace_id == invoice.workspace_id, Product.id.in_(wanted))
    )
    found = {product.id: (product, price) for product, price in rows}

    errors = []
    for index, line in enumerate(payload):
        if line.product_id is None:
            continue
        encoded = ids.encode("product", line.product_id)
        entry = found.get(line.product_id)
        if entry is None:
            errors.append(
                FieldError(
                    f"lines.{index}.product_id",
                    f"no product {encoded} in this workspace",
                    "product_not_found",
                )
            )
        elif entry[0].archived_at is not None:
            errors.append(
                FieldError(
                    f"lines.{index}.product_id",
                    f"product {encoded} is archived",
                    "product_archived",
                )
            )
        elif line.unit_amount_exact is None and entry[1] is None:
            errors.append(
                FieldError(
                    f"lines.{index}.unit_amount",
                    f"product {encoded} has no price in {invoice.currency}; send "
                    "unit_amount",
                    "price_missing",
                )
            )
    if errors:
        raise InvalidInput(
            f"{errors[0]['field']}: {errors[0]['message']}. Send a product of this "
            "workspace, or the unit amount.",
            errors=errors,
        )
    return {key: (value[0], value[1]) for key, value in found.items()}


async def _check_line_items(
    session: AsyncSession, invoice: Invoice, payload: Sequence[InvoiceLineCreate]
) -> None:
    wanted = {line.line_item_id for line in payload if line.line_item_id is not None}
    if not wanted:
        return
    rows = await session.execute(
        select(LineItem.id, LineItem.opportunity_id).where(
            LineItem.workspace_id == invoice.workspace_id, LineItem.id.in_(wanted)
        )
    )
    opportunity_of = {item_id: opportunity_id for item_id, opportunity_id in rows}

    errors = []
    for index, line in enumerate(payload):
        if line.line_item_id is None:
            continue
        encoded = ids.encode("line_item", line.line_item_id)
        field = f"lines.{index}.line_item_id"
        if line.line_item_id not in opportunity_of:
            errors.append(
                FieldError(
                    field,
                    f"no line item {encoded} in this workspace",
                    "line_item_not_found",
                )
            )
        elif opportunity_of[line.line_item_id] != invoice.opportunity_id:
            errors.append(
                FieldError(
                    field,
                    f"line item {encoded} is not of the invoice's opportunity",
                    "opportunity_mismatch",
                )
            )
    if errors:
        raise InvalidInput(
            f"{errors[0]['field']}: {errors[0]['message']}. Set the invoice's "
            "opportunity_id to the line item's opportunity, or drop line_item_id.",
            errors=errors,
        )


async def _tax_rates(
    session: AsyncSession, invoice: Invoice, payload: Sequence[InvoiceLineCreate]
) -> dict[uuid.UUID, dict[str, Any]]:
    """Load the ``tax_rate_ids`` of the lines as stored rate entries.

    Raise ``InvalidInput`` for a rate that is not in the workspace or not active, or
    for a line whose rates are not all inclusive or all exclusive.
    """
    wanted = {rate_id for line in payload for rate_id in line.tax_rate_ids or []}
    if not wanted:
        return {}
    rows = await session.scalars(
        select(TaxRate).where(
            TaxRate.workspace_id == invoice.workspace_id, TaxRate.id.in_(wanted)
        )
    )
    found = {rate.id: rate for rate in rows}

    errors = []
    for index, line in enumerate(payload):
        field = f"lines.{index}.tax_rate_ids"
        rates = []
        for rate_id in line.tax_rate_ids or []:
            encoded = ids.encode("tax_rate", rate_id)
            rate = found.get(rate_id)
            if rate is None:
                errors.append(
                    FieldError(
                        field,
                        f"no tax rate {encoded} in this workspace",
                        "tax_rate_not_found",
                    )
                )
            elif not rate.active:
                errors.append(
                    FieldError(field, f"tax rate {encoded} is inactive", "inactive")
                )
            else:
                rates.append(rate)
        if len({rate.inclusive for rate in rates}) > 1:
            errors.append(
                FieldError(
                    field,
                    "the rates mix inclusive and exclusive; split the line in two",
                    "tax_inclusive_mixed",
                )
            )
        if len(set(line.tax_rate_ids or [])) != len(line.tax_rate_ids or []):
            errors.append(
                FieldError(field, "names the same tax rate twice", "duplicate")
            )
    if errors:
        raise InvalidInput(
            f"{errors[0]['field']}: {errors[0]['message']}. Send active tax rates "
            "of this workspace.",
            errors=errors,
        )
    return {
        rate.id: {
            "tax_rate_id": ids.encode("tax_rate", rate.id),
            "name": rate.name,
            "percentage": money.format_decimal(Decimal(rate.percentage)),
            "inclusive": rate.inclusive,
        }
        for rate in found.values()
    }
