"""``/v1/provider-webhooks``: events posted by payment providers, not by API clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.billing.errors import ProviderNotConfigured
from app.billing.providers import stripe as stripe_provider
from app.billing.providers.inbox import provider_event_service
from app.billing.schemas import ProviderWebhookReceipt
from app.core.openapi import problem_responses
from app.core.routing import UnitOfWorkRoute
from app.settings import Settings


class ProviderWebhookRoute(UnitOfWorkRoute):
    """A unit-of-work route that never authenticates a caller.

    Providers carry no API key because the signature on the body authenticates them.
    The base route runs ``Idempotency-Key`` POSTs through API-key authentication, which
    would turn such a request into a 401, so this route skips that step. The inbox's
    unique ``(provider, event_id)`` makes a repeated delivery harmless instead.
    """

    async def _run(
        self, request: Request, call: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        return await call(request)


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


@router.post(
    "/stripe",
    operation_id="provider_webhooks_stripe",
    summary="Receive a Stripe event",
    response_model=ProviderWebhookReceipt,
    responses=problem_responses(413),
    openapi_extra=_STRIPE_BODY,
)
async def receive_stripe_event(request: Request) -> ProviderWebhookReceipt:
    """Verify Stripe-Signature on the raw body, store the event once, process it later."""
    settings: Settings = request.app.state.settings
    secret = settings.stripe_webhook_secret
    if secret is None or not secret.get_secret_value().strip():
        raise ProviderNotConfigured(
            "Stripe webhooks are not configured on this server. Set "
            "SALESCYCLE_STRIPE_WEBHOOK_SECRET to the endpoint's signing secret.",
            headers={"Retry-After": "300"},
        )
    body = await request.body()
    event = stripe_provider.verify(
        body,
        request.headers.get(stripe_provider.SIGNATURE_HEADER),
        secret.get_secret_value(),
        settings.stripe_tolerance_seconds,
    )
    _, duplicate = await provider_event_service.receive(
        request.state.session, stripe_provider.PROVIDER, event
    )
    return ProviderWebhookReceipt(duplicate=duplicate)
