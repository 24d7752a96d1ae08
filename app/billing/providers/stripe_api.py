"""Calls to Stripe's API through the official ``stripe`` library.

The base URL comes from ``stripe_api_base``, so tests run against a local stand-in.
Errors of the library become ``ProviderApiFailed`` (503) for API callers.
"""

from __future__ import annotations

import stripe

from app.billing.payment_errors import ProviderApiNotConfigured
from app.settings import Settings

# Retries of one call on network errors and 409/429/5xx, with the library's backoff.
MAX_NETWORK_RETRIES = 2


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """Build a client for Stripe's API; raise ProviderApiNotConfigured without a key."""
    key = settings.stripe_api_key
    if key is None or not key.get_secret_value().strip():
        raise ProviderApiNotConfigured(
            "Stripe's API is not configured on this server. Set "
            "SALESCYCLE_STRIPE_API_KEY to a Stripe secret key.",
            headers={"Retry-After": "300"},
        )
    return stripe.StripeClient(
        key.get_secret_value(),
        base_addresses={"api": settings.stripe_api_base},
        http_client=stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds),
        max_network_retries=MAX_NETWORK_RETRIES,
    )
