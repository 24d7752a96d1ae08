"""Normalized identity keys of a lead."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from app.core.errors import FieldError, InvalidInput


def normalize_email(email: str) -> str:
    """Trim, IDNA-encode the domain and lower-case the address."""
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidInput(
            f"{email!r} is not a valid email address: {error}",
            errors=[FieldError("email", str(error), "invalid_email")],
        ) from error
    return (result.ascii_email or result.normalized).lower()
