"""The body of a webhook request, rebuilt from the event row on every attempt.

The event row never changes once written, and the body is serialized with sorted keys,
so every attempt of a delivery sends the same bytes under the same ``webhook-id``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from app.core import ids
from app.core.clock import isoformat
from app.models import Event
from app.webhooks.schemas import encode_object_id


def payload_document(event: Event) -> dict[str, Any]:
    """Return the webhook payload of ``event`` as a JSON-ready dict."""
    document: dict[str, Any] = {
        "id": ids.encode("event", event.id),
        "type": event.type,
        "created_at": isoformat(event.created_at),
        "object_type": event.object_type,
        "object_id": encode_object_id(event.object_type, event.object_id),
        "sequence": event.sequence,
        "request_id": event.request_id,
        "actor": event.actor,
        "data": event.data,
    }
    if event.test:
        document["test"] = True
    return document


def build_payload(event: Event) -> bytes:
    """Serialize the payload of ``event``; the same row always gives the same bytes."""
    document = payload_document(event)
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # orjson rejects integers beyond 64 bits, which JSONB can hold; the standard
        # library writes them, and does so identically on every attempt.
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
