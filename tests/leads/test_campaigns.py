from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event
from tests.conftest import make_workspace_key
from tests.leads.factories import create_campaign


class TestCreateCampaign:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/campaigns",
            json={
                "name": "Spring launch",
                "medium": "email",
                "utm_campaign": "spring26",
                "starts_on": "2026-03-01",
                "ends_on": "2026-04-30",
                "budget_amount": 500000,
                "budget_currency": "EUR",
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        campaign = response.json()
        assert campaign["id"].startswith("cmp_")
        assert campaign["status"] == "active"
        assert campaign["budget_amount"] == 500000
        assert campaign["budget_currency"] == "EUR"
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"/v1/campaigns/{campaign['id']}"
        events = (await session.scalars(select(Event.type))).all()
        assert events == ["campaign.created"]

    async def test_duplicate_utm_campaign(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_campaign(client, auth, utm_campaign="spring26")

        response = await client.post(
            "/v1/campaigns",
            json={"name": "Again", "utm_campaign": "spring26"},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "duplicate_utm_campaign"

    async def test_budget_without_currency(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/campaigns", json={"name": "X", "budget_amount": 100}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "budget_currency"

    async def test_ends_before_start(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/campaigns",
            json={"name": "X", "starts_on": "2026-05-01", "ends_on": "2026-04-01"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "ends_on"

    async def test_float_budget(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/campaigns",
            json={"name": "X", "budget_amount": 10.5, "budget_currency": "USD"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "budget_amount"


class TestListCampaigns:
    async def test_pages_and_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await create_campaign(client, auth, name="A")
        second = await create_campaign(client, auth, name="B", status="archived")
        third = await create_campaign(client, auth, name="C")

        page = await client.get("/v1/campaigns?limit=2", headers=auth)
        rest = await client.get(
            f"/v1/campaigns?limit=2&cursor={page.json()['next_cursor']}", headers=auth
        )
        archived = await client.get("/v1/campaigns?status=archived", headers=auth)

        assert [c["id"] for c in page.json()["data"]] == [third["id"], second["id"]]
        assert page.json()["has_more"] is True
        assert [c["id"] for c in rest.json()["data"]] == [first["id"]]
        assert [c["id"] for c in archived.json()["data"]] == [second["id"]]


class TestGetCampaign:
    async def test_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        campaign = await create_campaign(client, auth)
        _, other_auth = await make_workspace_key(session)

        response = await client.get(
            f"/v1/campaigns/{campaign['id']}", headers=other_auth
        )

        assert response.status_code == 404
        assert response.json()["code"] == "campaign_not_found"

    async def test_malformed_id(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/campaigns/cmp_nope", headers=auth)

        assert response.status_code == 404
        assert "cmp_ followed by 26 characters" in response.json()["detail"]


class TestUpdateCampaign:
    async def test_archive_with_if_match(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        campaign = await create_campaign(client, auth)

        response = await client.patch(
            f"/v1/campaigns/{campaign['id']}",
            json={"status": "archived"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "archived"
        assert response.headers["etag"] == '"2"'
        events = (await session.scalars(select(Event.type).order_by(Event.id))).all()
        assert events == ["campaign.created", "campaign.updated"]

    async def test_stale_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        campaign = await create_campaign(client, auth)

        response = await client.patch(
            f"/v1/campaigns/{campaign['id']}",
            json={"name": "Renamed"},
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412

    async def test_clear_budget(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        campaign = await create_campaign(
            client, auth, budget_amount=100, budget_currency="USD"
        )

        response = await client.patch(
            f"/v1/campaigns/{campaign['id']}",
            json={"budget_amount": None},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert response.json()["budget_amount"] is None
        assert response.json()["budget_currency"] is None

    async def test_null_name(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        campaign = await create_campaign(client, auth)

        response = await client.patch(
            f"/v1/campaigns/{campaign['id']}", json={"name": None}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "name"

    async def test_utm_taken(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_campaign(client, auth, utm_campaign="taken")
        campaign = await create_campaign(client, auth, utm_campaign="free")

        response = await client.patch(
            f"/v1/campaigns/{campaign['id']}",
            json={"utm_campaign": "taken"},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "duplicate_utm_campaign"
