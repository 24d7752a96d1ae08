"""Dunning policies by API: checks, the workspace default, and which one applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Workspace
from tests.billing.debt_helpers import event_types
from tests.billing.factories import create_customer, create_open_invoice

STEP = {"offset_days": 7, "subject": "{{ invoice_number }}", "body": "Please pay."}


async def create_policy(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "Standard", "steps": [STEP], **fields}
    response = await client.post("/v1/dunning-policies", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


@pytest.fixture
async def invoice(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
) -> dict[str, Any]:
    customer = await create_customer(session, workspace.id)
    return await create_open_invoice(client, auth, customer)


class TestCreatePolicy:
    async def test_sorts_steps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        steps = [
            {**STEP, "offset_days": 14},
            {**STEP, "offset_days": -3},
            {**STEP, "offset_days": 0},
        ]

        policy = await create_policy(client, auth, steps=steps)

        assert policy["id"].startswith("dpol_")
        assert [step["offset_days"] for step in policy["steps"]] == [-3, 0, 14]
        assert policy["send_hour"] == 9

    async def test_duplicate_offsets(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/dunning-policies",
            json={"name": "Twice", "steps": [STEP, STEP]},
            headers=auth,
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"][0]["field"] == "steps.1.offset_days"
        assert problem["errors"][0]["code"] == "duplicate_offset"
        assert "steps.0" in problem["errors"][0]["message"]
        assert "own offset_days" in problem["detail"]

    async def test_unknown_merge_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/dunning-policies",
            json={
                "name": "Typo",
                "steps": [{**STEP, "subject": "{{ invoice_numbr }}"}],
            },
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "steps.0.subject"

    async def test_unknown_pipeline(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/dunning-policies",
            json={
                "name": "Renewals",
                "steps": [STEP],
                "renewal_pipeline_id": "pipe_" + "0" * 26,
            },
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "renewal_pipeline_id"

    async def test_offset_out_of_range(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/dunning-policies",
            json={"name": "Far", "steps": [{**STEP, "offset_days": 400}]},
            headers=auth,
        )

        assert response.status_code == 422


class TestDefaultPolicy:
    async def test_new_default_clears_old(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        first = await create_policy(client, auth, name="First", is_default=True)

        second = await create_policy(client, auth, name="Second", is_default=True)

        reread = await client.get(f"/v1/dunning-policies/{first['id']}", headers=auth)
        assert reread.json()["is_default"] is False
        assert second["is_default"] is True
        assert await event_types(session, first["id"], "dunning_policy") == [
            "dunning_policy.created",
            "dunning_policy.updated",
        ]


class TestUpdatePolicy:
    async def test_patch_and_delete(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        policy = await create_policy(client, auth)

        patched = await client.patch(
            f"/v1/dunning-policies/{policy['id']}",
            json={"send_hour": 14, "mark_uncollectible": True},
            headers={**auth, "If-Match": f'"{policy["version"]}"'},
        )
        deleted = await client.delete(
            f"/v1/dunning-policies/{policy['id']}", headers=auth
        )

        assert patched.status_code == 200, patched.text
        assert patched.json()["send_hour"] == 14
        assert patched.json()["mark_uncollectible"] is True
        assert deleted.status_code == 204
        missing = await client.get(f"/v1/dunning-policies/{policy['id']}", headers=auth)
        assert missing.status_code == 404
        assert await event_types(session, policy["id"], "dunning_policy") == [
            "dunning_policy.created",
            "dunning_policy.updated",
            "dunning_policy.deleted",
        ]

    async def test_null_name(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        policy = await create_policy(client, auth)

        response = await client.patch(
            f"/v1/dunning-policies/{policy['id']}", json={"name": None}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "name"

    async def test_duplicate_offsets(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        policy = await create_policy(client, auth)
        steps = [{**STEP, "offset_days": -3}, STEP, {**STEP, "offset_days": -3}]

        response = await client.patch(
            f"/v1/dunning-policies/{policy['id']}", json={"steps": steps}, headers=auth
        )

        assert response.status_code == 422
        errors = response.json()["errors"]
        assert [error["field"] for error in errors] == ["steps.2.offset_days"]
        assert "steps.0" in errors[0]["message"]
        unchanged = await client.get(
            f"/v1/dunning-policies/{policy['id']}", headers=auth
        )
        assert [step["offset_days"] for step in unchanged.json()["steps"]] == [7]


class TestEffectivePolicy:
    async def test_invoice_over_customer_over_default(
        self, client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
    ) -> None:
        default = await create_policy(client, auth, name="Default", is_default=True)
        for_customer = await create_policy(client, auth, name="Key accounts")
        for_invoice = await create_policy(client, auth, name="This one")
        url = f"/v1/invoices/{invoice['id']}/dunning"

        by_default = (await client.get(url, headers=auth)).json()
        assigned = await client.put(
            f"/v1/customers/{invoice['customer_id']}/dunning-policy",
            json={"dunning_policy_id": for_customer["id"]},
            headers=auth,
        )
        by_customer = (await client.get(url, headers=auth)).json()
        await client.put(
            f"/v1/invoices/{invoice['id']}/dunning-policy",
            json={"dunning_policy_id": for_invoice["id"]},
            headers=auth,
        )
        by_invoice = (await client.get(url, headers=auth)).json()

        assert assigned.status_code == 200, assigned.text
        assert (by_default["policy_id"], by_default["policy_source"]) == (
            default["id"],
            "workspace",
        )
        assert (by_customer["policy_id"], by_customer["policy_source"]) == (
            for_customer["id"],
            "customer",
        )
        assert (by_invoice["policy_id"], by_invoice["policy_source"]) == (
            for_invoice["id"],
            "invoice",
        )
        customer = await client.get(
            f"/v1/customers/{invoice['customer_id']}", headers=auth
        )
        assert customer.json()["dunning_policy_id"] == for_customer["id"]
        shown = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        assert shown.json()["dunning_policy_id"] == for_invoice["id"]

    async def test_unknown_policy(
        self, client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
    ) -> None:
        response = await client.put(
            f"/v1/invoices/{invoice['id']}/dunning-policy",
            json={"dunning_policy_id": "dpol_" + "0" * 26},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "dunning_policy_id"

    async def test_no_policy(
        self, client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
    ) -> None:
        response = await client.get(
            f"/v1/invoices/{invoice['id']}/dunning", headers=auth
        )

        assert response.json()["policy_id"] is None
        assert response.json()["policy_source"] is None


class TestPromiseToPay:
    async def test_past_date(
        self, client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
    ) -> None:
        yesterday = datetime.now(UTC).date() - timedelta(days=2)

        response = await client.post(
            f"/v1/invoices/{invoice['id']}/promises-to-pay",
            json={"promised_date": yesterday.isoformat(), "amount": 100},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "promised_date"

    async def test_more_than_remaining(
        self, client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
    ) -> None:
        soon = datetime.now(UTC).date() + timedelta(days=3)

        response = await client.post(
            f"/v1/invoices/{invoice['id']}/promises-to-pay",
            json={"promised_date": soon.isoformat(), "amount": invoice["total"] + 1},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "exceeds_remaining"

    async def test_second_pending(
        self, client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
    ) -> None:
        soon = datetime.now(UTC).date() + timedelta(days=3)
        body = {"promised_date": soon.isoformat(), "amount": 100}
        url = f"/v1/invoices/{invoice['id']}/promises-to-pay"
        first = await client.post(url, json=body, headers=auth)

        second = await client.post(url, json=body, headers=auth)

        assert first.status_code == 201, first.text
        assert first.json()["id"].startswith("ptp_")
        assert second.status_code == 409
        assert second.json()["code"] == "promise_pending"

    async def test_idempotency_key_replays(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        invoice: dict[str, Any],
    ) -> None:
        soon = datetime.now(UTC).date() + timedelta(days=3)
        body = {"promised_date": soon.isoformat(), "amount": 100}
        url = f"/v1/invoices/{invoice['id']}/promises-to-pay"
        headers = {**auth, "Idempotency-Key": "promise-1"}

        first = await client.post(url, json=body, headers=headers)
        second = await client.post(url, json=body, headers=headers)

        assert first.status_code == 201, first.text
        assert second.status_code == 201, second.text
        assert second.json()["id"] == first.json()["id"]
        state = await client.get(f"/v1/invoices/{invoice['id']}/dunning", headers=auth)
        assert len(state.json()["promises_to_pay"]) == 1
