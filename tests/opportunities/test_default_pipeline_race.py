"""The default pipeline under concurrent first use, on separately committed connections."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Pipeline, Stage, Workspace
from app.opportunities.pipelines import pipeline_service


async def count_rows(
    maker: async_sessionmaker[AsyncSession], workspace_id: uuid.UUID
) -> tuple[int, int]:
    async with maker() as session:
        pipelines = await session.scalar(
            select(func.count())
            .select_from(Pipeline)
            .where(Pipeline.workspace_id == workspace_id)
        )
        stages = await session.scalar(
            select(func.count())
            .select_from(Stage)
            .where(Stage.workspace_id == workspace_id)
        )
    return pipelines or 0, stages or 0


async def wait_for_lock_wait(maker: async_sessionmaker[AsyncSession]) -> None:
    """Return once some backend of this database waits on a lock, or fail after 10 s."""
    async with maker() as session:
        for _ in range(200):
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the second first use never waited for the first one")


class TestDefaultPipelineRace:
    async def test_second_waits_then_reuses(
        self,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
        committed_workspace: Workspace,
    ) -> None:
        maker = committing_sessionmaker
        async with maker() as first, maker() as second:
            created = await pipeline_service.get_default(first, committed_workspace.id)
            racing = asyncio.create_task(
                pipeline_service.get_default(second, committed_workspace.id)
            )
            await wait_for_lock_wait(maker)
            assert not racing.done()

            await first.commit()
            reused = await asyncio.wait_for(racing, timeout=10)
            await second.commit()

        assert reused.id == created.id
        assert await count_rows(maker, committed_workspace.id) == (1, 6)

    async def test_concurrent_first_uses(
        self,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
        committed_workspace: Workspace,
    ) -> None:
        async def first_use() -> uuid.UUID:
            async with committing_sessionmaker() as session:
                pipeline = await pipeline_service.get_default(
                    session, committed_workspace.id
                )
                await session.commit()
                return pipeline.id

        results = await asyncio.gather(*(first_use() for _ in range(4)))

        assert len(set(results)) == 1
        assert await count_rows(committing_sessionmaker, committed_workspace.id) == (
            1,
            6,
        )

    async def test_second_inserts_after_rollback(
        self,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
        committed_workspace: Workspace,
    ) -> None:
        maker = committing_sessionmaker
        async with maker() as first, maker() as second:
            abandoned = await pipeline_service.get_default(
                first, committed_workspace.id
            )
            abandoned_id = abandoned.id
            racing = asyncio.create_task(
                pipeline_service.get_default(second, committed_workspace.id)
            )
            await wait_for_lock_wait(maker)

            await first.rollback()
            created = await asyncio.wait_for(racing, timeout=10)
            await second.commit()

        assert created.id != abandoned_id
        assert await count_rows(maker, committed_workspace.id) == (1, 6)
