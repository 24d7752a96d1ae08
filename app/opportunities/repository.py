from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import new_uuid
from app.core.pagination import paginate
from app.models import (
    LostReason,
    Objection,
    Opportunity,
    Pipeline,
    Stage,
    StageTransition,
)


class PipelineRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> PipelineRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        pipeline_id: uuid.UUID,
        *,
        for_update: bool = False,
        for_share: bool = False,
    ) -> Pipeline | None:
        statement = select(Pipeline).where(
            Pipeline.workspace_id == workspace_id, Pipeline.id == pipeline_id
        )
        if for_update:
            statement = statement.with_for_update()
        elif for_share:
            statement = statement.with_for_update(read=True)
        return await self.session.scalar(
            statement.execution_options(populate_existing=for_update or for_share)
        )

    async def get_default(
        self, workspace_id: uuid.UUID, *, for_update: bool = False
    ) -> Pipeline | None:
        statement = select(Pipeline).where(
            Pipeline.workspace_id == workspace_id, Pipeline.is_default.is_(True)
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

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
        await self.insert_stages(workspace_id, pipeline_id, stages)
        return True

    async def insert_stages(
        self,
        workspace_id: uuid.UUID,
        pipeline_id: uuid.UUID,
        stages: Iterable[dict[str, Any]],
    ) -> None:
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

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        archived: bool | None,
    ) -> tuple[Sequence[Pipeline], str | None, bool]:
        statement: Select[Pipeline] = select(Pipeline).where(
            Pipeline.workspace_id == workspace_id
        )
        if archived is not None:
            statement = statement.where(
                Pipeline.archived_at.is_not(None)
                if archived
                else Pipeline.archived_at.is_(None)
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
                .execution_options(populate_existing=True)
            )
        ).all()

    async def get_stage(
        self, workspace_id: uuid.UUID, stage_id: uuid.UUID
    ) -> Stage | None:
        # A stage read again under the pipeline's lock must show the committed row,
        # not the copy an earlier read left in the session.
        return await self.session.scalar(
            select(Stage)
            .where(Stage.workspace_id == workspace_id, Stage.id == stage_id)
            .execution_options(populate_existing=True)
        )

    async def set_positions(
        self, pipeline_id: uuid.UUID, positions: dict[uuid.UUID, int]
    ) -> None:
        """Give stages new positions without tripping the unique key on the way.

        PostgreSQL checks a non-deferrable unique key row by row, so the stages first
        move to negative positions, which no stage uses, and then to their final ones.
        """
        if not positions:
            return
        for stage_id, position in positions.items():
            await self.session.execute(
                update(Stage)
                .where(Stage.pipeline_id == pipeline_id, Stage.id == stage_id)
                .values(position=-position)
                .execution_options(synchronize_session=False)
            )
        await self.session.execute(
            update(Stage)
            .where(Stage.pipeline_id == pipeline_id, Stage.position < 0)
            .values(position=-Stage.position)
            .execution_options(synchronize_session=False)
        )

    async def delete_stage(self, stage_id: uuid.UUID) -> None:
        await self.session.execute(delete(Stage).where(Stage.id == stage_id))

    async def delete(self, pipeline_id: uuid.UUID) -> None:
        await self.session.execute(delete(Pipeline).where(Pipeline.id == pipeline_id))

    async def count_opportunities(
        self,
        *,
        pipeline_id: uuid.UUID | None = None,
        stage_id: uuid.UUID | None = None,
        open_only: bool = False,
    ) -> int:
        statement = select(func.count()).select_from(Opportunity)
        if pipeline_id is not None:
            statement = statement.where(Opportunity.pipeline_id == pipeline_id)
        if stage_id is not None:
            statement = statement.where(Opportunity.stage_id == stage_id)
        if open_only:
            statement = statement.where(Opportunity.status == "open")
        return int(await self.session.scalar(statement) or 0)

    async def count_transitions(self, stage_id: uuid.UUID) -> int:
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(StageTransition)
                .where(
                    (StageTransition.from_stage_id == stage_id)
                    | (StageTransition.to_stage_id == stage_id)
                )
            )
            or 0
        )


class LostReasonRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> LostReasonRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        reason_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> LostReason | None:
        statement = select(LostReason).where(
            LostReason.workspace_id == workspace_id, LostReason.id == reason_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def by_name(self, workspace_id: uuid.UUID, name: str) -> LostReason | None:
        return await self.session.scalar(
            select(LostReason).where(
                LostReason.workspace_id == workspace_id, LostReason.name == name
            )
        )

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        active: bool | None,
    ) -> tuple[Sequence[LostReason], str | None, bool]:
        statement: Select[LostReason] = select(LostReason).where(
            LostReason.workspace_id == workspace_id
        )
        if active is not None:
            statement = statement.where(LostReason.active.is_(active))
        return await paginate(
            self.session, statement, LostReason.id, limit=limit, cursor=cursor
        )

    async def count_uses(self, reason_id: uuid.UUID) -> int:
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(Opportunity)
                .where(Opportunity.lost_reason_id == reason_id)
            )
            or 0
        )

    async def delete(self, reason_id: uuid.UUID) -> None:
        await self.session.execute(delete(LostReason).where(LostReason.id == reason_id))


class ObjectionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> ObjectionRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        opportunity_id: uuid.UUID,
        objection_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Objection | None:
        statement = select(Objection).where(
            Objection.workspace_id == workspace_id,
            Objection.opportunity_id == opportunity_id,
            Objection.id == objection_id,
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def list(
        self,
        opportunity_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None,
    ) -> tuple[Sequence[Objection], str | None, bool]:
        statement: Select[Objection] = select(Objection).where(
            Objection.opportunity_id == opportunity_id
        )
        if status is not None:
            statement = statement.where(Objection.status == status)
        return await paginate(
            self.session, statement, Objection.id, limit=limit, cursor=cursor
        )

    async def open_blocking_ids(
        self, opportunity_id: uuid.UUID
    ) -> builtins.list[uuid.UUID]:
        return list(
            (
                await self.session.scalars(
                    select(Objection.id)
                    .where(
                        Objection.opportunity_id == opportunity_id,
                        Objection.status == "open",
                        Objection.blocking.is_(True),
                    )
                    .order_by(Objection.id)
                )
            ).all()
        )

    async def delete(self, objection_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(Objection).where(Objection.id == objection_id)
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
            statement = statement.with_for_update(of=Opportunity).execution_options(
                populate_existing=True
            )
        return await self.session.scalar(statement)

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

    async def record_activity(self, opportunity_id: uuid.UUID) -> bool | None:
        """Mark that the opportunity saw activity now and clear its rotting flag.

        The UPDATE goes around the ORM, so the version does not move and a client's
        If-Match stays valid after logging a call. Returns whether it was rotting, or
        None when the row is gone.

        The lock is FOR NO KEY UPDATE, which the UPDATE takes anyway. It does not
        conflict with the FOR KEY SHARE of a child row's foreign key check, so two
        callers that each inserted such a row first cannot deadlock here.
        """
        was_rotting = await self.session.scalar(
            select(Opportunity.rotting)
            .where(Opportunity.id == opportunity_id)
            .with_for_update(key_share=True)
        )
        if was_rotting is None:
            return None
        await self.session.execute(
            update(Opportunity)
            .where(Opportunity.id == opportunity_id)
            .values(last_activity_at=func.now(), rotting=False, rotting_since=None)
            .execution_options(synchronize_session=False)
        )
        return was_rotting

    async def claim_rotting(self, batch: int) -> list[uuid.UUID]:
        """Flag up to ``batch`` open opportunities that just started rotting.

        An opportunity rots when its stage has ``rotting_days`` and no activity
        happened for that many days; ``rotting_since`` is the moment the spell began.
        Only rows not yet flagged are taken, so each spell is claimed once, and SKIP
        LOCKED lets several workers sweep at once. The version does not move.
        """
        due = (
            select(Opportunity.id)
            .join(Stage, Stage.id == Opportunity.stage_id)
            .where(
                Opportunity.status == "open",
                Opportunity.rotting.is_(False),
                Stage.rotting_days.is_not(None),
                Opportunity.last_activity_at
                < func.now() - func.make_interval(0, 0, 0, Stage.rotting_days),
            )
            .order_by(Opportunity.last_activity_at, Opportunity.id)
            .limit(batch)
            .with_for_update(of=Opportunity, skip_locked=True)
            .cte("due")
            .prefix_with("MATERIALIZED")
        )
        rotting_days = (
            select(Stage.rotting_days)
            .where(Stage.id == Opportunity.stage_id)
            .scalar_subquery()
        )
        claimed = await self.session.scalars(
            update(Opportunity)
            .where(Opportunity.id == due.c.id)
            .values(
                rotting=True,
                rotting_since=Opportunity.last_activity_at
                + func.make_interval(0, 0, 0, rotting_days),
            )
            .returning(Opportunity.id)
            .execution_options(synchronize_session=False)
        )
        return list(claimed.all())

    async def get_many(self, opportunity_ids: Sequence[uuid.UUID]) -> list[Opportunity]:
        if not opportunity_ids:
            return []
        return list(
            (
                await self.session.scalars(
                    select(Opportunity)
                    .where(Opportunity.id.in_(opportunity_ids))
                    .order_by(Opportunity.id)
                    .execution_options(populate_existing=True)
                )
            ).all()
        )
