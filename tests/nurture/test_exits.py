"""Exit rules: each fact about a lead ends the enrollments whose sequence lists it."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import utcnow
from app.core.ids import new_uuid
from app.models import (
    EmailSuppression,
    Enrollment,
    Event,
    Lead,
    LeadEngagement,
    StepRun,
    Workspace,
)
from app.nurture.states import EXIT_RULE_REASONS
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from workers.tasks import run_enrollment_step

STEP = {
    "delay": {"amount": 1, "unit": "hours"},
    "subject": "Hi {{ first_name }}",
    "body_text": "Hi",
}


async def sequence_with(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    exit_rules: list[str] | None,
    name: str = "Rules",
) -> JsonObject:
    body: dict[str, Any] = {"name": name, "steps": [STEP]}
    if exit_rules is not None:
        body["exit_rules"] = exit_rules
    response = await client.post("/v1/sequences", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: JsonObject = response.json()
    return data


async def enrollment_status(
    client: httpx.AsyncClient, auth: dict[str, str], enrollment: JsonObject
) -> tuple[str, str | None]:
    response = await client.get(f"/v1/enrollments/{enrollment['id']}", headers=auth)
    assert response.status_code == 200, response.text
    data = response.json()
    return data["status"], data["exit_reason"]


async def record_engagement(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    lead_id: str,
    engagement_type: str,
    **fields: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/leads/{lead_id}/engagements",
        json={"type": engagement_type, **fields},
        headers=auth,
    )


class TestExitRulesField:
    async def test_defaults_to_all(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        assert sequence["exit_rules"] == list(EXIT_RULE_REASONS)

    async def test_stored_deduplicated(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await sequence_with(
            client, auth, ["invoice_paid", "replied", "invoice_paid"]
        )

        assert sequence["exit_rules"] == ["replied", "invoice_paid"]
        fetched = await client.get(f"/v1/sequences/{sequence['id']}", headers=auth)
        assert fetched.json()["exit_rules"] == ["replied", "invoice_paid"]

    async def test_empty_list_allowed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await sequence_with(client, auth, [])

        assert sequence["exit_rules"] == []

    async def test_manual_listed_not_stored(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await sequence_with(client, auth, ["manual", "replied"])
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        exited = await client.post(
            f"/v1/enrollments/{enrollment['id']}/exit", headers=auth
        )

        assert sequence["exit_rules"] == ["replied"]
        assert exited.status_code == 200, exited.text
        assert exited.json()["exit_reason"] == "manual"

    async def test_unknown_reason_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for reason in ("won", "lead_closed", "Manual"):
            response = await client.post(
                "/v1/sequences",
                json={"name": "Bad", "steps": [STEP], "exit_rules": [reason]},
                headers=auth,
            )

            assert response.status_code == 422, reason
            problem = response.json()
            assert problem["errors"][0]["field"] == "exit_rules.0"
        listed = await client.get("/v1/sequences", headers=auth)
        assert listed.json()["data"] == []


class TestLeadStatusExit:
    async def test_disqualified_exits(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        honours = await enroll(
            client, auth, (await sequence_with(client, auth, None))["id"], lead["id"]
        )
        ignores = await enroll(
            client,
            auth,
            (await sequence_with(client, auth, ["replied"], name="Other"))["id"],
            lead["id"],
        )

        response = await client.patch(
            f"/v1/leads/{lead['id']}",
            json={"status": "disqualified", "status_reason": "No budget"},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert await enrollment_status(client, auth, honours) == (
            "exited",
            "disqualified",
        )
        assert await enrollment_status(client, auth, ignores) == ("active", None)
        exited = (
            await session.scalars(
                select(Event).where(
                    Event.type == "enrollment.exited",
                    Event.object_id == ids.decode("enrollment", honours["id"]),
                )
            )
        ).all()
        assert [event.data["exit_reason"] for event in exited] == ["disqualified"]

    async def test_working_changes_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        enrollment = await enroll(
            client, auth, (await sequence_with(client, auth, None))["id"], lead["id"]
        )

        response = await client.patch(
            f"/v1/leads/{lead['id']}", json={"status": "working"}, headers=auth
        )

        assert response.status_code == 200, response.text
        assert await enrollment_status(client, auth, enrollment) == ("active", None)


class TestConversionExit:
    async def test_converted_exits(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        converted = await enroll(
            client, auth, (await sequence_with(client, auth, None))["id"], lead["id"]
        )
        by_opportunity = await enroll(
            client,
            auth,
            (await sequence_with(client, auth, ["opportunity_created"], "Opp"))["id"],
            lead["id"],
        )
        by_invoice = await enroll(
            client,
            auth,
            (await sequence_with(client, auth, ["invoice_paid"], "Kept"))["id"],
            lead["id"],
        )

        response = await client.post(
            f"/v1/leads/{lead['id']}/convert", json={}, headers=auth
        )

        assert response.status_code == 200, response.text
        assert await enrollment_status(client, auth, converted) == (
            "exited",
            "converted",
        )
        assert await enrollment_status(client, auth, by_opportunity) == (
            "exited",
            "opportunity_created",
        )
        assert await enrollment_status(client, auth, by_invoice) == ("active", None)

    async def test_without_opportunity(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        enrollment = await enroll(
            client,
            auth,
            (await sequence_with(client, auth, ["opportunity_created"]))["id"],
            lead["id"],
        )

        response = await client.post(
            f"/v1/leads/{lead['id']}/convert",
            json={"create_opportunity": False},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert await enrollment_status(client, auth, enrollment) == ("active", None)


class TestInvoicePaidExit:
    async def test_paid_invoice_exits(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        enrollment = await enroll(
            client,
            auth,
            (await sequence_with(client, auth, ["invoice_paid"]))["id"],
            lead["id"],
        )
        conversion = await client.post(
            f"/v1/leads/{lead['id']}/convert", json={}, headers=auth
        )
        assert conversion.status_code == 200, conversion.text
        customer_id = conversion.json()["customer_id"]
        draft = await client.post(
            "/v1/invoices",
            json={
                "customer_id": customer_id,
                "currency": "USD",
                "lines": [
                    {"description": "Setup", "quantity": "1", "unit_amount": 5000}
                ],
            },
            headers=auth,
        )
        assert draft.status_code == 201, draft.text
        invoice = await client.post(
            f"/v1/invoices/{draft.json()['id']}/finalize", headers=auth
        )
        assert invoice.status_code == 200, invoice.text
        payment: dict[str, Any] = {
            "customer_id": customer_id,
            "currency": "USD",
            "method": "bank_transfer",
            "invoice_id": invoice.json()["id"],
        }

        partial = await client.post(
            "/v1/payments", json={**payment, "amount": 1000}, headers=auth
        )
        assert partial.status_code == 201, partial.text
        assert await enrollment_status(client, auth, enrollment) == ("active", None)
        rest = await client.post(
            "/v1/payments", json={**payment, "amount": 4000}, headers=auth
        )

        assert rest.status_code == 201, rest.text
        assert await enrollment_status(client, auth, enrollment) == (
            "exited",
            "invoice_paid",
        )


class TestEngagementExit:
    async def test_replied_exits(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        honours = await enroll(
            client, auth, (await sequence_with(client, auth, None))["id"], lead["id"]
        )
        ignores = await enroll(
            client,
            auth,
            (await sequence_with(client, auth, ["converted"], "Other"))["id"],
            lead["id"],
        )

        response = await record_engagement(client, auth, lead["id"], "replied")

        assert response.status_code == 201, response.text
        assert await enrollment_status(client, auth, honours) == ("exited", "replied")
        assert await enrollment_status(client, auth, ignores) == ("active", None)
        suppressed = await session.scalar(select(EmailSuppression))
        assert suppressed is None

    async def test_opened_changes_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        enrollment = await enroll(
            client, auth, (await sequence_with(client, auth, None))["id"], lead["id"]
        )

        response = await record_engagement(client, auth, lead["id"], "email_opened")

        assert response.status_code == 201, response.text
        assert await enrollment_status(client, auth, enrollment) == ("active", None)

    async def test_unsubscribed_ignores_rules(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        enrollment = await enroll(
            client, auth, (await sequence_with(client, auth, []))["id"], lead["id"]
        )

        response = await record_engagement(
            client, auth, lead["id"], "unsubscribed", enrollment_id=enrollment["id"]
        )

        assert response.status_code == 201, response.text
        assert response.json()["enrollment_id"] == enrollment["id"]
        assert await enrollment_status(client, auth, enrollment) == (
            "exited",
            "unsubscribed",
        )
        suppression = await session.scalar(select(EmailSuppression))
        assert suppression is not None
        assert suppression.reason == "unsubscribed"
        assert suppression.email_normalized == "ada@example.com"
        events = (
            await session.scalars(select(Event.type).where(Event.object_type == "lead"))
        ).all()
        assert "lead.unsubscribed" in events
        again = await client.post(
            f"/v1/sequences/{(await sequence_with(client, auth, None, 'New'))['id']}"
            "/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )
        assert again.status_code == 409
        assert again.json()["code"] == "lead_unsubscribed"

    async def test_bounced_suppresses(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        enrollment = await enroll(
            client,
            auth,
            (await sequence_with(client, auth, ["replied"]))["id"],
            lead["id"],
        )

        response = await record_engagement(client, auth, lead["id"], "email_bounced")

        assert response.status_code == 201, response.text
        assert await enrollment_status(client, auth, enrollment) == (
            "exited",
            "bounced",
        )
        suppression = await session.scalar(select(EmailSuppression))
        assert suppression is not None
        assert suppression.reason == "bounced"

    async def test_scoring_still_runs(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rule = await client.post(
            "/v1/scoring-rules",
            json={
                "name": "Replies",
                "kind": "engagement",
                "event_type": "replied",
                "points": 25,
            },
            headers=auth,
        )
        assert rule.status_code == 201, rule.text
        lead = await create_lead(client, auth)

        response = await record_engagement(client, auth, lead["id"], "replied")

        assert response.status_code == 201, response.text
        fetched = await client.get(f"/v1/leads/{lead['id']}", headers=auth)
        assert fetched.json()["score"] == 25


class TestEngagementSource:
    async def test_message_id_links_step_run(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        lead = await create_lead(client, auth)
        sequence = await sequence_with(client, auth, ["converted"])
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        run = StepRun(
            id=new_uuid(),
            workspace_id=workspace.id,
            enrollment_id=ids.decode("enrollment", enrollment["id"]),
            step_id=ids.decode("sequence_step", sequence["steps"][0]["id"]),
            status="sent",
            attempts=1,
            started_at=utcnow(),
            message_id="<step-run.abc@acme.example>",
        )
        session.add(run)
        await session.commit()

        response = await record_engagement(
            client,
            auth,
            lead["id"],
            "replied",
            message_id="step-run.abc@acme.example",
        )

        assert response.status_code == 201, response.text
        assert response.json()["enrollment_id"] == enrollment["id"]
        assert response.json()["message_id"] == "<step-run.abc@acme.example>"
        stored = await session.scalar(
            select(LeadEngagement).where(
                LeadEngagement.id == ids.decode("engagement", response.json()["id"])
            )
        )
        assert stored is not None
        assert stored.step_run_id == run.id
        assert await enrollment_status(client, auth, enrollment) == ("active", None)

    async def test_unknown_message_id_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)

        response = await record_engagement(
            client, auth, lead["id"], "replied", message_id="<nope@acme.example>"
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "message_id"
        assert await session.scalar(select(LeadEngagement)) is None

    async def test_other_leads_enrollment_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        other = await create_lead(client, auth, email="grace@example.com")
        enrollment = await enroll(
            client, auth, (await sequence_with(client, auth, None))["id"], other["id"]
        )

        response = await record_engagement(
            client, auth, lead["id"], "replied", enrollment_id=enrollment["id"]
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "enrollment_id"
        assert await enrollment_status(client, auth, enrollment) == ("active", None)


class TestOpportunityExit:
    async def test_customer_opportunity_exits(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        enrollment = await enroll(
            client,
            auth,
            (await sequence_with(client, auth, ["opportunity_created"]))["id"],
            lead["id"],
        )
        conversion = await client.post(
            f"/v1/leads/{lead['id']}/convert",
            json={"create_opportunity": False},
            headers=auth,
        )
        assert conversion.status_code == 200, conversion.text
        assert await enrollment_status(client, auth, enrollment) == ("active", None)

        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": conversion.json()["customer_id"], "name": "Upsell"},
            headers=auth,
        )

        assert response.status_code == 201, response.text
        assert await enrollment_status(client, auth, enrollment) == (
            "exited",
            "opportunity_created",
        )

    async def test_other_customer_unaffected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        enrollment = await enroll(
            client,
            auth,
            (await sequence_with(client, auth, ["opportunity_created"]))["id"],
            lead["id"],
        )
        await client.post(
            f"/v1/leads/{lead['id']}/convert",
            json={"create_opportunity": False},
            headers=auth,
        )
        other = await create_lead(client, auth, email="grace@navy.example")
        converted = await client.post(
            f"/v1/leads/{other['id']}/convert",
            json={"create_opportunity": False},
            headers=auth,
        )

        response = await client.post(
            "/v1/opportunities",
            json={"customer_id": converted.json()["customer_id"], "name": "Other"},
            headers=auth,
        )

        assert response.status_code == 201, response.text
        assert await enrollment_status(client, auth, enrollment) == ("active", None)


class TestClaimExitCheck:
    async def test_rule_exits_at_claim(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        lead = await create_lead(client, auth)
        sequence = await sequence_with(client, auth, ["disqualified"])
        enrollment = await enroll_due(client, auth, session, sequence, lead)
        # Set the status without the trigger, as a row written before the rule
        # existed would be.
        await session.execute(
            update(Lead)
            .where(Lead.id == ids.decode("lead", lead["id"]))
            .values(status="disqualified")
        )
        await session.commit()

        outcome = await run_enrollment_step(
            job_context, str(ids.decode("enrollment", enrollment["id"]))
        )

        assert outcome == "exited"
        assert await enrollment_status(client, auth, enrollment) == (
            "exited",
            "disqualified",
        )
        assert smtp_server.messages == []

    async def test_unlisted_status_keeps_sending(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        lead = await create_lead(client, auth)
        sequence = await sequence_with(client, auth, ["invoice_paid"])
        enrollment = await enroll_due(client, auth, session, sequence, lead)
        conversion = await client.post(
            f"/v1/leads/{lead['id']}/convert", json={}, headers=auth
        )
        assert conversion.status_code == 200, conversion.text

        outcome = await run_enrollment_step(
            job_context, str(ids.decode("enrollment", enrollment["id"]))
        )

        assert outcome == "completed"
        assert smtp_server.recipients == [["ada@example.com"]]


async def enroll_due(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    sequence: JsonObject,
    lead: JsonObject,
) -> JsonObject:
    """Enroll the lead and make its first step due now."""
    enrollment = await enroll(client, auth, sequence["id"], lead["id"])
    await session.execute(
        update(Enrollment)
        .where(Enrollment.id == ids.decode("enrollment", enrollment["id"]))
        .values(next_run_at=utcnow())
    )
    await session.commit()
    return enrollment
