"""Signed unsubscribe tokens, carried in the link of every marketing email.

A token is the URL-safe base64 of a version byte, the workspace, lead and enrollment
UUIDs, and the first 16 bytes of an HMAC-SHA256 over them, keyed with
``Settings.signing_secret``. The MAC input starts with a context label, so a MAC made
for another purpose with the same secret is never a valid unsubscribe token. Tokens
do not expire, because an unsubscribe link must keep working long after the email was
sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass

from app.nurture.errors import InvalidUnsubscribeToken

VERSION = 1
_CONTEXT = b"salescycle.unsubscribe"
_TAG_BYTES = 16
_PAYLOAD_BYTES = 1 + 3 * 16
MAX_TOKEN_LENGTH = 200
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class UnsubscribeToken:
    """The lead an unsubscribe link belongs to, and the enrollment whose email carried it."""

    workspace_id: uuid.UUID
    lead_id: uuid.UUID
    enrollment_id: uuid.UUID


def _mac(secret: str, payload: bytes) -> bytes:
    digest = hmac.new(secret.encode(), _CONTEXT + payload, hashlib.sha256).digest()
    return digest[:_TAG_BYTES]


def sign(secret: str, token: UnsubscribeToken) -> str:
    """Encode and sign ``token`` for use in a URL path."""
    payload = (
        bytes([VERSION])
        + token.workspace_id.bytes
        + token.lead_id.bytes
        + token.enrollment_id.bytes
    )
    raw = payload + _mac(secret, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def verify(secret: str, text: str) -> UnsubscribeToken:
    """Decode ``text`` and check its signature, raising ``InvalidUnsubscribeToken``."""
    if len(text) > MAX_TOKEN_LENGTH or not _ALPHABET.fullmatch(text):
        raise _invalid()
    try:
        raw = base64.b64decode(
            text + "=" * (-len(text) % 4), altchars=b"-_", validate=True
        )
    except (binascii.Error, ValueError) as error:
        raise _invalid() from error
    if len(raw) != _PAYLOAD_BYTES + _TAG_BYTES or raw[0] != VERSION:
        raise _invalid()
    # The last character carries two unused bits. Accept only the one spelling that
    # sign() produces, so an altered character never decodes to the same token.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise _invalid()
    payload, tag = raw[:_PAYLOAD_BYTES], raw[_PAYLOAD_BYTES:]
    if not hmac.compare_digest(tag, _mac(secret, payload)):
        raise _invalid()
    return UnsubscribeToken(
        workspace_id=uuid.UUID(bytes=payload[1:17]),
        lead_id=uuid.UUID(bytes=payload[17:33]),
        enrollment_id=uuid.UUID(bytes=payload[33:49]),
    )


def unsubscribe_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/v1/unsubscribe/{token}"


def _invalid() -> InvalidUnsubscribeToken:
    return InvalidUnsubscribeToken(
        "This unsubscribe link is invalid or was altered. Use the link from the email "
        "unchanged."
    )
