"""Checking attribute values against their custom field definitions.

Values are stored as JSON exactly as given. A number is a JSON number (an integer or a
finite decimal), never a string. Amounts of money belong in integer minor units, as in
the rest of the API. A date is a ``YYYY-MM-DD`` string, a boolean is ``true`` or
``false``, and a choice is one of the definition's strings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

EXPECTED = {
    "text": "a string",
    "number": "a JSON number",
    "date": "a date string YYYY-MM-DD",
    "boolean": "true or false",
    "choice": "one of the choices",
}


@dataclass(frozen=True)
class Definition:
    """The parts of a custom field definition that validation needs."""

    key: str
    type: str
    choices: tuple[str, ...] = ()
    required: bool = False
    max_length: int | None = None


def is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def is_date(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def value_problem(definition: Definition, value: Any) -> str | None:
    """Return why ``value`` does not fit ``definition``, or None when it fits."""
    kind = definition.type
    if kind == "text":
        if not isinstance(value, str):
            return f"expected {EXPECTED[kind]}"
        if definition.max_length is not None and len(value) > definition.max_length:
            return f"must be at most {definition.max_length} characters"
        return None
    if kind == "number":
        return None if is_number(value) else f"expected {EXPECTED[kind]}"
    if kind == "date":
        return None if is_date(value) else f"expected {EXPECTED[kind]}"
    if kind == "boolean":
        return None if isinstance(value, bool) else f"expected {EXPECTED[kind]}"
    if isinstance(value, str) and value in definition.choices:
        return None
    return f"expected one of: {', '.join(definition.choices)}"
