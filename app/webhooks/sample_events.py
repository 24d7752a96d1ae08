"""Test events: a signed request of any event type, sent to one endpoint on request.

A test event is stored like any event, so its delivery has the usual id, attempts and
retries, but it is marked ``test``: it describes no real object (its ``object_id`` is
new), goes only to the endpoint it was sent to, is left out of ``GET /v1/events``, and
its body carries ``"test": true``. Its ``data`` copies the newest real event about an
object of the same type in the workspace, with the id replaced, so a receiver sees a
realistic shape. With no such event, ``data`` is a sample that the object's payload
schema accepts (``app.webhooks.sample_data``), or holds only the id for an object type
whose ``data`` the schema leaves free-form. A copy of a lead's
data has its personal values erased, because erasing the real lead would not reach a
test event, which names another object.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.db import defer_job
from app.core.errors import FieldError, quoted
from app.leads.privacy import without_personal_data
from app.models import Event, WebhookDelivery
from app.webhooks import catalog
from app.webhooks.errors import UnknownEventType, WebhookEndpointDisabled
from app.webhooks.repository import EventRepository, WebhookDeliveryRepository
from app.webhooks.sample_data import sample_data
from app.webhooks.schemas import encode_object_id
from app.webhooks.service import (
    DELIVER_JOB,
    deliver_job_id,
    webhook_delivery_service,
    webhook_endpoint_service,
)

log = structlog.get_logger(__name__)


class SampleEventService:
    async def send(
        self,
        session: AsyncSession,
        principal: Principal,
        endpoint_id: uuid.UUID,
        event_type: str,
    ) -> WebhookDelivery:
        """Store a test event of ``event_type`` and queue its delivery to one endpoint."""
        known = catalog.EVENT_TYPES_BY_NAME.get(event_type)
        if known is None:
            raise UnknownEventType(
                f"{quoted(event_type)} is not an event type. Pick one from GET "
                "/v1/meta/event-types; wildcards are not accepted here.",
                errors=[FieldError("type", "unknown event type", "unknown")],
            )
        # The lock makes a concurrent delete wait until the delivery is inserted. A
        # delete that committed first makes the lookup raise WebhookEndpointNotFound.
        endpoint = await webhook_endpoint_service.get(
            session, principal.workspace_id, endpoint_id, for_key_share=True
        )
        if not endpoint.enabled:
            shown = ids.encode("webhook_endpoint", endpoint.id)
            raise WebhookEndpointDisabled(
                f"The endpoint {shown} is disabled. Enable it with PATCH, then send "
                "the test event.",
                endpoint_id=shown,
            )

        events = EventRepository.from_session(session)
        object_id = ids.new_uuid()
        now = utcnow()
        latest = await events.latest_data(principal.workspace_id, known.object_type)
        if latest is None:
            data = sample_data(known.object_type, now) or {}
        else:
            data = dict(latest)
            if known.object_type == "lead":
                data = without_personal_data(data, object_id)
        data["id"] = encode_object_id(known.object_type, object_id)
        context = structlog.contextvars.get_contextvars()
        event = Event(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            type=known.name,
            object_type=known.object_type,
            object_id=object_id,
            sequence=1,
            data=data,
            request_id=context.get("request_id"),
            actor=principal.actor,
            created_at=now,
            test=True,
        )
        session.add(event)
        await session.flush()
        [delivery_id] = await WebhookDeliveryRepository.from_session(
            session
        ).create_for_event(event, [endpoint.id], due_at=now)

        defer_job(
            session,
            DELIVER_JOB,
            str(delivery_id),
            job_id=deliver_job_id(delivery_id, 1),
        )
        log.info(
            "webhook.test_event_sent",
            endpoint_id=str(endpoint.id),
            event_id=str(event.id),
            event_type=event.type,
            delivery_id=str(delivery_id),
        )
        return await webhook_delivery_service.get(
            session, principal.workspace_id, delivery_id
        )


sample_event_service = SampleEventService()
