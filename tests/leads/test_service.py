from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal
from app.core.ids import new_uuid
from app.leads.schemas import LeadCreate, LeadUpdate
from app.leads.service import lead_service
from app.models import Event, Lead, Workspace


def _principal(workspace: Workspace) -> Principal:
    return Principal(
        api_key_id=new_uuid(),
        workspace_id=workspace.id,
        scopes=frozenset({"leads:write"}),
        kind="secret",
    )


class TestCreateThenUpdate:
    async def test_same_session(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        principal = _principal(workspace)
        created = await lead_service.create(
            session, principal, LeadCreate(email="grace@example.com")
        )

        updated = await lead_service.update(
            session,
            principal,
            created.id,
            LeadUpdate(company="Navy"),
            if_match='"1"',
        )

        assert updated is created
        assert updated.version == 2
        assert updated.company == "Navy"
        assert await session.get(Lead, created.id) is created
        stored = (
            await session.execute(
                select(Event.type, Event.sequence)
                .where(Event.object_id == created.id)
                .order_by(Event.sequence)
            )
        ).all()
        assert [tuple(row) for row in stored] == [
            ("lead.created", 1),
            ("lead.updated", 2),
        ]
