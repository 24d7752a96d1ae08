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
    """The change would reject values that objects store for the definition's key: a
    new type, a removed choice or a shorter max_length."""

    code = "custom_field_in_use"
    title = "Custom field in use"


class CustomFieldLimitReached(Conflict):
    """The workspace has as many definitions for the object type as it may have."""

    code = "custom_field_limit_reached"
    title = "Custom field limit reached"
