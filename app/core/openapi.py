"""Problem schema and the error responses every operation documents."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_DESCRIPTIONS = {
    400: "Malformed request, such as invalid JSON.",
    401: "Missing, invalid or revoked API key.",
    403: "The API key lacks a required scope.",
    404: "No such object in this workspace.",
    409: "Conflicts with the current state, or the idempotency key is in use.",
    412: "The If-Match version is not the current version.",
    413: "The request body is too large.",
    415: "The request body is not JSON.",
    422: "Invalid input; `errors` lists each field.",
    429: "Rate limited; retry after the Retry-After seconds.",
    503: "A dependency is unavailable, or the request was rolled back by a "
    "concurrent one (`concurrent_conflict`); retry after the Retry-After seconds.",
}


# openapi_extra for operations that need no API key.
PUBLIC: dict[str, Any] = {"security": []}

IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[ -~]+$",
    },
    "description": (
        "Makes the request safe to retry: a repeat with the same key and body for at "
        "least 24 hours (SALESCYCLE_IDEMPOTENCY_TTL_SECONDS) replays the first successful "
        "response with `Idempotent-Replayed: true`. The same key with another body is "
        "422 `idempotency_key_reused`, and a repeat while the first still runs is 409. "
        "A UUID per intended change works well."
    ),
}


class ProblemFieldError(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Dotted path of the field, e.g. `lines.0.quantity`.")
    message: str
    code: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A stable URI naming the kind of error.")
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str = Field(description="A stable snake_case name of the error.")
    errors: list[ProblemFieldError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Document each status as an ``application/problem+json`` response."""
    wanted = {400, 401, 422, 503, *statuses}
    return {
        status: {
            "description": _DESCRIPTIONS[status],
            "model": Problem,
            "content": {"application/problem+json": {}},
        }
        for status in sorted(wanted)
    }


def render_schema(schema: dict[str, Any]) -> str:
    """Serialize an OpenAPI schema the way ``openapi/openapi.json`` is committed."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
