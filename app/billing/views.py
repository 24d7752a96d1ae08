"""Shaping invoice and payment rows into their API representations.

The router returns these, and events carry the same shape as their data, so a webhook
consumer receives exactly what ``GET`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from app.billing.schemas import Invoice as InvoiceSchema
from app.billing.schemas import InvoiceLine as InvoiceLineSchema
from app.billing.schemas import Payment as PaymentSchema
from app.billing.schemas import PaymentAllocation as PaymentAllocationSchema
from app.core import money
from app.core.clock import utcnow
from app.models import Invoice, InvoiceLine, Payment, PaymentAllocation

# An invoice in these statuses still expects money, so it can be overdue.
_COLLECTING = frozenset({"open", "uncollectible"})


def is_overdue(invoice: Invoice, now: datetime) -> bool:
    """Tell whether the due date has passed in the invoice's time zone, money owed."""
    if invoice.status not in _COLLECTING or invoice.due_date is None:
        return False
    if invoice.amount_paid >= invoice.total:
        return False
    zone = ZoneInfo(invoice.timezone or "UTC")
    return now.astimezone(zone).date() > invoice.due_date


def line_view(line: InvoiceLine) -> InvoiceLineSchema:
    unit = Decimal(line.unit_amount)
    whole = unit == unit.to_integral_value()
    return InvoiceLineSchema(
        id=line.id,
        position=line.position,
        description=line.description,
        quantity=money.format_decimal(line.quantity),
        unit_amount=int(unit) if whole else None,
        unit_amount_decimal=money.format_decimal(unit),
        tax_rate=money.format_decimal(line.tax_rate),
        amount=line.amount,
        tax_amount=line.tax_amount,
    )


def invoice_view(
    invoice: Invoice, lines: Sequence[InvoiceLine], now: datetime | None = None
) -> InvoiceSchema:
    now = now or utcnow()
    return InvoiceSchema(
        id=invoice.id,
        customer_id=invoice.customer_id,
        opportunity_id=invoice.opportunity_id,
        status=invoice.status,
        payment_status=invoice.payment_status,
        series=invoice.series,
        number=invoice.number,
        currency=invoice.currency,
        rounding=invoice.rounding,
        subtotal=invoice.subtotal,
        tax_total=invoice.tax_total,
        total=invoice.total,
        amount_due=invoice.total,
        amount_paid=invoice.amount_paid,
        amount_remaining=max(invoice.total - invoice.amount_paid, 0),
        amount_overpaid=max(invoice.amount_paid - invoice.total, 0),
        payment_terms_days=invoice.payment_terms_days,
        due_date=invoice.due_date,
        timezone=invoice.timezone,
        overdue=is_overdue(invoice, now),
        memo=invoice.memo,
        lines=[
            line_view(line) for line in sorted(lines, key=lambda line: line.position)
        ],
        finalized_at=invoice.finalized_at,
        paid_at=invoice.paid_at,
        voided_at=invoice.voided_at,
        payment_link_url=invoice.payment_link_url,
        version=invoice.version,
        created_at=invoice.created_at,
        updated_at=invoice.updated_at,
    )


def invoice_data(invoice: Invoice, lines: Sequence[InvoiceLine]) -> dict[str, Any]:
    """Serialize an invoice as the API shows it, for events."""
    return invoice_view(invoice, lines).model_dump(mode="json")


def payment_view(
    payment: Payment, allocations: Sequence[PaymentAllocation]
) -> PaymentSchema:
    allocated = sum(allocation.amount for allocation in allocations)
    return PaymentSchema(
        id=payment.id,
        customer_id=payment.customer_id,
        amount=payment.amount,
        currency=payment.currency,
        method=payment.method,
        status=payment.status,
        provider=payment.provider,
        provider_payment_id=payment.provider_payment_id,
        reference=payment.reference,
        received_at=payment.received_at,
        allocations=[
            PaymentAllocationSchema(invoice_id=item.invoice_id, amount=item.amount)
            for item in sorted(allocations, key=lambda item: item.created_at)
        ],
        amount_allocated=allocated,
        amount_refunded=payment.amount_refunded,
        amount_disputed=payment.amount_disputed,
        amount_unallocated=payment.amount
        - payment.amount_refunded
        - payment.amount_disputed
        - allocated,
        created_at=payment.created_at,
        updated_at=payment.updated_at,
    )


def payment_data(
    payment: Payment, allocations: Sequence[PaymentAllocation]
) -> dict[str, Any]:
    """Serialize a payment as the API shows it, for events."""
    return payment_view(payment, allocations).model_dump(mode="json")
