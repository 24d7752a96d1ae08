from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.money import MAX_AMOUNT
from app.models import ApiKey, Event, Opportunity, Pipeline, Stage, Workspace
from tests.conftest import make_workspace_key
from tests.customers.factories import create_contact, create_customer
from tests.opportunities.factories import (
    create_lost_reason,
    create_opportunity,
    default_pipeline,
    move,
    stage_history,
    stage_ids,
)
from tests.users.factories import create_user


async def opportunity_events(session: AsyncSession, opportunity_id: str) -> list[str]:
    object_id = ids.decode("opportunity", opportunity_id)
    rows = await session.scalars(
        select(Event.type).where(Event.object_id == object_id).order_by(Event.sequence)
    )
    return list(rows.all())


async def api_key_actor(session: AsyncSession, workspace: Workspace) -> str:
    key_id = await session.scalar(
        select(ApiKey.id).where(ApiKey.workspace_id == workspace.id)
    )
    assert key_id is not None
    return ids.encode("api_key", key_id)


async def add_pipeline(
    session: AsyncSession, workspace_id: Any, name: str = "Renewals"
) -> tuple[Pipeline, Stage]:
    pipeline = Pipeline(workspace_id=workspace_id, name=name)
    session.add(pipeline)
    await session.flush()
    stage = Stage(
        workspace_id=workspace_id,
        pipeline_id=pipeline.id,
        name="Renewal due",
        position=1,
        probability=40,
    )
    session.add(stage)
    await session.commit()
    return pipeline, stage


class TestCreateOpportunity:
    async def test_defaults_to_first_stage(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(client, auth, currency="EUR")

        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": customer["id"], "name": "Engine", "amount": 125000},
            headers=auth,
        )

        assert response.status_code == 201, response.text
        opportunity = response.json()
        pipeline = await default_pipeline(client, auth)
        assert opportunity["id"].startswith("opp_")
        assert opportunity["object"] == "opportunity"
        assert opportunity["pipeline_id"] == pipeline["id"]
        assert opportunity["stage_id"] == pipeline["stages"][0]["id"]
        assert opportunity["status"] == "open"
        assert opportunity["amount"] == 125000
        assert opportunity["currency"] == "EUR"
        assert opportunity["owner_id"] is None
        assert opportunity["lead_id"] is None
        assert opportunity["version"] == 1
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == (
            f"/v1/opportunities/{opportunity['id']}"
        )
        event = await session.scalar(
            select(Event).where(Event.type == "opportunity.created")
        )
        assert event is not None
        assert event.data == opportunity
        history = await stage_history(client, auth, opportunity["id"])
        assert len(history) == 1
        assert history[0]["from_stage_id"] is None
        assert history[0]["to_stage_id"] == opportunity["stage_id"]
        assert history[0]["actor"] == await api_key_actor(session, workspace)

    async def test_explicit_fields(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])
        stages = await stage_ids(client, auth)
        owner = await create_user(client, auth)

        opportunity = await create_opportunity(
            client,
            auth,
            customer["id"],
            contact_id=contact["id"],
            stage_id=stages["Negotiation"],
            amount=0,
            currency="JPY",
            expected_close_date="2027-03-31",
            owner_id=owner["id"],
            probability=60,
            competitors=["Napier", "Pascal"],
        )

        assert opportunity["contact_id"] == contact["id"]
        assert opportunity["stage_id"] == stages["Negotiation"]
        assert opportunity["amount"] == 0
        assert opportunity["currency"] == "JPY"
        assert opportunity["expected_close_date"] == "2027-03-31"
        assert opportunity["owner_id"] == owner["id"]
        assert opportunity["probability"] == 60
        assert opportunity["probability_override"] == 60
        assert opportunity["competitors"] == ["Napier", "Pascal"]

    async def test_owner_from_on_behalf_of(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        owner = await create_user(client, auth)

        opportunity = await create_opportunity(
            client, {**auth, "On-Behalf-Of": owner["id"]}, customer["id"]
        )
        unowned = await create_opportunity(
            client, {**auth, "On-Behalf-Of": "rep_42"}, customer["id"]
        )

        assert opportunity["owner_id"] == owner["id"]
        assert unowned["owner_id"] is None

    async def test_invalid_amounts(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)

        for amount in (-1, MAX_AMOUNT + 1, 19.99, "1999", True):
            response = await client.post(
                "/v1/opportunities",
                json={"customer_id": customer["id"], "name": "X", "amount": amount},
                headers=auth,
            )

            assert response.status_code == 422, amount
            assert response.json()["errors"][0]["field"] == "amount"
        assert await session.scalar(select(func.count()).select_from(Opportunity)) == 0

    async def test_largest_amount(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, amount=MAX_AMOUNT)

        assert opportunity["amount"] == MAX_AMOUNT

    async def test_bad_currency(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": customer["id"], "name": "X", "currency": "EURO"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "currency"

    async def test_unknown_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": customer["id"], "name": "X", "status": "won"},
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "status"
        assert error["code"] == "extra_forbidden"

    async def test_malformed_customer_id(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": "lead_01", "name": "X"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "customer_id"

    async def test_customer_of_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        _, other = await make_workspace_key(session)
        foreign = await create_customer(client, other)

        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": foreign["id"], "name": "X"},
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "customer_id"
        assert error["code"] == "customer_not_found"

    async def test_contact_of_other_customer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth, name="Mine")
        elsewhere = await create_customer(client, auth, name="Elsewhere")
        contact = await create_contact(client, auth, elsewhere["id"])

        response = await client.post(
            "/v1/opportunities",
            json={
                "customer_id": customer["id"],
                "name": "X",
                "contact_id": contact["id"],
            },
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "contact_id"
        assert error["code"] == "contact_customer_mismatch"

    async def test_stage_of_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        _, other = await make_workspace_key(session)
        foreign_stages = await stage_ids(client, other)
        customer = await create_customer(client, auth)

        response = await client.post(
            "/v1/opportunities",
            json={
                "customer_id": customer["id"],
                "name": "X",
                "stage_id": foreign_stages["Qualification"],
            },
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "stage_id"
        assert error["code"] == "stage_not_found"

    async def test_closed_stage_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        stages = await stage_ids(client, auth)

        for name in ("Closed won", "Closed lost"):
            response = await client.post(
                "/v1/opportunities",
                json={
                    "customer_id": customer["id"],
                    "name": "X",
                    "stage_id": stages[name],
                },
                headers=auth,
            )

            assert response.status_code == 422, name
            assert response.json()["errors"][0]["code"] == "stage_not_open"

    async def test_stage_of_other_pipeline(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        pipeline, stage = await add_pipeline(session, workspace.id)

        opportunity = await create_opportunity(
            client, auth, stage_id=ids.encode("stage", stage.id)
        )

        assert opportunity["pipeline_id"] == ids.encode("pipeline", pipeline.id)

    async def test_needs_write_scope(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        _, read_only = await make_workspace_key(session, scopes=("sales:read",))

        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": customer["id"], "name": "X"},
            headers=read_only,
        )

        assert response.status_code == 403


class TestGetOpportunity:
    async def test_found(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        created = await create_opportunity(client, auth)

        response = await client.get(f"/v1/opportunities/{created['id']}", headers=auth)

        assert response.status_code == 200
        assert response.json() == created
        assert response.headers["etag"] == '"1"'

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_opportunity(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/opportunities/{created['id']}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "opportunity_not_found"

    async def test_malformed_id_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/opportunities/opp_!", headers=auth)

        assert response.status_code == 404


class TestListOpportunities:
    async def test_filters(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        stages = await stage_ids(client, auth)
        first_customer = await create_customer(client, auth, name="First")
        second_customer = await create_customer(client, auth, name="Second")
        first_rep = await create_user(client, auth)
        second_rep = await create_user(client, auth)
        early = await create_opportunity(
            client, auth, first_customer["id"], owner_id=first_rep["id"]
        )
        late = await create_opportunity(
            client,
            auth,
            second_customer["id"],
            stage_id=stages["Negotiation"],
            owner_id=second_rep["id"],
        )
        won = await create_opportunity(client, auth, first_customer["id"])
        await move(client, auth, won["id"], stages["Closed won"])
        pipeline, stage = await add_pipeline(session, workspace.id)
        renewal = await create_opportunity(
            client, auth, second_customer["id"], stage_id=ids.encode("stage", stage.id)
        )

        async def listed(**params: str) -> list[str]:
            response = await client.get(
                "/v1/opportunities", params=params, headers=auth
            )
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["data"]]

        assert await listed() == [renewal["id"], won["id"], late["id"], early["id"]]
        assert await listed(status="won") == [won["id"]]
        assert await listed(status="open", customer_id=first_customer["id"]) == [
            early["id"]
        ]
        assert await listed(stage_id=stages["Negotiation"]) == [late["id"]]
        assert await listed(owner_id=second_rep["id"]) == [late["id"]]
        assert await listed(pipeline_id=ids.encode("pipeline", pipeline.id)) == [
            renewal["id"]
        ]

    async def test_pages(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        customer = await create_customer(client, auth)
        created = [
            await create_opportunity(client, auth, customer["id"], name=f"O{index}")
            for index in range(3)
        ]

        first = (await client.get("/v1/opportunities?limit=2", headers=auth)).json()
        second = (
            await client.get(
                "/v1/opportunities",
                params={"limit": "2", "cursor": first["next_cursor"]},
                headers=auth,
            )
        ).json()

        assert [item["id"] for item in first["data"] + second["data"]] == [
            item["id"] for item in reversed(created)
        ]
        assert second["has_more"] is False

    async def test_bad_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        bad_stage = await client.get(
            "/v1/opportunities", params={"stage_id": "cus_1"}, headers=auth
        )
        bad_status = await client.get(
            "/v1/opportunities", params={"status": "pending"}, headers=auth
        )

        assert bad_stage.status_code == 422
        assert bad_stage.json()["errors"][0]["field"] == "query.stage_id"
        assert bad_status.status_code == 422
        assert bad_status.json()["errors"][0]["field"] == "query.status"

    async def test_excludes_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_opportunity(client, auth)
        _, other = await make_workspace_key(session)

        page = (await client.get("/v1/opportunities", headers=other)).json()

        assert page["data"] == []


class TestUpdateOpportunity:
    async def test_updated(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])
        owner = await create_user(client, auth)
        created = await create_opportunity(
            client, auth, customer["id"], owner_id=owner["id"]
        )

        response = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={
                "name": "Analytical engine",
                "amount": 990000,
                "currency": "GBP",
                "contact_id": contact["id"],
                "expected_close_date": "2027-01-15",
                "owner_id": None,
            },
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        opportunity = response.json()
        assert opportunity["name"] == "Analytical engine"
        assert opportunity["amount"] == 990000
        assert opportunity["currency"] == "GBP"
        assert opportunity["contact_id"] == contact["id"]
        assert opportunity["expected_close_date"] == "2027-01-15"
        assert opportunity["owner_id"] is None
        assert opportunity["stage_id"] == created["stage_id"]
        assert opportunity["version"] == 2
        assert response.headers["etag"] == '"2"'
        assert await opportunity_events(session, created["id"]) == [
            "opportunity.created",
            "opportunity.updated",
        ]

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_opportunity(client, auth)

        response = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={"amount": 5},
            headers={**auth, "If-Match": '"2"'},
        )

        assert response.status_code == 412
        assert response.json()["current_version"] == 1
        assert await opportunity_events(session, created["id"]) == [
            "opportunity.created"
        ]

    async def test_stage_not_patchable(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)
        stages = await stage_ids(client, auth)

        response = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={"stage_id": stages["Closed won"]},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "extra_forbidden"

    async def test_null_required_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)

        response = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={"amount": None},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0] == {
            "field": "amount",
            "message": "cannot be null",
            "code": "null_not_allowed",
        }

    async def test_negative_amount(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)

        response = await client.patch(
            f"/v1/opportunities/{created['id']}", json={"amount": -5}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "amount"

    async def test_contact_of_other_customer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)
        elsewhere = await create_customer(client, auth, name="Elsewhere")
        contact = await create_contact(client, auth, elsewhere["id"])

        response = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={"contact_id": contact["id"]},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "contact_customer_mismatch"

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_opportunity(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.patch(
            f"/v1/opportunities/{created['id']}", json={"amount": 1}, headers=other
        )

        assert response.status_code == 404


class TestMoveOpportunity:
    async def test_moved(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)

        response = await move(
            client,
            {**auth, "On-Behalf-Of": "rep_9", "If-Match": '"1"'},
            created["id"],
            stages["Value proposition"],
        )

        assert response.status_code == 200, response.text
        opportunity = response.json()
        assert opportunity["stage_id"] == stages["Value proposition"]
        assert opportunity["status"] == "open"
        assert opportunity["version"] == 2
        assert response.headers["etag"] == '"2"'
        history = await stage_history(client, auth, created["id"])
        assert history[0]["from_stage_id"] == stages["Qualification"]
        assert history[0]["to_stage_id"] == stages["Value proposition"]
        assert history[0]["actor"] == "rep_9"
        assert history[0]["at"] >= history[1]["at"]
        event = await session.scalar(
            select(Event).where(Event.type == "opportunity.stage_changed")
        )
        assert event is not None
        assert event.data == opportunity
        assert event.actor == "rep_9"

    async def test_won_flow_events_in_order(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth, amount=500000)

        for name in ("Value proposition", "Objection handling", "Negotiation"):
            response = await move(client, auth, created["id"], stages[name])
            assert response.status_code == 200, response.text
        response = await move(client, auth, created["id"], stages["Closed won"])

        assert response.status_code == 200, response.text
        won = response.json()
        assert won["status"] == "won"
        assert won["won_at"] is not None
        assert won["lost_at"] is None
        assert await opportunity_events(session, created["id"]) == [
            "opportunity.created",
            "opportunity.stage_changed",
            "opportunity.stage_changed",
            "opportunity.stage_changed",
            "opportunity.stage_changed",
            "opportunity.won",
        ]
        won_event = await session.scalar(
            select(Event).where(Event.type == "opportunity.won")
        )
        assert won_event is not None
        assert won_event.data["status"] == "won"
        assert won_event.data["amount"] == 500000
        history = await stage_history(client, auth, created["id"])
        assert [item["to_stage_id"] for item in reversed(history)] == [
            stages["Qualification"],
            stages["Value proposition"],
            stages["Objection handling"],
            stages["Negotiation"],
            stages["Closed won"],
        ]

    async def test_lost_needs_reason(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)

        response = await move(client, auth, created["id"], stages["Closed lost"])

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "lost_reason_id"
        assert error["code"] == "lost_reason_required"
        current = await client.get(f"/v1/opportunities/{created['id']}", headers=auth)
        assert current.json()["status"] == "open"
        assert len(await stage_history(client, auth, created["id"])) == 1

    async def test_lost_with_reason(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        reason = await create_lost_reason(client, auth, "Chose a competitor")

        response = await move(
            client,
            auth,
            created["id"],
            stages["Closed lost"],
            lost_reason_id=reason["id"],
            lost_note="Went with Napier's bones",
        )

        assert response.status_code == 200, response.text
        lost = response.json()
        assert lost["status"] == "lost"
        assert lost["lost_reason_id"] == reason["id"]
        assert lost["lost_note"] == "Went with Napier's bones"
        assert lost["probability"] == 0
        assert lost["weighted_amount"] == 0
        assert lost["lost_at"] is not None
        assert lost["won_at"] is None
        assert await opportunity_events(session, created["id"]) == [
            "opportunity.created",
            "opportunity.stage_changed",
            "opportunity.lost",
        ]

    async def test_reason_only_for_lost(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        reason = await create_lost_reason(client, auth, "Price")

        response = await move(
            client,
            auth,
            created["id"],
            stages["Closed won"],
            lost_reason_id=reason["id"],
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "lost_reason_id"
        assert error["code"] == "not_allowed"

    async def test_closed_is_409_with_allowed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        await move(client, auth, created["id"], stages["Closed won"])

        response = await move(client, auth, created["id"], stages["Negotiation"])

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "invalid_transition"
        assert problem["current_status"] == "won"
        assert problem["allowed_transitions"] == ["open"]
        assert f"/v1/opportunities/{created['id']}/reopen" in problem["detail"]

    async def test_stage_of_other_pipeline(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        created = await create_opportunity(client, auth)
        _, stage = await add_pipeline(session, workspace.id)

        response = await move(
            client, auth, created["id"], ids.encode("stage", stage.id)
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "stage_id"
        assert error["code"] == "stage_not_in_pipeline"

    async def test_stage_of_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_opportunity(client, auth)
        _, other = await make_workspace_key(session)
        foreign_stages = await stage_ids(client, other)

        response = await move(
            client, auth, created["id"], foreign_stages["Negotiation"]
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "stage_not_found"

    async def test_same_stage_changes_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_opportunity(client, auth)

        response = await move(client, auth, created["id"], created["stage_id"])

        assert response.status_code == 200
        assert response.json()["version"] == 1
        assert await opportunity_events(session, created["id"]) == [
            "opportunity.created"
        ]
        assert len(await stage_history(client, auth, created["id"])) == 1

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)

        response = await move(
            client,
            {**auth, "If-Match": '"9"'},
            created["id"],
            stages["Closed won"],
        )

        assert response.status_code == 412
        current = await client.get(f"/v1/opportunities/{created['id']}", headers=auth)
        assert current.json()["status"] == "open"
        assert await opportunity_events(session, created["id"]) == [
            "opportunity.created"
        ]

    async def test_missing_stage(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)

        response = await client.post(
            f"/v1/opportunities/{created['id']}/move", json={}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "missing"

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_opportunity(client, auth)
        _, other = await make_workspace_key(session)

        response = await move(client, other, created["id"], created["stage_id"])

        assert response.status_code == 404
        assert response.json()["code"] == "opportunity_not_found"


class TestReopenOpportunity:
    async def test_back_to_stage_before_close(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        await move(client, auth, created["id"], stages["Negotiation"])
        await move(client, auth, created["id"], stages["Closed won"])

        response = await client.post(
            f"/v1/opportunities/{created['id']}/reopen",
            json={"reason": "The buyer signed with a typo; redo the paperwork"},
            headers={**auth, "If-Match": '"3"'},
        )

        assert response.status_code == 200, response.text
        opportunity = response.json()
        assert opportunity["status"] == "open"
        assert opportunity["stage_id"] == stages["Negotiation"]
        assert opportunity["won_at"] is None
        assert opportunity["version"] == 4
        assert (await opportunity_events(session, created["id"]))[-2:] == [
            "opportunity.stage_changed",
            "opportunity.reopened",
        ]
        latest = (await stage_history(client, auth, created["id"]))[0]
        assert latest["from_stage_id"] == stages["Closed won"]
        assert latest["to_stage_id"] == stages["Negotiation"]
        assert latest["from_status"] == "won"
        assert latest["to_status"] == "open"
        assert latest["reason"] == "The buyer signed with a typo; redo the paperwork"
        assert latest["actor"].startswith("key_")

    async def test_lost_into_chosen_stage(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        reason = await create_lost_reason(client, auth, "Timing")
        await move(
            client,
            auth,
            created["id"],
            stages["Closed lost"],
            lost_reason_id=reason["id"],
        )

        response = await client.post(
            f"/v1/opportunities/{created['id']}/reopen",
            json={"stage_id": stages["Value proposition"], "reason": "Budget back"},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        opportunity = response.json()
        assert opportunity["status"] == "open"
        assert opportunity["stage_id"] == stages["Value proposition"]
        assert opportunity["lost_reason_id"] is None
        assert opportunity["lost_note"] is None
        assert opportunity["lost_at"] is None

    async def test_open_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)

        response = await client.post(
            f"/v1/opportunities/{created['id']}/reopen",
            json={"reason": "Retry"},
            headers=auth,
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["current_status"] == "open"
        assert problem["allowed_transitions"] == ["won", "lost"]

    async def test_into_closed_stage(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        await move(client, auth, created["id"], stages["Closed won"])

        response = await client.post(
            f"/v1/opportunities/{created['id']}/reopen",
            json={"stage_id": stages["Closed lost"], "reason": "Retry"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "stage_not_open"

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        await move(client, auth, created["id"], stages["Closed won"])

        response = await client.post(
            f"/v1/opportunities/{created['id']}/reopen",
            json={"reason": "Retry"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 412
        assert response.json()["current_version"] == 2


class TestListTransitions:
    async def test_pages(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        await move(client, auth, created["id"], stages["Value proposition"])
        await move(client, auth, created["id"], stages["Negotiation"])

        first = (
            await client.get(
                f"/v1/opportunities/{created['id']}/stage-history?limit=2", headers=auth
            )
        ).json()
        second = (
            await client.get(
                f"/v1/opportunities/{created['id']}/stage-history",
                params={"limit": "2", "cursor": first["next_cursor"]},
                headers=auth,
            )
        ).json()

        assert [item["to_stage_id"] for item in first["data"]] == [
            stages["Negotiation"],
            stages["Value proposition"],
        ]
        assert first["data"][0]["object"] == "stage_transition"
        assert first["data"][0]["opportunity_id"] == created["id"]
        assert [item["from_stage_id"] for item in second["data"]] == [None]
        assert second["has_more"] is False

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_opportunity(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.get(
            f"/v1/opportunities/{created['id']}/stage-history", headers=other
        )

        assert response.status_code == 404


class TestStateMachine:
    async def test_published(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/meta/state-machines")

        machines = {item["resource"]: item for item in response.json()["data"]}
        assert machines["opportunity"] == {
            "resource": "opportunity",
            "initial": "open",
            "transitions": {"open": ["won", "lost"], "won": ["open"], "lost": ["open"]},
            "required_fields": {"lost": ["lost_reason_id"], "open": ["reason"]},
        }
