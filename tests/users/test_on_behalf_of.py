"""On-Behalf-Of as a user id or as a free-text actor on lead creates."""

from __future__ import annotations

import httpx

from tests.users.factories import create_user


class TestOnBehalfOf:
    async def test_user_id_owns_lead(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        user = await create_user(client, auth)

        response = await client.post(
            "/v1/leads",
            json={"email": "ada@example.com"},
            headers={**auth, "On-Behalf-Of": user["id"]},
        )

        assert response.status_code == 201, response.text
        assert response.json()["owner_id"] == user["id"]

    async def test_free_text_owns_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "ada@example.com"},
            headers={**auth, "On-Behalf-Of": "Ada at the front desk"},
        )

        assert response.status_code == 201, response.text
        assert response.json()["owner_id"] is None

    async def test_malformed_user_id_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "ada@example.com"},
            headers={**auth, "On-Behalf-Of": "usr_nope"},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "header.On-Behalf-Of"
        listed = await client.get("/v1/leads", headers=auth)
        assert listed.json()["data"] == []
