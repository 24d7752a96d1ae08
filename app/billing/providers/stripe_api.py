"""Calls to Stripe's API through the official ``stripe`` library.

The base URL comes from ``stripe_api_base``, so tests run against a local stand-in.
Errors of the library become ``ProviderApiFailed`` (503) for API callers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import stripe
from pydantic import SecretStr

from app.billing.payment_errors import ProviderApiNotConfigured
from app.settings import Settings

# Retries of one call on network errors and 409/429/5xx, with the library's backoff.
MAX_NETWORK_RETRIES = 2


def require_api_key(settings: Settings) -> SecretStr:
    """Return Stripe's API key, or raise ProviderApiNotConfigured when none is set."""
    key = settings.stripe_api_key
    if key is None or not key.get_secret_value().strip():
        raise ProviderApiNotConfigured(
            "Stripe's API is not configured on this server. Set "
            "SALESCYCLE_STRIPE_API_KEY to a Stripe secret key.",
            headers={"Retry-After": "300"},
        )
    return key


@asynccontextmanager
async def stripe_client(settings: Settings) -> AsyncIterator[stripe.StripeClient]:
    """Open a client for Stripe's API and close its connections after use.

    Raise ProviderApiNotConfigured when no API key is set.
    """
    key = require_api_key(settings)
    http_client = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds)
    try:
        yield stripe.StripeClient(
            key.get_secret_value(),
            base_addresses={"api": settings.stripe_api_base},
            http_client=http_client,
            max_network_retries=MAX_NETWORK_RETRIES,
        )
    finally:
        await http_client.close_async()  # type: ignore[no-untyped-call]
