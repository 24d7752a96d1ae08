"""Row and advisory locks of billing, and the one order in which they are taken.

Every billing path that changes money takes its locks in this order, so two
transactions never wait for each other in a cycle:

1. the provider payment's advisory lock (``lock_provider_payment``);
2. the payment row (``lock_payment``);
3. invoice rows in id order (``allocations.lock_invoices``), each before the rows
   that belong to it, such as its credit notes and promises to pay;
4. the customer's credit lock (``balances.lock_customer_credit``).

A path skips the locks it does not need. Inserting a row with a foreign key to a
payment takes a share lock on the payment's row, which waits for a transaction that
holds the row's lock. So a credit note that refunds through a payment locks the
payment before its invoice, as a refund does.

One exception: a provider's payment webhook locks the invoice before the payment
row. It holds the provider payment's advisory lock first, and every other path takes
that lock before the payment's row lock, so no other transaction holds the row then.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.repository import PaymentRepository
from app.models import Payment


async def lock_provider_payment(
    session: AsyncSession, provider: str, provider_payment_id: str
) -> None:
    """Serialize all work on one provider payment until the transaction ends.

    Webhook handlers take it before they look the payment up. Without it, a refund
    processed while its payment's first event commits would find no payment and be
    held, and the payment's release of held events would not see it yet, so the
    refund would wait forever. API requests on a provider payment take it before the
    payment's row lock, so they queue behind a webhook that locks the invoice first
    instead of deadlocking with it.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"{provider}:{provider_payment_id}"},
    )


async def lock_payment(
    session: AsyncSession, workspace_id: uuid.UUID, payment_id: uuid.UUID
) -> Payment | None:
    """Lock a payment of the workspace and return it, or None when there is none.

    A provider's payment gets its advisory lock before the row lock. Call it before
    locking any invoice.
    """
    repository = PaymentRepository.from_session(session)
    payment = await repository.get(workspace_id, payment_id)
    if payment is None:
        return None
    if payment.provider is not None and payment.provider_payment_id is not None:
        await lock_provider_payment(
            session, payment.provider, payment.provider_payment_id
        )
    return await repository.get(workspace_id, payment_id, for_update=True)
