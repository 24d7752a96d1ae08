"""Sample ``data`` for a test event about an object type with no real event yet.

The sample follows the schema that the OpenAPI ``webhooks`` section gives the object,
so a receiver that checks payloads against it accepts the test event. Every field is
present, as in a real event. A field takes its documented example where it has one,
null where null is allowed, and otherwise a value of its type. A string with no
example takes a value from ``NAMED_SAMPLES`` by the field's name, because a currency,
a percentage or an address that reads "example" would mislead. Any other string
reads "example".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.core.clock import isoformat
from app.webhooks.docs import DATA_SCHEMAS

# Strings that receivers parse, by field name, for fields without an example.
NAMED_SAMPLES = {
    "currency": "EUR",
    "default_currency": "EUR",
    "email": "ada@example.com",
    "email_normalized": "ada@example.com",
    "method": "bank_transfer",
    "name": "Example",
    "payment_terms": "due_on_receipt",
    "percentage": "19.00",
    "provider": "stripe",
    "step": "+7",
    "tax_rate": "19.00",
    "timezone": "Europe/Berlin",
    "url": "https://example.com/webhooks",
}
TEXT_SAMPLE = "example"


@dataclass(frozen=True)
class _Context:
    """The schema's definitions, and the test event's time as the sample writes it."""

    defs: dict[str, Any]
    now: str
    today: str


def sample_data(object_type: str, now: datetime) -> dict[str, Any] | None:
    """Return sample ``data`` for ``object_type`` at ``now``, or None when the
    object type has no documented schema.

    The schema is built on each call: about 2 ms for the invoice's, measured, which
    a test event, sent one at a time on request, can afford.
    """
    model = DATA_SCHEMAS.get(object_type)
    if model is None:
        return None
    schema = model.model_json_schema(mode="serialization")
    context = _Context(
        defs=schema.get("$defs", {}),
        now=isoformat(now),
        today=now.date().isoformat(),
    )
    sample = _value(schema, context, None)
    assert isinstance(sample, dict)
    return sample


def _value(schema: dict[str, Any], context: _Context, name: str | None) -> Any:
    """Return a value that ``schema`` accepts, for the field ``name``."""
    if "$ref" in schema:
        return _value(context.defs[schema["$ref"].rsplit("/", 1)[-1]], context, name)

    if schema.get("examples"):
        return schema["examples"][0]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]

    branches = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    if branches:
        if any(branch.get("type") == "null" for branch in branches):
            return None
        return _value(branches[0], context, name)

    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        # Every property, because an object's serialized data contains them all.
        return {
            field: _value(property_schema, context, field)
            for field, property_schema in properties.items()
        }
    if kind == "array":
        item = schema.get("items", {})
        return [_value(item, context, name) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return _text(schema, context, name)
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def _text(schema: dict[str, Any], context: _Context, name: str | None) -> str:
    form = schema.get("format")
    if form == "date-time":
        return context.now
    if form == "date":
        return context.today
    if form == "email":
        return NAMED_SAMPLES["email"]
    if form in ("uri", "url"):
        return NAMED_SAMPLES["url"]
    text = NAMED_SAMPLES.get(name or "", TEXT_SAMPLE)
    return text.ljust(schema.get("minLength", 0), "x")
