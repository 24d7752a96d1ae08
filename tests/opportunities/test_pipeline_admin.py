"""Creating, changing, reordering, archiving and deleting pipelines and stages."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Event
from app.opportunities.schemas import MAX_STAGES
from tests.conftest import make_workspace_key
from tests.opportunities.factories import create_opportunity, default_pipeline

STAGES: list[dict[str, Any]] = [
    {"name": "Discovery", "probability": 20, "rotting_days": 14},
    {"name": "Demo", "probability": 50, "required_fields": ["amount"]},
    {"name": "Signed", "probability": 100, "is_won": True},
    {"name": "Dropped", "probability": 0, "is_lost": True},
]


async def create_pipeline(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: object
) -> dict[str, Any]:
    body = {"name": "Renewals", "stages": STAGES, **fields}
    response = await client.post("/v1/pipelines", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def by_name(pipeline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {stage["name"]: stage for stage in pipeline["stages"]}


async def event_types(session: AsyncSession, object_id: str, kind: str) -> list[str]:
    rows = await session.scalars(
        select(Event.type)
        .where(Event.object_id == ids.decode(kind, object_id))
        .order_by(Event.sequence)
    )
    return list(rows.all())


class TestCreatePipeline:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/pipelines", json={"name": "Renewals", "stages": STAGES}, headers=auth
        )

        assert response.status_code == 201, response.text
        pipeline = response.json()
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"/v1/pipelines/{pipeline['id']}"
        assert pipeline["is_default"] is False
        assert pipeline["archived_at"] is None
        assert [stage["name"] for stage in pipeline["stages"]] == [
            "Discovery",
            "Demo",
            "Signed",
            "Dropped",
        ]
        assert [stage["position"] for stage in pipeline["stages"]] == [1, 2, 3, 4]
        assert pipeline["stages"][0]["rotting_days"] == 14
        assert pipeline["stages"][1]["required_fields"] == ["amount"]
        assert await event_types(session, pipeline["id"], "pipeline") == [
            "pipeline.created"
        ]

    async def test_as_default(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        old = await default_pipeline(client, auth)

        pipeline = await create_pipeline(client, auth, is_default=True)

        assert pipeline["is_default"] is True
        fetched = await client.get(f"/v1/pipelines/{old['id']}", headers=auth)
        assert fetched.json()["is_default"] is False

    async def test_invalid_shapes(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        open_stage = {"name": "Open", "probability": 10}
        won = {"name": "Won", "probability": 100, "is_won": True}
        lost = {"name": "Lost", "probability": 0, "is_lost": True}
        cases = {
            "two won": [open_stage, won, {**won, "name": "Won too"}, lost],
            "no lost": [open_stage, won, {**open_stage, "name": "Open too"}],
            "no open": [won, lost, {**lost, "name": "Lost too"}],
            "no won": [open_stage, lost, {**lost, "name": "Lost too"}],
        }

        for label, stages in cases.items():
            response = await client.post(
                "/v1/pipelines", json={"name": label, "stages": stages}, headers=auth
            )
            assert response.status_code == 422, label
            assert response.json()["errors"][0]["code"] == "invalid_pipeline_shape"

    async def test_won_and_lost_stage(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = [
            {"name": "Open", "probability": 10},
            {"name": "Both", "probability": 50, "is_won": True, "is_lost": True},
            {"name": "Lost", "probability": 0, "is_lost": True},
        ]

        response = await client.post(
            "/v1/pipelines", json={"name": "Odd", "stages": stages}, headers=auth
        )

        assert response.status_code == 422
        assert "both won and lost" in response.json()["errors"][0]["message"]

    async def test_duplicate_stage_names(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = [*STAGES, {"name": "demo", "probability": 40}]

        response = await client.post(
            "/v1/pipelines", json={"name": "Dupes", "stages": stages}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "duplicate"

    async def test_bad_stage_fields(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        bad = [
            {"name": "X", "probability": 101},
            {"name": "X", "probability": 10, "rotting_days": 0},
            {"name": "X", "probability": 10, "required_fields": ["colour"]},
            {"name": "X", "probability": 10, "required_fields": ["amount", "amount"]},
        ]

        for stage in bad:
            response = await client.post(
                "/v1/pipelines",
                json={"name": "Bad", "stages": [stage, *STAGES[2:], STAGES[0]]},
                headers=auth,
            )
            assert response.status_code == 422, stage


class TestUpdatePipeline:
    async def test_rename_with_if_match(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        pipeline = await create_pipeline(client, auth)

        stale = await client.patch(
            f"/v1/pipelines/{pipeline['id']}",
            json={"name": "Upsell"},
            headers={**auth, "If-Match": '"7"'},
        )
        renamed = await client.patch(
            f"/v1/pipelines/{pipeline['id']}",
            json={"name": "Upsell"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert stale.status_code == 412
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["name"] == "Upsell"
        assert renamed.headers["etag"] == '"2"'
        assert await event_types(session, pipeline["id"], "pipeline") == [
            "pipeline.created",
            "pipeline.updated",
        ]

    async def test_make_default(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        old = await default_pipeline(client, auth)
        pipeline = await create_pipeline(client, auth)

        response = await client.patch(
            f"/v1/pipelines/{pipeline['id']}", json={"is_default": True}, headers=auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["is_default"] is True
        listed = (await client.get("/v1/pipelines", headers=auth)).json()["data"]
        assert [item["id"] for item in listed if item["is_default"]] == [pipeline["id"]]
        assert old["id"] in [item["id"] for item in listed]
        assert await event_types(session, old["id"], "pipeline") == ["pipeline.updated"]

    async def test_false_default_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)

        response = await client.patch(
            f"/v1/pipelines/{pipeline['id']}", json={"is_default": False}, headers=auth
        )

        assert response.status_code == 422


class TestArchiveAndDeletePipeline:
    async def test_archive_with_open_opportunities(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        for _ in range(2):
            await create_opportunity(client, auth, pipeline_id=pipeline["id"])

        response = await client.post(
            f"/v1/pipelines/{pipeline['id']}/archive", headers=auth
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "in_use"
        assert problem["opportunity_count"] == 2
        assert "2 open opportunities" in problem["detail"]

    async def test_archive_then_no_entry(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        pipeline = await create_pipeline(client, auth)

        response = await client.post(
            f"/v1/pipelines/{pipeline['id']}/archive",
            headers={**auth, "If-Match": '"1"'},
        )
        again = await client.post(
            f"/v1/pipelines/{pipeline['id']}/archive", headers=auth
        )
        create = await client.post(
            "/v1/opportunities",
            json={
                "customer_id": (await create_opportunity(client, auth))["customer_id"],
                "name": "Late",
                "pipeline_id": pipeline["id"],
            },
            headers=auth,
        )
        active = await client.get(
            "/v1/pipelines", params={"archived": "false"}, headers=auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["archived_at"] is not None
        assert again.status_code == 200
        assert again.json()["version"] == response.json()["version"]
        assert create.status_code == 409
        assert create.json()["code"] == "pipeline_archived"
        assert pipeline["id"] not in [item["id"] for item in active.json()["data"]]
        assert await event_types(session, pipeline["id"], "pipeline") == [
            "pipeline.created",
            "pipeline.archived",
        ]

    async def test_default_cannot_go(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        default = await default_pipeline(client, auth)

        archived = await client.post(
            f"/v1/pipelines/{default['id']}/archive", headers=auth
        )
        deleted = await client.delete(f"/v1/pipelines/{default['id']}", headers=auth)

        assert archived.status_code == 409
        assert deleted.status_code == 409
        assert "default pipeline" in deleted.json()["detail"]

    async def test_delete_used_names_count(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        await create_opportunity(client, auth, pipeline_id=pipeline["id"])

        response = await client.delete(f"/v1/pipelines/{pipeline['id']}", headers=auth)

        assert response.status_code == 409
        assert response.json()["opportunity_count"] == 1
        assert response.json()["detail"].startswith(
            "1 opportunity is in this pipeline, open or closed."
        )

    async def test_delete_unused(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        pipeline = await create_pipeline(client, auth)

        response = await client.delete(
            f"/v1/pipelines/{pipeline['id']}", headers={**auth, "If-Match": '"1"'}
        )
        fetched = await client.get(f"/v1/pipelines/{pipeline['id']}", headers=auth)

        assert response.status_code == 204
        assert fetched.status_code == 404
        assert await event_types(session, pipeline["id"], "pipeline") == [
            "pipeline.created",
            "pipeline.deleted",
        ]

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.delete(f"/v1/pipelines/{pipeline['id']}", headers=other)

        assert response.status_code == 404


class TestStages:
    async def test_add_after_open_stages(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        pipeline = await create_pipeline(client, auth)

        response = await client.post(
            f"/v1/pipelines/{pipeline['id']}/stages",
            json={"name": "Trial", "probability": 60},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 201, response.text
        updated = response.json()
        assert [stage["name"] for stage in updated["stages"]] == [
            "Discovery",
            "Demo",
            "Trial",
            "Signed",
            "Dropped",
        ]
        assert [stage["position"] for stage in updated["stages"]] == [1, 2, 3, 4, 5]
        assert updated["version"] == 2
        trial = by_name(updated)["Trial"]
        assert response.headers["location"].endswith(trial["id"])
        assert await event_types(session, trial["id"], "stage") == ["stage.created"]

    async def test_add_at_position(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)

        response = await client.post(
            f"/v1/pipelines/{pipeline['id']}/stages",
            json={"name": "Lead in", "probability": 5, "position": 1},
            headers=auth,
        )

        assert response.status_code == 201, response.text
        assert [stage["name"] for stage in response.json()["stages"]][:2] == [
            "Lead in",
            "Discovery",
        ]

    async def test_second_won_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)

        response = await client.post(
            f"/v1/pipelines/{pipeline['id']}/stages",
            json={"name": "Won again", "probability": 100, "is_won": True},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "invalid_pipeline_shape"
        assert "exactly one won stage" in response.json()["detail"]

    async def test_add_past_max_stages_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        open_stages = [
            {"name": f"Step {number}", "probability": 50} for number in range(28)
        ]
        pipeline = await create_pipeline(
            client, auth, stages=[*open_stages, *STAGES[2:]]
        )
        assert len(pipeline["stages"]) == MAX_STAGES

        response = await client.post(
            f"/v1/pipelines/{pipeline['id']}/stages",
            json={"name": "One too many", "probability": 50},
            headers=auth,
        )

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "too_many_stages"
        current = await client.get(f"/v1/pipelines/{pipeline['id']}", headers=auth)
        assert len(current.json()["stages"]) == MAX_STAGES

    async def test_duplicate_name_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)

        response = await client.post(
            f"/v1/pipelines/{pipeline['id']}/stages",
            json={"name": "DEMO", "probability": 10},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "duplicate_name"

    async def test_update_probability_follows(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        discovery = by_name(pipeline)["Discovery"]
        opportunity = await create_opportunity(
            client, auth, pipeline_id=pipeline["id"], amount=1000
        )

        response = await client.patch(
            f"/v1/pipelines/{pipeline['id']}/stages/{discovery['id']}",
            json={"probability": 35, "rotting_days": None, "name": "Discovery call"},
            headers={**auth, "If-Match": '"1"'},
        )
        fetched = await client.get(
            f"/v1/opportunities/{opportunity['id']}", headers=auth
        )

        assert response.status_code == 200, response.text
        stage = by_name(response.json())["Discovery call"]
        assert stage["probability"] == 35
        assert stage["rotting_days"] is None
        assert fetched.json()["probability"] == 35
        assert fetched.json()["weighted_amount"] == 350
        assert await event_types(session, discovery["id"], "stage") == ["stage.updated"]

    async def test_flag_change_in_use_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        discovery = by_name(pipeline)["Discovery"]
        await create_opportunity(client, auth, pipeline_id=pipeline["id"])
        await client.post(
            f"/v1/pipelines/{pipeline['id']}/stages",
            json={"name": "Parked", "probability": 0, "is_lost": True},
            headers=auth,
        )

        response = await client.patch(
            f"/v1/pipelines/{pipeline['id']}/stages/{discovery['id']}",
            json={"is_lost": True},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "in_use"
        assert response.json()["opportunity_count"] == 1

    async def test_flag_change_breaking_shape(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        dropped = by_name(pipeline)["Dropped"]

        response = await client.patch(
            f"/v1/pipelines/{pipeline['id']}/stages/{dropped['id']}",
            json={"is_lost": False},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "invalid_pipeline_shape"
        assert response.json()["problems"] == ["at least one lost stage is required"]

    async def test_reorder(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        order = [stage["id"] for stage in pipeline["stages"]]
        order[0], order[1] = order[1], order[0]

        response = await client.post(
            f"/v1/pipelines/{pipeline['id']}/reorder",
            json={"stage_ids": order},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert [stage["id"] for stage in response.json()["stages"]] == order
        assert [stage["position"] for stage in response.json()["stages"]] == [
            1,
            2,
            3,
            4,
        ]
        assert (await event_types(session, pipeline["id"], "pipeline"))[-1] == (
            "pipeline.stages_reordered"
        )

    async def test_reorder_not_a_permutation(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        order = [stage["id"] for stage in pipeline["stages"]]

        missing = await client.post(
            f"/v1/pipelines/{pipeline['id']}/reorder",
            json={"stage_ids": order[:-1]},
            headers=auth,
        )
        repeated = await client.post(
            f"/v1/pipelines/{pipeline['id']}/reorder",
            json={"stage_ids": [*order[:-1], order[0]]},
            headers=auth,
        )

        assert missing.status_code == 422
        assert order[-1] in missing.json()["detail"]
        assert repeated.status_code == 422

    async def test_delete_unused_stage(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        demo = by_name(pipeline)["Demo"]

        response = await client.delete(
            f"/v1/pipelines/{pipeline['id']}/stages/{demo['id']}", headers=auth
        )

        assert response.status_code == 200, response.text
        assert [stage["name"] for stage in response.json()["stages"]] == [
            "Discovery",
            "Signed",
            "Dropped",
        ]
        assert [stage["position"] for stage in response.json()["stages"]] == [1, 2, 3]

    async def test_delete_stage_in_use(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        discovery = by_name(pipeline)["Discovery"]
        demo = by_name(pipeline)["Demo"]
        moved = await create_opportunity(
            client, auth, pipeline_id=pipeline["id"], amount=100
        )
        await client.post(
            f"/v1/opportunities/{moved['id']}/move",
            json={"stage_id": demo["id"]},
            headers=auth,
        )

        in_use = await client.delete(
            f"/v1/pipelines/{pipeline['id']}/stages/{demo['id']}", headers=auth
        )
        in_history = await client.delete(
            f"/v1/pipelines/{pipeline['id']}/stages/{discovery['id']}", headers=auth
        )

        assert in_use.status_code == 409
        assert in_use.json()["opportunity_count"] == 1
        assert in_history.status_code == 409
        assert in_history.json()["transition_count"] == 2

    async def test_delete_only_won_stage(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        signed = by_name(pipeline)["Signed"]

        response = await client.delete(
            f"/v1/pipelines/{pipeline['id']}/stages/{signed['id']}", headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "invalid_pipeline_shape"

    async def test_stage_of_other_pipeline_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        pipeline = await create_pipeline(client, auth)
        default = await default_pipeline(client, auth)

        response = await client.patch(
            f"/v1/pipelines/{pipeline['id']}/stages/{default['stages'][0]['id']}",
            json={"name": "Stolen"},
            headers=auth,
        )

        assert response.status_code == 404
        assert response.json()["code"] == "stage_not_found"
