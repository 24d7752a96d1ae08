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
from itertools import combinations
from typing import Any

import stripe
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.disputes import dispute_service
from app.billing.errors import (
    InvalidProviderPayload,
    InvalidSignature,
    SignatureExpired,
)
from app.billing.locks import lock_provider_payment
from app.billing.payments import payment_service
from app.billing.providers.amounts import from_stripe_amount
from app.billing.providers.base import Outcome, VerifiedEvent
from app.billing.providers.held import HELD, release_held
from app.billing.refunds import refund_service
from app.billing.repository import InvoiceRepository, PaymentRepository
from app.core import ids, money
from app.core.schemas import check_storable_json
from app.models import Dispute, Payment, ProviderEvent

log = structlog.get_logger(__name__)

PROVIDER = "stripe"
# The maximum number of unrecorded listed refunds a refund event is matched against.
_MAX_LISTED_REFUNDS = 10
SIGNATURE_HEADER = "stripe-signature"
ACTOR = "provider:stripe"
# Stripe ids are far shorter. A longer one is not from Stripe, and with a refund id's
# suffix it would not fit the 255-character columns.
MAX_ID_LENGTH = 200

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
REFUND_EVENT = "charge.refunded"
DISPUTE_OPENED_EVENT = "charge.dispute.created"
DISPUTE_CLOSED_EVENT = "charge.dispute.closed"
# Stripe's closed dispute statuses and what they mean for the seller: warning_closed
# is an inquiry that ended without a chargeback, charge_refunded one the seller
# settled with a refund, per Stripe's dispute object reference.
DISPUTE_OUTCOMES = {
    "won": "won",
    "warning_closed": "won",
    "lost": "lost",
    "charge_refunded": "lost",
}
HANDLED_TYPES = frozenset(
    {
        *_PAYMENT_INTENT_EVENTS,
        *_CHECKOUT_EVENTS,
        "charge.succeeded",
        REFUND_EVENT,
        DISPUTE_OPENED_EVENT,
        DISPUTE_CLOSED_EVENT,
    }
)


class Unusable(Exception):
    """The event cannot be applied, and the message gives the reason for the inbox row."""


class Ignored(Exception):
    """The event needs no change, and the message gives the reason."""


@dataclass(frozen=True)
class _PaymentUpdate:
    provider_payment_id: str
    status: str
    amount: int
    currency: str
    method: str
    invoice_ref: str | None
    workspace_ref: str | None


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
    obj = event.payload["data"]["object"]
    try:
        if event.type == REFUND_EVENT:
            return await _apply_refund(session, event, obj)
        if event.type == DISPUTE_OPENED_EVENT:
            return await _apply_dispute_opened(session, event, obj)
        if event.type == DISPUTE_CLOSED_EVENT:
            return await _apply_dispute_closed(session, event, obj)
        update = _payment_update(event.type, obj)
        return await _apply(session, event, update)
    except Ignored as reason:
        return Outcome("ignored", str(reason))
    except Unusable as reason:
        return Outcome("failed", str(reason))


def minor_amount(obj: dict[str, Any], name: str, currency: str) -> int:
    """Read a Stripe amount field of ``obj`` as ISO 4217 minor units of ``currency``.

    Every amount read from a Stripe object goes through here, so Stripe's amount rules
    and the largest amount billing stores are applied in one place.
    """
    try:
        amount = from_stripe_amount(_amount(obj, name), currency)
    except ValueError as error:
        raise Unusable(str(error)) from error
    if amount > money.MAX_AMOUNT:
        raise Unusable(
            f"data.object.{name} is {amount} {currency} minor units, more than the "
            f"largest amount billing stores ({money.MAX_AMOUNT})"
        )
    return amount


def currency_of(obj: dict[str, Any]) -> str:
    raw_currency = _string(obj, "currency").upper()
    if not money.is_currency(raw_currency):
        raise Unusable(f"currency {raw_currency!r} is not an ISO 4217 code")
    return raw_currency


def _payment_update(event_type: str, obj: dict[str, Any]) -> _PaymentUpdate:
    if event_type in _PAYMENT_INTENT_EVENTS:
        status = _PAYMENT_INTENT_EVENTS[event_type]
        amount_field = "amount_received" if status == "succeeded" else "amount"
        return _build_update(
            obj,
            provider_payment_id=_string(obj, "id"),
            status=status,
            amount_field=amount_field,
            method=_first_method(obj.get("payment_method_types")),
        )
    if event_type == "charge.succeeded":
        if obj.get("captured") is False:
            raise Ignored("the charge is authorized but not captured yet")
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
            amount_field=amount_field,
            method=method if isinstance(method, str) else "card",
        )
    status = _CHECKOUT_EVENTS[event_type]
    if event_type == "checkout.session.completed" and obj.get("payment_status") != (
        "paid"
    ):
        raise Ignored(
            f"the checkout session's payment_status is {obj.get('payment_status')!r}; "
            "an async_payment event will follow"
        )
    intent = obj.get("payment_intent")
    if not isinstance(intent, str):
        raise Ignored("the checkout session has no payment_intent to record")
    return _build_update(
        obj,
        provider_payment_id=intent,
        status=status,
        amount_field="amount_total",
        method=_first_method(obj.get("payment_method_types")),
    )


def _build_update(
    obj: dict[str, Any],
    *,
    provider_payment_id: str,
    status: str,
    amount_field: str,
    method: str,
) -> _PaymentUpdate:
    currency = currency_of(obj)
    if len(provider_payment_id) > MAX_ID_LENGTH:
        raise Unusable(
            f"the payment id is longer than {MAX_ID_LENGTH} characters, so it is not "
            "a Stripe id"
        )
    amount = minor_amount(obj, amount_field, currency)
    if status == "succeeded" and amount == 0:
        raise Ignored("the payment received no money, so there is nothing to record")
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    invoice_ref = metadata.get("invoice_id")
    workspace_ref = metadata.get("workspace_id")
    return _PaymentUpdate(
        provider_payment_id=provider_payment_id,
        status=status,
        amount=amount,
        currency=currency,
        method=method[:32],
        invoice_ref=invoice_ref if isinstance(invoice_ref, str) else None,
        workspace_ref=workspace_ref if isinstance(workspace_ref, str) else None,
    )


async def _apply(
    session: AsyncSession, event: ProviderEvent, update: _PaymentUpdate
) -> Outcome:
    if update.invoice_ref is None:
        existing = await PaymentRepository.from_session(session).get_by_provider(
            PROVIDER, update.provider_payment_id
        )
        if existing is not None:
            raise Ignored(
                f"payment {ids.encode('payment', existing.id)} already records "
                f"{update.provider_payment_id}"
            )
        raise Unusable("metadata.invoice_id is missing, so no invoice can be paid")
    try:
        invoice_id = ids.decode("invoice", update.invoice_ref)
    except ids.InvalidId as error:
        raise Unusable(
            f"metadata.invoice_id {update.invoice_ref!r} is not an invoice id: {error}"
        ) from error
    await lock_provider_payment(session, PROVIDER, update.provider_payment_id)
    invoice = await InvoiceRepository.from_session(session).get_any_workspace(
        invoice_id, for_update=True
    )
    if invoice is None:
        raise Unusable(f"no invoice {update.invoice_ref} exists")
    if update.workspace_ref is not None and update.workspace_ref != ids.encode(
        "workspace", invoice.workspace_id
    ):
        raise Unusable(
            f"metadata.workspace_id {update.workspace_ref!r} is not the workspace of "
            f"invoice {update.invoice_ref}"
        )

    outcome = await payment_service.record_provider_payment(
        session,
        invoice=invoice,
        provider=PROVIDER,
        provider_payment_id=update.provider_payment_id,
        status=update.status,
        amount=update.amount,
        currency=update.currency,
        method=update.method,
        occurred_at=_event_time(event),
        actor=ACTOR,
    )
    if outcome.payment.status == "succeeded":
        await release_held(session, PROVIDER, update.provider_payment_id)
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
        raise Unusable(f"data.object.{name} is missing or not a string")
    if len(value) > MAX_ID_LENGTH:
        raise Unusable(
            f"data.object.{name} is longer than {MAX_ID_LENGTH} characters, more than "
            "any Stripe id or code"
        )
    return value


def _amount(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Unusable(f"data.object.{name} is missing or not a non-negative integer")
    return value


def _first_method(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return "card"


async def _succeeded_payment(
    session: AsyncSession, obj: dict[str, Any], what: str
) -> Payment | Outcome:
    """Lock the payment a charge or dispute names, or return the outcome ``held``."""
    intent = obj.get("payment_intent")
    if not isinstance(intent, str) or not intent:
        raise Unusable(
            f"data.object.payment_intent is missing, so the {what} cannot be linked "
            "to a payment"
        )
    await lock_provider_payment(session, PROVIDER, intent)
    payment = await PaymentRepository.from_session(session).get_by_provider(
        PROVIDER, intent, for_update=True
    )
    if payment is None or payment.status != "succeeded":
        state = "not recorded" if payment is None else payment.status
        return Outcome(
            HELD,
            f"payment {intent} is {state}; the {what} applies once it succeeds",
            workspace_id=payment.workspace_id if payment is not None else None,
        )
    currency = currency_of(obj)
    if currency != payment.currency:
        raise Unusable(
            f"the {what} is in {currency} but payment "
            f"{ids.encode('payment', payment.id)} is in {payment.currency}"
        )
    return payment


async def _apply_refund(
    session: AsyncSession, event: ProviderEvent, obj: dict[str, Any]
) -> Outcome:
    """Record what a ``charge.refunded`` adds to the refunds of its payment.

    ``amount_refunded`` on the charge is the running total, so only its growth over
    what the payment records is new. A late, older event then finds no growth and
    changes nothing. The growth is recorded under the charge's listed refunds that
    are not recorded yet, and the event needs review when it cannot be matched to
    them.
    """
    found = await _succeeded_payment(session, obj, "refund")
    if isinstance(found, Outcome):
        return found
    payment = found
    refunded_total = minor_amount(obj, "amount_refunded", payment.currency)
    new_amount = refunded_total - payment.amount_refunded
    encoded = ids.encode("payment", payment.id)
    if new_amount <= 0:
        raise Ignored(
            f"duplicate: payment {encoded} already records {payment.amount_refunded} "
            f"refunded of the charge's {refunded_total}"
        )
    refundable = payment.amount - payment.amount_refunded - payment.amount_disputed
    if refundable <= 0:
        return Outcome(
            "needs_review",
            f"refund of {new_amount} reported, but payment {encoded} has nothing left "
            "to refund (the rest is disputed); nothing was recorded",
            workspace_id=payment.workspace_id,
        )

    listed = _listed_refunds(obj, payment.currency)
    if not listed:
        # Without the charge's refund list, the running total names the refund.
        increase = [(f"{_string(obj, 'id')}:{refunded_total}", new_amount)]
    else:
        recorded_ids = await refund_service.recorded_provider_refund_ids(
            session, PROVIDER, [refund_id for refund_id, _ in listed]
        )
        unrecorded = [item for item in listed if item[0] not in recorded_ids]
        matched = _match_increase(unrecorded, new_amount)
        if matched is None:
            names = ", ".join(refund_id for refund_id, _ in unrecorded) or "none"
            return Outcome(
                "needs_review",
                f"refund of {new_amount} reported for payment {encoded}, but it "
                "matches none of the charge's listed refunds that are not recorded "
                f"({names}); nothing was recorded",
                workspace_id=payment.workspace_id,
            )
        increase = matched

    recorded = 0
    for refund_id, amount in increase:
        result = await refund_service.record_provider_refund(
            session,
            payment,
            provider_refund_id=refund_id,
            amount=amount,
            refunded_at=_event_time(event),
            actor=ACTOR,
        )
        if result is not None:
            recorded += result[0].amount
    if recorded == 0:
        raise Ignored(f"duplicate: the refund of payment {encoded} is recorded")
    if new_amount > refundable:
        return Outcome(
            "needs_review",
            f"refund of {new_amount} exceeds the {refundable} payment {encoded} had "
            f"left (the rest is disputed); {refundable} was recorded",
            workspace_id=payment.workspace_id,
        )
    return Outcome("processed", workspace_id=payment.workspace_id)


def _listed_refunds(obj: dict[str, Any], currency: str) -> list[tuple[str, int | None]]:
    """List the charge's refunds as (id, amount), oldest first.

    Stripe lists them newest first, when the list is included at all. The amount is
    None where a listed refund does not carry one.
    """
    refunds = obj.get("refunds")
    data = refunds.get("data") if isinstance(refunds, dict) else None
    listed: list[tuple[str, int | None]] = []
    for item in data if isinstance(data, list) else []:
        refund_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(refund_id, str) or not 0 < len(refund_id) <= 255:
            continue
        amount = minor_amount(item, "amount", currency) if "amount" in item else None
        listed.append((refund_id, amount))
    return listed[::-1]


def _match_increase(
    unrecorded: list[tuple[str, int | None]], increase: int
) -> list[tuple[str, int]] | None:
    """Pick the listed refunds not recorded yet that make up a growth of the total.

    A single such refund without an amount takes the whole growth. Otherwise the
    refunds must all carry amounts, and exactly one set of them must add up to the
    growth. Anything else cannot be decided, and None is returned.
    """
    if len(unrecorded) == 1 and unrecorded[0][1] is None:
        return [(unrecorded[0][0], increase)]
    known = [
        (refund_id, amount) for refund_id, amount in unrecorded if amount is not None
    ]
    # Every set is tried, 2**n of them, so more than _MAX_LISTED_REFUNDS go to review.
    if not known or len(known) < len(unrecorded) or len(known) > _MAX_LISTED_REFUNDS:
        return None
    matches = [
        list(chosen)
        for size in range(1, len(known) + 1)
        for chosen in combinations(known, size)
        if sum(amount for _, amount in chosen) == increase
    ]
    return matches[0] if len(matches) == 1 else None


async def _apply_dispute_opened(
    session: AsyncSession, event: ProviderEvent, obj: dict[str, Any]
) -> Outcome:
    found = await _succeeded_payment(session, obj, "dispute")
    if isinstance(found, Outcome):
        return found
    payment = found
    dispute_id = _string(obj, "id")
    if await dispute_service.get_by_provider(session, PROVIDER, dispute_id) is not None:
        raise Ignored(f"duplicate: dispute {dispute_id} is recorded")
    amount = minor_amount(obj, "amount", payment.currency)

    opened = await _open_dispute(session, event, payment, obj, amount)
    if opened.amount < amount:
        return Outcome(
            "needs_review",
            f"dispute {dispute_id} of {amount} exceeds what payment "
            f"{ids.encode('payment', payment.id)} had left; {opened.amount} was held",
            workspace_id=payment.workspace_id,
        )
    return Outcome("processed", workspace_id=payment.workspace_id)


async def _apply_dispute_closed(
    session: AsyncSession, event: ProviderEvent, obj: dict[str, Any]
) -> Outcome:
    status = obj.get("status")
    outcome = DISPUTE_OUTCOMES.get(status) if isinstance(status, str) else None
    if outcome is None:
        raise Unusable(f"data.object.status {status!r} is not a closed dispute status")
    found = await _succeeded_payment(session, obj, "dispute")
    if isinstance(found, Outcome):
        return found
    payment = found
    dispute_id = _string(obj, "id")
    dispute = await dispute_service.get_by_provider(session, PROVIDER, dispute_id)
    if dispute is None:
        # The closing event overtook the opening one: open the dispute, then close it.
        amount = minor_amount(obj, "amount", payment.currency)
        dispute = await _open_dispute(session, event, payment, obj, amount)

    closed = await dispute_service.close(
        session,
        dispute,
        payment,
        outcome=outcome,
        closed_at=_event_time(event),
        actor=ACTOR,
    )
    if closed is None:
        raise Ignored(f"duplicate: dispute {dispute_id} is already {dispute.status}")
    return Outcome("processed", workspace_id=payment.workspace_id)


async def _open_dispute(
    session: AsyncSession,
    event: ProviderEvent,
    payment: Payment,
    obj: dict[str, Any],
    amount: int,
) -> Dispute:
    reason = obj.get("reason")
    created = obj.get("created")
    opened_at = (
        datetime.fromtimestamp(created, UTC)
        if isinstance(created, int)
        and not isinstance(created, bool)
        and 0 <= created <= _MAX_TIMESTAMP
        else _event_time(event)
    )
    opened = await dispute_service.open(
        session,
        payment,
        amount=amount,
        reason=reason if isinstance(reason, str) else None,
        provider=PROVIDER,
        provider_dispute_id=_string(obj, "id"),
        opened_at=opened_at,
        actor=ACTOR,
    )
    if opened is None:
        raise Ignored(f"duplicate: dispute {obj['id']} is recorded")
    return opened[0]


def _event_time(event: ProviderEvent) -> datetime:
    return event.provider_created_at or event.received_at
