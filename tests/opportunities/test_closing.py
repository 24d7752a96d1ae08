"""Required fields, skipping stages, winning, losing, probabilities and owners."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Event
from app.opportunities.schemas import weighted_amount
from tests.customers.factories import create_contact, create_customer
from tests.opportunities.factories import (
    create_lost_reason,
    create_opportunity,
    default_pipeline,
    move,
    stage_history,
    stage_ids,
)
from tests.users.factories import create_user


async def require_fields(
    client: httpx.AsyncClient, auth: dict[str, str], stage: str, fields: list[str]
) -> None:
    pipeline = await default_pipeline(client, auth)
    stage_id = {item["name"]: item["id"] for item in pipeline["stages"]}[stage]
    response = await client.patch(
        f"/v1/pipelines/{pipeline['id']}/stages/{stage_id}",
        json={"required_fields": fields},
        headers=auth,
    )
    assert response.status_code == 200, response.text


async def event_types(session: AsyncSession, opportunity_id: str) -> list[str]:
    rows = await session.scalars(
        select(Event.type)
        .where(Event.object_id == ids.decode("opportunity", opportunity_id))
        .order_by(Event.sequence)
    )
    return list(rows.all())


class TestRequiredFields:
    async def test_missing_fields_listed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        await require_fields(
            client,
            auth,
            "Negotiation",
            ["amount", "expected_close_date", "contact_id", "competitors"],
        )
        created = await create_opportunity(client, auth, competitors=["Napier"])

        response = await move(client, auth, created["id"], stages["Negotiation"])

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "stage_requirements_missing"
        assert problem["missing_fields"] == [
            "amount",
            "expected_close_date",
            "contact_id",
        ]
        assert problem["stage_id"] == stages["Negotiation"]
        assert len(await stage_history(client, auth, created["id"])) == 1

    async def test_enters_once_set(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        await require_fields(
            client, auth, "Negotiation", ["amount", "expected_close_date", "contact_id"]
        )
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])
        created = await create_opportunity(client, auth, customer["id"])
        await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={
                "amount": 5000,
                "expected_close_date": "2027-02-01",
                "contact_id": contact["id"],
            },
            headers=auth,
        )

        response = await move(client, auth, created["id"], stages["Negotiation"])

        assert response.status_code == 200, response.text

    async def test_checked_on_create(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await require_fields(client, auth, "Qualification", ["owner_id"])
        customer = await create_customer(client, auth)

        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": customer["id"], "name": "Unowned"},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["missing_fields"] == ["owner_id"]

    async def test_checked_on_win(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await require_fields(client, auth, "Closed won", ["amount"])
        created = await create_opportunity(client, auth)

        response = await client.post(
            f"/v1/opportunities/{created['id']}/won", json={}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["missing_fields"] == ["amount"]


class TestStageHistory:
    async def test_skip_recorded_with_time(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        opportunity_id = ids.decode("opportunity", created["id"])
        await session.execute(
            text(
                "UPDATE opportunities SET stage_entered_at = now() - interval '3 days' "
                "WHERE id = :id"
            ),
            {"id": opportunity_id},
        )

        response = await move(client, auth, created["id"], stages["Negotiation"])

        assert response.status_code == 200, response.text
        latest, first = await stage_history(client, auth, created["id"])
        assert latest["from_stage_id"] == stages["Qualification"]
        assert latest["to_stage_id"] == stages["Negotiation"]
        assert latest["from_status"] == "open"
        assert latest["to_status"] == "open"
        assert 3 * 86400 <= latest["seconds_in_previous_stage"] < 3 * 86400 + 60
        assert latest["opportunity_version"] == 1
        assert latest["id"].startswith("stx_")
        assert first["seconds_in_previous_stage"] is None
        assert first["opportunity_version"] == 0
        assert response.json()["stage_entered_at"] == latest["at"]


class TestWin:
    async def test_won_moves_to_won_stage(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth, amount=1000)

        response = await client.post(
            f"/v1/opportunities/{created['id']}/won",
            json={},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        won = response.json()
        assert won["status"] == "won"
        assert won["stage_id"] == stages["Closed won"]
        assert won["probability"] == 100
        assert won["weighted_amount"] == 1000
        assert await event_types(session, created["id"]) == [
            "opportunity.created",
            "opportunity.stage_changed",
            "opportunity.won",
        ]

    async def test_blocking_objection_prevents(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        objections = []
        for blocking in (True, False, True):
            response = await client.post(
                f"/v1/opportunities/{created['id']}/objections",
                json={"category": "price", "text": "Too dear", "blocking": blocking},
                headers=auth,
            )
            objections.append(response.json())

        by_won = await client.post(
            f"/v1/opportunities/{created['id']}/won", json={}, headers=auth
        )
        by_move = await move(client, auth, created["id"], stages["Closed won"])

        for response in (by_won, by_move):
            assert response.status_code == 409
            problem = response.json()
            assert problem["code"] == "blocking_objections_open"
            assert problem["objection_ids"] == [
                objections[0]["id"],
                objections[2]["id"],
            ]

    async def test_resolved_objections_allow(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)
        objection = (
            await client.post(
                f"/v1/opportunities/{created['id']}/objections",
                json={
                    "category": "authority",
                    "text": "CFO must sign",
                    "blocking": True,
                },
                headers=auth,
            )
        ).json()
        await client.patch(
            f"/v1/opportunities/{created['id']}/objections/{objection['id']}",
            json={"status": "resolved", "resolution_notes": "CFO signed"},
            headers=auth,
        )

        response = await client.post(
            f"/v1/opportunities/{created['id']}/won", json={}, headers=auth
        )

        assert response.status_code == 200, response.text

    async def test_closed_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)
        await client.post(
            f"/v1/opportunities/{created['id']}/won", json={}, headers=auth
        )

        response = await client.post(
            f"/v1/opportunities/{created['id']}/won", json={}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "invalid_transition"


class TestLose:
    async def test_lost_with_reason(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        reason = await create_lost_reason(client, auth, "No budget")

        response = await client.post(
            f"/v1/opportunities/{created['id']}/lost",
            json={"lost_reason_id": reason["id"], "lost_note": "Frozen until Q3"},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        lost = response.json()
        assert lost["status"] == "lost"
        assert lost["stage_id"] == stages["Closed lost"]
        assert lost["lost_reason_id"] == reason["id"]
        assert lost["lost_note"] == "Frozen until Q3"
        assert (await event_types(session, created["id"]))[-1] == "opportunity.lost"

    async def test_reason_required(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)

        response = await client.post(
            f"/v1/opportunities/{created['id']}/lost", json={}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "lost_reason_id"

    async def test_unknown_and_inactive_reason(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)
        reason = await create_lost_reason(client, auth, "Old reason")
        await client.patch(
            f"/v1/lost-reasons/{reason['id']}", json={"active": False}, headers=auth
        )
        unknown = ids.encode("lost_reason", ids.new_uuid())

        inactive = await client.post(
            f"/v1/opportunities/{created['id']}/lost",
            json={"lost_reason_id": reason["id"]},
            headers=auth,
        )
        missing = await client.post(
            f"/v1/opportunities/{created['id']}/lost",
            json={"lost_reason_id": unknown},
            headers=auth,
        )

        assert inactive.status_code == 422
        assert inactive.json()["errors"][0]["code"] == "lost_reason_inactive"
        assert missing.status_code == 422
        assert missing.json()["errors"][0]["code"] == "lost_reason_not_found"

    async def test_chosen_stage_must_be_lost(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        reason = await create_lost_reason(client, auth)

        response = await client.post(
            f"/v1/opportunities/{created['id']}/lost",
            json={"lost_reason_id": reason["id"], "stage_id": stages["Negotiation"]},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "stage_not_lost"

    async def test_reopen_needs_reason(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)
        await client.post(
            f"/v1/opportunities/{created['id']}/won", json={}, headers=auth
        )

        response = await client.post(
            f"/v1/opportunities/{created['id']}/reopen", json={}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "reason"


async def close(
    client: httpx.AsyncClient, auth: dict[str, str], opportunity_id: str, status: str
) -> None:
    if status == "won":
        response = await client.post(
            f"/v1/opportunities/{opportunity_id}/won", json={}, headers=auth
        )
    else:
        reason = await create_lost_reason(client, auth)
        response = await client.post(
            f"/v1/opportunities/{opportunity_id}/lost",
            json={"lost_reason_id": reason["id"]},
            headers=auth,
        )
    assert response.status_code == 200, response.text


class TestEditClosed:
    @pytest.mark.parametrize(
        ("status", "body", "fields"),
        [
            ("won", {"amount": 2000}, ["amount"]),
            ("won", {"currency": "EUR"}, ["currency"]),
            ("won", {"amount": 2000, "currency": "EUR"}, ["amount", "currency"]),
            ("lost", {"amount": 2000}, ["amount"]),
        ],
    )
    async def test_amount_change_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        status: str,
        body: dict[str, object],
        fields: list[str],
    ) -> None:
        created = await create_opportunity(client, auth, amount=1000, currency="USD")
        await close(client, auth, created["id"], status)
        before = await event_types(session, created["id"])

        response = await client.patch(
            f"/v1/opportunities/{created['id']}", json=body, headers=auth
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "amount_locked"
        assert problem["current_status"] == status
        assert problem["fields"] == fields
        assert f"/v1/opportunities/{created['id']}/reopen" in problem["detail"]
        current = (
            await client.get(f"/v1/opportunities/{created['id']}", headers=auth)
        ).json()
        assert current["amount"] == 1000
        assert current["currency"] == "USD"
        assert await event_types(session, created["id"]) == before

    async def test_other_fields_editable(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth, amount=1000, currency="USD")
        await close(client, auth, created["id"], "won")

        response = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={
                "name": "Analytical engine",
                "amount": 1000,
                "currency": "USD",
                "expected_close_date": "2027-01-15",
                "competitors": ["Napier"],
            },
            headers=auth,
        )

        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["name"] == "Analytical engine"
        assert updated["amount"] == 1000
        assert updated["expected_close_date"] == "2027-01-15"
        assert updated["competitors"] == ["Napier"]

    async def test_amount_editable_after_reopen(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth, amount=1000, currency="USD")
        await close(client, auth, created["id"], "won")
        reopened = await client.post(
            f"/v1/opportunities/{created['id']}/reopen",
            json={"reason": "Scope grew"},
            headers=auth,
        )

        response = await client.patch(
            f"/v1/opportunities/{created['id']}", json={"amount": 2000}, headers=auth
        )

        assert reopened.status_code == 200, reopened.text
        assert response.status_code == 200, response.text
        assert response.json()["amount"] == 2000


class TestProbability:
    async def test_override_and_clear(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_opportunity(client, auth, amount=1999)
        assert created["probability"] == 10
        assert created["probability_override"] is None
        assert created["weighted_amount"] == 200

        overridden = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={"probability": 33},
            headers=auth,
        )
        cleared = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={"probability": None},
            headers=auth,
        )

        assert overridden.json()["probability"] == 33
        assert overridden.json()["probability_override"] == 33
        assert overridden.json()["weighted_amount"] == 660
        assert cleared.json()["probability"] == 10
        assert cleared.json()["probability_override"] is None
        event = await session.scalar(
            select(Event)
            .where(Event.type == "opportunity.updated")
            .order_by(Event.sequence.desc())
        )
        assert event is not None
        assert event.data["probability"] == 10

    async def test_out_of_range(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)

        for value in (-1, 101, 50.5, "50", True):
            response = await client.patch(
                f"/v1/opportunities/{created['id']}",
                json={"probability": value},
                headers=auth,
            )
            assert response.status_code == 422, value

    def test_weighted_rounding(self) -> None:
        cases: list[tuple[int, int, int]] = [
            (1, 50, 1),
            (1, 49, 0),
            (3, 50, 2),
            (5, 10, 1),
            (4, 10, 0),
            (9_999_999_999_999, 75, 7_499_999_999_999),
            (0, 100, 0),
        ]

        for amount, probability, expected in cases:
            assert weighted_amount(amount, probability) == expected, (
                amount,
                probability,
            )


class TestOwnerAndCompetitors:
    async def test_owner_must_be_active_user(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        inactive = await create_user(client, auth, active=False)
        unknown = ids.encode("user", ids.new_uuid())
        bodies: list[dict[str, Any]] = [
            {"owner_id": unknown},
            {"owner_id": inactive["id"]},
            {"owner_id": "rep_7"},
        ]

        for body in bodies:
            response = await client.post(
                "/v1/opportunities",
                json={"customer_id": customer["id"], "name": "X", **body},
                headers=auth,
            )
            assert response.status_code == 422, body
            assert response.json()["errors"][0]["field"] == "owner_id"

    async def test_competitors_unique(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_opportunity(client, auth)

        repeated = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={"competitors": ["Napier", "napier"]},
            headers=auth,
        )
        cleared = await client.patch(
            f"/v1/opportunities/{created['id']}",
            json={"competitors": []},
            headers=auth,
        )

        assert repeated.status_code == 422
        assert repeated.json()["errors"][0]["field"] == "competitors"
        assert cleared.status_code == 200
        assert cleared.json()["competitors"] == []
