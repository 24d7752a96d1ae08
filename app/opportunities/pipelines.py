"""Pipelines and their stages, including each workspace's default pipeline."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.errors import FieldError, InvalidInput
from app.models import Pipeline, Stage
from app.opportunities.errors import PipelineNotFound
from app.opportunities.repository import PipelineRepository
from app.opportunities.schemas import Pipeline as PipelineSchema
from app.opportunities.schemas import Stage as StageSchema

log = structlog.get_logger(__name__)

DEFAULT_PIPELINE_NAME = "Sales"


@dataclass(frozen=True)
class StageSpec:
    name: str
    probability: int
    is_won: bool = False
    is_lost: bool = False


# The default pipeline follows the sales conversation, from the first call to the close.
DEFAULT_STAGES = (
    StageSpec("Qualification", 10),
    StageSpec("Value proposition", 25),
    StageSpec("Objection handling", 50),
    StageSpec("Negotiation", 75),
    StageSpec("Closed won", 100, is_won=True),
    StageSpec("Closed lost", 0, is_lost=True),
)


def pipeline_view(pipeline: Pipeline, stages: Sequence[Stage]) -> PipelineSchema:
    """Build the API shape of a pipeline from its row and its ordered stages."""
    return PipelineSchema(
        id=pipeline.id,
        name=pipeline.name,
        is_default=pipeline.is_default,
        stages=[StageSchema.model_validate(stage) for stage in stages],
        created_at=pipeline.created_at,
        updated_at=pipeline.updated_at,
    )


def is_open(stage: Stage) -> bool:
    return not (stage.is_won or stage.is_lost)


class PipelineService:
    async def get_default(
        self, session: AsyncSession, workspace_id: uuid.UUID
    ) -> Pipeline:
        """Return the workspace's default pipeline, creating it on first use."""
        repository = PipelineRepository.from_session(session)
        pipeline = await repository.get_default(workspace_id)
        if pipeline is not None:
            return pipeline

        inserted = await repository.insert_default(
            workspace_id,
            DEFAULT_PIPELINE_NAME,
            [
                {
                    "name": spec.name,
                    "position": position,
                    "probability": spec.probability,
                    "is_won": spec.is_won,
                    "is_lost": spec.is_lost,
                }
                for position, spec in enumerate(DEFAULT_STAGES, start=1)
            ],
        )
        pipeline = await repository.get_default(workspace_id)
        if pipeline is None:
            # Under READ COMMITTED the insert either wrote the row or waited for the
            # transaction that did and then reads it, so only a concurrent delete of
            # the default pipeline gets here.
            raise RuntimeError("the default pipeline was deleted while being read")
        if inserted:
            log.info(
                "pipeline.default_created",
                pipeline_id=str(pipeline.id),
                workspace_id=str(workspace_id),
            )
        return pipeline

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, pipeline_id: uuid.UUID
    ) -> tuple[Pipeline, Sequence[Stage]]:
        """Return a pipeline and its stages ordered by position."""
        repository = PipelineRepository.from_session(session)
        pipeline = await repository.get(workspace_id, pipeline_id)
        if pipeline is None:
            raise PipelineNotFound(
                f"No pipeline with id {ids.encode('pipeline', pipeline_id)} exists in "
                "this workspace."
            )
        return pipeline, await repository.stages_of([pipeline.id])

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[tuple[Pipeline, list[Stage]]], str | None, bool]:
        """List pipelines, newest first, with their stages, creating the default if missing."""
        await self.get_default(session, workspace_id)
        repository = PipelineRepository.from_session(session)
        pipelines, next_cursor, has_more = await repository.list(
            workspace_id, limit=limit, cursor=cursor
        )
        stages_by_pipeline: dict[uuid.UUID, list[Stage]] = defaultdict(list)
        for stage in await repository.stages_of([row.id for row in pipelines]):
            stages_by_pipeline[stage.pipeline_id].append(stage)
        return (
            [(row, stages_by_pipeline[row.id]) for row in pipelines],
            next_cursor,
            has_more,
        )

    async def stages(
        self, session: AsyncSession, pipeline_id: uuid.UUID
    ) -> Sequence[Stage]:
        return await PipelineRepository.from_session(session).stages_of([pipeline_id])

    async def first_open_stage(
        self, session: AsyncSession, pipeline_id: uuid.UUID
    ) -> Stage:
        for stage in await self.stages(session, pipeline_id):
            if is_open(stage):
                return stage
        raise RuntimeError(f"pipeline {pipeline_id} has no open stage")

    async def get_stage_for_field(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        stage_id: uuid.UUID,
        *,
        field: str = "stage_id",
    ) -> Stage:
        """Return a stage named in a request body, or raise ``InvalidInput`` on it."""
        stage = await PipelineRepository.from_session(session).get_stage(
            workspace_id, stage_id
        )
        if stage is None:
            encoded = ids.encode("stage", stage_id)
            raise InvalidInput(
                f"No stage with id {encoded} exists in this workspace. List the "
                "stages with GET /v1/pipelines.",
                errors=[
                    FieldError(field, f"no stage {encoded} here", "stage_not_found")
                ],
            )
        return stage


pipeline_service = PipelineService()
