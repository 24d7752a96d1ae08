"""Customer credit balances, computed from what billing records.

A customer's credit is the money it paid beyond what its invoices request: the overpaid part
of each invoice (``amount_paid - total`` when positive) plus the part of each succeeded
payment neither refunded, disputed nor allocated to any invoice. Only amounts in the
customer's own currency count, because they cannot be added to amounts in another one.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer, Invoice, Payment, PaymentAllocation


async def credit_balances(
    session: AsyncSession, workspace_id: uuid.UUID, customer_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Map each of ``customer_ids`` to its credit balance in minor units, in one query."""
    if not customer_ids:
        return {}
    ids = list(customer_ids)

    overpaid = (
        select(
            Invoice.customer_id.label("customer_id"),
            (Invoice.amount_paid - Invoice.total).label("amount"),
        )
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(
            Invoice.workspace_id == workspace_id,
            Invoice.customer_id.in_(ids),
            Invoice.currency == Customer.currency,
            Invoice.amount_paid > Invoice.total,
        )
    )
    # The unique key on (payment_id, invoice_id) serves this per-payment sum.
    allocated = (
        select(func.coalesce(func.sum(PaymentAllocation.amount), 0))
        .where(PaymentAllocation.payment_id == Payment.id)
        .scalar_subquery()
    )
    unallocated_amount = (
        Payment.amount - Payment.amount_refunded - Payment.amount_disputed - allocated
    )
    unallocated = (
        select(
            Payment.customer_id.label("customer_id"),
            unallocated_amount.label("amount"),
        )
        .join(Customer, Customer.id == Payment.customer_id)
        .where(
            Payment.workspace_id == workspace_id,
            Payment.customer_id.in_(ids),
            Payment.status == "succeeded",
            Payment.currency == Customer.currency,
            unallocated_amount > 0,
        )
    )

    parts = union_all(overpaid, unallocated).subquery()
    rows = await session.execute(
        select(parts.c.customer_id, func.sum(parts.c.amount)).group_by(
            parts.c.customer_id
        )
    )

    balances = dict.fromkeys(ids, 0)
    for customer_id, amount in rows.all():
        balances[customer_id] = int(amount)
    return balances
