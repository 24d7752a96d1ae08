from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.db import defer_job
from app.core.errors import FieldError, InvalidInput, quoted
from app.core.events import emit
from app.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks import catalog
from app.webhooks.errors import (
    EventNotFound,
    UnknownEventType,
    WebhookDeliveryInProgress,
    WebhookDeliveryNotFound,
    WebhookEndpointDisabled,
    WebhookEndpointLimitReached,
    WebhookEndpointNotFound,
)
from app.webhooks.repository import (
    EventRepository,
    Order,
    WebhookDeliveryRepository,
    WebhookEndpointRepository,
)
from app.webhooks.schemas import (
    SHOWN_ATTEMPTS,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
    WebhookSecretRotate,
)
from app.webhooks.schemas import WebhookEndpoint as WebhookEndpointSchema
from app.webhooks.signing import generate_secret
from app.webhooks.subscriptions import forget_subscriptions
from app.webhooks.url_safety import (
    AddressPolicy,
    Resolve,
    check_webhook_url,
    resolve_host,
)

log = structlog.get_logger(__name__)

DELIVER_JOB = "deliver_webhook"
CATCH_UP_JOB = "catch_up_webhook_endpoint"
MAX_TYPE_FILTERS = 20

DisabledReason = Literal["manual", "gone", "failing"]


REDACTED = "[redacted]"


def redact_url(url: str) -> str:
    """Keep the scheme, host and port of ``url``, and redact its path and query.

    Receivers such as catch hooks carry their token in the path, others in the query.
    """
    parts = urlsplit(url)
    if parts.path in ("", "/") and not parts.query:
        return url
    return f"{parts.scheme}://{parts.netloc}/{REDACTED}"


def endpoint_data(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """Serialize an endpoint for its events: no secret, no header values, and no path
    or query in the URL.

    The events may be delivered to other endpoints, which must not learn a token
    that one receiver asked for.
    """
    data = WebhookEndpointSchema.model_validate(endpoint).model_dump(mode="json")
    data["headers"] = {name: REDACTED for name in data["headers"]}
    data["url"] = redact_url(data["url"])
    return data


def catch_up_job_id(endpoint_id: uuid.UUID) -> str:
    return f"catch-up:{endpoint_id}"


def deliver_job_id(delivery_id: uuid.UUID, attempt: int) -> str:
    """Name the job of one attempt, so two hints for it do not both run."""
    return f"deliver:{delivery_id}:{attempt}"


# Object types whose events show the object's id as a bare UUID.
_UNPREFIXED_OBJECT_TYPES = tuple(
    object_type
    for object_type in catalog.OBJECT_TYPES
    if object_type not in ids.PREFIXES
)


def parse_object_id(value: str) -> uuid.UUID:
    """Decode the id of an object with events, as an event shows it, raising
    ``InvalidInput``.

    That is an id with the prefix of an object type of the catalogue, or a bare UUID
    for the object types without a prefix of their own.
    """
    prefix, _, _ = value.rpartition("_")
    kinds = [
        kind
        for kind, known in ids.PREFIXES.items()
        if known == prefix and kind in catalog.OBJECT_TYPES
    ]
    if kinds:
        try:
            return ids.decode(kinds[0], value)
        except ids.InvalidId:
            pass
    elif not prefix and _UNPREFIXED_OBJECT_TYPES:
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidInput(
        f"object_id {value!r} is not the id of an object with events. Pass an id "
        "such as lead_… or inv_…, as an event's object_id shows it.",
        errors=[FieldError("query.object_id", "invalid object id", "invalid_id")],
    )


def check_type_filters(types: Sequence[str]) -> list[str]:
    """Validate ``type`` filters: types of the catalogue, ``<object_type>.*`` for an
    object type of the catalogue, or ``*``; at most 20."""
    if len(types) > MAX_TYPE_FILTERS:
        raise InvalidInput(
            f"At most {MAX_TYPE_FILTERS} type filters are accepted; got {len(types)}.",
            errors=[FieldError("query.type", "too many values", "too_many")],
        )
    unknown = [value for value in types if not catalog.is_valid_pattern(value)]
    if unknown:
        raise UnknownEventType(
            f"{quoted(unknown[0])} is not an event type filter. Use a type of GET "
            "/v1/meta/event-types such as 'invoice.paid', a prefix such as "
            "'invoice.*', or '*'.",
            errors=[
                FieldError("query.type", f"{quoted(value)} is not a type", "invalid")
                for value in unknown
            ],
        )
    return list(dict.fromkeys(types))


class EventService:
    async def prune(
        self, session: AsyncSession, *, retention: timedelta, limit: int
    ) -> int:
        """Delete up to ``limit`` events older than ``retention``; return how many.

        The newest event of each object is kept whatever its age, so its sequence
        continues. Undispatched events and events with a pending delivery are kept too.
        """
        return await EventRepository.from_session(session).prune(
            cutoff=utcnow() - retention, limit=limit
        )

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, event_id: uuid.UUID
    ) -> Event:
        event = await EventRepository.from_session(session).get(workspace_id, event_id)
        if event is None:
            raise EventNotFound(
                f"No event with id {ids.encode('event', event_id)} exists in this "
                "workspace."
            )
        return event

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        order: Order = "desc",
        types: Sequence[str] = (),
        object_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> tuple[Sequence[Event], str | None, bool]:
        if (
            created_after is not None
            and created_before is not None
            and created_after >= created_before
        ):
            raise InvalidInput(
                f"created_after ({created_after.isoformat()}) is not before "
                f"created_before ({created_before.isoformat()}), so no event can "
                "match. Swap them, or widen the range.",
                errors=[
                    FieldError(
                        "query.created_after",
                        "not before created_before",
                        "invalid_range",
                    )
                ],
            )
        return await EventRepository.from_session(session).list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            order=order,
            types=check_type_filters(types),
            object_id=parse_object_id(object_id) if object_id is not None else None,
            created_after=created_after,
            created_before=created_before,
        )


class WebhookEndpointService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: WebhookEndpointCreate,
        *,
        policy: AddressPolicy,
        max_endpoints: int,
        resolve: Resolve = resolve_host,
    ) -> tuple[WebhookEndpoint, str]:
        """Create an endpoint; return it and its secret, which is shown only once.

        A workspace has at most ``max_endpoints``. The count is taken under a lock per
        workspace, so concurrent creates cannot pass the limit together.
        """
        url = await self._check_url(payload.url, policy, resolve)
        endpoints = WebhookEndpointRepository.from_session(session)
        count = await endpoints.lock_and_count(principal.workspace_id)
        if count >= max_endpoints:
            log.info(
                "webhook_endpoint.limit_reached",
                workspace_id=str(principal.workspace_id),
                endpoints=count,
            )
            raise WebhookEndpointLimitReached(
                f"This workspace has {count} webhook endpoints, the most it may have "
                f"(SALESCYCLE_WEBHOOK_MAX_ENDPOINTS_PER_WORKSPACE is "
                f"{max_endpoints}). Delete an endpoint you no longer use, or subscribe "
                "an existing one to more event types."
            )

        secret = generate_secret()
        endpoint = WebhookEndpoint(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            url=url,
            description=payload.description,
            event_types=payload.event_types,
            headers=payload.headers,
            secret=secret,
            enabled=payload.enabled,
            disabled_reason=None if payload.enabled else "manual",
            catch_up_pending=payload.enabled,
        )
        session.add(endpoint)
        await session.flush()
        await session.refresh(endpoint)
        if endpoint.catch_up_pending:
            # An event emitted while this transaction runs, and dispatched before it
            # commits, gets no delivery to the endpoint; the job gives it one.
            defer_job(
                session,
                CATCH_UP_JOB,
                str(endpoint.id),
                job_id=catch_up_job_id(endpoint.id),
            )

        await self._emit(session, endpoint, "webhook_endpoint.created", principal.actor)
        log.info(
            "webhook_endpoint.created",
            endpoint_id=str(endpoint.id),
            event_types=endpoint.event_types,
        )
        return endpoint, secret

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        for_update: bool = False,
        for_key_share: bool = False,
    ) -> WebhookEndpoint:
        endpoint = await WebhookEndpointRepository.from_session(session).get(
            workspace_id,
            endpoint_id,
            for_update=for_update,
            for_key_share=for_key_share,
        )
        if endpoint is None:
            shown = ids.encode("webhook_endpoint", endpoint_id)
            raise WebhookEndpointNotFound(
                f"No webhook endpoint with id {shown} exists in this workspace."
            )
        return endpoint

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        enabled: bool | None = None,
    ) -> tuple[Sequence[WebhookEndpoint], str | None, bool]:
        return await WebhookEndpointRepository.from_session(session).list(
            workspace_id, limit=limit, cursor=cursor, enabled=enabled
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        endpoint_id: uuid.UUID,
        payload: WebhookEndpointUpdate,
        *,
        if_match: str | None,
        policy: AddressPolicy,
        resolve: Resolve = resolve_host,
    ) -> WebhookEndpoint:
        changes = payload.model_dump(exclude_unset=True)
        for name in ("url", "event_types", "headers", "enabled"):
            if name in changes and changes[name] is None:
                raise InvalidInput(
                    f"{name} cannot be null. Omit it to keep the current value.",
                    errors=[FieldError(name, "cannot be null", "null_not_allowed")],
                )
        # Resolve the host before taking the row lock, which DNS must not hold up.
        if "url" in changes:
            changes["url"] = await self._check_url(changes["url"], policy, resolve)

        endpoint = await self.get(
            session, principal.workspace_id, endpoint_id, for_update=True
        )
        check_if_match(if_match, endpoint.version)

        if endpoint.catch_up_pending and (
            "enabled" in changes or "event_types" in changes
        ):
            # Imported here because the recovery module imports this one.
            from app.webhooks.recovery import catch_up_before_change

            await catch_up_before_change(
                session,
                endpoint,
                stays_enabled=endpoint.enabled and changes.get("enabled") is not False,
            )

        enabled = changes.pop("enabled", None)
        for name, value in changes.items():
            setattr(endpoint, name, value)
        if enabled is True and not endpoint.enabled:
            endpoint.enabled = True
            endpoint.disabled_reason = None
            endpoint.failing_since = None
        elif enabled is False and endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_reason = "manual"
        if not session.is_modified(endpoint):
            return endpoint
        await session.flush()
        await session.refresh(endpoint)

        await self._emit(session, endpoint, "webhook_endpoint.updated", principal.actor)
        log.info("webhook_endpoint.updated", endpoint_id=str(endpoint.id))
        return endpoint

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        endpoint_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        """Delete an endpoint with its deliveries and attempts."""
        endpoint = await self.get(
            session, principal.workspace_id, endpoint_id, for_update=True
        )
        check_if_match(if_match, endpoint.version)

        await self._emit(session, endpoint, "webhook_endpoint.deleted", principal.actor)
        await session.delete(endpoint)
        await session.flush()
        log.info("webhook_endpoint.deleted", endpoint_id=str(endpoint_id))

    async def rotate_secret(
        self,
        session: AsyncSession,
        principal: Principal,
        endpoint_id: uuid.UUID,
        payload: WebhookSecretRotate,
        *,
        if_match: str | None,
    ) -> tuple[WebhookEndpoint, str]:
        """Replace the secret; the previous one keeps signing for the grace period.

        Rotating again within the grace period retires the oldest secret at once.
        """
        endpoint = await self.get(
            session, principal.workspace_id, endpoint_id, for_update=True
        )
        check_if_match(if_match, endpoint.version)

        secret = generate_secret()
        grace = payload.previous_secret_expires_in
        endpoint.previous_secret = endpoint.secret if grace > 0 else None
        endpoint.previous_secret_expires_at = (
            utcnow() + timedelta(seconds=grace) if grace > 0 else None
        )
        endpoint.secret = secret
        await session.flush()
        await session.refresh(endpoint)

        await self._emit(session, endpoint, "webhook_endpoint.updated", principal.actor)
        log.info(
            "webhook_endpoint.secret_rotated",
            endpoint_id=str(endpoint.id),
            grace_seconds=grace,
        )
        return endpoint, secret

    async def disable(
        self, session: AsyncSession, endpoint_id: uuid.UUID, reason: DisabledReason
    ) -> WebhookEndpoint | None:
        """Disable an endpoint on the system's initiative and emit the event.

        Returns None when the endpoint is gone or already disabled.
        """
        endpoint = await WebhookEndpointRepository.from_session(session).get_by_id(
            endpoint_id, for_update=True
        )
        if endpoint is None or not endpoint.enabled:
            return None

        endpoint.enabled = False
        endpoint.disabled_reason = reason
        await session.flush()
        await session.refresh(endpoint)

        await self._emit(session, endpoint, "webhook_endpoint.disabled", "system")
        log.warning(
            "webhook_endpoint.disabled", endpoint_id=str(endpoint.id), reason=reason
        )
        return endpoint

    @staticmethod
    async def _check_url(url: str, policy: AddressPolicy, resolve: Resolve) -> str:
        checked = await check_webhook_url(url, policy, resolve=resolve)
        return checked.url

    @staticmethod
    async def _emit(
        session: AsyncSession,
        endpoint: WebhookEndpoint,
        event_type: str,
        actor: str | None,
    ) -> None:
        forget_subscriptions(session)
        await emit(
            session,
            workspace_id=endpoint.workspace_id,
            type=event_type,
            object_type="webhook_endpoint",
            object_id=endpoint.id,
            data=endpoint_data(endpoint),
            actor=actor,
        )


class WebhookDeliveryService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        delivery_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> WebhookDelivery:
        delivery = await WebhookDeliveryRepository.from_session(session).get(
            workspace_id, delivery_id, for_update=for_update
        )
        if delivery is None:
            shown = ids.encode("webhook_delivery", delivery_id)
            raise WebhookDeliveryNotFound(
                f"No webhook delivery with id {shown} exists in this workspace."
            )
        return delivery

    async def latest_attempts(
        self, session: AsyncSession, deliveries: Sequence[WebhookDelivery]
    ) -> dict[uuid.UUID, list[WebhookAttempt]]:
        """Return the last ``SHOWN_ATTEMPTS`` attempts of each delivery, oldest
        first."""
        return await WebhookDeliveryRepository.from_session(session).latest_attempts(
            [delivery.id for delivery in deliveries], limit=SHOWN_ATTEMPTS
        )

    async def list_attempts(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        delivery_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[WebhookAttempt], str | None, bool]:
        await self.get(session, workspace_id, delivery_id)
        return await WebhookDeliveryRepository.from_session(session).list_attempts(
            delivery_id, limit=limit, cursor=cursor
        )

    async def list_for_event(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        event_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[WebhookDelivery], str | None, bool]:
        await event_service.get(session, workspace_id, event_id)
        return await WebhookDeliveryRepository.from_session(session).list_for_event(
            workspace_id, event_id, limit=limit, cursor=cursor
        )

    async def event_types(
        self, session: AsyncSession, deliveries: Sequence[WebhookDelivery]
    ) -> dict[uuid.UUID, str]:
        return await WebhookDeliveryRepository.from_session(session).event_types(
            [delivery.event_id for delivery in deliveries]
        )

    async def list_for_endpoint(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        event_id: uuid.UUID | None = None,
    ) -> tuple[Sequence[WebhookDelivery], str | None, bool]:
        await webhook_endpoint_service.get(session, workspace_id, endpoint_id)
        return await WebhookDeliveryRepository.from_session(session).list_for_endpoint(
            endpoint_id, limit=limit, cursor=cursor, status=status, event_id=event_id
        )

    async def retry(
        self,
        session: AsyncSession,
        principal: Principal,
        delivery_id: uuid.UUID,
        *,
        max_attempts: int,
    ) -> WebhookDelivery:
        """Send a delivery again now, with the same webhook-id and body.

        A finished delivery gets one more attempt. So does a pending one with no
        attempt left, whose worker stopped during its last attempt. Any other pending
        delivery keeps its remaining attempts and is moved to the front of the
        schedule. ``max_attempts`` is the limit of a delivery without its own.
        """
        delivery = await self.get(
            session, principal.workspace_id, delivery_id, for_update=True
        )
        endpoint = await webhook_endpoint_service.get(
            session, principal.workspace_id, delivery.endpoint_id
        )
        now = utcnow()
        if not endpoint.enabled:
            raise WebhookEndpointDisabled(
                f"The endpoint {ids.encode('webhook_endpoint', endpoint.id)} is "
                "disabled. Enable it with PATCH, then retry the delivery.",
                endpoint_id=ids.encode("webhook_endpoint", endpoint.id),
            )
        if delivery.claimed_until is not None and delivery.claimed_until > now:
            raise WebhookDeliveryInProgress(
                "A worker has taken this delivery and is sending it or about to. "
                "Fetch it again in a few seconds to see the result.",
            )

        previous_status = delivery.status
        attempts_left = (delivery.attempt_limit or max_attempts) - delivery.attempts
        if delivery.status != "pending" or attempts_left <= 0:
            delivery.attempt_limit = delivery.attempts + 1
        delivery.status = "pending"
        delivery.next_attempt_at = now
        delivery.completed_at = None
        await session.flush()
        await session.refresh(delivery)

        defer_job(
            session,
            DELIVER_JOB,
            str(delivery.id),
            job_id=f"deliver:{delivery.id}:retry:{ids.new_uuid()}",
        )
        log.info(
            "webhook_delivery.retry_requested",
            delivery_id=str(delivery.id),
            endpoint_id=str(delivery.endpoint_id),
            previous_status=previous_status,
        )
        return delivery


event_service = EventService()
webhook_endpoint_service = WebhookEndpointService()
webhook_delivery_service = WebhookDeliveryService()
