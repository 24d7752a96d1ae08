"""Signing secrets and signatures per the Standard Webhooks specification.

A secret is ``whsec_`` followed by the base64 of 32 random bytes; the HMAC key is those
bytes. A request carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` values over
``"{id}.{timestamp}.{body}"``, one per valid secret, so a receiver that has either the
new or the previous secret during a rotation accepts the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """Return the HMAC key of a ``whsec_`` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1,<base64>`` signature of one request under one secret."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    signing_secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> str:
    """Return the ``webhook-signature`` value: one signature per secret."""
    return " ".join(
        sign(secret, message_id, timestamp, body) for secret in signing_secrets
    )


def webhook_headers(
    signing_secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            signing_secrets, message_id, timestamp, body
        ),
    }


def verify(
    signing_secrets: Sequence[str],
    message_id: str,
    timestamp: int,
    header: str,
    body: bytes,
) -> bool:
    """Return whether any ``v1`` signature in the header matches one of the secrets.

    The caller checks the timestamp's age against its own tolerance.
    """
    offered = [value for value in header.split() if value.startswith("v1,")]
    for secret in signing_secrets:
        expected = sign(secret, message_id, timestamp, body).encode()
        for value in offered:
            if hmac.compare_digest(expected, value.encode()):
                return True
    return False
