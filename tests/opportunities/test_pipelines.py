from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import create_api_key
from app.models import Pipeline, Stage, Workspace
from tests.conftest import make_workspace_key
from tests.opportunities.factories import default_pipeline

DEFAULT_STAGES = [
    ("Qualification", 1, 10, False, False),
    ("Value proposition", 2, 25, False, False),
    ("Objection handling", 3, 50, False, False),
    ("Negotiation", 4, 75, False, False),
    ("Closed won", 5, 100, True, False),
    ("Closed lost", 6, 0, False, True),
]


class TestListPipelines:
    async def test_creates_default_on_first_use(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.get("/v1/pipelines", headers=auth)

        assert response.status_code == 200, response.text
        page = response.json()
        assert page["has_more"] is False
        assert len(page["data"]) == 1
        pipeline = page["data"][0]
        assert pipeline["id"].startswith("pipe_")
        assert pipeline["object"] == "pipeline"
        assert pipeline["is_default"] is True
        assert pipeline["name"] == "Sales"
        assert [
            (
                stage["name"],
                stage["position"],
                stage["probability"],
                stage["is_won"],
                stage["is_lost"],
            )
            for stage in pipeline["stages"]
        ] == DEFAULT_STAGES
        assert all(stage["id"].startswith("stage_") for stage in pipeline["stages"])
        assert all(
            stage["pipeline_id"] == pipeline["id"] for stage in pipeline["stages"]
        )

    async def test_second_use_reuses_default(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        first = await default_pipeline(client, auth)

        second = await default_pipeline(client, auth)

        assert second == first
        assert await session.scalar(select(func.count()).select_from(Pipeline)) == 1
        assert await session.scalar(select(func.count()).select_from(Stage)) == 6

    async def test_one_default_per_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        _, other = await make_workspace_key(session)

        mine = await default_pipeline(client, auth)
        theirs = await default_pipeline(client, other)

        assert mine["id"] != theirs["id"]
        assert {stage["id"] for stage in mine["stages"]}.isdisjoint(
            stage["id"] for stage in theirs["stages"]
        )

    async def test_lists_extra_pipelines_with_stages(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        default = await default_pipeline(client, auth)
        extra = Pipeline(workspace_id=workspace.id, name="Renewals")
        session.add(extra)
        await session.flush()
        session.add_all(
            [
                Stage(
                    workspace_id=workspace.id,
                    pipeline_id=extra.id,
                    name=name,
                    position=position,
                    probability=probability,
                )
                for name, position, probability in [("Review", 2, 60), ("Due", 1, 30)]
            ]
        )
        await session.commit()

        page = (await client.get("/v1/pipelines", headers=auth)).json()

        assert [item["id"] for item in page["data"]][1] == default["id"]
        renewals = page["data"][0]
        assert renewals["is_default"] is False
        assert [stage["name"] for stage in renewals["stages"]] == ["Due", "Review"]

    async def test_needs_read_scope(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        created = await create_api_key(
            session, workspace_id=workspace.id, name="leads", scopes=["leads:read"]
        )
        await session.commit()

        response = await client.get(
            "/v1/pipelines", headers={"Authorization": f"Bearer {created.secret}"}
        )

        assert response.status_code == 403
        assert await session.scalar(select(func.count()).select_from(Pipeline)) == 0


class TestGetPipeline:
    async def test_found(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        pipeline = await default_pipeline(client, auth)

        response = await client.get(f"/v1/pipelines/{pipeline['id']}", headers=auth)

        assert response.status_code == 200
        assert response.json() == pipeline

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        pipeline = await default_pipeline(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/pipelines/{pipeline['id']}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "pipeline_not_found"

    async def test_malformed_id_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/pipelines/stage_1", headers=auth)

        assert response.status_code == 404
