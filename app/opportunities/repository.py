from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import new_uuid
from app.core.pagination import paginate
from app.models import Opportunity, Pipeline, Stage, StageTransition


class PipelineRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> PipelineRepository:
        return cls(session)

    async def get(
        self, workspace_id: uuid.UUID, pipeline_id: uuid.UUID
    ) -> Pipeline | None:
        return await self.session.scalar(
            select(Pipeline).where(
                Pipeline.workspace_id == workspace_id, Pipeline.id == pipeline_id
            )
        )

    async def get_default(self, workspace_id: uuid.UUID) -> Pipeline | None:
        return await self.session.scalar(
            select(Pipeline).where(
                Pipeline.workspace_id == workspace_id, Pipeline.is_default.is_(True)
            )
        )

    async def insert_default(
        self,
        workspace_id: uuid.UUID,
        name: str,
        stages: Iterable[dict[str, Any]],
    ) -> bool:
        """Insert a default pipeline and its stages unless the workspace has one.

        ``ON CONFLICT`` on the partial unique index ``uq_pipelines_default`` makes a
        concurrent insert wait for the first one's transaction and then do nothing, so
        two first uses never create two defaults. Returns whether this call inserted.
        """
        pipeline_id = await self.session.scalar(
            pg_insert(Pipeline)
            .values(
                id=new_uuid(),
                workspace_id=workspace_id,
                name=name,
                is_default=True,
            )
            .on_conflict_do_nothing(
                index_elements=[Pipeline.workspace_id],
                index_where=text("is_default"),
            )
            .returning(Pipeline.id)
        )
        if pipeline_id is None:
            return False
        await self.session.execute(
            insert(Stage),
            [
                {
                    "id": new_uuid(),
                    "workspace_id": workspace_id,
                    "pipeline_id": pipeline_id,
                    **stage,
                }
                for stage in stages
            ],
        )
        return True

    async def list(
        self, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[Pipeline], str | None, bool]:
        statement: Select[Pipeline] = select(Pipeline).where(
            Pipeline.workspace_id == workspace_id
        )
        return await paginate(
            self.session, statement, Pipeline.id, limit=limit, cursor=cursor
        )

    async def stages_of(self, pipeline_ids: Sequence[uuid.UUID]) -> Sequence[Stage]:
        """Load the stages of several pipelines in one query, ordered by position."""
        if not pipeline_ids:
            return []
        return (
            await self.session.scalars(
                select(Stage)
                .where(Stage.pipeline_id.in_(pipeline_ids))
                .order_by(Stage.pipeline_id, Stage.position)
            )
        ).all()

    async def get_stage(
        self, workspace_id: uuid.UUID, stage_id: uuid.UUID
    ) -> Stage | None:
        return await self.session.scalar(
            select(Stage).where(
                Stage.workspace_id == workspace_id, Stage.id == stage_id
            )
        )


class OpportunityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> OpportunityRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        opportunity_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Opportunity | None:
        statement = select(Opportunity).where(
            Opportunity.workspace_id == workspace_id, Opportunity.id == opportunity_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        pipeline_id: uuid.UUID | None = None,
        stage_id: uuid.UUID | None = None,
        customer_id: uuid.UUID | None = None,
        owner_id: str | None = None,
    ) -> tuple[Sequence[Opportunity], str | None, bool]:
        statement: Select[Opportunity] = select(Opportunity).where(
            Opportunity.workspace_id == workspace_id
        )
        if status is not None:
            statement = statement.where(Opportunity.status == status)
        if pipeline_id is not None:
            statement = statement.where(Opportunity.pipeline_id == pipeline_id)
        if stage_id is not None:
            statement = statement.where(Opportunity.stage_id == stage_id)
        if customer_id is not None:
            statement = statement.where(Opportunity.customer_id == customer_id)
        if owner_id is not None:
            statement = statement.where(Opportunity.owner_id == owner_id)
        return await paginate(
            self.session, statement, Opportunity.id, limit=limit, cursor=cursor
        )

    async def last_transition_into(
        self, opportunity_id: uuid.UUID, stage_id: uuid.UUID
    ) -> StageTransition | None:
        return await self.session.scalar(
            select(StageTransition)
            .where(
                StageTransition.opportunity_id == opportunity_id,
                StageTransition.to_stage_id == stage_id,
            )
            .order_by(StageTransition.id.desc())
            .limit(1)
        )

    async def list_transitions(
        self,
        workspace_id: uuid.UUID,
        opportunity_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[StageTransition], str | None, bool]:
        statement: Select[StageTransition] = select(StageTransition).where(
            StageTransition.workspace_id == workspace_id,
            StageTransition.opportunity_id == opportunity_id,
        )
        return await paginate(
            self.session, statement, StageTransition.id, limit=limit, cursor=cursor
        )
