from __future__ import annotations

from app.core.errors import Conflict, NotFound


class CustomFieldNotFound(NotFound):
    """No custom field definition with that id in the caller's workspace."""

    code = "custom_field_not_found"


class DuplicateCustomField(Conflict):
    """The object type already has a definition with that key."""

    code = "duplicate_custom_field"
    title = "Duplicate custom field"


class CustomFieldInUse(Conflict):
    """The definition's type cannot change while objects hold values for its key."""

    code = "custom_field_in_use"
    title = "Custom field in use"
