from __future__ import annotations

from app.core.errors import NotFound


class CustomerNotFound(NotFound):
    """No customer with that id in the caller's workspace."""

    code = "customer_not_found"


class ContactNotFound(NotFound):
    """No contact with that id in the caller's workspace."""

    code = "contact_not_found"
