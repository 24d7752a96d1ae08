"""Assignment rules, strategies, capacity, the audit of owner changes, and races."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Event, LeadAssignment, Workspace
from tests.leads.test_router import create_lead
from tests.users.factories import create_team, create_user


async def create_rule(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "Route", **fields}
    response = await client.post("/v1/assignment-rules", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def owners_of(
    client: httpx.AsyncClient, auth: dict[str, str], count: int, **fields: Any
) -> list[str | None]:
    owners = []
    for number in range(count):
        lead = await create_lead(
            client, auth, email=f"lead{number}@x.example", **fields
        )
        owner = lead["owner_id"]
        assert owner is None or isinstance(owner, str)
        owners.append(owner)
    return owners


class TestRoundRobin:
    async def test_takes_turns(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        reps = [await create_user(client, auth) for _ in range(3)]
        team = await create_team(client, auth, [{"user_id": r["id"]} for r in reps])
        await create_rule(client, auth, strategy="round_robin", team_id=team["id"])

        owners = await owners_of(client, auth, 6)

        ids = [rep["id"] for rep in reps]
        assert owners == ids + ids

    async def test_skips_inactive(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        reps = [await create_user(client, auth) for _ in range(3)]
        team = await create_team(client, auth, [{"user_id": r["id"]} for r in reps])
        await create_rule(client, auth, strategy="round_robin", team_id=team["id"])
        deactivated = await client.patch(
            f"/v1/users/{reps[1]['id']}", json={"active": False}, headers=auth
        )
        assert deactivated.status_code == 200

        owners = await owners_of(client, auth, 4)

        assert owners == [reps[0]["id"], reps[2]["id"], reps[0]["id"], reps[2]["id"]]

    async def test_capacity_skips_full(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first, second = [await create_user(client, auth) for _ in range(2)]
        team = await create_team(
            client,
            auth,
            [{"user_id": first["id"], "capacity": 1}, {"user_id": second["id"]}],
        )
        await create_rule(client, auth, strategy="round_robin", team_id=team["id"])

        owners = await owners_of(client, auth, 4)

        assert owners == [first["id"], second["id"], second["id"], second["id"]]

    async def test_all_full_unassigned(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rep = await create_user(client, auth)
        team = await create_team(client, auth, [{"user_id": rep["id"], "capacity": 1}])
        await create_rule(client, auth, strategy="round_robin", team_id=team["id"])

        owners = await owners_of(client, auth, 2)

        assert owners == [rep["id"], None]


class TestWeighted:
    async def test_follows_weights(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        heavy, light = [await create_user(client, auth) for _ in range(2)]
        team = await create_team(
            client,
            auth,
            [
                {"user_id": heavy["id"], "weight": 3},
                {"user_id": light["id"], "weight": 1},
            ],
        )
        await create_rule(client, auth, strategy="weighted", team_id=team["id"])

        owners = await owners_of(client, auth, 8)

        # Smooth weighted round robin interleaves: a a b a, then again.
        a, b = heavy["id"], light["id"]
        assert owners == [a, a, b, a, a, a, b, a]


class TestRules:
    async def test_first_match_wins(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        partner_rep, default_rep = [await create_user(client, auth) for _ in range(2)]
        await create_rule(
            client, auth, position=5, strategy="fixed", user_id=default_rep["id"]
        )
        await create_rule(
            client,
            auth,
            position=1,
            strategy="fixed",
            user_id=partner_rep["id"],
            criteria=[{"field": "source", "operator": "equals", "value": "partner"}],
        )

        partner = await create_lead(client, auth, email="p@x.example", source="partner")
        other = await create_lead(client, auth, email="o@x.example", source="web_form")

        assert partner["owner_id"] == partner_rep["id"]
        assert other["owner_id"] == default_rep["id"]

    async def test_no_match_unassigned(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rep = await create_user(client, auth)
        await create_rule(
            client,
            auth,
            strategy="fixed",
            user_id=rep["id"],
            criteria=[
                {"field": "attributes.industry", "operator": "in", "value": ["Banking"]}
            ],
        )

        lead = await create_lead(client, auth, attributes={"industry": "retail"})

        assert lead["owner_id"] is None

    async def test_criteria_kinds(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rep = await create_user(client, auth)
        await create_rule(
            client,
            auth,
            strategy="fixed",
            user_id=rep["id"],
            criteria=[
                {"field": "country", "operator": "in", "value": ["GB", "IE"]},
                {"field": "company_domain", "operator": "equals", "value": "acme.io"},
                {"field": "attributes.vip", "operator": "exists", "value": False},
                {"field": "campaign_id", "operator": "equals", "value": "spring"},
            ],
        )

        matched = await create_lead(
            client,
            auth,
            email="a@ACME.io",
            phone="+442079460000",
            attributes={"campaign_id": "spring"},
        )
        vip = await create_lead(
            client,
            auth,
            email="b@acme.io",
            phone="+442079460000",
            attributes={"campaign_id": "spring", "vip": True},
        )
        elsewhere = await create_lead(
            client,
            auth,
            email="c@acme.io",
            phone="+12025550143",
            attributes={"campaign_id": "spring"},
        )

        assert matched["owner_id"] == rep["id"]
        assert vip["owner_id"] is None
        assert elsewhere["owner_id"] is None

    async def test_explicit_owner_skips_rules(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        chosen, ruled = [await create_user(client, auth) for _ in range(2)]
        await create_rule(client, auth, strategy="fixed", user_id=ruled["id"])

        lead = await create_lead(client, auth, owner_id=chosen["id"])

        assert lead["owner_id"] == chosen["id"]

    async def test_bad_rules_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rep = await create_user(client, auth)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"strategy": "fixed"}, "user_id"),
            ({"strategy": "round_robin", "user_id": rep["id"]}, "team_id"),
            ({"strategy": "weighted", "team_id": "team_" + "0" * 26}, "team_id"),
            (
                {
                    "strategy": "fixed",
                    "user_id": rep["id"],
                    "criteria": [{"field": "color", "operator": "equals", "value": 1}],
                },
                "criteria.0.field",
            ),
            (
                {
                    "strategy": "fixed",
                    "user_id": rep["id"],
                    "criteria": [{"field": "source", "operator": "in", "value": []}],
                },
                "criteria.0",
            ),
        ]
        for body, field in cases:
            response = await client.post(
                "/v1/assignment-rules", json={"name": "Bad", **body}, headers=auth
            )

            assert response.status_code == 422, body
            assert response.json()["errors"][0]["field"] == field, body

    async def test_list_in_run_order(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rep = await create_user(client, auth)
        late = await create_rule(
            client, auth, position=9, strategy="fixed", user_id=rep["id"]
        )
        early = await create_rule(
            client, auth, position=2, strategy="fixed", user_id=rep["id"]
        )

        response = await client.get("/v1/assignment-rules", headers=auth)

        assert [rule["id"] for rule in response.json()["data"]] == [
            early["id"],
            late["id"],
        ]


class TestOwnerValidation:
    async def test_unknown_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "a@x.example", "owner_id": "usr_" + "0" * 26},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "owner_id"
        assert response.json()["errors"][0]["code"] == "user_not_found"

    async def test_inactive_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rep = await create_user(client, auth, active=False)

        response = await client.post(
            "/v1/leads",
            json={"email": "a@x.example", "owner_id": rep["id"]},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "inactive"

    async def test_free_text_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "a@x.example", "owner_id": "rep_3"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "owner_id"


class TestAudit:
    async def test_manual_assign(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        first, second = [await create_user(client, auth) for _ in range(2)]
        lead = await create_lead(client, auth, owner_id=first["id"])

        response = await client.post(
            f"/v1/leads/{lead['id']}/assign",
            json={"owner_id": second["id"]},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert response.json()["owner_id"] == second["id"]
        history = await client.get(f"/v1/leads/{lead['id']}/assignments", headers=auth)
        rows = history.json()["data"]
        assert [(r["from_user_id"], r["to_user_id"]) for r in rows] == [
            (first["id"], second["id"]),
            (None, first["id"]),
        ]
        assert rows[0]["method"] == "manual"
        event = await session.scalar(
            select(Event).where(Event.type == "lead.assigned").order_by(Event.id.desc())
        )
        assert event is not None
        assert event.data["assignment"]["previous_owner_id"] == first["id"]
        assert event.data["assignment"]["owner_id"] == second["id"]

    async def test_patch_owner_audited(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        rep = await create_user(client, auth)
        lead = await create_lead(client, auth)

        response = await client.patch(
            f"/v1/leads/{lead['id']}", json={"owner_id": rep["id"]}, headers=auth
        )

        assert response.status_code == 200, response.text
        rows = (
            await client.get(f"/v1/leads/{lead['id']}/assignments", headers=auth)
        ).json()["data"]
        assert len(rows) == 1
        assert rows[0]["to_user_id"] == rep["id"]
        assert rows[0]["from_user_id"] is None
        types = (await session.scalars(select(Event.type).order_by(Event.id))).all()
        assert types[-2:] == ["lead.updated", "lead.assigned"]

    async def test_auto_runs_rules(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        rep = await create_user(client, auth)
        rule = await create_rule(client, auth, strategy="fixed", user_id=rep["id"])

        response = await client.post(
            f"/v1/leads/{lead['id']}/assign", json={"rule": "auto"}, headers=auth
        )

        assert response.json()["owner_id"] == rep["id"]
        rows = (
            await client.get(f"/v1/leads/{lead['id']}/assignments", headers=auth)
        ).json()["data"]
        assert rows[0]["rule_id"] == rule["id"]
        assert rows[0]["method"] == "rule"

    async def test_assign_needs_one_target(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)

        response = await client.post(
            f"/v1/leads/{lead['id']}/assign", json={}, headers=auth
        )

        assert response.status_code == 422

    async def test_same_owner_no_row(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        rep = await create_user(client, auth)
        lead = await create_lead(client, auth, owner_id=rep["id"])

        await client.post(
            f"/v1/leads/{lead['id']}/assign", json={"owner_id": rep["id"]}, headers=auth
        )

        rows = await session.scalar(select(func.count()).select_from(LeadAssignment))
        assert rows == 1


class TestConcurrentAssignment:
    async def test_even_split(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        reps = [await create_user(client, auth) for _ in range(3)]
        team = await create_team(client, auth, [{"user_id": r["id"]} for r in reps])
        await create_rule(client, auth, strategy="round_robin", team_id=team["id"])

        responses = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.post(
                        "/v1/leads", json={"email": f"r{n}@x.example"}, headers=auth
                    )
                    for n in range(30)
                )
            ),
            timeout=60,
        )

        assert [r.status_code for r in responses] == [201] * 30
        split = Counter(r.json()["owner_id"] for r in responses)
        assert split == {rep["id"]: 10 for rep in reps}
        async with committing_sessionmaker() as session:
            audited = await session.scalar(
                select(func.count())
                .select_from(LeadAssignment)
                .where(LeadAssignment.workspace_id == committed_workspace.id)
            )
        assert audited == 30

    async def test_capacity_holds(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
    ) -> None:
        client, auth = committed_client, committed_auth
        reps = [await create_user(client, auth) for _ in range(3)]
        team = await create_team(
            client, auth, [{"user_id": r["id"], "capacity": 2} for r in reps]
        )
        await create_rule(client, auth, strategy="weighted", team_id=team["id"])

        responses = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.post(
                        "/v1/leads", json={"email": f"c{n}@x.example"}, headers=auth
                    )
                    for n in range(10)
                )
            ),
            timeout=60,
        )

        assert [r.status_code for r in responses] == [201] * 10
        split = Counter(r.json()["owner_id"] for r in responses)
        assert split == {**{rep["id"]: 2 for rep in reps}, None: 4}


class TestOwnerFilter:
    async def test_lists_by_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rep = await create_user(client, auth)
        owned = await create_lead(client, auth, email="o@x.example", owner_id=rep["id"])
        await create_lead(client, auth, email="n@x.example")

        response = await client.get(
            "/v1/leads", params={"owner_id": rep["id"]}, headers=auth
        )
        invalid = await client.get(
            "/v1/leads", params={"owner_id": "rep_3"}, headers=auth
        )

        assert [lead["id"] for lead in response.json()["data"]] == [owned["id"]]
        assert invalid.status_code == 422
