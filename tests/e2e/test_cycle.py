"""The whole sales cycle over HTTP, against the real ``api`` and ``worker`` processes.

A lead gets a nurture email over real SMTP and converts into a customer and an
opportunity, which is won. An invoice is finalized and a Stripe payment webhook, signed
by the ``stripe`` library, pays it. Every step reaches an HTTP receiver on 127.0.0.1 as
a webhook that the ``standardwebhooks`` library verifies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from aiohttp import web
from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook

from tests.conftest import Servers, sibling_database_url
from tests.live import Tenant, free_port, prepare_database, running

STRIPE_SECRET = "whsec_e2e_stripe_secret"
TIMEOUT = 60.0


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.original_content))
        return "250 Message accepted"


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every webhook request."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=204)


@dataclass(frozen=True)
class Stack:
    api: str
    tenant: Tenant
    inbox: Inbox
    receiver: Receiver
    receiver_url: str


def redis_sibling(url: str, database: int) -> str:
    """Return ``url`` pointing at another Redis database number."""
    if url.startswith("unix://"):
        return url.split("?", 1)[0] + f"?db={database}"
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    target = Receiver()
    app = web.Application()
    app.router.add_post("/hook", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield target, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


@pytest.fixture
def stack(
    servers: Servers,
    smtp: tuple[Inbox, int],
    receiver: tuple[Receiver, str],
    tmp_path: Path,
) -> Iterator[Stack]:
    database_url = sibling_database_url(servers.database_url, "e2e")
    tenant = prepare_database(database_url)
    inbox, smtp_port = smtp
    port = free_port()
    env = {
        "SALESCYCLE_ENV": "test",
        "SALESCYCLE_DATABASE_URL": database_url,
        "SALESCYCLE_REDIS_URL": redis_sibling(servers.redis_url, 14),
        "SALESCYCLE_LOG_LEVEL": "INFO",
        "SALESCYCLE_SMTP_HOST": "127.0.0.1",
        "SALESCYCLE_SMTP_PORT": str(smtp_port),
        "SALESCYCLE_SMTP_STARTTLS": "false",
        "SALESCYCLE_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "SALESCYCLE_WEBHOOK_ALLOW_PRIVATE_HOSTS": '["127.0.0.1"]',
        "SALESCYCLE_WEBHOOK_ALLOW_HTTP": "true",
        "SALESCYCLE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SALESCYCLE_DATA_DIR": str(tmp_path / "data"),
    }
    with (
        running(
            ["app.cli", "api", "--port", str(port)],
            env,
            ready_url=f"http://127.0.0.1:{port}/readyz",
            log_path=tmp_path / "api.log",
        ),
        running(
            ["app.cli", "worker"], env, ready_url=None, log_path=tmp_path / "worker.log"
        ),
    ):
        target, url = receiver
        yield Stack(
            api=f"http://127.0.0.1:{port}",
            tenant=tenant,
            inbox=inbox,
            receiver=target,
            receiver_url=url,
        )


async def eventually(check: Callable[[], Awaitable[Any]], awaited: str) -> Any:
    """Poll ``check`` until it returns a truthy value, for at most TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {TIMEOUT} s waiting for {awaited}")


def stripe_payment(invoice_id: str, amount: int, currency: str) -> bytes:
    event = {
        "id": "evt_e2e_payment_0001",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "type": "payment_intent.succeeded",
        "livemode": False,
        "data": {
            "object": {
                "id": "pi_e2e_0001",
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": currency.lower(),
                "status": "succeeded",
                "metadata": {"invoice_id": invoice_id},
            }
        },
    }
    return json.dumps(event).encode()


class TestSalesCycle:
    async def test_lead_to_paid_invoice(self, stack: Stack) -> None:
        async with httpx.AsyncClient(
            base_url=stack.api, headers=stack.tenant.headers, timeout=10
        ) as api:
            endpoint = await api.post(
                "/v1/webhook-endpoints",
                json={"url": stack.receiver_url, "event_types": ["*"]},
            )
            assert endpoint.status_code == 201, endpoint.text
            secret = endpoint.json()["secret"]

            lead = await api.post(
                "/v1/leads",
                json={
                    "email": "grace@hopper.example",
                    "first_name": "Grace",
                    "last_name": "Hopper",
                    "company": "Hopper Compilers",
                },
            )
            assert lead.status_code == 201, lead.text
            lead_id = lead.json()["id"]

            sequence = await api.post(
                "/v1/sequences",
                json={
                    "name": "Welcome",
                    "steps": [
                        {
                            "delay": {"amount": 0, "unit": "minutes"},
                            "purpose": "newsletter",
                            "subject": "Welcome, {{ first_name }}",
                            "body_text": "Hello {{ first_name }} at {{ company }}.",
                        }
                    ],
                },
            )
            assert sequence.status_code == 201, sequence.text
            enrollment = await api.post(
                f"/v1/sequences/{sequence.json()['id']}/enrollments",
                json={"lead_id": lead_id},
            )
            assert enrollment.status_code == 201, enrollment.text
            enrollment_id = enrollment.json()["id"]

            async def completed() -> bool:
                response = await api.get(f"/v1/enrollments/{enrollment_id}")
                return bool(response.json()["status"] == "completed")

            await eventually(completed, "the enrolment to complete")
            assert len(stack.inbox.messages) == 1
            mail = stack.inbox.messages[0]
            assert mail["To"] == "Grace Hopper <grace@hopper.example>"
            assert mail["Subject"] == "Welcome, Grace"
            assert mail["List-Unsubscribe"].startswith(f"<{stack.api}/v1/unsubscribe/")

            convert_headers = {"Idempotency-Key": "convert-grace"}
            conversion = await api.post(
                f"/v1/leads/{lead_id}/convert",
                json={"opportunity": {"name": "Compiler licences"}},
                headers=convert_headers,
            )
            assert conversion.status_code == 200, conversion.text
            converted = conversion.json()
            replay = await api.post(
                f"/v1/leads/{lead_id}/convert",
                json={"opportunity": {"name": "Compiler licences"}},
                headers=convert_headers,
            )
            assert replay.headers["idempotent-replayed"] == "true"
            assert replay.json() == converted
            again = await api.post(f"/v1/leads/{lead_id}/convert", json={})
            assert again.status_code == 409

            opportunity_id = converted["opportunity_id"]
            opportunity = converted["opportunity"]
            pipeline = (
                await api.get(f"/v1/pipelines/{opportunity['pipeline_id']}")
            ).json()
            won_stage = next(stage for stage in pipeline["stages"] if stage["is_won"])
            won = await api.post(
                f"/v1/opportunities/{opportunity_id}/move",
                json={"stage_id": won_stage["id"]},
            )
            assert won.status_code == 200, won.text
            assert won.json()["status"] == "won"

            invoice = await api.post(
                "/v1/invoices",
                json={
                    "customer_id": converted["customer_id"],
                    "currency": "EUR",
                    "opportunity_id": opportunity_id,
                    "lines": [
                        {
                            "description": "Compiler licence",
                            "quantity": "3",
                            "unit_amount": 1999,
                            "tax_rate": "19",
                        }
                    ],
                },
            )
            assert invoice.status_code == 201, invoice.text
            invoice_id = invoice.json()["id"]
            assert invoice.headers["etag"] == '"1"'
            finalized = await api.post(
                f"/v1/invoices/{invoice_id}/finalize", headers={"If-Match": '"1"'}
            )
            assert finalized.status_code == 200, finalized.text
            opened = finalized.json()
            assert opened["status"] == "open"
            assert opened["number"].startswith("INV-")
            assert opened["number"].endswith("-000001")
            # 3 x 19.99 = 59.97, plus 19 % tax of 11.3943 rounded half-up to 11.39.
            assert opened["subtotal"] == 5997
            assert opened["tax_total"] == 1139
            assert opened["total"] == 7136
            assert opened["amount_remaining"] == 7136

            body = stripe_payment(invoice_id, opened["total"], opened["currency"])
            signature = stripe.WebhookSignature.generate_signature_header(
                body.decode(), STRIPE_SECRET
            )
            stripe_headers = {
                "Stripe-Signature": str(signature),
                "Content-Type": "application/json",
            }
            async with httpx.AsyncClient(base_url=stack.api, timeout=10) as provider:
                first = await provider.post(
                    "/v1/provider-webhooks/stripe", content=body, headers=stripe_headers
                )
                duplicate = await provider.post(
                    "/v1/provider-webhooks/stripe", content=body, headers=stripe_headers
                )
            assert first.status_code == 200, first.text
            assert duplicate.status_code == 200, duplicate.text
            assert duplicate.json()["duplicate"] is True

            async def paid() -> dict[str, Any] | None:
                current: dict[str, Any] = (
                    await api.get(f"/v1/invoices/{invoice_id}")
                ).json()
                return current if current["status"] == "paid" else None

            settled = await eventually(paid, "the invoice to be paid")
            assert settled["amount_paid"] == 7136
            assert settled["amount_remaining"] == 0
            assert settled["payment_status"] == "paid"
            payments = (await api.get("/v1/payments")).json()["data"]
            assert len(payments) == 1
            assert payments[0]["amount"] == 7136

            expected = {
                "lead.created",
                "sequence.created",
                "enrollment.created",
                "enrollment.step_completed",
                "enrollment.completed",
                "lead.converted",
                "customer.created",
                "contact.created",
                "opportunity.created",
                "opportunity.stage_changed",
                "opportunity.won",
                "invoice.created",
                "invoice.finalized",
                "payment.succeeded",
                "invoice.paid",
            }

            async def delivered() -> set[str] | None:
                types = {
                    json.loads(body)["type"] for _, body in stack.receiver.requests
                }
                return types if expected <= types else None

            await eventually(delivered, f"webhooks of {sorted(expected)}")
            verifier = Webhook(secret)
            ids = []
            for headers, raw in stack.receiver.requests:
                lowered = {name.lower(): value for name, value in headers.items()}
                payload = verifier.verify(raw, lowered)
                assert payload["type"] in expected | {"webhook_endpoint.created"}
                ids.append(lowered["webhook-id"])
            assert len(ids) == len(set(ids))

            logged = (await api.get("/v1/events", params={"limit": 200})).json()["data"]
            logged_types = {event["type"] for event in logged}
            assert expected <= logged_types
            paid_events = [event for event in logged if event["type"] == "invoice.paid"]
            assert len(paid_events) == 1
