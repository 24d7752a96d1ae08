"""Parsing prefixed ids that arrive in URL paths."""

from __future__ import annotations

import uuid

from app.core import ids
from app.core.errors import NotFound


def parse_path_id(kind: str, value: str, label: str) -> uuid.UUID:
    """Decode ``value`` or raise the kind's ``NotFound``: a malformed id names no
    object, and gets the code that an unknown id of its kind gets."""
    try:
        return ids.decode(kind, value)
    except ids.InvalidId as error:
        raise NotFound.for_kind(kind)(
            f"No {label} with id {value!r} exists in this workspace: {error}. "
            "Copy the id from the object's own response."
        ) from error
