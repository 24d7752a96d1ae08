"""Identifiers: UUIDv7 in the database, prefixed strings in the API.

The string form is ``<prefix>_<26 characters>``: the 128 bits of the UUID in Crockford's
base32, as TypeID writes them, so ids sort by creation time in both forms.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import uuid_utils

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DECODE = {char: value for value, char in enumerate(_ALPHABET)}
_LENGTH = 26
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_PAIR_SHIFTS = range(120, -1, -10)
_CANONICAL_BODY = re.compile(r"[0-9a-hjkmnp-tv-z]{26}", re.IGNORECASE | re.ASCII)
_TO_BASE32_DIGITS = str.maketrans(
    _ALPHABET + _ALPHABET.upper(), 2 * "0123456789abcdefghijklmnopqrstuv"
)

PREFIXES: dict[str, str] = {
    "workspace": "ws",
    "api_key": "key",
    "lead": "lead",
    "sequence": "seq",
    "sequence_step": "step",
    "enrollment": "enr",
    "enrollment_job": "enjob",
    "customer": "cus",
    "contact": "con",
    "pipeline": "pipe",
    "stage": "stage",
    "opportunity": "opp",
    "stage_transition": "stx",
    "objection": "objn",
    "lost_reason": "lrsn",
    "invoice": "inv",
    "invoice_line": "il",
    "payment": "pay",
    "tax_rate": "txr",
    "invoice_send": "isend",
    "billing_profile": "bprof",
    "dispute": "dp",
    "dunning_policy": "dpol",
    "dunning_reminder": "drem",
    "promise_to_pay": "ptp",
    "credit_note": "cn",
    "credit_note_line": "cnl",
    "customer_credit_transaction": "cct",
    "refund": "re",
    "reconciliation_run": "rcn",
    "event": "evt",
    "webhook_endpoint": "we",
    "webhook_delivery": "wd",
    "webhook_recovery": "wr",
    "provider_event": "pe",
    "campaign": "cmp",
    "partner": "ptr",
    "form": "form",
    "touch": "tch",
    "custom_field": "cf",
    "scoring_rule": "srule",
    "engagement": "eng",
    "user": "usr",
    "team": "team",
    "assignment_rule": "arule",
    "lead_assignment": "lasg",
    "activity": "act",
    "lead_import": "imp",
    "holiday_calendar": "hcal",
    "offer": "ofr",
    "offer_code": "ofc",
    "email_event": "emev",
    "product": "prod",
    "line_item": "li",
    "proposal": "prop",
    "proposal_line": "pl",
}


class InvalidId(ValueError):
    """A string that is not an id of the expected kind."""


def new_uuid() -> uuid.UUID:
    """Generate a UUIDv7, whose leading bits are the creation time in milliseconds."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def uuid_floor(at: datetime) -> uuid.UUID:
    """Return the smallest UUIDv7 that ``new_uuid`` could make at ``at``.

    Every id made at or after ``at`` by a clock that agrees with it is not less. A
    time before 1970 has no UUIDv7, so it gets the floor of 1970, the smallest of all.
    """
    milliseconds = max(0, int(at.timestamp() * 1000))
    return uuid.UUID(int=(milliseconds << 80) | (0x7 << 76) | (0b10 << 62))


def encode(kind: str, value: uuid.UUID) -> str:
    """Render a database UUID as the API id of ``kind``, such as ``lead_01j…``."""
    number = value.int
    # 26 characters of 5 bits are 13 pairs of 10 bits, looked up two at a time.
    pairs = [_PAIRS[(number >> shift) & 1023] for shift in _PAIR_SHIFTS]
    return f"{PREFIXES[kind]}_{''.join(pairs)}"


def decode(kind: str, text: str) -> uuid.UUID:
    """Parse the API id of ``kind`` back into its UUID, raising ``InvalidId``."""
    prefix = PREFIXES[kind]
    head, _, body = text.rpartition("_")
    if head != prefix or len(body) != _LENGTH:
        raise InvalidId(
            f"expected an id of the form {prefix}_ followed by 26 characters"
        )
    if _CANONICAL_BODY.fullmatch(body):
        # Mapped onto the digits of base 32 that int() reads, in C.
        number = int(body.translate(_TO_BASE32_DIGITS), 32)
    else:
        number = _decode_each(body)
    if number >> 128:
        raise InvalidId("the id is out of range")
    return uuid.UUID(int=number)


def _decode_each(body: str) -> int:
    # Any other spelling goes character by character, so that an invalid one is named
    # and the few non-ASCII letters whose lower case is ASCII decode as before.
    number = 0
    for char in body.lower():
        digit = _DECODE.get(char)
        if digit is None:
            raise InvalidId(f"{char!r} is not a base32 character")
        number = (number << 5) | digit
    return number
