from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import paginate
from app.models import CustomFieldDefinition, Lead

# The first key of the advisory lock that serializes definition creation for one
# workspace and object type, whose hash is the second key.
DEFINITION_CREATION_LOCK_NAMESPACE = 0x4346_4C44  # "CFLD"


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

    async def all_of_type(
        self, workspace_id: uuid.UUID, object_type: str
    ) -> Sequence[CustomFieldDefinition]:
        """Load every definition of ``object_type``, with no page limit."""
        return (
            await self.session.scalars(
                select(CustomFieldDefinition)
                .where(
                    CustomFieldDefinition.workspace_id == workspace_id,
                    CustomFieldDefinition.object_type == object_type,
                )
                .order_by(CustomFieldDefinition.key)
            )
        ).all()

    async def lock_and_count(self, workspace_id: uuid.UUID, object_type: str) -> int:
        """Take the creation lock of the workspace's ``object_type`` definitions until
        the transaction ends, and return how many definitions it has."""
        await self.session.execute(
            select(
                func.pg_advisory_xact_lock(
                    DEFINITION_CREATION_LOCK_NAMESPACE,
                    func.hashtext(f"{workspace_id}:{object_type}"),
                )
            )
        )
        count = await self.session.scalar(
            select(func.count())
            .select_from(CustomFieldDefinition)
            .where(
                CustomFieldDefinition.workspace_id == workspace_id,
                CustomFieldDefinition.object_type == object_type,
            )
        )
        return int(count or 0)

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

    async def stored_choices(
        self,
        workspace_id: uuid.UUID,
        object_type: str,
        key: str,
        choices: Collection[str],
    ) -> Sequence[str]:
        """Return which of ``choices`` some object of ``object_type`` stores as the
        string value of ``key``, sorted. Only leads are read, as in ``has_values``."""
        if object_type != "lead" or not choices:
            return []
        value = Lead.attributes[key].astext
        found = await self.session.scalars(
            select(value)
            .distinct()
            .where(
                Lead.workspace_id == workspace_id,
                _is_string(key),
                value.in_(sorted(choices)),
            )
            .order_by(value)
        )
        return found.all()

    async def longest_text(
        self, workspace_id: uuid.UUID, object_type: str, key: str
    ) -> int:
        """Return the maximum length in characters of the string values stored for
        ``key`` by objects of ``object_type``, or 0 when none stores one. Only leads
        are read, as in ``has_values``."""
        if object_type != "lead":
            return 0
        longest = await self.session.scalar(
            select(func.max(func.char_length(Lead.attributes[key].astext))).where(
                Lead.workspace_id == workspace_id, _is_string(key)
            )
        )
        return int(longest or 0)


def _is_string(key: str) -> ColumnElement[bool]:
    # A JSON string only, so that the number 1 never matches the choice "1".
    return func.jsonb_typeof(Lead.attributes[key]) == "string"
