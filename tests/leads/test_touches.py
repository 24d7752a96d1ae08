from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event, Lead, LeadTouch
from tests.conftest import make_workspace_key
from tests.leads.factories import create_campaign, create_partner


async def post_lead(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> httpx.Response:
    body = {"email": "ada@example.com", **fields}
    return await client.post("/v1/leads", json=body, headers=auth)


class TestFirstTouch:
    async def test_plain_create(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await post_lead(client, auth)

        assert response.status_code == 201, response.text
        lead = response.json()
        assert lead["first_touch_id"].startswith("tch_")
        assert lead["last_touch_id"] == lead["first_touch_id"]
        assert lead["version"] == 1
        assert response.headers["etag"] == '"1"'
        touches = await client.get(f"/v1/leads/{lead['id']}/touches", headers=auth)
        assert [t["channel"] for t in touches.json()["data"]] == ["api"]
        event = await session.scalar(select(Event).where(Event.type == "lead.created"))
        assert event is not None
        assert event.data["first_touch_id"] == lead["first_touch_id"]

    async def test_get_shows_touch_ids(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = (await post_lead(client, auth)).json()

        fetched = await client.get(f"/v1/leads/{created['id']}", headers=auth)

        assert fetched.json()["first_touch_id"] == created["first_touch_id"]
        assert fetched.headers["etag"] == '"1"'

    async def test_campaign_attribution(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        campaign = await create_campaign(client, auth)

        response = await post_lead(
            client,
            auth,
            attribution={
                "campaign_id": campaign["id"],
                "utm_source": "newsletter",
                "landing_page": "https://www.example.com/pricing",
            },
        )

        lead = response.json()
        touches = await client.get(f"/v1/leads/{lead['id']}/touches", headers=auth)
        touch = touches.json()["data"][0]
        assert touch["channel"] == "campaign"
        assert touch["campaign_id"] == campaign["id"]
        assert touch["utm_source"] == "newsletter"
        assert touch["landing_page"] == "https://www.example.com/pricing"
        assert touch["id"] == lead["first_touch_id"]

    async def test_script_landing_page_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await post_lead(
            client, auth, attribution={"landing_page": "javascript:alert(1)"}
        )

        assert response.status_code == 422, response.text
        errors = response.json()["errors"]
        assert [error["field"] for error in errors] == ["attribution.landing_page"]
        assert await session.scalar(select(func.count()).select_from(Lead)) == 0

    async def test_utm_campaign_links_campaign(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        campaign = await create_campaign(client, auth, utm_campaign="spring26")

        lead = (
            await post_lead(client, auth, attribution={"utm_campaign": "spring26"})
        ).json()

        touches = await client.get(f"/v1/leads/{lead['id']}/touches", headers=auth)
        assert touches.json()["data"][0]["campaign_id"] == campaign["id"]

    async def test_referral_code_resolves_partner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        partner = await create_partner(client, auth, referral_code="FRIEND")

        lead = (
            await post_lead(client, auth, attribution={"referral_code": "FRIEND"})
        ).json()

        touches = await client.get(f"/v1/leads/{lead['id']}/touches", headers=auth)
        touch = touches.json()["data"][0]
        assert touch["channel"] == "referral"
        assert touch["partner_id"] == partner["id"]
        assert touch["referral_code"] == "FRIEND"

    async def test_partner_id(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        partner = await create_partner(client, auth)

        lead = (
            await post_lead(client, auth, attribution={"partner_id": partner["id"]})
        ).json()

        touches = await client.get(f"/v1/leads/{lead['id']}/touches", headers=auth)
        assert touches.json()["data"][0]["channel"] == "partner"

    async def test_declared_source_wins(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        campaign = await create_campaign(client, auth)

        lead = (
            await post_lead(
                client,
                auth,
                source="import",
                attribution={"campaign_id": campaign["id"]},
            )
        ).json()

        touches = await client.get(f"/v1/leads/{lead['id']}/touches", headers=auth)
        assert touches.json()["data"][0]["channel"] == "import"


class TestInvalidAttribution:
    async def test_unknown_campaign(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await post_lead(
            client,
            auth,
            attribution={"campaign_id": "cmp_01m90qp9t2exqbceh38k87tvgx"},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attribution.campaign_id"
        assert await session.scalar(select(func.count()).select_from(Lead)) == 0
        assert await session.scalar(select(func.count()).select_from(LeadTouch)) == 0

    async def test_other_workspace_campaign(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        _, other_auth = await make_workspace_key(session)
        campaign = await create_campaign(client, other_auth)

        response = await post_lead(
            client, auth, attribution={"campaign_id": campaign["id"]}
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attribution.campaign_id"

    async def test_unknown_partner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_lead(
            client,
            auth,
            attribution={"partner_id": "ptr_01m90qp9t2exqbceh38k87tvgx"},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attribution.partner_id"

    async def test_unknown_referral_code(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_lead(client, auth, attribution={"referral_code": "NOPE"})

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attribution.referral_code"

    async def test_inactive_partner_code(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_partner(client, auth, referral_code="OLD", active=False)

        response = await post_lead(client, auth, attribution={"referral_code": "OLD"})

        assert response.status_code == 422

    async def test_malformed_campaign_id(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_lead(client, auth, attribution={"campaign_id": "nope"})

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attribution.campaign_id"

    async def test_unknown_attribution_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_lead(client, auth, attribution={"gclid": "x"})

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attribution.gclid"


class TestListTouches:
    async def test_other_workspace_lead(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = (await post_lead(client, auth)).json()
        _, other_auth = await make_workspace_key(session)

        response = await client.get(
            f"/v1/leads/{lead['id']}/touches", headers=other_auth
        )

        assert response.status_code == 404

    async def test_invalid_cursor(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = (await post_lead(client, auth)).json()

        response = await client.get(
            f"/v1/leads/{lead['id']}/touches?cursor=x", headers=auth
        )

        assert response.status_code == 422


class TestListLeadsByAttribution:
    async def test_campaign_and_partner_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        campaign = await create_campaign(client, auth)
        partner = await create_partner(client, auth)
        by_campaign = (
            await post_lead(
                client,
                auth,
                email="c@example.com",
                attribution={"campaign_id": campaign["id"]},
            )
        ).json()
        by_partner = (
            await post_lead(
                client,
                auth,
                email="p@example.com",
                attribution={"partner_id": partner["id"]},
            )
        ).json()
        await post_lead(client, auth, email="plain@example.com")

        campaign_page = await client.get(
            f"/v1/leads?campaign_id={campaign['id']}", headers=auth
        )
        partner_page = await client.get(
            f"/v1/leads?partner_id={partner['id']}", headers=auth
        )
        both = await client.get(
            f"/v1/leads?campaign_id={campaign['id']}&partner_id={partner['id']}",
            headers=auth,
        )

        assert [row["id"] for row in campaign_page.json()["data"]] == [
            by_campaign["id"]
        ]
        assert [row["id"] for row in partner_page.json()["data"]] == [by_partner["id"]]
        assert both.json()["data"] == []

    async def test_malformed_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/leads?campaign_id=nope", headers=auth)

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.campaign_id"
