from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import decode
from app.core.jobs import JobQueue
from app.leads.scoring import lead_scoring
from app.models import Event, Lead, LeadEngagement, ScoringRule
from app.settings import Settings
from tests.conftest import TestDatabase, make_workspace_key
from tests.leads.helpers import create_lead, create_rule, get_lead, post_ok
from workers.tasks import FUNCTIONS, SWEEPS, rescore_leads, sweep_lead_scores


async def event_types(session: AsyncSession, lead_id: str) -> list[str]:
    rows = await session.scalars(
        select(Event.type)
        .where(Event.object_id == decode("lead", lead_id))
        .order_by(Event.sequence)
    )
    return list(rows)


async def engage(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    lead_id: str,
    kind: str,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind}
    if occurred_at is not None:
        body["occurred_at"] = occurred_at.isoformat()
    return await post_ok(client, f"/v1/leads/{lead_id}/engagements", auth, body)


@pytest.fixture
def job_context(
    database: TestDatabase, queue: JobQueue, settings: Settings
) -> dict[str, Any]:
    return {"db": database, "queue": queue, "settings": settings}


class TestFieldRules:
    @pytest.mark.parametrize(
        ("rule", "lead", "matched"),
        [
            (
                {"field": "company", "operator": "equals", "value": "Acme"},
                {"company": "Acme"},
                True,
            ),
            (
                {"field": "company", "operator": "equals", "value": "Acme"},
                {"company": "acme"},
                False,
            ),
            (
                {"field": "company", "operator": "not_equals", "value": "Acme"},
                {"company": "Initech"},
                True,
            ),
            (
                {"field": "company", "operator": "not_equals", "value": "Acme"},
                {"company": "Acme"},
                False,
            ),
            (
                {"field": "source", "operator": "in", "value": ["partner", "referral"]},
                {"source": "referral"},
                True,
            ),
            (
                {"field": "source", "operator": "in", "value": ["partner", "referral"]},
                {"source": "api"},
                False,
            ),
            (
                {"field": "title", "operator": "contains", "value": "chief"},
                {"title": "Chief Revenue Officer"},
                True,
            ),
            (
                {"field": "title", "operator": "contains", "value": "chief"},
                {"title": "Engineer"},
                False,
            ),
            (
                {"field": "tags", "operator": "contains", "value": "vip"},
                {"tags": ["VIP", "emea"]},
                True,
            ),
            ({"field": "phone", "operator": "exists"}, {"phone": "+4930123456"}, True),
            ({"field": "phone", "operator": "exists"}, {}, False),
            ({"field": "phone", "operator": "exists", "value": False}, {}, True),
            (
                {"field": "attributes.employees", "operator": "gt", "value": 100},
                {"attributes": {"employees": 250}},
                True,
            ),
            (
                {"field": "attributes.employees", "operator": "gt", "value": 100},
                {"attributes": {"employees": 100}},
                False,
            ),
            (
                {"field": "attributes.employees", "operator": "lt", "value": 100},
                {"attributes": {"employees": 9.5}},
                True,
            ),
            (
                {"field": "attributes.employees", "operator": "lt", "value": 100},
                {"attributes": {"employees": "9"}},
                False,
            ),
            (
                {"field": "attributes.vip", "operator": "equals", "value": True},
                {"attributes": {"vip": 1}},
                False,
            ),
        ],
    )
    async def test_operator(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        rule: dict[str, Any],
        lead: dict[str, Any],
        matched: bool,
    ) -> None:
        created_rule = await create_rule(client, auth, kind="field", points=15, **rule)

        created = await create_lead(client, auth, **lead)

        assert created["score"] == (15 if matched else 0)
        expected = (
            [{"rule_id": created_rule["id"], "name": "rule", "points": 15}]
            if matched
            else []
        )
        assert created["score_breakdown"] == expected

    async def test_points_add_up_and_subtract(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_rule(
            client,
            auth,
            kind="field",
            points=20,
            field="company",
            operator="exists",
        )
        await create_rule(
            client,
            auth,
            name="free mail",
            kind="field",
            points=-5,
            field="email_normalized",
            operator="contains",
            value="@gmail.",
        )

        lead = await create_lead(
            client, auth, email="ada@gmail.com", company="Analytical"
        )

        assert lead["score"] == 15
        assert [item["points"] for item in lead["score_breakdown"]] == [20, -5]

    async def test_update_rescores(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_rule(
            client,
            auth,
            kind="field",
            points=10,
            field="status",
            operator="equals",
            value="working",
        )
        lead = await create_lead(client, auth)

        response = await client.patch(
            f"/v1/leads/{lead['id']}", json={"status": "working"}, headers=auth
        )

        assert response.json()["score"] == 10
        assert response.json()["version"] == 2
        assert await event_types(session, lead["id"]) == [
            "lead.created",
            "lead.updated",
            "lead.score_changed",
        ]
        assert (await get_lead(client, auth, lead["id"]))["score"] == 10

    async def test_no_rules_no_extra_events(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth, company="Acme")

        assert lead["score"] == 0
        assert lead["score_breakdown"] == []
        assert await event_types(session, lead["id"]) == ["lead.created"]


class TestCreateRule:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/scoring-rules",
            json={
                "name": "Opens",
                "kind": "engagement",
                "event_type": "email_opened",
                "points": 2,
                "max_count": 5,
                "half_life_days": 30,
            },
            headers=auth,
        )

        assert response.status_code == 201
        rule = response.json()
        assert rule["id"].startswith("srule_")
        assert rule["max_count"] == 5
        settings = (await client.get("/v1/scoring-settings", headers=auth)).json()
        assert settings["scoring_version"] == 1
        types = (await session.scalars(select(Event.type))).all()
        assert types == ["scoring_rule.created"]

    @pytest.mark.parametrize(
        "body",
        [
            {"kind": "field", "points": 1},
            {"kind": "field", "points": 1, "field": "company"},
            {"kind": "field", "points": 1, "field": "secret", "operator": "exists"},
            {
                "kind": "field",
                "points": 1,
                "field": "attributes.Bad",
                "operator": "exists",
            },
            {
                "kind": "field",
                "points": 1,
                "field": "company",
                "operator": "gt",
                "value": "5",
            },
            {
                "kind": "field",
                "points": 1,
                "field": "company",
                "operator": "in",
                "value": "Acme",
            },
            {
                "kind": "field",
                "points": 1,
                "field": "company",
                "operator": "in",
                "value": [],
            },
            {
                "kind": "field",
                "points": 1,
                "field": "company",
                "operator": "equals",
                "value": {"a": 1},
            },
            {
                "kind": "field",
                "points": 1,
                "field": "company",
                "operator": "contains",
                "value": "",
            },
            {
                "kind": "field",
                "points": 1,
                "field": "company",
                "operator": "exists",
                "value": "yes",
            },
            {
                "kind": "field",
                "points": 1,
                "field": "company",
                "operator": "exists",
                "event_type": "replied",
            },
            {"kind": "engagement", "points": 1},
            {"kind": "engagement", "points": 1, "event_type": "fax_sent"},
            {
                "kind": "engagement",
                "points": 1,
                "event_type": "replied",
                "half_life_days": 3,
                "expires_after_days": 3,
            },
            {
                "kind": "engagement",
                "points": 1,
                "event_type": "replied",
                "field": "company",
            },
            {
                "kind": "engagement",
                "points": 1,
                "event_type": "replied",
                "max_count": 0,
            },
            {"kind": "engagement", "points": 10_001, "event_type": "replied"},
            {"kind": "engagement", "points": "5", "event_type": "replied"},
            {"kind": "bonus", "points": 1},
        ],
    )
    async def test_invalid_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        body: dict[str, Any],
    ) -> None:
        response = await client.post(
            "/v1/scoring-rules", json={"name": "r", **body}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"]
        count = select(func.count()).select_from(ScoringRule)
        assert await session.scalar(count) == 0


class TestUpdateRule:
    async def test_merged_rule_checked(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rule = await create_rule(
            client, auth, kind="field", points=1, field="company", operator="exists"
        )

        response = await client.patch(
            f"/v1/scoring-rules/{rule['id']}", json={"operator": "gt"}, headers=auth
        )

        assert response.status_code == 422
        assert "value of gt must be a number" in response.json()["detail"]

    async def test_changed_and_version_bumped(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rule = await create_rule(
            client, auth, kind="field", points=1, field="company", operator="exists"
        )

        response = await client.patch(
            f"/v1/scoring-rules/{rule['id']}",
            json={"points": 7},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200
        assert response.json()["points"] == 7
        settings = (await client.get("/v1/scoring-settings", headers=auth)).json()
        assert settings["scoring_version"] == 2

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        rule = await create_rule(
            client, auth, kind="field", points=1, field="company", operator="exists"
        )
        _, other_auth = await make_workspace_key(session)

        response = await client.delete(
            f"/v1/scoring-rules/{rule['id']}", headers=other_auth
        )

        assert response.status_code == 404
        assert response.json()["code"] == "scoring_rule_not_found"


class TestEngagements:
    async def test_points_per_occurrence(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        rule = await create_rule(
            client, auth, kind="engagement", event_type="email_clicked", points=3
        )
        lead = await create_lead(client, auth)

        engagement = await engage(client, auth, lead["id"], "email_clicked")
        await engage(client, auth, lead["id"], "email_clicked")
        await engage(client, auth, lead["id"], "email_opened")

        assert engagement["id"].startswith("eng_")
        assert engagement["lead_id"] == lead["id"]
        scored = await get_lead(client, auth, lead["id"])
        assert scored["score"] == 6
        assert scored["score_breakdown"] == [
            {"rule_id": rule["id"], "name": "rule", "points": 6}
        ]
        assert await event_types(session, lead["id"]) == [
            "lead.created",
            "lead.score_changed",
            "lead.score_changed",
        ]

    async def test_max_count(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_rule(
            client,
            auth,
            kind="engagement",
            event_type="email_opened",
            points=2,
            max_count=2,
        )
        lead = await create_lead(client, auth)

        for _ in range(4):
            await engage(client, auth, lead["id"], "email_opened")

        assert (await get_lead(client, auth, lead["id"]))["score"] == 4

    async def test_expired_points_drop(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_rule(
            client,
            auth,
            kind="engagement",
            event_type="replied",
            points=10,
            expires_after_days=7,
        )
        lead = await create_lead(client, auth)
        now = datetime.now(UTC)

        await engage(client, auth, lead["id"], "replied", now - timedelta(days=8))
        await engage(client, auth, lead["id"], "replied", now - timedelta(days=2))

        scored = await get_lead(client, auth, lead["id"])
        assert scored["score"] == 10

    async def test_half_life(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_rule(
            client,
            auth,
            kind="engagement",
            event_type="webinar_attended",
            points=40,
            half_life_days=7,
        )
        lead = await create_lead(client, auth)

        await engage(
            client,
            auth,
            lead["id"],
            "webinar_attended",
            datetime.now(UTC) - timedelta(days=14),
        )

        assert (await get_lead(client, auth, lead["id"]))["score"] == 10

    async def test_list(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        lead = await create_lead(client, auth)
        first = await engage(client, auth, lead["id"], "form_submitted")
        second = await engage(client, auth, lead["id"], "meeting_booked")

        page = (
            await client.get(f"/v1/leads/{lead['id']}/engagements", headers=auth)
        ).json()

        assert [item["id"] for item in page["data"]] == [second["id"], first["id"]]

    @pytest.mark.parametrize(
        "body",
        [
            {"type": "fax_sent"},
            {},
            {"type": "replied", "occurred_at": "2026-01-01T10:00:00"},
            {"type": "replied", "occurred_at": "2999-01-01T10:00:00Z"},
            {"type": "replied", "metadata": [1]},
            {"type": "replied", "metadata": {f"k{i}": i for i in range(51)}},
            {"type": "replied", "extra": 1},
        ],
    )
    async def test_invalid_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        body: dict[str, Any],
    ) -> None:
        lead = await create_lead(client, auth)

        response = await client.post(
            f"/v1/leads/{lead['id']}/engagements", json=body, headers=auth
        )

        assert response.status_code == 422
        count = select(func.count()).select_from(LeadEngagement)
        assert await session.scalar(count) == 0

    async def test_other_workspace_lead_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        _, other_auth = await make_workspace_key(session)

        response = await client.post(
            f"/v1/leads/{lead['id']}/engagements",
            json={"type": "replied"},
            headers=other_auth,
        )

        assert response.status_code == 404


class TestSalesReady:
    async def test_emitted_once_per_crossing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await client.patch("/v1/scoring-settings", json={"threshold": 10}, headers=auth)
        await create_rule(
            client, auth, kind="engagement", event_type="replied", points=5
        )
        await create_rule(
            client,
            auth,
            kind="field",
            points=-20,
            field="status",
            operator="equals",
            value="nurturing",
        )
        lead = await create_lead(client, auth)

        await engage(client, auth, lead["id"], "replied")
        below = await get_lead(client, auth, lead["id"])
        await engage(client, auth, lead["id"], "replied")
        ready = await get_lead(client, auth, lead["id"])
        await engage(client, auth, lead["id"], "replied")
        await client.patch(
            f"/v1/leads/{lead['id']}", json={"status": "working"}, headers=auth
        )
        await client.patch(
            f"/v1/leads/{lead['id']}", json={"status": "nurturing"}, headers=auth
        )
        dropped = await get_lead(client, auth, lead["id"])
        await client.patch(
            f"/v1/leads/{lead['id']}", json={"status": "working"}, headers=auth
        )

        assert below["sales_ready_at"] is None
        assert ready["score"] == 10
        assert ready["sales_ready_at"] is not None
        assert dropped["score"] == -5
        assert dropped["sales_ready_at"] is None
        types = await event_types(session, lead["id"])
        assert types.count("lead.sales_ready") == 2
        assert types[types.index("lead.sales_ready") - 1] == "lead.score_changed"

    async def test_threshold_setting(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.patch(
            "/v1/scoring-settings",
            json={"threshold": 50},
            headers={**auth, "If-Match": '"0"'},
        )

        assert response.status_code == 200
        assert response.json() == {
            "object": "scoring_settings",
            "threshold": 50,
            "scoring_version": 1,
        }
        assert response.headers["etag"] == '"1"'
        types = (await session.scalars(select(Event.type))).all()
        assert types == ["scoring_settings.updated"]

    @pytest.mark.parametrize(
        ("body", "headers"),
        [
            ({"threshold": "50"}, {}),
            ({"threshold": 10**7}, {}),
            ({"limit": 5}, {}),
            ({"threshold": 5}, {"If-Match": '"9"'}),
        ],
    )
    async def test_invalid_setting_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        response = await client.patch(
            "/v1/scoring-settings", json=body, headers={**auth, **headers}
        )

        assert response.status_code in (412, 422)
        settings = (await client.get("/v1/scoring-settings", headers=auth)).json()
        assert settings["threshold"] is None


class TestBackgroundRescore:
    async def test_rule_change_defers_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        redis_client: aioredis.Redis,
        workspace: Any,
    ) -> None:
        await create_rule(
            client, auth, kind="field", points=1, field="company", operator="exists"
        )

        job_key = f"arq:job:rescore:{workspace.id}:1"
        assert await redis_client.exists(job_key) == 1

    async def test_job_rescores_open_leads(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        workspace: Any,
    ) -> None:
        leads = [
            await create_lead(client, auth, email=f"l{i}@example.com", company="Acme")
            for i in range(3)
        ]
        closed = await create_lead(client, auth, email="junk@example.com", company="X")
        await client.patch(
            f"/v1/leads/{closed['id']}", json={"status": "junk"}, headers=auth
        )
        await create_rule(
            client, auth, kind="field", points=8, field="company", operator="exists"
        )

        rescored = await rescore_leads(job_context, str(workspace.id))
        again = await rescore_leads(job_context, str(workspace.id))

        assert rescored == 3
        assert again == 0
        for lead in leads:
            scored = await get_lead(client, auth, lead["id"])
            assert scored["score"] == 8
            assert scored["version"] == 1
            assert await event_types(session, lead["id"]) == [
                "lead.created",
                "lead.score_changed",
            ]
        assert (await get_lead(client, auth, closed["id"]))["score"] == 0

    async def test_sweep_redoes_lost_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
    ) -> None:
        lead = await create_lead(client, auth, company="Acme")
        await create_rule(
            client, auth, kind="field", points=4, field="company", operator="exists"
        )

        swept = await sweep_lead_scores(job_context)
        swept_again = await sweep_lead_scores(job_context)

        assert swept == 1
        assert swept_again == 0
        assert (await get_lead(client, auth, lead["id"]))["score"] == 4

    async def test_sweep_applies_decay(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
    ) -> None:
        await create_rule(
            client,
            auth,
            kind="engagement",
            event_type="replied",
            points=10,
            expires_after_days=7,
        )
        lead = await create_lead(client, auth)
        occurred = datetime.now(UTC) - timedelta(days=6)
        await engage(client, auth, lead["id"], "replied", occurred)
        lead_id = decode("lead", lead["id"])
        rescore_at = await session.scalar(
            select(Lead.rescore_at).where(Lead.id == lead_id)
        )
        # Moving the engagement two days back has the effect of two days passing.
        await session.execute(
            update(LeadEngagement).values(occurred_at=occurred - timedelta(days=2))
        )
        await session.execute(
            update(Lead)
            .where(Lead.id == lead_id)
            .values(rescore_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()

        swept = await sweep_lead_scores(job_context)

        assert rescore_at is not None
        assert abs(rescore_at - (occurred + timedelta(days=7))) < timedelta(seconds=1)
        assert swept == 1
        scored = await get_lead(client, auth, lead["id"])
        assert scored["score"] == 0
        assert (
            await session.scalar(select(Lead.rescore_at).where(Lead.id == lead_id))
            is None
        )

    async def test_due_rescore_with_later_clock(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        await create_rule(
            client,
            auth,
            kind="engagement",
            event_type="replied",
            points=16,
            half_life_days=1,
        )
        lead = await create_lead(client, auth)
        await engage(client, auth, lead["id"], "replied")

        later = datetime.now(UTC) + timedelta(days=2, minutes=1)
        count = await lead_scoring.rescore_due(session, now=later)
        await session.commit()

        assert count == 1
        assert (await get_lead(client, auth, lead["id"]))["score"] == 4

    def test_registered_with_worker(self) -> None:
        assert rescore_leads in FUNCTIONS
        assert sweep_lead_scores in FUNCTIONS
        assert sweep_lead_scores in SWEEPS
