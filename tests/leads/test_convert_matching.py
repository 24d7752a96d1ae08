"""Conversion: matching customers and contacts, linking activities and touches,
ending enrollments, the dry run and a failure half-way through."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import utcnow
from app.core.jobs import QUEUE_NAME
from app.models import (
    Activity,
    Contact,
    Customer,
    Enrollment,
    Event,
    Lead,
    LeadTouch,
    Opportunity,
    StageTransition,
)
from tests.customers.factories import create_contact, create_customer
from tests.leads.test_router import create_lead
from tests.nurture.conftest import enroll
from tests.nurture.test_exits import enrollment_status, sequence_with
from tests.opportunities.factories import stage_ids

# Every table a conversion writes to, directly or through the services it calls.
WRITTEN = (
    Customer,
    Contact,
    Opportunity,
    StageTransition,
    Event,
    Activity,
    Enrollment,
)


async def convert(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    lead_id: object,
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/v1/leads/{lead_id}/convert", json=body or {}, headers=auth
    )


async def count(session: AsyncSession, model: type[Any]) -> int:
    return await session.scalar(select(func.count()).select_from(model)) or 0


async def snapshot(session: AsyncSession) -> dict[str, Any]:
    """Row counts of the written tables, and the fields conversion would change."""
    counts = {model.__tablename__: await count(session, model) for model in WRITTEN}
    leads = (
        await session.execute(
            select(Lead.id, Lead.status, Lead.version).order_by(Lead.id)
        )
    ).all()
    touches = (
        await session.execute(
            select(LeadTouch.id, LeadTouch.customer_id).order_by(LeadTouch.id)
        )
    ).all()
    activities = (
        await session.execute(
            select(
                Activity.id,
                Activity.customer_id,
                Activity.contact_id,
                Activity.opportunity_id,
                Activity.version,
            ).order_by(Activity.id)
        )
    ).all()
    enrollments = (
        await session.execute(
            select(Enrollment.id, Enrollment.status).order_by(Enrollment.id)
        )
    ).all()
    return {
        "counts": counts,
        "leads": leads,
        "touches": touches,
        "activities": activities,
        "enrollments": enrollments,
    }


async def log_activity(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: object
) -> dict[str, Any]:
    response = await client.post("/v1/activities", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


class TestCustomerMatching:
    async def test_links_customer_by_domain(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth, domain="analytical.example")
        lead = await create_lead(client, auth, email="ada@Analytical.Example")

        response = await convert(
            client, auth, lead["id"], {"customer": {"name": "Ignored for a link"}}
        )

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["customer_id"] == customer["id"]
        assert result["customer_created"] is False
        assert result["customer_match"] == {
            "key": "domain",
            "value": "analytical.example",
        }
        assert result["customer"]["name"] == customer["name"]
        assert result["contact_created"] is True
        assert result["contact_match"] is None
        assert result["contact"]["customer_id"] == customer["id"]
        assert await count(session, Customer) == 1

    async def test_domain_from_lead_website(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth, domain="analytical.example")
        lead = await create_lead(
            client,
            auth,
            email="ada@gmail.com",
            website="https://www.analytical.example/about",
        )

        response = await convert(client, auth, lead["id"])

        assert response.status_code == 200, response.text
        assert response.json()["customer_id"] == customer["id"]

    async def test_free_mail_never_matches(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_customer(client, auth, name="Someone", email="x@gmail.com")
        lead = await create_lead(client, auth, email="ada@gmail.com")

        response = await convert(client, auth, lead["id"])

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["customer_created"] is True
        assert result["customer"]["domain"] is None
        assert result["customer"]["kind"] == "individual"
        assert await count(session, Customer) == 2

    async def test_match_disabled_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth, domain="analytical.example")
        lead = await create_lead(client, auth, email="ada@analytical.example")
        before = await snapshot(session)

        response = await convert(
            client, auth, lead["id"], {"match_customer_by_domain": False}
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "duplicate_customer"
        assert problem["existing_id"] == customer["id"]
        assert problem["matched_key"] == "domain"
        assert await snapshot(session) == before

    async def test_named_customer_reported(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        lead = await create_lead(client, auth)

        response = await convert(
            client, auth, lead["id"], {"customer_id": customer["id"]}
        )

        assert response.status_code == 200, response.text
        assert response.json()["customer_match"] == {
            "key": "customer_id",
            "value": customer["id"],
        }

    async def test_new_customer_fields(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(
            client, auth, email="ada@analytical.example", company="Analytical"
        )

        response = await convert(
            client,
            auth,
            lead["id"],
            {
                "customer": {
                    "legal_name": "Analytical Engines Ltd",
                    "billing_address": {
                        "line1": "1 Main St",
                        "city": "London",
                        "country": "GB",
                    },
                    "tax_id": {"type": "gb_vat", "value": "GB123456789"},
                    "language": "en-GB",
                }
            },
        )

        assert response.status_code == 200, response.text
        customer = response.json()["customer"]
        assert customer["kind"] == "company"
        assert customer["legal_name"] == "Analytical Engines Ltd"
        assert customer["billing_address"]["country"] == "GB"
        assert customer["tax_id"] == {"type": "gb_vat", "value": "GB123456789"}
        assert customer["language"] == "en-GB"
        assert customer["credit_balance"] == 0


class TestContactMatching:
    async def test_links_contact_by_email(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth, domain="analytical.example")
        contact = await create_contact(
            client, auth, customer["id"], email="ADA@analytical.example"
        )
        lead = await create_lead(client, auth, email="ada@analytical.example")

        response = await convert(client, auth, lead["id"])

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["contact_id"] == contact["id"]
        assert result["contact_created"] is False
        assert result["contact_match"] == {
            "key": "email",
            "value": "ada@analytical.example",
        }
        assert await count(session, Contact) == 1

    async def test_new_contact_fields(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(
            client,
            auth,
            email="ada@analytical.example",
            title="Engineer",
            phone="+442079460000",
        )

        response = await convert(
            client,
            auth,
            lead["id"],
            {"contact": {"roles": ["champion", "technical"]}},
        )

        assert response.status_code == 200, response.text
        contact = response.json()["contact"]
        assert contact["title"] == "Engineer"
        assert contact["phone"] == "+442079460000"
        assert contact["roles"] == ["champion", "technical"]


class TestLinkedRecords:
    async def test_activities_and_touches(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth, email="ada@analytical.example")
        other_customer = await create_customer(client, auth, name="Elsewhere")
        note = await log_activity(
            client, auth, kind="note", body="Asked for pricing", lead_id=lead["id"]
        )
        task = await log_activity(
            client,
            auth,
            kind="task",
            subject="Send the proposal",
            due_at=(utcnow() + timedelta(days=2)).isoformat(),
            lead_id=lead["id"],
        )
        elsewhere = await log_activity(
            client,
            auth,
            kind="call",
            subject="Joint call",
            lead_id=lead["id"],
            customer_id=other_customer["id"],
        )

        response = await convert(client, auth, lead["id"])

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["activities_linked"] == 2
        assert result["touches_linked"] == 1
        linked_note = (
            await client.get(f"/v1/activities/{note['id']}", headers=auth)
        ).json()
        assert linked_note["lead_id"] == lead["id"]
        assert linked_note["customer_id"] == result["customer_id"]
        assert linked_note["contact_id"] == result["contact_id"]
        assert linked_note["opportunity_id"] is None
        linked_task = (
            await client.get(f"/v1/activities/{task['id']}", headers=auth)
        ).json()
        assert linked_task["opportunity_id"] == result["opportunity_id"]
        untouched = (
            await client.get(f"/v1/activities/{elsewhere['id']}", headers=auth)
        ).json()
        assert untouched == elsewhere
        touch = await session.scalar(select(LeadTouch))
        assert touch is not None
        assert touch.customer_id == ids.decode("customer", result["customer_id"])
        assert touch.contact_id == ids.decode("contact", result["contact_id"])
        updated = (
            await session.scalars(
                select(Event.object_id).where(Event.type == "activity.updated")
            )
        ).all()
        assert sorted(updated) == sorted(
            ids.decode("activity", item["id"]) for item in (note, task)
        )
        timeline = await client.get(
            "/v1/activities",
            params={"customer_id": result["customer_id"]},
            headers=auth,
        )
        assert {item["id"] for item in timeline.json()["data"]} == {
            note["id"],
            task["id"],
        }

    async def test_enrollments_exit_converted(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        enrollment = await enroll(
            client, auth, (await sequence_with(client, auth, None))["id"], lead["id"]
        )

        response = await convert(
            client, auth, lead["id"], {"create_opportunity": False}
        )

        assert response.status_code == 200, response.text
        assert response.json()["exited_enrollment_ids"] == [enrollment["id"]]
        assert await enrollment_status(client, auth, enrollment) == (
            "exited",
            "converted",
        )

    async def test_converted_event_names_every_id(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)

        response = await convert(client, auth, lead["id"])

        result = response.json()
        event = await session.scalar(
            select(Event).where(Event.type == "lead.converted")
        )
        assert event is not None
        assert event.data["id"] == result["lead_id"]
        assert event.data["customer_id"] == result["customer_id"]
        assert event.data["contact_id"] == result["contact_id"]
        assert event.data["opportunity_id"] == result["opportunity_id"]


class TestDryRun:
    async def test_writes_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
    ) -> None:
        lead = await create_lead(client, auth, email="ada@analytical.example")
        enrollment = await enroll(
            client, auth, (await sequence_with(client, auth, None))["id"], lead["id"]
        )
        await log_activity(
            client, auth, kind="note", body="Asked for pricing", lead_id=lead["id"]
        )
        await redis_client.delete(QUEUE_NAME)
        before = await snapshot(session)

        response = await convert(client, auth, lead["id"], {"dry_run": True})

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["dry_run"] is True
        assert result["customer_id"] is None
        assert result["contact_id"] is None
        assert result["opportunity_id"] is None
        assert result["customer_created"] is True
        assert result["contact_created"] is True
        assert result["opportunity_created"] is True
        assert result["customer"] is None
        assert result["activities_linked"] == 1
        assert result["touches_linked"] == 1
        assert result["exited_enrollment_ids"] == [enrollment["id"]]
        assert result["lead"] == lead
        assert response.headers["etag"] == f'"{lead["version"]}"'
        assert await snapshot(session) == before
        assert await redis_client.zcard(QUEUE_NAME) == 0

    async def test_reports_matches(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth, domain="analytical.example")
        contact = await create_contact(
            client, auth, customer["id"], email="ada@analytical.example"
        )
        lead = await create_lead(client, auth, email="ada@analytical.example")
        before = await snapshot(session)

        response = await convert(client, auth, lead["id"], {"dry_run": True})

        result = response.json()
        assert result["customer_id"] == customer["id"]
        assert result["customer_created"] is False
        assert result["customer_match"] == {
            "key": "domain",
            "value": "analytical.example",
        }
        assert result["contact_id"] == contact["id"]
        assert result["contact_match"]["key"] == "email"
        assert result["customer"] == customer
        assert await snapshot(session) == before

    async def test_then_real_conversion(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)

        planned = await convert(client, auth, lead["id"], {"dry_run": True})
        converted = await convert(client, auth, lead["id"])

        assert planned.status_code == 200
        assert converted.status_code == 200, converted.text
        assert converted.json()["dry_run"] is False

    async def test_closed_stage_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        won = (await stage_ids(client, auth))["Closed won"]
        before = await snapshot(session)

        response = await convert(
            client,
            auth,
            lead["id"],
            {"dry_run": True, "opportunity": {"stage_id": won}},
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "opportunity.stage_id"
        assert await snapshot(session) == before

    async def test_converted_lead_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        await convert(client, auth, lead["id"])

        response = await convert(client, auth, lead["id"], {"dry_run": True})

        assert response.status_code == 409
        assert response.json()["code"] == "lead_already_converted"


class TestFailureHalfWay:
    async def test_closed_stage_leaves_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth, email="ada@analytical.example")
        enrollment = await enroll(
            client, auth, (await sequence_with(client, auth, None))["id"], lead["id"]
        )
        await log_activity(
            client, auth, kind="note", body="Asked for pricing", lead_id=lead["id"]
        )
        won = (await stage_ids(client, auth))["Closed won"]
        before = await snapshot(session)

        # The customer and the contact are inserted, and their events emitted,
        # before the opportunity service rejects the closed stage.
        response = await convert(
            client, auth, lead["id"], {"opportunity": {"stage_id": won}}
        )

        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["errors"][0]["field"] == "opportunity.stage_id"
        assert problem["errors"][0]["code"] == "stage_not_open"
        assert await snapshot(session) == before
        assert await count(session, Customer) == 0
        assert await count(session, Contact) == 0
        assert await enrollment_status(client, auth, enrollment) == ("active", None)
        types = (await session.scalars(select(Event.type))).all()
        assert "customer.created" not in types
        assert "contact.created" not in types
