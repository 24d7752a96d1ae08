"""Customer credit balances, computed from what billing records.

A customer's credit in a currency is the sum of three parts, all in that currency:

- the overpaid part of each invoice (``amount_paid - amount_due`` when positive, with
  ``amount_due`` as ``app.billing.amounts`` derives it);
- the part of each succeeded payment neither refunded, disputed nor allocated to any
  invoice;
- the signed rows of the ``customer_credit_transactions`` ledger: credit notes,
  adjustments, credit applied to invoices and refunds of credit.

The customer's ``credit_balance`` is the balance in its own currency. Every change that
lowers a balance (applying credit, a negative adjustment, voiding a credit note) holds
``lock_customer_credit`` first and checks the balance under that lock, so two
concurrent changes can never overdraw it.

NOTE: the overpaid and unallocated parts are computed from payments, so code that
writes an ``overpayment`` ledger row must also take that surplus out of those parts,
or it counts twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import Select, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    Customer,
    CustomerCreditTransaction,
    Invoice,
    Payment,
    PaymentAllocation,
)

BalanceKey = tuple[uuid.UUID, str]


def _parts(
    workspace_id: uuid.UUID, customer_ids: list[uuid.UUID]
) -> list[Select[uuid.UUID, str, int]]:
    amount_due = (
        Invoice.total
        - Invoice.pre_payment_credit_notes_amount
        - Invoice.customer_credit_applied
    )
    overpaid = select(
        Invoice.customer_id.label("customer_id"),
        Invoice.currency.label("currency"),
        (Invoice.amount_paid - amount_due).label("amount"),
    ).where(
        Invoice.workspace_id == workspace_id,
        Invoice.customer_id.in_(customer_ids),
        Invoice.amount_paid > amount_due,
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
    unallocated = select(
        Payment.customer_id.label("customer_id"),
        Payment.currency.label("currency"),
        unallocated_amount.label("amount"),
    ).where(
        Payment.workspace_id == workspace_id,
        Payment.customer_id.in_(customer_ids),
        Payment.status == "succeeded",
        unallocated_amount > 0,
    )
    ledger = select(
        CustomerCreditTransaction.customer_id.label("customer_id"),
        CustomerCreditTransaction.currency.label("currency"),
        CustomerCreditTransaction.amount.label("amount"),
    ).where(
        CustomerCreditTransaction.workspace_id == workspace_id,
        CustomerCreditTransaction.customer_id.in_(customer_ids),
    )
    return [overpaid, unallocated, ledger]


async def balances_by_currency(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    customer_ids: Collection[uuid.UUID],
    *,
    currency: str | None = None,
) -> dict[BalanceKey, int]:
    """Map each ``(customer_id, currency)`` with any credit history to its balance."""
    if not customer_ids:
        return {}
    parts = union_all(*_parts(workspace_id, list(customer_ids))).subquery()
    statement = select(
        parts.c.customer_id, parts.c.currency, func.sum(parts.c.amount)
    ).group_by(parts.c.customer_id, parts.c.currency)
    if currency is not None:
        statement = statement.where(parts.c.currency == literal(currency))
    rows = await session.execute(statement)
    return {
        (customer_id, code): int(amount) for customer_id, code, amount in rows.all()
    }


async def credit_balance(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    customer_id: uuid.UUID,
    currency: str,
) -> int:
    """Return a customer's credit in ``currency``, in minor units.

    To act on the result, hold ``lock_customer_credit`` first.
    """
    balances = await balances_by_currency(
        session, workspace_id, [customer_id], currency=currency
    )
    return balances.get((customer_id, currency), 0)


async def credit_balances(
    session: AsyncSession, workspace_id: uuid.UUID, customer_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Map each of ``customer_ids`` to its balance in its own currency, in one query."""
    if not customer_ids:
        return {}
    currencies = dict(
        (
            await session.execute(
                select(Customer.id, Customer.currency).where(
                    Customer.workspace_id == workspace_id,
                    Customer.id.in_(list(customer_ids)),
                )
            )
        ).all()
    )
    by_currency = await balances_by_currency(session, workspace_id, customer_ids)
    return {
        customer_id: by_currency.get((customer_id, currencies.get(customer_id, "")), 0)
        for customer_id in customer_ids
    }


async def lock_customer_credit(
    session: AsyncSession, workspace_id: uuid.UUID, customer_id: uuid.UUID
) -> None:
    """Lock the customer's row until commit, to serialize changes of its credit.

    ``FOR NO KEY UPDATE`` still lets other transactions insert rows that reference
    the customer, such as invoices, while it is held. Take it after any invoice lock
    the caller needs, so lock order is always invoice, then customer.
    """
    await session.execute(
        select(Customer.id)
        .where(Customer.workspace_id == workspace_id, Customer.id == customer_id)
        .with_for_update(key_share=True)
    )
