"""Typed factories for billing tests: customers as rows, invoices through the API."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import encode, new_uuid
from app.models import Customer

STRIPE_SECRET = "whsec_test_secret"

LINE = {"description": "Consulting", "quantity": "2", "unit_amount": 5000}


async def create_customer(
    session: AsyncSession, workspace_id: uuid.UUID, **fields: Any
) -> Customer:
    values: dict[str, Any] = {
        "name": "Globex",
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "payment_terms_days": 14,
        **fields,
    }
    customer = Customer(id=new_uuid(), workspace_id=workspace_id, **values)
    session.add(customer)
    await session.commit()
    return customer


async def create_invoice(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer: Customer,
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": encode("customer", customer.id),
        "lines": [LINE],
        **fields,
    }
    response = await client.post("/v1/invoices", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def create_open_invoice(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer: Customer,
    **fields: Any,
) -> dict[str, Any]:
    draft = await create_invoice(client, auth, customer, **fields)
    response = await client.post(f"/v1/invoices/{draft['id']}/finalize", headers=auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def stripe_body(
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
) -> bytes:
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created if created is not None else int(time.time()),
        "type": event_type,
        "livemode": False,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


def payment_intent(
    invoice_id: str | None,
    amount: int,
    currency: str = "eur",
    *,
    intent_id: str = "pi_3Test0001",
    status: str = "succeeded",
) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency,
        "status": status,
        "payment_method_types": ["card"],
        "metadata": {"invoice_id": invoice_id} if invoice_id else {},
    }


def sign(
    body: bytes, *, secret: str = STRIPE_SECRET, timestamp: int | None = None
) -> str:
    """Build a Stripe-Signature header with the stripe library's own signing helper."""
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp
    )
    return str(header)


def signature_header(body: bytes, *, secret: str, timestamp: int) -> str:
    """Build ``t=<ts>,v1=<sig>`` by hand from the library's HMAC helper."""
    signed = f"{timestamp}.{body.decode()}"
    digest = stripe.WebhookSignature._compute_signature(signed, secret)
    return f"t={timestamp},v1={digest}"
