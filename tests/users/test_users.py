"""Users and teams over HTTP."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import create_api_key
from app.models import Event, Workspace
from tests.conftest import make_workspace_key
from tests.users.factories import create_team, create_user


class TestCreateUser:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        user = await create_user(
            client,
            auth,
            name="Grace Hopper",
            email=" Grace@Navy.Example ",
            role="manager",
            timezone="America/New_York",
        )

        assert user["id"].startswith("usr_")
        assert user["email_normalized"] == "grace@navy.example"
        assert user["role"] == "manager"
        assert user["active"] is True
        event = await session.scalar(select(Event).where(Event.type == "user.created"))
        assert event is not None
        assert event.data["id"] == user["id"]

    async def test_duplicate_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await create_user(client, auth, email="a@sales.example")

        response = await client.post(
            "/v1/users",
            json={"name": "Again", "email": "A@Sales.Example"},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["existing_id"] == first["id"]

    async def test_bad_input(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        cases = [
            ({"name": "X", "email": "not an email"}, "email"),
            ({"name": "", "email": "a@x.example"}, "name"),
            ({"name": "X", "email": "a@x.example", "role": "boss"}, "role"),
            (
                {"name": "X", "email": "a@x.example", "timezone": "Mars/Base"},
                "timezone",
            ),
            ({"name": "X", "email": "a@x.example", "active": "yes"}, "active"),
        ]
        for body, field in cases:
            response = await client.post("/v1/users", json=body, headers=auth)

            assert response.status_code == 422, body
            assert response.json()["errors"][0]["field"] == field, body

    async def test_needs_write_scope(
        self, client: httpx.AsyncClient, session: AsyncSession, workspace: Workspace
    ) -> None:
        key = await create_api_key(
            session, workspace_id=workspace.id, name="r", scopes=["leads:read"]
        )
        await session.commit()
        headers = {"Authorization": f"Bearer {key.secret}"}

        created = await client.post(
            "/v1/users", json={"name": "X", "email": "x@x.example"}, headers=headers
        )
        listed = await client.get("/v1/users", headers=headers)

        assert created.status_code == 403
        assert listed.status_code == 200


class TestUpdateUser:
    async def test_deactivate(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        user = await create_user(client, auth)

        response = await client.patch(
            f"/v1/users/{user['id']}",
            json={"active": False},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert response.json()["active"] is False
        assert response.headers["ETag"] == '"2"'
        types = (await session.scalars(select(Event.type))).all()
        assert "user.updated" in types

    async def test_stale_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        user = await create_user(client, auth)

        response = await client.patch(
            f"/v1/users/{user['id']}",
            json={"name": "New"},
            headers={**auth, "If-Match": '"5"'},
        )

        assert response.status_code == 412

    async def test_email_taken(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        taken = await create_user(client, auth)
        user = await create_user(client, auth)

        response = await client.patch(
            f"/v1/users/{user['id']}", json={"email": taken["email"]}, headers=auth
        )

        assert response.status_code == 409

    async def test_null_name(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        user = await create_user(client, auth)

        response = await client.patch(
            f"/v1/users/{user['id']}", json={"name": None}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "name"


class TestListUsers:
    async def test_active_filter_and_pages(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        active = [await create_user(client, auth) for _ in range(3)]
        inactive = await create_user(client, auth, active=False)

        first = await client.get("/v1/users?active=true&limit=2", headers=auth)
        second = await client.get(
            "/v1/users",
            params={
                "active": "true",
                "limit": 2,
                "cursor": first.json()["next_cursor"],
            },
            headers=auth,
        )
        only_inactive = await client.get("/v1/users?active=false", headers=auth)

        ids = [u["id"] for u in first.json()["data"] + second.json()["data"]]
        assert ids == [u["id"] for u in reversed(active)]
        assert second.json()["has_more"] is False
        assert [u["id"] for u in only_inactive.json()["data"]] == [inactive["id"]]

    async def test_other_workspace_hidden(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        user = await create_user(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/users/{user['id']}", headers=other)

        assert response.status_code == 404


class TestTeams:
    async def test_members_lifecycle(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        first, second = [await create_user(client, auth) for _ in range(2)]
        team = await create_team(client, auth, [{"user_id": first["id"], "weight": 2}])
        url = f"/v1/teams/{team['id']}/members"

        added = await client.post(
            url, json={"user_id": second["id"], "capacity": 5}, headers=auth
        )
        changed = await client.patch(
            f"{url}/{second['id']}", json={"capacity": None}, headers=auth
        )
        removed = await client.delete(f"{url}/{first['id']}", headers=auth)

        assert added.status_code == 201, added.text
        assert [(m["user_id"], m["capacity"]) for m in added.json()["members"]] == [
            (first["id"], None),
            (second["id"], 5),
        ]
        assert changed.json()["members"][1]["capacity"] is None
        assert [m["user_id"] for m in removed.json()["members"]] == [second["id"]]
        assert removed.json()["version"] == 4
        types = (await session.scalars(select(Event.type))).all()
        assert types.count("team.updated") == 3
        assert types.count("team.created") == 1

    async def test_duplicate_member(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        user = await create_user(client, auth)
        team = await create_team(client, auth, [{"user_id": user["id"]}])

        response = await client.post(
            f"/v1/teams/{team['id']}/members",
            json={"user_id": user["id"]},
            headers=auth,
        )

        assert response.status_code == 409

    async def test_bad_members(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        user = await create_user(client, auth)
        inactive = await create_user(client, auth, active=False)
        cases = [
            ([{"user_id": user["id"]}, {"user_id": user["id"]}], "members.1.user_id"),
            ([{"user_id": inactive["id"]}], "members.0.user_id"),
            ([{"user_id": "usr_" + "0" * 26}], "members.0.user_id"),
            ([{"user_id": user["id"], "weight": 0}], "members.0.weight"),
            ([{"user_id": user["id"], "capacity": -1}], "members.0.capacity"),
        ]
        for members, field in cases:
            response = await client.post(
                "/v1/teams", json={"name": "T", "members": members}, headers=auth
            )

            assert response.status_code == 422, members
            assert response.json()["errors"][0]["field"] == field, members

    async def test_rename_and_list(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        team = await create_team(client, auth, [])

        renamed = await client.patch(
            f"/v1/teams/{team['id']}",
            json={"name": "Enterprise"},
            headers={**auth, "If-Match": '"1"'},
        )
        listed = await client.get("/v1/teams", headers=auth)

        assert renamed.json()["name"] == "Enterprise"
        assert [t["name"] for t in listed.json()["data"]] == ["Enterprise"]

    async def test_remove_non_member(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        user = await create_user(client, auth)
        team = await create_team(client, auth, [])

        response = await client.delete(
            f"/v1/teams/{team['id']}/members/{user['id']}", headers=auth
        )

        assert response.status_code == 404
