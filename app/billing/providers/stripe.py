"""Stripe: verifying its webhooks and turning its events into payments.

The signature is checked by the official ``stripe`` library on the raw body, exactly as
Stripe signed it. The worker processes the stored event later. The invoice is the one
named by ``metadata.invoice_id`` (our ``inv_`` id). The payment is keyed by the
PaymentIntent id, so neither a replayed event nor a second event type about the same
PaymentIntent records the money twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.errors import (
    InvalidProviderPayload,
    InvalidSignature,
    SignatureExpired,
)
from app.billing.payments import payment_service
from app.billing.providers.amounts import from_stripe_amount
from app.billing.providers.base import Outcome, VerifiedEvent
from app.billing.repository import InvoiceRepository, PaymentRepository
from app.core import ids, money
from app.core.schemas import check_storable_json
from app.models import ProviderEvent

log = structlog.get_logger(__name__)

PROVIDER = "stripe"
SIGNATURE_HEADER = "stripe-signature"
ACTOR = "provider:stripe"

# Event type -> the payment status it reports.
_PAYMENT_INTENT_EVENTS = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.processing": "pending",
    "payment_intent.payment_failed": "failed",
}
_CHECKOUT_EVENTS = {
    "checkout.session.completed": "succeeded",
    "checkout.session.async_payment_succeeded": "succeeded",
    "checkout.session.async_payment_failed": "failed",
}
# 9999-12-31T23:59:59Z, the last second a Python datetime can hold.
_MAX_TIMESTAMP = 253_402_300_799
HANDLED_TYPES = frozenset(
    {*_PAYMENT_INTENT_EVENTS, *_CHECKOUT_EVENTS, "charge.succeeded"}
)


class _Unusable(Exception):
    """The event cannot be applied, and the message gives the reason for the inbox row."""


class _Ignored(Exception):
    """The event needs no change, and the message gives the reason."""


@dataclass(frozen=True)
class _PaymentUpdate:
    provider_payment_id: str
    status: str
    amount: int
    currency: str
    method: str
    invoice_ref: str | None


def verify(
    payload: bytes, header: str | None, secret: str, tolerance_seconds: int
) -> VerifiedEvent:
    """Check ``Stripe-Signature`` on the raw body and parse the event.

    Raise ``InvalidSignature`` when the header is missing, malformed or matches no
    signature, ``SignatureExpired`` when it matches but its timestamp is older than
    the tolerance, and ``InvalidProviderPayload`` when the signed body is no event.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid_signature("the body is not UTF-8") from error
    if header is not None and not header.isascii():
        # The library compares signatures with hmac.compare_digest, which raises
        # TypeError on non-ASCII text instead of returning False.
        raise _invalid_signature("the header is not ASCII")
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance_seconds)
    except stripe.SignatureVerificationError as error:
        if header and _matches_ignoring_age(text, header, secret):
            log.warning("stripe.webhook_signature_expired")
            raise SignatureExpired(
                f"The Stripe-Signature timestamp is more than {tolerance_seconds} "
                "seconds old. Stripe retries with a fresh signature; check this "
                "server's clock if every event is rejected.",
                tolerance_seconds=tolerance_seconds,
            ) from error
        raise _invalid_signature(str(error)) from error
    _reject_future_timestamp(header or "", tolerance_seconds)
    return _parse(text)


def _reject_future_timestamp(header: str, tolerance_seconds: int) -> None:
    # The stripe library bounds only the age of a signature. One dated far ahead would
    # stay valid for that long, so the same tolerance applies into the future.
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if (
            name == "t"
            and value.isdigit()
            and int(value) > time.time() + tolerance_seconds
        ):
            raise _invalid_signature("the timestamp is in the future")


def _matches_ignoring_age(text: str, header: str, secret: str) -> bool:
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, None)
    except stripe.SignatureVerificationError:
        return False
    return True


def _invalid_signature(reason: str) -> InvalidSignature:
    log.warning("stripe.webhook_signature_invalid", reason=reason)
    return InvalidSignature(
        "The Stripe-Signature header is missing or does not match the body. Send the "
        "raw body as Stripe signed it, and check that the endpoint's signing secret "
        "is the one configured here.",
    )


def _parse(text: str) -> VerifiedEvent:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise _invalid_payload("the body is not JSON") from error
    try:
        check_storable_json(body)
    except ValueError as error:
        # PostgreSQL's jsonb cannot store the event as it is.
        raise _invalid_payload(str(error)) from error
    if not isinstance(body, dict):
        raise _invalid_payload("the body is not a JSON object")
    event_id = body.get("id")
    event_type = body.get("type")
    created = body.get("created")
    data = body.get("data")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 255:
        raise _invalid_payload("id is missing or not a string of 1 to 255 characters")
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= 100:
        raise _invalid_payload("type is missing or not a string of 1 to 100 characters")
    if (
        isinstance(created, bool)
        or not isinstance(created, int)
        or not 0 <= created <= _MAX_TIMESTAMP
    ):
        raise _invalid_payload("created is missing or not a Unix timestamp")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise _invalid_payload("data.object is missing or not an object")
    return VerifiedEvent(
        event_id=event_id,
        type=event_type,
        created=datetime.fromtimestamp(created, UTC),
        payload=body,
    )


def _invalid_payload(reason: str) -> InvalidProviderPayload:
    log.warning("stripe.webhook_payload_invalid", reason=reason)
    return InvalidProviderPayload(
        f"The signed body is not a Stripe event: {reason}.", reason=reason
    )


async def handle(session: AsyncSession, event: ProviderEvent) -> Outcome:
    """Apply one stored Stripe event and return its outcome; bad data is an outcome too."""
    if event.type not in HANDLED_TYPES:
        return Outcome("ignored", f"event type {event.type} is not handled")
    try:
        update = _payment_update(event.type, event.payload["data"]["object"])
        return await _apply(session, event, update)
    except _Ignored as reason:
        return Outcome("ignored", str(reason))
    except _Unusable as reason:
        return Outcome("failed", str(reason))


def _payment_update(event_type: str, obj: dict[str, Any]) -> _PaymentUpdate:
    if event_type in _PAYMENT_INTENT_EVENTS:
        status = _PAYMENT_INTENT_EVENTS[event_type]
        amount_field = "amount_received" if status == "succeeded" else "amount"
        return _build_update(
            obj,
            provider_payment_id=_string(obj, "id"),
            status=status,
            amount=_amount(obj, amount_field),
            method=_first_method(obj.get("payment_method_types")),
        )
    if event_type == "charge.succeeded":
        if obj.get("captured") is False:
            raise _Ignored("the charge is authorized but not captured yet")
        intent = obj.get("payment_intent")
        captured = obj.get("amount_captured")
        amount_field = "amount_captured" if isinstance(captured, int) else "amount"
        details = obj.get("payment_method_details")
        method = details.get("type") if isinstance(details, dict) else None
        return _build_update(
            obj,
            provider_payment_id=intent
            if isinstance(intent, str)
            else _string(obj, "id"),
            status="succeeded",
            amount=_amount(obj, amount_field),
            method=method if isinstance(method, str) else "card",
        )
    status = _CHECKOUT_EVENTS[event_type]
    if event_type == "checkout.session.completed" and obj.get("payment_status") != (
        "paid"
    ):
        raise _Ignored(
            f"the checkout session's payment_status is {obj.get('payment_status')!r}; "
            "an async_payment event will follow"
        )
    intent = obj.get("payment_intent")
    if not isinstance(intent, str):
        raise _Ignored("the checkout session has no payment_intent to record")
    return _build_update(
        obj,
        provider_payment_id=intent,
        status=status,
        amount=_amount(obj, "amount_total"),
        method=_first_method(obj.get("payment_method_types")),
    )


def _build_update(
    obj: dict[str, Any],
    *,
    provider_payment_id: str,
    status: str,
    amount: int,
    method: str,
) -> _PaymentUpdate:
    raw_currency = _string(obj, "currency").upper()
    if not money.is_currency(raw_currency):
        raise _Unusable(f"currency {raw_currency!r} is not an ISO 4217 code")
    try:
        minor = from_stripe_amount(amount, raw_currency)
    except ValueError as error:
        raise _Unusable(str(error)) from error
    metadata = obj.get("metadata")
    invoice_ref = metadata.get("invoice_id") if isinstance(metadata, dict) else None
    return _PaymentUpdate(
        provider_payment_id=provider_payment_id,
        status=status,
        amount=minor,
        currency=raw_currency,
        method=method[:32],
        invoice_ref=invoice_ref if isinstance(invoice_ref, str) else None,
    )


async def _apply(
    session: AsyncSession, event: ProviderEvent, update: _PaymentUpdate
) -> Outcome:
    if update.invoice_ref is None:
        existing = await PaymentRepository.from_session(session).get_by_provider(
            PROVIDER, update.provider_payment_id
        )
        if existing is not None:
            raise _Ignored(
                f"payment {ids.encode('payment', existing.id)} already records "
                f"{update.provider_payment_id}"
            )
        raise _Unusable("metadata.invoice_id is missing, so no invoice can be paid")
    try:
        invoice_id = ids.decode("invoice", update.invoice_ref)
    except ids.InvalidId as error:
        raise _Unusable(
            f"metadata.invoice_id {update.invoice_ref!r} is not an invoice id: {error}"
        ) from error
    invoice = await InvoiceRepository.from_session(session).get_any_workspace(
        invoice_id, for_update=True
    )
    if invoice is None:
        raise _Unusable(f"no invoice {update.invoice_ref} exists")

    outcome = await payment_service.record_provider_payment(
        session,
        invoice=invoice,
        provider=PROVIDER,
        provider_payment_id=update.provider_payment_id,
        status=update.status,
        amount=update.amount,
        currency=update.currency,
        method=update.method,
        occurred_at=event.provider_created_at or event.received_at,
        actor=ACTOR,
    )
    if outcome.skipped is not None:
        return Outcome(
            "ignored",
            f"{outcome.skipped}: payment {ids.encode('payment', outcome.payment.id)} "
            f"is already {outcome.payment.status}",
            workspace_id=invoice.workspace_id,
        )
    if outcome.problems:
        return Outcome(
            "needs_review",
            "; ".join(outcome.problems),
            workspace_id=invoice.workspace_id,
        )
    return Outcome("processed", workspace_id=invoice.workspace_id)


def _string(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise _Unusable(f"data.object.{name} is missing or not a string")
    return value


def _amount(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Unusable(f"data.object.{name} is missing or not a non-negative integer")
    return value


def _first_method(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return "card"
