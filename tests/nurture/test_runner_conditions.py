"""Step conditions: validation at save, evaluation, and skipped steps in the runner."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import SequenceStep
from app.nurture.conditions import StepCondition, evaluate
from tests.nurture.conftest import JsonObject, SmtpServer
from tests.nurture.test_runner import enrollment_uuid, event_types, fetch, start
from workers.tasks import run_enrollment_step

ADAPTER: TypeAdapter[Any] = TypeAdapter(StepCondition)
LEAD = {
    "status": "working",
    "source": "web_form",
    "tags": ["vip", "beta"],
    "score": 42,
    "country": "DE",
    "company_domain": "acme.example",
    "attributes": {"plan": "pro", "seats": 12, "country": "DE"},
    "owner_id": None,
}


def holds(condition: dict[str, Any]) -> bool:
    return evaluate(ADAPTER.validate_python(condition), LEAD)


def field_test(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    condition: dict[str, Any] = {"field": field, "operator": operator}
    if value is not None:
        condition["value"] = value
    return condition


class TestEvaluate:
    @pytest.mark.parametrize(
        ("condition", "expected"),
        [
            (field_test("status", "equals", "working"), True),
            (field_test("status", "equals", "new"), False),
            (field_test("status", "not_equals", "new"), True),
            (field_test("source", "in", ["web_form", "api"]), True),
            (field_test("source", "not_in", ["web_form", "api"]), False),
            (field_test("source", "not_in", ["import"]), True),
            (field_test("tags", "contains", "vip"), True),
            (field_test("tags", "contains", "gold"), False),
            (field_test("company_domain", "contains", "ACME"), True),
            (field_test("score", "gt", 42), False),
            (field_test("score", "gte", 42), True),
            (field_test("score", "lt", 42), False),
            (field_test("score", "lte", 42), True),
            (field_test("country", "equals", "DE"), True),
            (field_test("attributes.plan", "equals", "pro"), True),
            (field_test("attributes.seats", "gte", 10), True),
            (field_test("attributes.missing", "exists"), False),
            (field_test("attributes.missing", "not_exists"), True),
            (field_test("owner_id", "exists"), False),
            (field_test("attributes.plan", "gt", 1), False),
        ],
    )
    def test_operators(self, condition: dict[str, Any], expected: bool) -> None:
        assert holds(condition) is expected

    def test_groups(self) -> None:
        condition = {
            "all": [
                field_test("status", "equals", "working"),
                {
                    "any": [
                        field_test("score", "gt", 100),
                        field_test("tags", "contains", "vip"),
                    ]
                },
            ]
        }

        assert holds(condition) is True
        assert (
            holds(
                {
                    "any": [
                        field_test("score", "gt", 100),
                        field_test("status", "equals", "x"),
                    ]
                }
            )
            is False
        )

    def test_boolean_is_not_number(self) -> None:
        assert holds(field_test("attributes.seats", "equals", True)) is False


class TestValidate:
    @pytest.mark.parametrize(
        "condition",
        [
            field_test("email", "equals", "a@b.c"),
            field_test("score", "gt", "ten"),
            field_test("source", "in", []),
            field_test("tags", "contains", ""),
            field_test("status", "exists", True),
            field_test("status", "matches", "x"),
            {"all": []},
            {
                "all": [field_test("status", "exists")],
                "any": [field_test("status", "exists")],
            },
            {"all": [{"all": [{"all": [{"all": [field_test("status", "exists")]}]}]}]},
            {"any": [{"all": [field_test("status", "exists")] * 20}] * 3},
        ],
    )
    def test_rejects(self, condition: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            ADAPTER.validate_python(condition)

    async def test_api_rejects_with_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        body = {
            "name": "Conditional",
            "steps": [
                {
                    "subject": "Hi",
                    "body_text": "Hi",
                    "condition": {"field": "score", "operator": "gt", "value": "x"},
                }
            ],
        }

        response = await client.post("/v1/sequences", json=body, headers=auth)

        assert response.status_code == 422, response.text
        problem = response.json()
        fields = [error["field"] for error in problem["errors"]]
        assert any(field.startswith("steps.0.condition") for field in fields), fields
        listed = await client.get("/v1/sequences", headers=auth)
        assert listed.json()["data"] == []

    async def test_api_stores_condition(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        condition = {"all": [{"field": "score", "operator": "gte", "value": 10}]}
        body = {
            "name": "Conditional",
            "steps": [{"subject": "Hi", "body_text": "Hi", "condition": condition}],
        }

        response = await client.post("/v1/sequences", json=body, headers=auth)

        assert response.status_code == 201, response.text
        assert response.json()["steps"][0]["condition"] == condition


class TestSkippedStep:
    async def test_false_condition_skips(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        steps: list[JsonObject] = [
            {
                "subject": "Only for VIPs",
                "body_text": "Hi",
                "condition": {"field": "tags", "operator": "contains", "value": "vip"},
            },
            {
                "delay": {"amount": 1, "unit": "hours"},
                "subject": "Everyone",
                "body_text": "Hi",
            },
        ]
        enrollment = await start(client, auth, steps=steps)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "skipped"
        assert smtp_server.messages == []
        after = await fetch(client, auth, enrollment)
        assert after["next_position"] == 1
        assert after["status"] == "active"
        [run] = after["step_runs"]
        assert run["status"] == "skipped"
        assert await event_types(session, enrollment) == [
            "enrollment.created",
            "enrollment.step_skipped",
        ]

    async def test_true_condition_sends(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        steps = [
            {
                "subject": "Only for VIPs",
                "body_text": "Hi",
                "condition": {"field": "tags", "operator": "contains", "value": "vip"},
            }
        ]
        enrollment = await start(client, auth, steps=steps, tags=["vip"])

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "completed"
        assert len(smtp_server.messages) == 1

    async def test_last_step_skipped_completes(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        steps = [
            {
                "subject": "Never",
                "body_text": "Hi",
                "condition": {"field": "score", "operator": "gt", "value": 1000},
            }
        ]
        enrollment = await start(client, auth, steps=steps)

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "completed"
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "completed"
        assert after["step_runs"][0]["status"] == "skipped"
        assert smtp_server.messages == []


class TestInvalidStoredCondition:
    async def test_fails_enrollment(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        enrollment = await start(
            client, auth, steps=[{"subject": "Hi", "body_text": "Hi"}]
        )
        await session.execute(
            update(SequenceStep).values(condition={"field": "nope", "operator": "x"})
        )
        await session.commit()

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "failed"
        assert smtp_server.messages == []
        after = await fetch(client, auth, enrollment)
        assert after["status"] == "failed"
        assert "condition of step 0 is invalid" in after["last_error"]
