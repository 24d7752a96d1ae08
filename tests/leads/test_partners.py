from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event
from tests.conftest import make_workspace_key
from tests.leads.factories import create_partner


class TestCreatePartner:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/partners",
            json={
                "name": "Reseller GmbH",
                "referral_code": "RESELL-1",
                "email": "partner@example.com",
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        partner = response.json()
        assert partner["id"].startswith("ptr_")
        assert partner["active"] is True
        assert response.headers["etag"] == '"1"'
        events = (await session.scalars(select(Event.type))).all()
        assert events == ["partner.created"]

    async def test_duplicate_code(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_partner(client, auth, referral_code="SAME")

        response = await client.post(
            "/v1/partners",
            json={"name": "Other", "referral_code": "SAME"},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "duplicate_referral_code"

    async def test_same_code_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_partner(client, auth, referral_code="SAME")
        _, other_auth = await make_workspace_key(session)

        response = await client.post(
            "/v1/partners",
            json={"name": "Other", "referral_code": "SAME"},
            headers=other_auth,
        )

        assert response.status_code == 201

    async def test_invalid_code(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/partners",
            json={"name": "X", "referral_code": "has space"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "referral_code"


class TestListPartners:
    async def test_active_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        active = await create_partner(client, auth, referral_code="A")
        inactive = await create_partner(client, auth, referral_code="B", active=False)

        everyone = await client.get("/v1/partners", headers=auth)
        only_active = await client.get("/v1/partners?active=true", headers=auth)

        assert [p["id"] for p in everyone.json()["data"]] == [
            inactive["id"],
            active["id"],
        ]
        assert [p["id"] for p in only_active.json()["data"]] == [active["id"]]


class TestUpdatePartner:
    async def test_deactivate(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        partner = await create_partner(client, auth)

        response = await client.patch(
            f"/v1/partners/{partner['id']}",
            json={"active": False},
            headers={**auth, "If-Match": '"1"'},
        )
        fetched = await client.get(f"/v1/partners/{partner['id']}", headers=auth)

        assert response.status_code == 200, response.text
        assert fetched.json()["active"] is False
        assert fetched.headers["etag"] == '"2"'
        events = (await session.scalars(select(Event.type).order_by(Event.id))).all()
        assert events == ["partner.created", "partner.updated"]

    async def test_stale_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        partner = await create_partner(client, auth)

        response = await client.patch(
            f"/v1/partners/{partner['id']}",
            json={"name": "New"},
            headers={**auth, "If-Match": '"2"'},
        )

        assert response.status_code == 412

    async def test_code_taken(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_partner(client, auth, referral_code="TAKEN")
        partner = await create_partner(client, auth, referral_code="FREE")

        response = await client.patch(
            f"/v1/partners/{partner['id']}",
            json={"referral_code": "TAKEN"},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "duplicate_referral_code"

    async def test_missing(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.patch(
            "/v1/partners/ptr_01m90qp9t2exqbceh38k87tvgx",
            json={"name": "New"},
            headers=auth,
        )

        assert response.status_code == 404
        assert response.json()["code"] == "partner_not_found"
