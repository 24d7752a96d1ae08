"""structlog configuration: JSON lines in production, console rendering in dev.

Event names are constants such as ``"invoice.finalized"``; ids travel as fields. The
request id is bound in a context variable by the request middleware and by each job, so
every line of one request or job carries it. Ids are written as the API shows them
(``lead_01j…``), so an id from a response or a webhook finds its log lines.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog

from app.core import ids

# Log fields whose name does not say the kind of their id. Any other field named
# ``<kind>_id``, for a kind with an API prefix, is an id of that kind.
FIELD_KINDS = {
    "delivery_id": "webhook_delivery",
    "endpoint_id": "webhook_endpoint",
    "recovery_id": "webhook_recovery",
    "step_id": "sequence_step",
    "rule_id": "assignment_rule",
    "from_stage_id": "stage",
    "to_stage_id": "stage",
    "merged_into_id": "lead",
}
_UUID_TEXT_LENGTH = 36


def _as_uuid(value: object) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and len(value) == _UUID_TEXT_LENGTH:
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return None


def _kind(field: str, event_dict: MutableMapping[str, Any]) -> str | None:
    if field == "object_id":
        # An event's object: its kind is the object_type beside it.
        object_type = event_dict.get("object_type")
        return object_type if object_type in ids.PREFIXES else None
    if field in FIELD_KINDS:
        return FIELD_KINDS[field]
    kind = field.removesuffix("_id")
    return kind if kind in ids.PREFIXES else None


def api_ids(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Write the database UUIDs of known kinds as their API ids.

    A field keeps its value when its kind is unknown or its value is not a UUID,
    such as a payment provider's own id.
    """
    for field, value in event_dict.items():
        if not field.endswith("_id"):
            continue
        number = _as_uuid(value)
        if number is None:
            continue
        kind = _kind(field, event_dict)
        if kind is not None:
            event_dict[field] = ids.encode(kind, number)
    return event_dict


def configure_logging(log_format: str = "json", level: str = "INFO") -> None:
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        api_ids,
    ]
    renderer: structlog.types.Processor
    if log_format == "console":
        # A plain traceback: the default rich one renders every frame's locals, which
        # takes seconds for a deep stack and blocks the event loop meanwhile. Colours
        # only on a terminal, since ANSI codes in a redirected log break grep.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(),
            exception_formatter=structlog.dev.plain_traceback,
        )
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the standard library (uvicorn, arq, alembic) keep their
    # own handlers; this only sets the shared threshold.
    logging.basicConfig(level=numeric_level, stream=sys.stderr, format="%(message)s")
    # arq logs a line as each job starts and ends, several a second from the sweeps
    # alone, so they show only at DEBUG. Its warnings and errors show at any level.
    arq_level = numeric_level
    if numeric_level > logging.DEBUG:
        arq_level = max(numeric_level, logging.WARNING)
    logging.getLogger("arq").setLevel(arq_level)
