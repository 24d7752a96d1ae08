from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import create_api_key, revoke_api_key
from app.models import Workspace
from tests.conftest import make_workspace_key


class TestAuthentication:
    async def test_missing_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/leads")

        assert response.status_code == 401
        assert response.json()["code"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"

    async def test_wrong_scheme(self, client: httpx.AsyncClient, api_key: str) -> None:
        response = await client.get(
            "/v1/leads", headers={"Authorization": f"Basic {api_key}"}
        )

        assert response.status_code == 401

    async def test_unknown_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get(
            "/v1/leads", headers={"Authorization": "Bearer sk_not_a_real_key"}
        )

        assert response.status_code == 401
        assert "invalid or revoked" in response.json()["detail"]

    async def test_revoked_key(
        self, client: httpx.AsyncClient, session: AsyncSession, workspace: Workspace
    ) -> None:
        created = await create_api_key(
            session,
            workspace_id=workspace.id,
            name="short-lived",
            scopes=["leads:read"],
        )
        await session.commit()
        headers = {"Authorization": f"Bearer {created.secret}"}
        assert (await client.get("/v1/leads", headers=headers)).status_code == 200

        assert await revoke_api_key(session, created.record.id)
        await session.commit()

        assert (await client.get("/v1/leads", headers=headers)).status_code == 401

    async def test_key_stored_hashed(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        created = await create_api_key(
            session, workspace_id=workspace.id, name="hashed", scopes=["leads:read"]
        )

        assert created.secret.startswith("sk_")
        assert created.secret not in created.record.key_hash
        assert len(created.record.key_hash) == 64


class TestScopes:
    async def test_missing_scope_named(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, headers = await make_workspace_key(session, scopes=("leads:read",))

        response = await client.post(
            "/v1/leads", json={"email": "a@example.com"}, headers=headers
        )

        assert response.status_code == 403
        problem = response.json()
        assert problem["code"] == "forbidden"
        assert problem["missing_scope"] == "leads:write"

    async def test_publishable_key_cannot_read(
        self, client: httpx.AsyncClient, session: AsyncSession, workspace: Workspace
    ) -> None:
        created = await create_api_key(
            session,
            workspace_id=workspace.id,
            name="form",
            scopes=["leads:read"],
            kind="publishable",
        )
        await session.commit()

        response = await client.get(
            "/v1/leads", headers={"Authorization": f"Bearer {created.secret}"}
        )

        assert created.secret.startswith("pk_")
        assert response.status_code == 403

    async def test_bad_on_behalf_of(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get(
            "/v1/leads", headers={**auth, "On-Behalf-Of": "x" * 201}
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "header.On-Behalf-Of"
