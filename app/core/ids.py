"""Identifiers: UUIDv7 in the database, prefixed strings in the API.

The string form is ``<prefix>_<26 characters>``: the 128 bits of the UUID in Crockford's
base32, as TypeID writes them, so ids sort by creation time in both forms.
"""

from __future__ import annotations

import uuid

import uuid_utils

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DECODE = {char: value for value, char in enumerate(_ALPHABET)}
_LENGTH = 26

PREFIXES: dict[str, str] = {
    "workspace": "ws",
    "api_key": "key",
    "lead": "lead",
    "sequence": "seq",
    "sequence_step": "step",
    "enrollment": "enr",
    "customer": "cus",
    "contact": "con",
    "pipeline": "pipe",
    "stage": "stage",
    "opportunity": "opp",
    "invoice": "inv",
    "invoice_line": "il",
    "payment": "pay",
    "event": "evt",
    "webhook_endpoint": "we",
    "webhook_delivery": "wd",
    "provider_event": "pe",
}


class InvalidId(ValueError):
    """A string that is not an id of the expected kind."""


def new_uuid() -> uuid.UUID:
    """Generate a UUIDv7, whose leading bits are the creation time in milliseconds."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def encode(kind: str, value: uuid.UUID) -> str:
    """Render a database UUID as the API id of ``kind``, such as ``lead_01j…``."""
    number = value.int
    chars = []
    for _ in range(_LENGTH):
        chars.append(_ALPHABET[number & 31])
        number >>= 5
    return f"{PREFIXES[kind]}_{''.join(reversed(chars))}"


def decode(kind: str, text: str) -> uuid.UUID:
    """Parse the API id of ``kind`` back into its UUID, raising ``InvalidId``."""
    prefix = PREFIXES[kind]
    head, _, body = text.rpartition("_")
    if head != prefix or len(body) != _LENGTH:
        raise InvalidId(
            f"expected an id of the form {prefix}_ followed by 26 characters"
        )
    number = 0
    for char in body.lower():
        digit = _DECODE.get(char)
        if digit is None:
            raise InvalidId(f"{char!r} is not a base32 character")
        number = (number << 5) | digit
    if number >> 128:
        raise InvalidId("the id is out of range")
    return uuid.UUID(int=number)
