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

from datetime import datetime
from functools import cache
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
# Placeholders for the test event's time in the cached sample, replaced on each use.
_NOW = "\x00now"
_DATE = "\x00today"


def sample_data(object_type: str, now: datetime) -> dict[str, Any] | None:
    """Return sample ``data`` for ``object_type`` at ``now``, or None when the
    object type has no documented schema."""
    sample = _sample(object_type)
    if sample is None:
        return None
    stamped = _stamp(sample, isoformat(now), now.date().isoformat())
    assert isinstance(stamped, dict)
    return stamped


@cache
def _sample(object_type: str) -> dict[str, Any] | None:
    model = DATA_SCHEMAS.get(object_type)
    if model is None:
        return None
    schema = model.model_json_schema(mode="serialization")
    sample = _value(schema, schema.get("$defs", {}), None)
    assert isinstance(sample, dict)
    return sample


def _value(schema: dict[str, Any], defs: dict[str, Any], name: str | None) -> Any:
    """Return a value that ``schema`` accepts, for the field ``name``."""
    if "$ref" in schema:
        return _value(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, name)

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
        return _value(branches[0], defs, name)

    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        # Every property, because an object's serialized data contains them all.
        return {
            field: _value(property_schema, defs, field)
            for field, property_schema in properties.items()
        }
    if kind == "array":
        item = schema.get("items", {})
        return [_value(item, defs, name) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return _text(schema, name)
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def _text(schema: dict[str, Any], name: str | None) -> str:
    form = schema.get("format")
    if form == "date-time":
        return _NOW
    if form == "date":
        return _DATE
    if form == "email":
        return NAMED_SAMPLES["email"]
    if form in ("uri", "url"):
        return NAMED_SAMPLES["url"]
    text = NAMED_SAMPLES.get(name or "", TEXT_SAMPLE)
    return text.ljust(schema.get("minLength", 0), "x")


def _stamp(value: Any, now: str, today: str) -> Any:
    """Copy ``value`` with the time placeholders replaced."""
    if value == _NOW:
        return now
    if value == _DATE:
        return today
    if isinstance(value, dict):
        return {key: _stamp(item, now, today) for key, item in value.items()}
    if isinstance(value, list):
        return [_stamp(item, now, today) for item in value]
    return value
