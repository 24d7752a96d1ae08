from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.ids import new_uuid
from app.models import WebhookDelivery, Workspace
from app.webhooks import catalog
from app.webhooks.docs import DATA_SCHEMAS
from app.webhooks.sample_data import sample_data
from tests.leads.helpers import create_lead
from tests.webhooks.conftest import Receiver
from tests.webhooks.factories import create_endpoint, record_event
from tests.webhooks.test_dispatch import dispatch_sweep
from workers import tasks


def send_test_path(endpoint: dict[str, Any]) -> str:
    return f"/v1/webhook-endpoints/{endpoint['id']}/send-test-event"


class TestSendTestEvent:
    async def test_any_type_signed_to_one_endpoint(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, receiver.url("/target"), event_types=["lead.*"]
        )
        await create_endpoint(client, auth, receiver.url("/bystander"))

        response = await client.post(
            send_test_path(endpoint), json={"type": "invoice.paid"}, headers=auth
        )

        assert response.status_code == 202, response.text
        delivery = response.json()
        assert delivery["status"] == "pending"
        assert delivery["event_type"] == "invoice.paid"
        assert delivery["endpoint_id"] == endpoint["id"]
        assert response.headers["Location"] == (
            f"/v1/webhook-deliveries/{delivery['id']}"
        )
        delivery_id = ids.decode("webhook_delivery", delivery["id"])
        assert await tasks.deliver_webhook(ctx, str(delivery_id)) == "succeeded"
        await dispatch_sweep(ctx)
        [request] = receiver.requests
        assert request.path == "/target"
        assert request.headers["webhook-id"] == delivery["id"]
        payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        assert payload["type"] == "invoice.paid"
        assert payload["object_type"] == "invoice"
        assert payload["test"] is True
        assert payload["sequence"] == 1
        # No invoice event yet: the data is a sample of the invoice schema.
        DATA_SCHEMAS["invoice"].model_validate(payload["data"])
        assert payload["data"]["id"] == payload["object_id"]
        assert payload["data"]["currency"] == "EUR"
        assert payload["data"]["created_at"] == payload["created_at"]
        assert payload["object_id"].startswith("inv_")
        count = await session.scalar(
            select(WebhookDelivery.id).where(
                WebhookDelivery.event_id == ids.decode("event", payload["id"]),
                WebhookDelivery.endpoint_id
                != ids.decode("webhook_endpoint", endpoint["id"]),
            )
        )
        assert count is None

    async def test_left_out_of_the_log(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        response = await client.post(
            send_test_path(endpoint), json={"type": "lead.created"}, headers=auth
        )
        event_id = response.json()["event_id"]

        listed = await client.get("/v1/events?type=lead.*", headers=auth)
        shown = await client.get(f"/v1/events/{event_id}", headers=auth)

        assert listed.json()["data"] == []
        assert shown.status_code == 200
        assert shown.json()["test"] is True

    async def test_data_shaped_like_latest_real_event(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        real_id = new_uuid()
        await record_event(
            session,
            workspace.id,
            "invoice.finalized",
            object_id=real_id,
            data={"id": ids.encode("invoice", real_id), "amount_due": 1999},
        )

        response = await client.post(
            send_test_path(endpoint), json={"type": "invoice.paid"}, headers=auth
        )
        delivery_id = ids.decode("webhook_delivery", response.json()["id"])
        await tasks.deliver_webhook(ctx, str(delivery_id))

        body = json.loads(receiver.requests[-1].body)
        assert body["data"]["amount_due"] == 1999
        assert body["data"]["id"] == body["object_id"]
        assert body["object_id"] != ids.encode("invoice", real_id)

    async def test_lead_copy_without_personal_data(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        lead = await create_lead(
            client,
            auth,
            email="ada@example.com",
            first_name="Ada",
            last_name="Lovelace",
            phone="+442071234567",
            company="Analytical Engines",
        )
        real = await client.get(
            "/v1/events", params={"object_id": lead["id"]}, headers=auth
        )
        [real_event] = real.json()["data"]

        sent = await client.post(
            send_test_path(endpoint), json={"type": "lead.updated"}, headers=auth
        )
        erased = await client.post(f"/v1/leads/{lead['id']}/erase", headers=auth)
        fetched = await client.get(
            f"/v1/events/{sent.json()['event_id']}", headers=auth
        )

        assert sent.status_code == 202, sent.text
        assert erased.status_code == 200, erased.text
        data = fetched.json()["data"]
        assert set(data) == set(real_event["data"])
        assert (
            data["email"]
            == f"erased-{ids.decode('lead', data['id']).hex}@erased.invalid"
        )
        for name in ("first_name", "last_name", "phone", "phone_normalized", "company"):
            assert data[name] is None
        for value in ("ada@example.com", "Ada", "Lovelace", "2071234567", "Analytical"):
            assert value not in fetched.text

    @pytest.mark.parametrize("event_type", ["invoice.*", "*", "invoice.teleported"])
    async def test_unknown_type_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        receiver: Receiver,
        event_type: str,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())

        response = await client.post(
            send_test_path(endpoint), json={"type": event_type}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["code"] == "unknown_event_type"

    async def test_disabled_endpoint_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url(), enabled=False)

        response = await client.post(
            send_test_path(endpoint), json={"type": "lead.created"}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "webhook_endpoint_disabled"


class TestSampleData:
    @pytest.mark.parametrize("object_type", sorted(catalog.OBJECT_TYPES))
    def test_schema_accepts_sample(self, object_type: str) -> None:
        now = datetime(2026, 12, 6, 13, 45, 30, 123000, tzinfo=UTC)

        sample = sample_data(object_type, now)

        assert sample is not None
        # By field name, as the data is serialized, not by validation alias.
        DATA_SCHEMAS[object_type].model_validate(sample, by_name=True)

    def test_times_are_the_events_time(self) -> None:
        now = datetime(2026, 12, 6, 13, 45, 30, 123000, tzinfo=UTC)

        sample = sample_data("invoice", now)

        assert sample is not None
        assert sample["created_at"] == "2026-12-06T13:45:30.123000Z"
        assert sample["updated_at"] == sample["created_at"]

    def test_named_strings_read_as_values(self) -> None:
        sample = sample_data("tax_rate", datetime.now(UTC))

        assert sample is not None
        assert sample["percentage"] == "19.00"
        assert sample["name"] == "Example"

    def test_object_type_without_schema_has_no_sample(self) -> None:
        assert sample_data("widget", datetime.now(UTC)) is None
