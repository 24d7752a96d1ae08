from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.events import emit
from app.core.pagination import encode_cursor, encode_sort_cursor
from app.models import Event, Workspace
from app.webhooks.repository import LOG_SORT
from tests.conftest import make_workspace_key
from tests.webhooks.conftest import Committed
from tests.webhooks.factories import record_event


async def list_events(
    client: httpx.AsyncClient, auth: dict[str, str], **params: str | int
) -> dict[str, object]:
    response = await client.get("/v1/events", params=params, headers=auth)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def event_ids(page: dict[str, object]) -> list[str]:
    items = page["data"]
    assert isinstance(items, list)
    return [item["id"] for item in items]


def api_id(event: Event) -> str:
    return ids.encode("event", event.id)


class TestGetEvent:
    async def test_schema(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        lead_id = ids.new_uuid()
        event = await record_event(
            session, workspace.id, "lead.created", object_id=lead_id, data={"x": 1}
        )

        response = await client.get(f"/v1/events/{api_id(event)}", headers=auth)

        assert response.status_code == 200
        body = response.json()
        assert body == {
            "object": "event",
            "id": api_id(event),
            "type": "lead.created",
            "object_type": "lead",
            "object_id": ids.encode("lead", lead_id),
            "sequence": 1,
            "data": {"x": 1},
            "request_id": None,
            "actor": "test",
            "test": False,
            "created_at": body["created_at"],
        }
        assert body["created_at"].endswith("Z")

    async def test_request_id_recorded(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await client.post(
            "/v1/leads",
            json={"email": "ada@example.com"},
            headers={**auth, "X-Request-Id": "req-123"},
        )

        page = await list_events(client, auth)

        items = page["data"]
        assert isinstance(items, list)
        assert items[0]["type"] == "lead.created"
        assert items[0]["request_id"] == "req-123"
        assert items[0]["object_id"].startswith("lead_")
        assert items[0]["data"]["email"] == "ada@example.com"

    async def test_other_workspace_is_404(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        event = await record_event(session, workspace.id)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/events/{api_id(event)}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "event_not_found"

    async def test_needs_scope(
        self, client: httpx.AsyncClient, session: AsyncSession, workspace: Workspace
    ) -> None:
        event = await record_event(session, workspace.id)
        _, headers = await make_workspace_key(session, scopes=("leads:read",))

        response = await client.get(f"/v1/events/{api_id(event)}", headers=headers)

        assert response.status_code == 403


class TestListEvents:
    async def test_pages_without_gaps(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        events = [await record_event(session, workspace.id) for _ in range(5)]

        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if isinstance(cursor, str):
                params["cursor"] = cursor
            page = await list_events(client, auth, **params)
            seen.extend(event_ids(page))
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]

        assert seen == [api_id(event) for event in reversed(events)]

    async def test_ascending_replay(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        events = [await record_event(session, workspace.id) for _ in range(3)]

        first = await list_events(client, auth, order="asc", limit=2)
        cursor = first["next_cursor"]
        assert isinstance(cursor, str)
        second = await list_events(client, auth, order="asc", limit=2, cursor=cursor)

        assert event_ids(first) + event_ids(second) == [api_id(e) for e in events]
        assert second["has_more"] is False
        assert isinstance(second["next_cursor"], str)

    async def test_ascending_polls_from_last_cursor(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        await record_event(session, workspace.id)
        page = await list_events(client, auth, order="asc")
        cursor = page["next_cursor"]
        assert isinstance(cursor, str)

        empty = await list_events(client, auth, order="asc", cursor=cursor)
        newer = await record_event(session, workspace.id)
        polled = await list_events(client, auth, order="asc", cursor=cursor)

        assert event_ids(empty) == []
        assert empty["next_cursor"] == cursor
        assert event_ids(polled) == [api_id(newer)]

    async def test_newest_first_ends_without_cursor(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        await record_event(session, workspace.id)

        page = await list_events(client, auth)

        assert page["has_more"] is False
        assert page["next_cursor"] is None

    async def test_cursor_of_another_list_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        event = await record_event(session, workspace.id)
        # A bare id cursor, as the other lists page by.
        cursor = encode_cursor(event.id)

        response = await client.get(
            "/v1/events", params={"order": "asc", "cursor": cursor}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.cursor"

    @pytest.mark.parametrize("order", ["desc", "asc"])
    @pytest.mark.parametrize("tx_id", [2**63, 2**64 - 1])
    async def test_cursor_beyond_bigint_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        order: str,
        tx_id: int,
    ) -> None:
        event = await record_event(session, workspace.id)
        cursor = encode_sort_cursor(LOG_SORT, tx_id, event.id)

        response = await client.get(
            "/v1/events", params={"order": order, "cursor": cursor}, headers=auth
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "query.cursor"
        assert response.json()["errors"][0]["code"] == "invalid_cursor"

    async def test_filter_exact_type(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        await record_event(session, workspace.id, "invoice.created")
        paid = await record_event(session, workspace.id, "invoice.paid")
        await record_event(session, workspace.id, "lead.created")

        page = await list_events(client, auth, type="invoice.paid")

        assert event_ids(page) == [api_id(paid)]

    async def test_filter_prefix_wildcard(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        created = await record_event(session, workspace.id, "invoice.created")
        paid = await record_event(session, workspace.id, "invoice.paid")
        await record_event(session, workspace.id, "lead.created")
        await record_event(session, workspace.id, "invoice_line.created")

        page = await list_events(client, auth, type="invoice.*")

        assert event_ids(page) == [api_id(paid), api_id(created)]

    async def test_filter_several_types(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        lead = await record_event(session, workspace.id, "lead.created")
        paid = await record_event(session, workspace.id, "invoice.paid")
        await record_event(session, workspace.id, "customer.created")

        response = await client.get(
            "/v1/events?type=lead.*&type=invoice.paid", headers=auth
        )

        assert event_ids(response.json()) == [api_id(paid), api_id(lead)]

    async def test_star_matches_everything(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        for event_type in ("lead.created", "invoice.paid"):
            await record_event(session, workspace.id, event_type)

        page = await list_events(client, auth, type="*")

        assert len(event_ids(page)) == 2

    async def test_like_characters_are_literal(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        await record_event(session, workspace.id, "webhookXendpoint.created")
        real = await record_event(session, workspace.id, "webhook_endpoint.created")

        page = await list_events(client, auth, type="webhook_endpoint.*")

        assert event_ids(page) == [api_id(real)]

    async def test_invalid_type_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for value in ("invoice%", "nosuch.thing", "in_voice.*", "lead.craeted"):
            response = await client.get(
                "/v1/events", params={"type": value}, headers=auth
            )

            assert response.status_code == 422, value
            problem = response.json()
            assert problem["code"] == "unknown_event_type"
            assert problem["errors"][0]["field"] == "query.type"

    async def test_too_many_type_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        query = "&".join(f"type=lead.t{i}" for i in range(21))

        response = await client.get(f"/v1/events?{query}", headers=auth)

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "too_many"

    async def test_filter_object_id(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice_id = ids.new_uuid()
        first = await record_event(
            session, workspace.id, "invoice.created", object_id=invoice_id
        )
        second = await record_event(
            session, workspace.id, "invoice.paid", object_id=invoice_id
        )
        await record_event(session, workspace.id, "invoice.created")

        page = await list_events(
            client, auth, object_id=ids.encode("invoice", invoice_id)
        )

        assert event_ids(page) == [api_id(second), api_id(first)]
        items = page["data"]
        assert isinstance(items, list)
        assert [item["sequence"] for item in items] == [2, 1]

    async def test_invalid_object_id(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        event_body = "01jf3v8a5ktq2m7x9c4b6d8e0g"
        for value in (
            "inv_123",
            "nope_" + event_body,
            "plain",
            # Ids of kinds that no event is about.
            "evt_" + event_body,
            ids.encode("webhook_recovery", ids.new_uuid()),
        ):
            response = await client.get(
                "/v1/events", params={"object_id": value}, headers=auth
            )

            assert response.status_code == 422, value
            assert response.json()["errors"][0]["field"] == "query.object_id"

    async def test_filter_created_window(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        base = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        events = [await record_event(session, workspace.id) for _ in range(3)]
        for offset, event in enumerate(events):
            await session.execute(
                update(Event)
                .where(Event.id == event.id)
                .values(created_at=base + timedelta(hours=offset))
            )
        await session.commit()

        page = await list_events(
            client,
            auth,
            created_after="2026-12-01T12:30:00Z",
            created_before="2026-12-01T14:00:00+00:00",
        )

        assert event_ids(page) == [api_id(events[1])]

    async def test_filter_bare_object_id(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        # Settings objects have no id prefix; their events show a bare UUID.
        event = await record_event(
            session, workspace.id, "nurture_settings.updated", object_id=workspace.id
        )
        await record_event(session, workspace.id)

        page = await list_events(client, auth, object_id=str(workspace.id))

        assert event_ids(page) == [api_id(event)]

    async def test_reversed_created_window_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for after, before in (
            ("2027-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
            ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ):
            response = await client.get(
                "/v1/events",
                params={"created_after": after, "created_before": before},
                headers=auth,
            )

            assert response.status_code == 422
            error = response.json()["errors"][0]
            assert error["field"] == "query.created_after"
            assert error["code"] == "invalid_range"

    async def test_naive_datetime_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get(
            "/v1/events?created_after=2026-12-01T12:00:00", headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.created_after"

    async def test_other_workspace_hidden(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        other, _ = await make_workspace_key(session)
        mine = await record_event(session, workspace.id)
        await record_event(session, other.id)

        page = await list_events(client, auth)

        assert event_ids(page) == [api_id(mine)]


async def replay(
    client: httpx.AsyncClient, auth: dict[str, str], count: int
) -> list[str]:
    """Replay the log oldest first until ``count`` events showed, for up to 10 s.

    Another transaction of the cluster, running when a page is read, holds back the
    events written after it began, so the replay polls as a consumer would.
    """
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        params: dict[str, str | int] = {"order": "asc"}
        if cursor is not None:
            params["cursor"] = cursor
        page = await list_events(client, auth, **params)
        seen.extend(event_ids(page))
        if len(seen) >= count:
            break
        next_cursor = page["next_cursor"]
        cursor = next_cursor if isinstance(next_cursor, str) else None
        await asyncio.sleep(0.1)
    return seen


async def emit_lead_event(session: AsyncSession, committed: Committed) -> Event:
    """Emit an event about a new lead, without committing it."""
    return await emit(
        session,
        workspace_id=committed.workspace.id,
        type="lead.created",
        object_type="lead",
        object_id=ids.new_uuid(),
        data={},
        actor="test",
    )


class TestReplayAcrossTransactions:
    async def test_event_behind_a_running_transaction_waits(
        self, committed_api: httpx.AsyncClient, committed: Committed
    ) -> None:
        database = committed.database
        async with database.session() as slow:
            # The slow transaction writes its event first and commits last.
            early = await emit_lead_event(slow, committed)
            async with database.session() as fast:
                late = await emit_lead_event(fast, committed)
                await fast.commit()
            during_slow = await list_events(committed_api, committed.auth, order="asc")
            await slow.commit()
        replayed = await replay(committed_api, committed.auth, 2)

        assert event_ids(during_slow) == []
        assert replayed == [api_id(early), api_id(late)]

    async def test_replay_after_a_page_misses_nothing(
        self, committed_api: httpx.AsyncClient, committed: Committed
    ) -> None:
        database = committed.database
        async with database.session() as first:
            before = await emit_lead_event(first, committed)
            await first.commit()
        first_replay = await replay(committed_api, committed.auth, 1)
        page = await list_events(committed_api, committed.auth, order="asc")
        cursor = page["next_cursor"]
        assert isinstance(cursor, str)

        async with database.session() as slow:
            early = await emit_lead_event(slow, committed)
            async with database.session() as fast:
                late = await emit_lead_event(fast, committed)
                await fast.commit()
            during_slow = await list_events(
                committed_api, committed.auth, order="asc", cursor=cursor
            )
            await slow.commit()
        rest: list[str] = []
        for _ in range(100):
            polled = await list_events(
                committed_api, committed.auth, order="asc", cursor=cursor
            )
            rest = event_ids(polled)
            if len(rest) >= 2:
                break
            await asyncio.sleep(0.1)

        assert first_replay == [api_id(before)]
        assert event_ids(during_slow) == []
        assert during_slow["next_cursor"] == cursor
        assert rest == [api_id(early), api_id(late)]
