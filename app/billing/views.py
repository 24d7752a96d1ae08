"""Shaping invoice and payment rows into their API representations.

The router returns these, and events carry the same shape as their data, so a webhook
consumer receives exactly what ``GET`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.billing.amounts import invoice_amounts
from app.billing.overdue import days_overdue, is_overdue, overdue_moment
from app.billing.schemas import Discount, InvoiceDiscount, TaxLine, TaxRateView
from app.billing.schemas import Invoice as InvoiceSchema
from app.billing.schemas import InvoiceLine as InvoiceLineSchema
from app.billing.schemas import Payment as PaymentSchema
from app.billing.schemas import PaymentAllocation as PaymentAllocationSchema
from app.billing.schemas import WriteOff as WriteOffSchema
from app.core import money
from app.core.clock import utcnow
from app.models import Invoice, InvoiceLine, Payment, PaymentAllocation


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
        tax_rates=[
            TaxRateView(
                tax_rate_id=rate.get("tax_rate_id"),
                name=rate["name"],
                percentage=rate["percentage"],
                inclusive=rate["inclusive"],
            )
            for rate in line.tax_rates or []
        ],
        discount=_line_discount(line),
        product_id=line.product_id,
        line_item_id=line.line_item_id,
        amount=line.amount,
        discount_amount=line.discount_amount,
        taxable_amount=line.taxable_amount,
        taxes=[TaxLine.model_validate(tax) for tax in line.taxes or []],
        tax_amount=line.tax_amount,
        total=line.total,
    )


def _line_discount(line: InvoiceLine) -> Discount | None:
    if line.discount_percent is not None:
        return Discount(
            percent_off=money.format_decimal(Decimal(line.discount_percent)),
            amount_off=None,
        )
    if line.discount_amount_off is not None:
        return Discount(percent_off=None, amount_off=line.discount_amount_off)
    return None


def document_taxes(lines: Sequence[InvoiceLine]) -> list[TaxLine]:
    """Sum the lines' taxes per rate, in the order the rates first appear."""
    summed: dict[tuple[str, str, bool], list[int]] = {}
    for line in sorted(lines, key=lambda line: line.position):
        for tax in line.taxes or []:
            key = (tax["name"], tax["rate"], tax["inclusive"])
            pair = summed.setdefault(key, [0, 0])
            pair[0] += tax["taxable_amount"]
            pair[1] += tax["amount"]
    return [
        TaxLine(
            name=name,
            rate=rate,
            inclusive=inclusive,
            taxable_amount=pair[0],
            amount=pair[1],
        )
        for (name, rate, inclusive), pair in summed.items()
    ]


def invoice_view(
    invoice: Invoice, lines: Sequence[InvoiceLine], now: datetime | None = None
) -> InvoiceSchema:
    now = now or utcnow()
    amounts = invoice_amounts(invoice)
    overdue = is_overdue(invoice, now)
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
        tax_calculation=invoice.tax_calculation,
        discounts=[
            InvoiceDiscount(
                source=entry.get("source", "manual"),
                offer_code=entry.get("offer_code"),
                percent_off=entry.get("percent_off"),
                amount_off=entry.get("amount_off"),
                amount=entry.get("amount", 0),
            )
            for entry in invoice.discounts or []
        ],
        subtotal=invoice.subtotal,
        total_discount=invoice.total_discount,
        total_excluding_tax=invoice.total_excluding_tax,
        taxes=document_taxes(lines),
        tax_total=invoice.tax_total,
        total=invoice.total,
        amount_due=amounts.amount_due,
        amount_paid=invoice.amount_paid,
        amount_remaining=amounts.amount_remaining,
        amount_overpaid=amounts.amount_overpaid,
        credited_amount=amounts.credited_amount,
        pre_payment_credit_notes_amount=amounts.pre_payment_credit_notes_amount,
        post_payment_credit_notes_amount=amounts.post_payment_credit_notes_amount,
        customer_credit_applied=amounts.customer_credit_applied,
        payment_terms=invoice.payment_terms,
        payment_terms_days=invoice.payment_terms_days,
        due_date=invoice.due_date,
        overdue_at=invoice.overdue_at,
        timezone=invoice.timezone,
        overdue=overdue,
        overdue_since=(overdue_moment(invoice) if overdue else None),
        days_overdue=days_overdue(invoice, now),
        dunning_policy_id=invoice.dunning_policy_id,
        uncollectible_at=invoice.uncollectible_at,
        uncollectible_reason=invoice.uncollectible_reason,
        write_off=write_off_view(invoice),
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


def write_off_view(invoice: Invoice) -> WriteOffSchema | None:
    if invoice.written_off_at is None or invoice.written_off_amount is None:
        return None
    assert invoice.write_off_approved_by is not None
    assert invoice.amount_paid_at_write_off is not None
    # Only payments recover money. Credit notes and applied customer credit lower
    # what is owed but bring nothing in, and a refund of a payment made before the
    # write-off counts against the payments after it.
    paid_since = invoice.amount_paid - invoice.amount_paid_at_write_off
    return WriteOffSchema(
        amount=invoice.written_off_amount,
        amount_recovered=min(max(paid_since, 0), invoice.written_off_amount),
        reason=invoice.write_off_reason or "",
        requested_by=invoice.write_off_requested_by,
        approved_by=invoice.write_off_approved_by,
        written_off_at=invoice.written_off_at,
    )


def invoice_data(invoice: Invoice, lines: Sequence[InvoiceLine]) -> dict[str, Any]:
    """Serialize an invoice as the API shows it, for events."""
    return invoice_view(invoice, lines).model_dump(mode="json")


def payment_view(
    payment: Payment, allocations: Sequence[PaymentAllocation]
) -> PaymentSchema:
    allocated = sum(allocation.amount for allocation in allocations)
    # A payment that has not succeeded has no money to allocate yet.
    unallocated = 0
    if payment.status == "succeeded":
        unallocated = (
            payment.amount
            - payment.amount_refunded
            - payment.amount_disputed
            - allocated
        )
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
        amount_unallocated=unallocated,
        created_at=payment.created_at,
        updated_at=payment.updated_at,
    )


def payment_data(
    payment: Payment, allocations: Sequence[PaymentAllocation]
) -> dict[str, Any]:
    """Serialize a payment as the API shows it, for events."""
    return payment_view(payment, allocations).model_dump(mode="json")
