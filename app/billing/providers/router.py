"""``/v1/provider-webhooks``: events posted by payment providers, not by API clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.datastructures import State
from starlette.responses import Response

from app.billing.errors import ProviderNotConfigured
from app.billing.providers import stripe as stripe_provider
from app.billing.providers.inbox import provider_event_service
from app.billing.schemas import ProviderWebhookReceipt
from app.core.errors import DomainError, ServiceUnavailable
from app.core.openapi import problem_responses
from app.core.routing import check_query, is_connection_error
from app.settings import Settings

log = structlog.get_logger(__name__)


class ProviderWebhookRoute(APIRoute):
    """A route whose endpoint takes the raw request and builds the response itself.

    A provider's webhook carries no API key, because the signature on the body
    authenticates it, and it writes one inbox row. It therefore skips FastAPI's
    parameter solving and response validation, and the session and commit of
    ``UnitOfWorkRoute``: the inbox insert is one statement that commits on its own.
    FastAPI still documents the endpoint from its declaration. ``Idempotency-Key`` is
    ignored, because the inbox's unique ``(provider, event_id)`` makes a repeated
    delivery harmless.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Awaitable[Response]] = self.endpoint

        async def handler(request: Request) -> Response:
            check_query(request, {})
            try:
                return await endpoint(request)
            except DomainError:
                raise
            except Exception as error:
                if is_connection_error(error):
                    log.error("database.unavailable", error=repr(error))
                    raise ServiceUnavailable(
                        "The database is unreachable. Retry in a few seconds.",
                        headers={"Retry-After": "5"},
                    ) from error
                raise

        return handler


_RECEIPTS = {
    duplicate: ProviderWebhookReceipt(duplicate=duplicate).model_dump_json().encode()
    for duplicate in (False, True)
}

router = APIRouter(
    prefix="/provider-webhooks",
    tags=["provider webhooks"],
    route_class=ProviderWebhookRoute,
)

_STRIPE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The Stripe event exactly as Stripe sent it; the signature "
        "covers these bytes.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    "parameters": [
        {
            "name": "Stripe-Signature",
            "in": "header",
            "required": True,
            "description": "Stripe's signature header, `t=<unix time>,v1=<hex>`.",
            "schema": {"type": "string"},
        }
    ],
    "security": [],
}


STRIPE_PATH = "/v1/provider-webhooks/stripe"


def stripe_secret(settings: Settings) -> str | None:
    """Return the Stripe signing secret, or None when none is configured."""
    secret = settings.stripe_webhook_secret
    if secret is None or not secret.get_secret_value().strip():
        return None
    return secret.get_secret_value()


async def store_stripe_event(
    state: State, secret: str, body: bytes, signature: str | None
) -> bytes:
    """Verify a Stripe delivery, store its event once, and return the receipt body.

    A stored event that is still ``received`` enqueues the drain job of the current
    window, for duplicates too, because the first delivery's job may have been lost
    with Redis.
    """
    settings: Settings = state.settings
    event = stripe_provider.verify(
        body, signature, secret, settings.stripe_tolerance_seconds
    )
    stored = await provider_event_service.receive(
        state.db, stripe_provider.PROVIDER, event
    )
    if stored.status == "received":
        await state.drain_signal.stored()
    return _RECEIPTS[stored.duplicate]


@router.post(
    "/stripe",
    operation_id="provider_webhooks_stripe",
    summary="Receive a Stripe event",
    response_model=ProviderWebhookReceipt,
    responses=problem_responses(413),
    openapi_extra=_STRIPE_BODY,
)
async def receive_stripe_event(request: Request) -> Response:
    """Verify Stripe-Signature on the raw body, store the event once, process it later."""
    # ``ProviderWebhookFastPath`` serves this path ahead of the middleware. The requests
    # it passes on come here: a query string, a body over the limit, no configured
    # secret, an unexpected error.
    secret = stripe_secret(request.app.state.settings)
    if secret is None:
        raise ProviderNotConfigured(
            "Stripe webhooks are not configured on this server. Set "
            "SALESCYCLE_STRIPE_WEBHOOK_SECRET to the endpoint's signing secret.",
            headers={"Retry-After": "300"},
        )
    receipt = await store_stripe_event(
        request.app.state,
        secret,
        await request.body(),
        request.headers.get(stripe_provider.SIGNATURE_HEADER),
    )
    return Response(receipt, media_type="application/json")
