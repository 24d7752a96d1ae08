"""Status reasons: required for disqualified, optional for junk, kept with the change."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


async def new_lead(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    response = await client.post(
        "/v1/leads", json={"email": "s@acme.com"}, headers=auth
    )
    assert response.status_code == 201, response.text
    lead_id: str = response.json()["id"]
    return lead_id


async def patch(
    client: httpx.AsyncClient, auth: dict[str, str], lead_id: str, **body: Any
) -> httpx.Response:
    return await client.patch(f"/v1/leads/{lead_id}", json=body, headers=auth)


class TestStatusReason:
    async def test_disqualified_requires_reason(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead_id = await new_lead(client, auth)

        response = await patch(client, auth, lead_id, status="disqualified")

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "status_reason"
        assert error["code"] == "status_reason_required"
        fetched = await client.get(f"/v1/leads/{lead_id}", headers=auth)
        assert fetched.json()["status"] == "new"

    async def test_disqualified_with_reason(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead_id = await new_lead(client, auth)

        response = await patch(
            client, auth, lead_id, status="disqualified", status_reason="no budget"
        )

        assert response.status_code == 200, response.text
        lead = response.json()
        assert lead["status"] == "disqualified"
        assert lead["status_reason"] == "no budget"
        assert lead["status_changed_at"] is not None

    @pytest.mark.parametrize("reason", [None, "spam bot"])
    async def test_junk_reason_optional(
        self, client: httpx.AsyncClient, auth: dict[str, str], reason: str | None
    ) -> None:
        lead_id = await new_lead(client, auth)
        body: dict[str, Any] = {"status": "junk"}
        if reason is not None:
            body["status_reason"] = reason

        response = await patch(client, auth, lead_id, **body)

        assert response.status_code == 200, response.text
        assert response.json()["status_reason"] == reason

    async def test_reopen_clears_reason(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead_id = await new_lead(client, auth)
        await patch(client, auth, lead_id, status="disqualified", status_reason="x")

        response = await patch(client, auth, lead_id, status="working")

        assert response.status_code == 200
        assert response.json()["status_reason"] is None

    async def test_reason_without_status(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead_id = await new_lead(client, auth)

        response = await patch(client, auth, lead_id, status_reason="why")

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "status_required"

    async def test_reason_too_long(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead_id = await new_lead(client, auth)

        response = await patch(
            client, auth, lead_id, status="disqualified", status_reason="x" * 501
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "status_reason"

    async def test_merged_not_settable(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead_id = await new_lead(client, auth)

        response = await patch(client, auth, lead_id, status="merged")

        assert response.status_code == 409
        assert "merged" not in response.json()["allowed_transitions"]


class TestStateMachineMeta:
    async def test_lead_machine(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/meta/state-machines")

        lead = next(m for m in response.json()["data"] if m["resource"] == "lead")
        assert lead["reason_required"] == ["disqualified"]
        assert "merged" in lead["transitions"]["new"]
        assert lead["transitions"]["merged"] == []
