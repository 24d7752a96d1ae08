"""Transaction-scoped locks on provider payments that may not exist yet."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


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
