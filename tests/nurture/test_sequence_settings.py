"""Sequence settings changed by PATCH, and archived sequences in bulk enrolment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Enrollment
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from tests.nurture.test_offers import create_offer, offer_step
from tests.nurture.test_runner import enrollment_uuid
from tests.nurture.test_schedule_api import create_calendar
from workers.tasks import run_enrollment_step

WINDOW: JsonObject = {"weekdays": ["mon", "tue"], "start": "09:00", "end": "12:00"}


async def patch(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sequence: JsonObject,
    body: JsonObject,
) -> httpx.Response:
    return await client.patch(
        f"/v1/sequences/{sequence['id']}", json=body, headers=auth
    )


async def count_enrollments(session: AsyncSession) -> int:
    found = await session.scalar(select(func.count()).select_from(Enrollment))
    return int(found or 0)


class TestPatchSettings:
    async def test_schedule_and_policies(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        calendar = await create_calendar(client, auth, ["2026-12-25"])

        response = await patch(
            client,
            auth,
            sequence,
            {
                "timezone": "Europe/Berlin",
                "send_window": WINDOW,
                "holiday_calendar_id": calendar["id"],
                "reenrollment_policy": "never",
                "exit_rules": ["replied", "bounced"],
            },
        )

        assert response.status_code == 200, response.text
        changed = response.json()
        assert changed["timezone"] == "Europe/Berlin"
        assert changed["send_window"] == WINDOW
        assert changed["holiday_calendar_id"] == calendar["id"]
        assert changed["reenrollment_policy"] == "never"
        assert changed["exit_rules"] == ["replied", "bounced"]
        assert changed["latest_version"] == 1
        fetched = await client.get(f"/v1/sequences/{sequence['id']}", headers=auth)
        assert fetched.json()["exit_rules"] == ["replied", "bounced"]

    async def test_clears_schedule(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        await patch(
            client, auth, sequence, {"timezone": "Asia/Tokyo", "send_window": WINDOW}
        )

        response = await patch(
            client, auth, sequence, {"timezone": None, "send_window": None}
        )

        assert response.status_code == 200, response.text
        assert response.json()["timezone"] is None
        assert response.json()["send_window"] is None

    async def test_unknown_timezone(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await patch(client, auth, sequence, {"timezone": "Mars/Olympus"})

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "timezone"

    @pytest.mark.parametrize(
        "zone",
        ["localtime", "posixrules", "", "europe/berlin", "../zoneinfo/UTC", "UTC\x00"],
    )
    async def test_invalid_timezone_names(
        self, client: httpx.AsyncClient, auth: dict[str, str], zone: str
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await patch(client, auth, sequence, {"timezone": zone})

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "timezone"
        again = await client.get(f"/v1/sequences/{sequence['id']}", headers=auth)
        assert again.json()["timezone"] is None

    async def test_unknown_calendar(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        calendar = await create_calendar(client, auth, ["2026-12-25"])
        await client.delete(f"/v1/holiday-calendars/{calendar['id']}", headers=auth)

        response = await patch(
            client, auth, sequence, {"holiday_calendar_id": calendar["id"]}
        )

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "holiday_calendar_id"

    async def test_null_policy_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        for field in ("reenrollment_policy", "exit_rules"):
            response = await patch(client, auth, sequence, {field: None})

            assert response.status_code == 422, field
            [error] = response.json()["errors"]
            assert error["field"] == field
            assert error["code"] == "null_not_allowed"

    async def test_unknown_exit_rule(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await patch(
            client, auth, sequence, {"exit_rules": ["replied", "lead_closed"]}
        )

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "exit_rules.1"

    async def test_manual_exit_rule_not_stored(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await patch(
            client, auth, sequence, {"exit_rules": ["manual", "bounced"]}
        )

        assert response.status_code == 200, response.text
        assert response.json()["exit_rules"] == ["bounced"]

    async def test_steps_with_archived_offer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        offer = await create_offer(client, auth)
        archived = await client.post(f"/v1/offers/{offer['id']}/archive", headers=auth)
        assert archived.status_code == 200, archived.text

        response = await patch(
            client, auth, sequence, {"steps": [offer_step(offer["id"])]}
        )

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "steps.0.offer_id"
        assert error["code"] == "offer_not_active"
        fetched = await client.get(f"/v1/sequences/{sequence['id']}", headers=auth)
        assert fetched.json()["latest_version"] == 1


class TestSenderDomain:
    async def test_message_id_on_sequence_domain(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(client, auth)
        await patch(client, auth, sequence, {"mail_from": "Acme <sales@acme.example>"})
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "completed"
        [message] = smtp_server.messages
        assert message["From"] == "Acme <sales@acme.example>"
        assert message["Message-ID"].endswith("@acme.example>")


def closed_window(now: datetime) -> tuple[JsonObject, datetime]:
    """Build a daily UTC window that is closed at ``now``, and when it next opens."""
    start = (now + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=1)
    if end.date() != start.date():
        start, end = start.replace(hour=1), end.replace(hour=2)
    window: JsonObject = {
        "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": start.strftime("%H:%M"),
        "end": end.strftime("%H:%M"),
    }
    return window, start if start > now else start + timedelta(days=1)


class TestWindowAtRunTime:
    async def test_changed_window_postpones_due_step(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        window, opens = closed_window(datetime.now(UTC))
        changed = await patch(
            client, auth, sequence, {"timezone": "UTC", "send_window": window}
        )
        assert changed.status_code == 200, changed.text

        outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert outcome == "postponed"
        assert smtp_server.messages == []
        after = await client.get(f"/v1/enrollments/{enrollment['id']}", headers=auth)
        assert after.json()["status"] == "active"
        assert datetime.fromisoformat(after.json()["next_run_at"]) == opens
        schedule = await client.get(
            f"/v1/enrollments/{enrollment['id']}/schedule", headers=auth
        )
        assert datetime.fromisoformat(schedule.json()["steps"][0]["due_at"]) == opens
