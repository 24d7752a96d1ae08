"""Concurrent edits of one sequence, on separate connections that really commit."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from app.core.errors import PreconditionFailed
from app.models import Sequence as SequenceRow
from app.models import SequenceStep
from app.nurture.schemas import EmailStepCreate, SequenceUpdate
from app.nurture.versions import update_sequence
from tests.nurture.conftest import Committed


async def edit(
    committed: Committed, sequence_id: uuid.UUID, subject: str, if_match: str | None
) -> str:
    async with committed.database.session() as session:
        try:
            await update_sequence(
                session,
                committed.principal,
                sequence_id,
                SequenceUpdate(steps=[EmailStepCreate(subject=subject, body_text="x")]),
                if_match=if_match,
            )
        except PreconditionFailed:
            return "412"
        await session.commit()
    return "saved"


class TestConcurrentEdits:
    async def test_same_etag_saves_once(self, committed: Committed) -> None:
        sequence_id = await committed.sequence()

        outcomes = await asyncio.gather(
            *(edit(committed, sequence_id, f"Edit {n}", '"1"') for n in range(4))
        )

        assert sorted(outcomes) == ["412", "412", "412", "saved"]
        async with committed.database.session() as session:
            sequence = await session.get(SequenceRow, sequence_id)
            versions = await session.scalar(
                select(func.count(func.distinct(SequenceStep.sequence_version))).where(
                    SequenceStep.sequence_id == sequence_id
                )
            )
        assert sequence is not None
        assert sequence.latest_version == 2
        assert versions == 2

    async def test_without_etag_each_adds_version(self, committed: Committed) -> None:
        sequence_id = await committed.sequence()

        outcomes = await asyncio.gather(
            *(edit(committed, sequence_id, f"Edit {n}", None) for n in range(3))
        )

        assert outcomes == ["saved", "saved", "saved"]
        async with committed.database.session() as session:
            sequence = await session.get(SequenceRow, sequence_id)
            numbers = (
                await session.scalars(
                    select(SequenceStep.sequence_version)
                    .where(SequenceStep.sequence_id == sequence_id)
                    .order_by(SequenceStep.sequence_version)
                )
            ).all()
        assert sequence is not None
        assert sequence.latest_version == 4
        assert list(numbers) == [1, 2, 3, 4]
