"""Normalized identity keys of a lead: email, phone (E.164) and company domain."""

from __future__ import annotations

from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from app.core.errors import FieldError, InvalidInput
from app.customers.normalize import (
    FREE_MAIL_DOMAINS,
    InvalidDomain,
    company_domain,
    normalize_domain,
    strip_www,
)

# The regions phonenumbers has metadata for, such as "DE" and "US".
PHONE_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def normalize_email(email: str) -> str:
    """Trim, IDNA-encode the domain and lower-case the address.

    ``+tags`` and dots of the local part are kept: providers differ on whether they
    are significant, so two such addresses are two leads. A local part longer than
    the 64 octets SMTP allows is refused (``strict``), since no mail could reach it.
    """
    try:
        result = validate_email(email.strip(), check_deliverability=False, strict=True)
    except EmailNotValidError as error:
        raise InvalidInput(
            f"{email!r} is not a valid email address: {error}",
            errors=[FieldError("email", str(error), "invalid_email")],
        ) from error
    # ascii_email is None when the local part is not ASCII (josé@bücher.de), yet the
    # domain always has an ASCII form.
    return f"{result.local_part}@{result.ascii_domain}".lower()


def normalize_phone(phone: str, region: str | None, *, field: str = "phone") -> str:
    """Return ``phone`` in E.164 (``+4930123456``), reading a national number in ``region``.

    A number that starts with ``+`` (or an international prefix of ``region``) needs
    no region. Applied to its own result it returns the same string.
    """
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException as error:
        if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            if region is None:
                raise InvalidInput(
                    f"The phone number {phone!r} has no country code, and no region "
                    "was given to read it in. Send it in E.164 form such as "
                    "'+4930123456', or send phone_region (ISO 3166-1 alpha-2, such "
                    "as 'DE').",
                    errors=[
                        FieldError(
                            field,
                            "a national number needs phone_region or a +country code",
                            "phone_region_required",
                        )
                    ],
                ) from error
        reason = _PARSE_FAULTS.get(error.error_type, "it cannot be read as a number")
        raise _invalid_phone(phone, field, reason) from error
    if not phonenumbers.is_valid_number(number):
        raise _invalid_phone(phone, field, "no such number exists in its region")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Our own wording of phonenumbers' parse errors, because its messages carry a code
# prefix such as "(1)" and end with a full stop.
_PARSE_FAULTS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: (
        "its country code is not a known one"
    ),
    phonenumbers.NumberParseException.NOT_A_NUMBER: "it does not look like a number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: (
        "it is too short after the international prefix"
    ),
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "it is too short",
    phonenumbers.NumberParseException.TOO_LONG: "it is too long",
}


def _invalid_phone(phone: str, field: str, reason: str) -> InvalidInput:
    return InvalidInput(
        f"The phone number {phone!r} is invalid: {reason}. Send a number such as "
        "'+4930123456', or a national number with phone_region.",
        errors=[FieldError(field, f"invalid phone number: {reason}", "invalid_phone")],
    )


_EXPECTED = {
    "company_domain": "a bare domain such as 'example.com'",
    "website": "a URL such as 'https://example.com'",
}


def normalize_company_domain(value: str, *, field: str = "company_domain") -> str:
    """Lower-case and IDNA-encode a bare domain, dropping a leading ``www.``."""
    try:
        domain = normalize_domain(value)
    except InvalidDomain as error:
        raise InvalidInput(
            f"{field} is invalid: {error}. Send {_EXPECTED[field]}.",
            errors=[FieldError(field, str(error), "invalid_domain")],
        ) from error
    return strip_www(domain)


def website_domain(website: str) -> str:
    """Return the normalized host of a website URL such as ``https://www.Acme.com/x``."""
    text = website.strip()
    try:
        host = urlsplit(text if "//" in text else "//" + text).hostname or ""
    except ValueError as error:
        # urlsplit raises on a malformed IPv6 host such as "http://[".
        raise InvalidInput(
            f"website is invalid: {error}. Send a URL such as 'https://example.com'.",
            errors=[FieldError("website", str(error), "invalid_url")],
        ) from error
    return normalize_company_domain(host, field="website")


def email_company_domain(email_normalized: str) -> str | None:
    """Return the company domain of an address, or None for a free-mail provider."""
    domain = company_domain(email_normalized)
    if domain is None:
        return None
    domain = strip_www(domain)
    return None if domain in FREE_MAIL_DOMAINS else domain
