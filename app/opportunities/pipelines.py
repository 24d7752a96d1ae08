"""Pipelines and their stages, including each workspace's default pipeline.

A pipeline and its stages are one aggregate. Every change takes the pipeline's row
lock, checks ``If-Match`` against the pipeline's version and bumps it, so one ETag
covers the whole shape. Opportunities that enter a stage hold a share lock on the
pipeline row, so a stage cannot be deleted or change its won and lost flags under a
concurrent move into it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.models import Pipeline, Stage
from app.opportunities.errors import (
    DuplicateName,
    InUse,
    InvalidPipelineShape,
    PipelineArchived,
    PipelineNotFound,
    StageNotFound,
    TooManyStages,
)
from app.opportunities.repository import PipelineRepository
from app.opportunities.schemas import (
    MAX_STAGES,
    PipelineCreate,
    PipelineStageCreate,
    PipelineUpdate,
    StageCreate,
    StageReorder,
    StageUpdate,
)
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
        archived_at=pipeline.archived_at,
        version=pipeline.version,
        created_at=pipeline.created_at,
        updated_at=pipeline.updated_at,
    )


def is_open(stage: Stage) -> bool:
    return not (stage.is_won or stage.is_lost)


def shape_problems(flags: Iterable[tuple[bool, bool]]) -> list[str]:
    """List what keeps stages with these (is_won, is_lost) flags from being a pipeline."""
    flags = list(flags)
    won = sum(1 for is_won, _ in flags if is_won)
    problems = []
    if won != 1:
        problems.append(f"exactly one won stage is required, found {won}")
    if not any(is_lost for _, is_lost in flags):
        problems.append("at least one lost stage is required")
    if not any(not (is_won or is_lost) for is_won, is_lost in flags):
        problems.append("at least one open stage is required")
    return problems


def _shape_conflict(problems: list[str]) -> InvalidPipelineShape:
    return InvalidPipelineShape(
        f"The change would leave an invalid pipeline: {'; '.join(problems)}.",
        problems=problems,
    )


def _stage_values(spec: StageCreate) -> dict[str, Any]:
    return {
        "name": spec.name,
        "probability": spec.probability,
        "is_won": spec.is_won,
        "is_lost": spec.is_lost,
        "rotting_days": spec.rotting_days,
        "required_fields": list(spec.required_fields),
    }


def _duplicate_stage_name(name: str) -> DuplicateName:
    return DuplicateName(
        f"The pipeline already has a stage named {name!r}. Choose another name.",
        errors=[FieldError("name", "already used in this pipeline", "duplicate")],
    )


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
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        pipeline_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> tuple[Pipeline, Sequence[Stage]]:
        """Return a pipeline and its stages ordered by position."""
        repository = PipelineRepository.from_session(session)
        pipeline = await repository.get(
            workspace_id, pipeline_id, for_update=for_update
        )
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
        archived: bool | None = None,
    ) -> tuple[list[tuple[Pipeline, list[Stage]]], str | None, bool]:
        """List pipelines, newest first, with their stages, creating the default if missing."""
        await self.get_default(session, workspace_id)
        repository = PipelineRepository.from_session(session)
        pipelines, next_cursor, has_more = await repository.list(
            workspace_id, limit=limit, cursor=cursor, archived=archived
        )
        stages_by_pipeline: dict[uuid.UUID, list[Stage]] = defaultdict(list)
        for stage in await repository.stages_of([row.id for row in pipelines]):
            stages_by_pipeline[stage.pipeline_id].append(stage)
        return (
            [(row, stages_by_pipeline[row.id]) for row in pipelines],
            next_cursor,
            has_more,
        )

    async def create(
        self, session: AsyncSession, principal: Principal, payload: PipelineCreate
    ) -> tuple[Pipeline, Sequence[Stage]]:
        """Create a pipeline with its stages in the order given."""
        workspace_id = principal.workspace_id
        problems = shape_problems(
            (stage.is_won, stage.is_lost) for stage in payload.stages
        )
        if problems:
            raise InvalidInput(
                f"The stages do not make a pipeline: {'; '.join(problems)}.",
                errors=[
                    FieldError("stages", problem, "invalid_pipeline_shape")
                    for problem in problems
                ],
            )
        names = [stage.name.casefold() for stage in payload.stages]
        repeated = sorted(
            {
                stage.name
                for stage in payload.stages
                if names.count(stage.name.casefold()) > 1
            }
        )
        if repeated:
            raise InvalidInput(
                f"Stage names must be unique in a pipeline; repeated: "
                f"{', '.join(repeated)}.",
                errors=[
                    FieldError("stages", f"repeated name {name!r}", "duplicate")
                    for name in repeated
                ],
            )
        repository = PipelineRepository.from_session(session)
        if payload.is_default:
            # The workspace has a default from here on, so the unset below finds it.
            await self.get_default(session, workspace_id)

        pipeline = Pipeline(
            id=ids.new_uuid(),
            workspace_id=workspace_id,
            name=payload.name,
            is_default=False,
        )
        session.add(pipeline)
        await session.flush()
        await repository.insert_stages(
            workspace_id,
            pipeline.id,
            [
                {"position": position, **_stage_values(spec)}
                for position, spec in enumerate(payload.stages, start=1)
            ],
        )
        if payload.is_default:
            await self._make_default(session, principal, pipeline)
        await session.flush()
        await session.refresh(pipeline)
        stages = await repository.stages_of([pipeline.id])

        await self._emit(session, principal, "pipeline.created", pipeline, stages)
        log.info(
            "pipeline.created",
            pipeline_id=str(pipeline.id),
            stage_count=len(stages),
            is_default=pipeline.is_default,
        )
        return pipeline, stages

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        pipeline_id: uuid.UUID,
        payload: PipelineUpdate,
        *,
        if_match: str | None,
    ) -> tuple[Pipeline, Sequence[Stage]]:
        """Rename a pipeline or make it the workspace's default."""
        pipeline, stages = await self._locked(session, principal, pipeline_id, if_match)
        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        if "name" in changes and changes["name"] is None:
            raise InvalidInput(
                "name cannot be null. Omit a field to keep its value.",
                errors=[FieldError("name", "cannot be null", "null_not_allowed")],
            )
        if changes.get("is_default") and pipeline.archived_at is not None:
            raise PipelineArchived(
                "An archived pipeline cannot be the default. Choose an active one.",
                pipeline_id=ids.encode("pipeline", pipeline.id),
            )

        if changes.get("name") is not None:
            pipeline.name = changes["name"]
        if changes.get("is_default") and not pipeline.is_default:
            await self._make_default(session, principal, pipeline)
        if not session.is_modified(pipeline):
            return pipeline, stages
        return await self._save(session, principal, pipeline, "pipeline.updated")

    async def archive(
        self,
        session: AsyncSession,
        principal: Principal,
        pipeline_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> tuple[Pipeline, Sequence[Stage]]:
        """Archive a pipeline without open opportunities; archiving again changes nothing."""
        pipeline, stages = await self._locked(session, principal, pipeline_id, if_match)
        if pipeline.archived_at is not None:
            return pipeline, stages
        self._check_not_default(pipeline, "archived")
        count = await PipelineRepository.from_session(session).count_opportunities(
            pipeline_id=pipeline.id, open_only=True
        )
        if count:
            raise InUse(
                f"The pipeline has {count} open "
                f"{'opportunity' if count == 1 else 'opportunities'}. Win or lose "
                f"{'it' if count == 1 else 'them'} before archiving the pipeline.",
                opportunity_count=count,
            )

        pipeline.archived_at = utcnow()
        return await self._save(session, principal, pipeline, "pipeline.archived")

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        pipeline_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        """Delete a pipeline that no opportunity, open or closed, ever used."""
        pipeline, stages = await self._locked(session, principal, pipeline_id, if_match)
        self._check_not_default(pipeline, "deleted")
        repository = PipelineRepository.from_session(session)
        count = await repository.count_opportunities(pipeline_id=pipeline.id)
        if count:
            raise InUse(
                f"{_opportunities_are(count)} in this pipeline, open or closed. "
                "Archive it instead once none is open.",
                opportunity_count=count,
            )

        await self._emit(session, principal, "pipeline.deleted", pipeline, stages)
        await repository.delete(pipeline.id)
        log.info("pipeline.deleted", pipeline_id=str(pipeline.id))

    async def add_stage(
        self,
        session: AsyncSession,
        principal: Principal,
        pipeline_id: uuid.UUID,
        payload: PipelineStageCreate,
        *,
        if_match: str | None,
    ) -> tuple[Pipeline, Sequence[Stage], Stage]:
        """Insert a stage at ``position``, by default after the last open stage."""
        pipeline, stages = await self._locked(session, principal, pipeline_id, if_match)
        self._check_active(pipeline)
        # The limit of a new pipeline holds for added stages too, so that a reorder,
        # which lists every stage, stays possible.
        if len(stages) >= MAX_STAGES:
            raise TooManyStages(
                f"Pipeline {pipeline.name!r} already has {len(stages)} stages, the "
                "maximum. Delete a stage before adding another.",
                max_stages=MAX_STAGES,
            )
        if any(stage.name.casefold() == payload.name.casefold() for stage in stages):
            raise _duplicate_stage_name(payload.name)
        problems = shape_problems(
            [(stage.is_won, stage.is_lost) for stage in stages]
            + [(payload.is_won, payload.is_lost)]
        )
        if problems:
            raise _shape_conflict(problems)
        position = payload.position
        if position is None:
            open_positions = [stage.position for stage in stages if is_open(stage)]
            position = max(open_positions, default=0) + 1
        position = min(position, len(stages) + 1)

        repository = PipelineRepository.from_session(session)
        await repository.set_positions(
            pipeline.id,
            {
                stage.id: stage.position + 1
                for stage in stages
                if stage.position >= position
            },
        )
        stage = Stage(
            id=ids.new_uuid(),
            workspace_id=pipeline.workspace_id,
            pipeline_id=pipeline.id,
            position=position,
            **_stage_values(payload),
        )
        session.add(stage)
        await session.flush()
        await self._emit_stage(session, principal, "stage.created", stage)
        pipeline, stages = await self._save(
            session, principal, pipeline, "pipeline.updated"
        )
        log.info(
            "stage.created",
            stage_id=str(stage.id),
            pipeline_id=str(pipeline.id),
            position=position,
        )
        return pipeline, stages, stage

    async def update_stage(
        self,
        session: AsyncSession,
        principal: Principal,
        pipeline_id: uuid.UUID,
        stage_id: uuid.UUID,
        payload: StageUpdate,
        *,
        if_match: str | None,
    ) -> tuple[Pipeline, Sequence[Stage]]:
        """Change a stage's name, probability, flags, rotting days or requirements."""
        pipeline, stages = await self._locked(session, principal, pipeline_id, if_match)
        self._check_active(pipeline)
        stage = _stage_in(stages, stage_id, pipeline)
        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        nulls = [
            name
            for name in ("name", "probability", "is_won", "is_lost", "required_fields")
            if name in changes and changes[name] is None
        ]
        if nulls:
            raise InvalidInput(
                f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )
        is_won = changes.get("is_won", stage.is_won)
        is_lost = changes.get("is_lost", stage.is_lost)
        if is_won and is_lost:
            raise InvalidInput(
                "A stage cannot be both won and lost.",
                errors=[FieldError("is_won", "conflicts with is_lost", "conflict")],
            )
        name = changes.get("name")
        if name is not None and any(
            other.id != stage.id and other.name.casefold() == name.casefold()
            for other in stages
        ):
            raise _duplicate_stage_name(name)
        if (is_won, is_lost) != (stage.is_won, stage.is_lost):
            problems = shape_problems(
                (is_won, is_lost)
                if other.id == stage.id
                else (other.is_won, other.is_lost)
                for other in stages
            )
            if problems:
                raise _shape_conflict(problems)
            count = await PipelineRepository.from_session(session).count_opportunities(
                stage_id=stage.id
            )
            if count:
                raise InUse(
                    f"{_opportunities_are(count)} in stage {stage.name!r}, and the "
                    "status follows the stage's won and lost flags. Move them out "
                    "first.",
                    opportunity_count=count,
                )
        if "required_fields" in changes:
            _unique_required(changes["required_fields"])

        for field, value in changes.items():
            setattr(stage, field, list(value) if field == "required_fields" else value)
        if not session.is_modified(stage):
            return pipeline, stages
        await session.flush()
        await self._emit_stage(session, principal, "stage.updated", stage)
        log.info("stage.updated", stage_id=str(stage.id), fields=sorted(changes))
        return await self._save(session, principal, pipeline, "pipeline.updated")

    async def reorder_stages(
        self,
        session: AsyncSession,
        principal: Principal,
        pipeline_id: uuid.UUID,
        payload: StageReorder,
        *,
        if_match: str | None,
    ) -> tuple[Pipeline, Sequence[Stage]]:
        """Give every stage of the pipeline the position of its id in the list."""
        pipeline, stages = await self._locked(session, principal, pipeline_id, if_match)
        self._check_active(pipeline)
        current = {stage.id for stage in stages}
        given = list(payload.stage_ids)
        if len(set(given)) != len(given) or set(given) != current:
            missing = [ids.encode("stage", s.id) for s in stages if s.id not in given]
            unknown = [ids.encode("stage", s) for s in given if s not in current]
            raise InvalidInput(
                "stage_ids must list every stage of the pipeline exactly once. "
                f"Missing: {', '.join(missing) or 'none'}; not in this pipeline: "
                f"{', '.join(unknown) or 'none'}; repeated: "
                f"{'yes' if len(set(given)) != len(given) else 'no'}.",
                errors=[
                    FieldError(
                        "stage_ids",
                        "must be a permutation of the pipeline's stages",
                        "invalid_order",
                    )
                ],
            )
        positions = {stage_id: index for index, stage_id in enumerate(given, start=1)}
        if all(positions[stage.id] == stage.position for stage in stages):
            return pipeline, stages

        await PipelineRepository.from_session(session).set_positions(
            pipeline.id, positions
        )
        log.info("pipeline.stages_reordered", pipeline_id=str(pipeline.id))
        return await self._save(
            session, principal, pipeline, "pipeline.stages_reordered"
        )

    async def delete_stage(
        self,
        session: AsyncSession,
        principal: Principal,
        pipeline_id: uuid.UUID,
        stage_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> tuple[Pipeline, Sequence[Stage]]:
        """Delete a stage that no opportunity is in and no stage history names."""
        pipeline, stages = await self._locked(session, principal, pipeline_id, if_match)
        self._check_active(pipeline)
        stage = _stage_in(stages, stage_id, pipeline)
        problems = shape_problems(
            (other.is_won, other.is_lost) for other in stages if other.id != stage.id
        )
        if problems:
            raise _shape_conflict(problems)
        repository = PipelineRepository.from_session(session)
        count = await repository.count_opportunities(stage_id=stage.id)
        if count:
            raise InUse(
                f"{_opportunities_are(count)} in stage {stage.name!r}. Move them "
                "to another stage first.",
                opportunity_count=count,
            )
        transitions = await repository.count_transitions(stage.id)
        if transitions:
            raise InUse(
                f"{transitions} stage transitions name stage {stage.name!r}, and the "
                "stage history keeps them. The stage cannot be deleted.",
                transition_count=transitions,
            )

        await self._emit_stage(session, principal, "stage.deleted", stage)
        await repository.delete_stage(stage.id)
        session.expunge(stage)
        remaining = [other for other in stages if other.id != stage.id]
        await repository.set_positions(
            pipeline.id,
            {
                other.id: index
                for index, other in enumerate(remaining, start=1)
                if other.position != index
            },
        )
        log.info("stage.deleted", stage_id=str(stage.id), pipeline_id=str(pipeline.id))
        return await self._save(session, principal, pipeline, "pipeline.updated")

    async def enter(
        self, session: AsyncSession, workspace_id: uuid.UUID, pipeline_id: uuid.UUID
    ) -> Pipeline:
        """Share-lock an active pipeline that an opportunity is about to enter."""
        pipeline = await PipelineRepository.from_session(session).get(
            workspace_id, pipeline_id, for_share=True
        )
        if pipeline is None:
            raise PipelineNotFound(
                f"No pipeline with id {ids.encode('pipeline', pipeline_id)} exists in "
                "this workspace."
            )
        if pipeline.archived_at is not None:
            raise PipelineArchived(
                f"Pipeline {pipeline.name!r} is archived, so opportunities cannot "
                "enter or move in it.",
                pipeline_id=ids.encode("pipeline", pipeline.id),
            )
        return pipeline

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

    async def get_for_field(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        pipeline_id: uuid.UUID,
        *,
        field: str = "pipeline_id",
    ) -> Pipeline:
        """Return a pipeline named in a request body, or raise ``InvalidInput`` on it."""
        pipeline = await PipelineRepository.from_session(session).get(
            workspace_id, pipeline_id
        )
        if pipeline is None:
            encoded = ids.encode("pipeline", pipeline_id)
            raise InvalidInput(
                f"No pipeline with id {encoded} exists in this workspace.",
                errors=[
                    FieldError(
                        field, f"no pipeline {encoded} here", "pipeline_not_found"
                    )
                ],
            )
        return pipeline

    async def _locked(
        self,
        session: AsyncSession,
        principal: Principal,
        pipeline_id: uuid.UUID,
        if_match: str | None,
    ) -> tuple[Pipeline, Sequence[Stage]]:
        pipeline, stages = await self.get(
            session, principal.workspace_id, pipeline_id, for_update=True
        )
        check_if_match(if_match, pipeline.version)
        return pipeline, stages

    def _check_active(self, pipeline: Pipeline) -> None:
        if pipeline.archived_at is not None:
            raise PipelineArchived(
                f"Pipeline {pipeline.name!r} is archived, so its stages cannot change.",
                pipeline_id=ids.encode("pipeline", pipeline.id),
            )

    def _check_not_default(self, pipeline: Pipeline, outcome: str) -> None:
        if pipeline.is_default:
            raise InUse(
                f"The default pipeline cannot be {outcome}. Make another pipeline the "
                "default with PATCH is_default: true first.",
                pipeline_id=ids.encode("pipeline", pipeline.id),
            )

    async def _make_default(
        self, session: AsyncSession, principal: Principal, pipeline: Pipeline
    ) -> None:
        """Move the default flag to ``pipeline`` under the old default's row lock."""
        repository = PipelineRepository.from_session(session)
        current = await repository.get_default(pipeline.workspace_id, for_update=True)
        if current is not None and current.id != pipeline.id:
            current.is_default = False
            # The partial unique index allows one default, so the old one goes first.
            await self._save(session, principal, current, "pipeline.updated")
        pipeline.is_default = True

    async def _save(
        self,
        session: AsyncSession,
        principal: Principal,
        pipeline: Pipeline,
        event_type: str,
    ) -> tuple[Pipeline, Sequence[Stage]]:
        """Bump the pipeline's version, reload it with its stages and emit the event."""
        pipeline.updated_at = utcnow()
        await session.flush()
        await session.refresh(pipeline)
        stages = await PipelineRepository.from_session(session).stages_of([pipeline.id])
        await self._emit(session, principal, event_type, pipeline, stages)
        return pipeline, stages

    async def _emit(
        self,
        session: AsyncSession,
        principal: Principal,
        event_type: str,
        pipeline: Pipeline,
        stages: Sequence[Stage],
    ) -> None:
        await emit(
            session,
            workspace_id=pipeline.workspace_id,
            type=event_type,
            object_type="pipeline",
            object_id=pipeline.id,
            data=pipeline_view(pipeline, stages).model_dump(mode="json"),
            actor=principal.actor,
        )

    async def _emit_stage(
        self, session: AsyncSession, principal: Principal, event_type: str, stage: Stage
    ) -> None:
        await session.refresh(stage)
        await emit(
            session,
            workspace_id=stage.workspace_id,
            type=event_type,
            object_type="stage",
            object_id=stage.id,
            data=StageSchema.model_validate(stage).model_dump(mode="json"),
            actor=principal.actor,
        )


def _stage_in(
    stages: Sequence[Stage], stage_id: uuid.UUID, pipeline: Pipeline
) -> Stage:
    for stage in stages:
        if stage.id == stage_id:
            return stage
    raise StageNotFound(
        f"No stage with id {ids.encode('stage', stage_id)} exists in pipeline "
        f"{ids.encode('pipeline', pipeline.id)}."
    )


def _unique_required(fields: Sequence[str]) -> None:
    repeated = sorted({field for field in fields if list(fields).count(field) > 1})
    if repeated:
        raise InvalidInput(
            f"required_fields lists {', '.join(repeated)} more than once.",
            errors=[FieldError("required_fields", "repeated field", "duplicate")],
        )


pipeline_service = PipelineService()


def _opportunities_are(count: int) -> str:
    """Start a sentence with a count of opportunities: "1 opportunity is"."""
    return f"{count} opportunity is" if count == 1 else f"{count} opportunities are"
