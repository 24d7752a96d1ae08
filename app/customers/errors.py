from __future__ import annotations

from app.core.errors import Conflict, NotFound


class CustomerNotFound(NotFound):
    """No customer with that id in the caller's workspace."""

    code = "customer_not_found"


class ContactNotFound(NotFound):
    """No contact with that id in the caller's workspace."""

    code = "contact_not_found"


class DuplicateCustomer(Conflict):
    """A customer with the same normalized company domain exists in the workspace."""

    code = "duplicate_customer"
    title = "Duplicate customer"


class DuplicateContact(Conflict):
    """The customer already has a contact with the same normalized email."""

    code = "duplicate_contact"
    title = "Duplicate contact"


class ContactInUse(Conflict):
    """Activities, opportunities or converted leads still name the contact."""

    code = "contact_in_use"
    title = "Contact in use"
