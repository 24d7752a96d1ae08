from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import CustomFieldDefinition, Lead


class CustomFieldRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> CustomFieldRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        definition_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> CustomFieldDefinition | None:
        statement = select(CustomFieldDefinition).where(
            CustomFieldDefinition.workspace_id == workspace_id,
            CustomFieldDefinition.id == definition_id,
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def get_by_key(
        self, workspace_id: uuid.UUID, object_type: str, key: str
    ) -> CustomFieldDefinition | None:
        return await self.session.scalar(
            select(CustomFieldDefinition).where(
                CustomFieldDefinition.workspace_id == workspace_id,
                CustomFieldDefinition.object_type == object_type,
                CustomFieldDefinition.key == key,
            )
        )

    async def for_write(
        self, workspace_id: uuid.UUID, object_type: str, keys: Iterable[str]
    ) -> Sequence[CustomFieldDefinition]:
        """Load the definitions of ``keys`` and the required ones, share-locked.

        FOR KEY SHARE conflicts only with the FOR UPDATE of a definition change, so
        writes of objects never wait for each other, and a type change cannot slip in
        between this check and the write's commit.
        """
        return (
            await self.session.scalars(
                select(CustomFieldDefinition)
                .where(
                    CustomFieldDefinition.workspace_id == workspace_id,
                    CustomFieldDefinition.object_type == object_type,
                    or_(
                        CustomFieldDefinition.key.in_(list(keys)),
                        CustomFieldDefinition.required.is_(True),
                    ),
                )
                .with_for_update(key_share=True)
            )
        ).all()

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        object_type: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[CustomFieldDefinition], str | None, bool]:
        statement = select(CustomFieldDefinition).where(
            CustomFieldDefinition.workspace_id == workspace_id
        )
        if object_type is not None:
            statement = statement.where(
                CustomFieldDefinition.object_type == object_type
            )
        return await paginate(
            self.session,
            statement,
            CustomFieldDefinition.id,
            limit=limit,
            cursor=cursor,
        )

    async def has_values(
        self, workspace_id: uuid.UUID, object_type: str, key: str
    ) -> bool:
        """Tell whether any object of ``object_type`` stores a value for ``key``."""
        if object_type != "lead":
            # NOTE: only leads validate attributes against definitions so far.
            return False
        found = await self.session.scalar(
            select(Lead.id)
            .where(Lead.workspace_id == workspace_id, Lead.attributes.has_key(key))
            .limit(1)
        )
        return found is not None
