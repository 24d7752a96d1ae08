from __future__ import annotations

from typing import Any

from app.core.errors import Conflict, FieldError, InvalidInput, NotFound


class EventNotFound(NotFound):
    """No event with that id in the caller's workspace."""

    code = "event_not_found"


class WebhookEndpointNotFound(NotFound):
    """No webhook endpoint with that id in the caller's workspace."""

    code = "webhook_endpoint_not_found"


class WebhookDeliveryNotFound(NotFound):
    """No webhook delivery with that id in the caller's workspace."""

    code = "webhook_delivery_not_found"


class WebhookRecoveryNotFound(NotFound):
    """No webhook recovery with that id in the caller's workspace."""

    code = "webhook_recovery_not_found"


class _WebhookUrlError(InvalidInput):
    def __init__(self, detail: str, *, field: str = "url", **extra: Any) -> None:
        reason = str(extra.get("reason") or detail)
        super().__init__(detail, errors=[FieldError(field, reason, self.code)], **extra)


class InvalidWebhookUrl(_WebhookUrlError):
    """The webhook URL is malformed, or its scheme is not http or https."""

    code = "invalid_webhook_url"
    title = "Invalid webhook URL"


class WebhookHostUnresolvable(_WebhookUrlError):
    """The host of the webhook URL has no DNS record."""

    code = "webhook_host_unresolvable"
    title = "Webhook host unresolvable"


class WebhookUrlNotAllowed(_WebhookUrlError):
    """The webhook URL resolves to a private, loopback or cloud metadata address."""

    code = "webhook_url_not_allowed"
    title = "Webhook URL not allowed"


class UnknownEventType(InvalidInput):
    """An event type filter names no type in the catalogue."""

    code = "unknown_event_type"
    title = "Unknown event type"


class WebhookDeliveryInProgress(Conflict):
    """A worker is sending the delivery right now; retry once its attempt ends."""

    code = "webhook_delivery_in_progress"
    title = "Webhook delivery in progress"


class WebhookEndpointLimitReached(Conflict):
    """The workspace has as many endpoints as it may have."""

    code = "webhook_endpoint_limit_reached"
    title = "Webhook endpoint limit reached"


class WebhookEndpointDisabled(Conflict):
    """The endpoint is disabled, so its deliveries cannot be retried."""

    code = "webhook_endpoint_disabled"
    title = "Webhook endpoint disabled"
