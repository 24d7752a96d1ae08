from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import create_api_key
from app.core.jobs import QUEUE_NAME
from app.models import EmailSuppression, Enrollment, Event, Lead
from app.nurture.jobs import scheduled_job_id
from tests.conftest import make_workspace_key
from tests.nurture.conftest import create_lead, create_sequence, enroll

TWO_STEPS = [
    {"delay": {"amount": 1, "unit": "hours"}, "subject": "One", "body_text": "First"},
    {
        "delay": {"amount": 1, "unit": "minutes"},
        "subject": "Two",
        "body_text": "Second",
    },
]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def transition(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    enrollment_id: object,
    action: str,
    **headers: str,
) -> httpx.Response:
    return await client.post(
        f"/v1/enrollments/{enrollment_id}/{action}", headers={**auth, **headers}
    )


class TestCreateEnrollment:
    async def test_created_and_scheduled(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
    ) -> None:
        sequence = await create_sequence(client, auth, steps=TWO_STEPS)
        lead = await create_lead(client, auth)
        before = datetime.now(UTC)

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 201, response.text
        enrollment = response.json()
        assert enrollment["id"].startswith("enr_")
        assert enrollment["object"] == "enrollment"
        assert enrollment["status"] == "active"
        assert enrollment["sequence_id"] == sequence["id"]
        assert enrollment["lead_id"] == lead["id"]
        assert enrollment["next_position"] == 0
        assert enrollment["step_runs"] == []
        assert enrollment["exit_reason"] is None
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"/v1/enrollments/{enrollment['id']}"
        next_run_at = parse_time(enrollment["next_run_at"])
        assert before + timedelta(seconds=3599) <= next_run_at
        assert next_run_at <= datetime.now(UTC) + timedelta(seconds=3600)

        event = (
            await session.scalars(
                select(Event).where(Event.type == "enrollment.created")
            )
        ).one()
        assert event.data == enrollment
        job_id = scheduled_job_id(
            ids.decode("enrollment", enrollment["id"]), 0, next_run_at
        )
        score = await redis_client.zscore(QUEUE_NAME, job_id)
        assert score == round(next_run_at.timestamp() * 1000)

    async def test_duplicate_names_existing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "enrollment_exists"
        assert problem["existing_id"] == first["id"]
        assert problem["existing_status"] == "active"
        assert first["id"] in problem["detail"]
        assert await session.scalar(select(func.count()).select_from(Enrollment)) == 1

    async def test_duplicate_while_paused(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        await transition(client, auth, first["id"], "pause")

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["existing_status"] == "paused"

    async def test_again_after_exit(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        first = await enroll(client, auth, sequence["id"], lead["id"])
        await transition(client, auth, first["id"], "exit")

        second = await enroll(client, auth, sequence["id"], lead["id"])

        assert second["id"] != first["id"]
        assert second["status"] == "active"

    async def test_same_lead_other_sequence(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        first_sequence = await create_sequence(client, auth, name="One")
        second_sequence = await create_sequence(client, auth, name="Two")

        await enroll(client, auth, first_sequence["id"], lead["id"])
        second = await enroll(client, auth, second_sequence["id"], lead["id"])

        assert second["sequence_id"] == second_sequence["id"]

    async def test_unknown_lead(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        missing = ids.encode("lead", ids.new_uuid())

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": missing},
            headers=auth,
        )

        assert response.status_code == 404
        assert response.json()["code"] == "lead_not_found"

    async def test_malformed_lead_id(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": "cus_123"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "lead_id"

    async def test_unknown_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"], "start_at": "2026-01-01T00:00:00Z"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "extra_forbidden"

    async def test_unknown_sequence(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        missing = ids.encode("sequence", ids.new_uuid())

        response = await client.post(
            f"/v1/sequences/{missing}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 404
        assert response.json()["code"] == "sequence_not_found"

    async def test_other_workspace_lead_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        _, other = await make_workspace_key(session)
        foreign = await create_lead(client, other)

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": foreign["id"]},
            headers=auth,
        )

        assert response.status_code == 404
        assert response.json()["code"] == "lead_not_found"

    async def test_closed_lead_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        await client.patch(
            f"/v1/leads/{lead['id']}", json={"status": "junk"}, headers=auth
        )

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "lead_not_enrollable"
        assert response.json()["lead_status"] == "junk"

    async def test_suppressed_address_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        row = await session.get_one(Lead, ids.decode("lead", str(lead["id"])))
        session.add(
            EmailSuppression(
                workspace_id=row.workspace_id,
                email_normalized=row.email_normalized,
                reason="unsubscribed",
            )
        )
        await session.commit()

        response = await client.post(
            f"/v1/sequences/{sequence['id']}/enrollments",
            json={"lead_id": lead["id"]},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "lead_unsubscribed"


class TestGetEnrollment:
    async def test_found(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])

        response = await client.get(f"/v1/enrollments/{created['id']}", headers=auth)

        assert response.status_code == 200
        assert response.json() == created
        assert response.headers["etag"] == '"1"'

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])
        _, other = await make_workspace_key(session)

        got = await client.get(f"/v1/enrollments/{created['id']}", headers=other)
        paused = await transition(client, other, created["id"], "pause")

        assert got.status_code == 404
        assert got.json()["code"] == "enrollment_not_found"
        assert paused.status_code == 404

    async def test_malformed_id_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/enrollments/enr_nope", headers=auth)

        assert response.status_code == 404


class TestListEnrollments:
    async def test_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first_sequence = await create_sequence(client, auth, name="One")
        second_sequence = await create_sequence(client, auth, name="Two")
        ada = await create_lead(client, auth)
        bob = await create_lead(client, auth, email="bob@example.com")
        ada_one = await enroll(client, auth, first_sequence["id"], ada["id"])
        ada_two = await enroll(client, auth, second_sequence["id"], ada["id"])
        bob_one = await enroll(client, auth, first_sequence["id"], bob["id"])
        await transition(client, auth, ada_two["id"], "pause")

        async def listed(query: str) -> list[object]:
            response = await client.get(f"/v1/enrollments?{query}", headers=auth)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["data"]]

        assert await listed("") == [bob_one["id"], ada_two["id"], ada_one["id"]]
        assert await listed(f"lead_id={ada['id']}") == [ada_two["id"], ada_one["id"]]
        assert await listed(f"sequence_id={first_sequence['id']}") == [
            bob_one["id"],
            ada_one["id"],
        ]
        assert await listed("status=paused") == [ada_two["id"]]
        assert await listed(f"lead_id={ada['id']}&status=active") == [ada_one["id"]]
        assert (
            await listed(f"lead_id={bob['id']}&sequence_id={second_sequence['id']}")
            == []
        )

    async def test_pages(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        sequence = await create_sequence(client, auth)
        created = []
        for index in range(3):
            lead = await create_lead(client, auth, email=f"p{index}@example.com")
            created.append(await enroll(client, auth, sequence["id"], lead["id"]))

        first = (await client.get("/v1/enrollments?limit=2", headers=auth)).json()
        rest = (
            await client.get(
                f"/v1/enrollments?limit=2&cursor={first['next_cursor']}", headers=auth
            )
        ).json()

        seen = [item["id"] for item in first["data"] + rest["data"]]
        assert seen == [item["id"] for item in reversed(created)]
        assert rest["has_more"] is False

    async def test_invalid_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        bad_lead = await client.get("/v1/enrollments?lead_id=seq_1", headers=auth)
        bad_status = await client.get("/v1/enrollments?status=done", headers=auth)

        assert bad_lead.status_code == 422
        assert bad_lead.json()["errors"][0]["field"] == "query.lead_id"
        assert bad_status.status_code == 422
        assert bad_status.json()["errors"][0]["field"] == "query.status"

    async def test_only_own_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        await enroll(client, auth, sequence["id"], lead["id"])
        _, other = await make_workspace_key(session)

        page = (await client.get("/v1/enrollments", headers=other)).json()

        assert page["data"] == []


class TestTransitions:
    async def test_pause_resume_exit(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth, steps=TWO_STEPS)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])

        paused = await transition(client, auth, created["id"], "pause")
        resumed = await transition(client, auth, created["id"], "resume")
        exited = await transition(client, auth, created["id"], "exit")

        assert paused.status_code == 200
        assert paused.json()["status"] == "paused"
        assert paused.headers["etag"] == '"2"'
        assert resumed.json()["status"] == "active"
        assert resumed.json()["next_run_at"] == created["next_run_at"]
        assert exited.json()["status"] == "exited"
        assert exited.json()["exit_reason"] == "manual"
        assert exited.json()["exited_at"] is not None
        assert exited.json()["next_run_at"] is None
        assert exited.json()["version"] == 4
        events = (
            await session.scalars(
                select(Event)
                .where(Event.object_type == "enrollment")
                .order_by(Event.sequence)
            )
        ).all()
        assert [event.type for event in events] == [
            "enrollment.created",
            "enrollment.paused",
            "enrollment.resumed",
            "enrollment.exited",
        ]
        assert [event.sequence for event in events] == [1, 2, 3, 4]
        assert events[-1].data == exited.json()

    async def test_exit_with_fields_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=TWO_STEPS)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])

        response = await client.post(
            f"/v1/enrollments/{created['id']}/exit",
            json={"reason": "replied"},
            headers=auth,
        )
        current = await client.get(f"/v1/enrollments/{created['id']}", headers=auth)

        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"] == [
            {
                "field": "body",
                "message": "this operation takes no body",
                "code": "body_not_accepted",
            }
        ]
        assert "It sent 'reason'." in problem["detail"]
        assert current.json()["status"] == "active"

    @pytest.mark.parametrize("body", [b"", b"{}", b" { } ", b"null"])
    async def test_exit_with_empty_body(
        self, client: httpx.AsyncClient, auth: dict[str, str], body: bytes
    ) -> None:
        sequence = await create_sequence(client, auth, steps=TWO_STEPS)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])

        response = await client.post(
            f"/v1/enrollments/{created['id']}/exit",
            content=body,
            headers={**auth, "Content-Type": "application/json"},
        )

        assert response.status_code == 200
        assert response.json()["exit_reason"] == "manual"

    async def test_pause_with_text_body_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth, steps=TWO_STEPS)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])

        response = await client.post(
            f"/v1/enrollments/{created['id']}/pause", content=b"pause", headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "body_not_accepted"

    async def test_resume_after_due_runs_now(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth, steps=TWO_STEPS)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])
        await transition(client, auth, created["id"], "pause")
        await session.execute(
            update(Enrollment).values(next_run_at=datetime.now(UTC) - timedelta(days=1))
        )
        await session.commit()
        before = datetime.now(UTC)

        resumed = (await transition(client, auth, created["id"], "resume")).json()

        assert parse_time(resumed["next_run_at"]) >= before - timedelta(seconds=1)
        assert parse_time(resumed["next_run_at"]) <= datetime.now(UTC)

    async def test_invalid_transitions(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])

        resume_active = await transition(client, auth, created["id"], "resume")
        await transition(client, auth, created["id"], "pause")
        pause_paused = await transition(client, auth, created["id"], "pause")
        await transition(client, auth, created["id"], "exit")
        resume_exited = await transition(client, auth, created["id"], "resume")
        exit_exited = await transition(client, auth, created["id"], "exit")

        assert resume_active.status_code == 409
        assert resume_active.json()["code"] == "invalid_transition"
        assert resume_active.json()["current_status"] == "active"
        assert resume_active.json()["allowed_transitions"] == ["paused", "exited"]
        assert pause_paused.status_code == 409
        assert pause_paused.json()["allowed_transitions"] == ["active", "exited"]
        assert resume_exited.status_code == 409
        assert resume_exited.json()["allowed_transitions"] == []
        assert exit_exited.status_code == 409
        assert "none" in exit_exited.json()["detail"]

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])

        response = await transition(
            client, auth, created["id"], "pause", **{"If-Match": '"9"'}
        )

        assert response.status_code == 412
        assert response.json()["current_version"] == 1
        row = (await session.scalars(select(Enrollment))).one()
        assert row.status == "active"

    async def test_if_match_current(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])

        response = await transition(
            client, auth, created["id"], "pause", **{"If-Match": '"1"'}
        )
        stale = await transition(
            client, auth, created["id"], "resume", **{"If-Match": '"1"'}
        )

        assert response.status_code == 200
        assert response.headers["etag"] == '"2"'
        assert stale.status_code == 412

    async def test_requires_write_scope(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        sequence = await create_sequence(client, auth)
        lead = await create_lead(client, auth)
        created = await enroll(client, auth, sequence["id"], lead["id"])
        row = (await session.scalars(select(Enrollment))).one()
        key = await create_api_key(
            session,
            workspace_id=row.workspace_id,
            name="reader",
            scopes=["nurture:read"],
        )
        await session.commit()
        reader = {"Authorization": f"Bearer {key.secret}"}

        response = await transition(client, reader, created["id"], "exit")

        assert response.status_code == 403
        assert response.json()["missing_scope"] == "nurture:write"


class TestStateMachine:
    async def test_published(self, client: httpx.AsyncClient) -> None:
        machines = (await client.get("/v1/meta/state-machines")).json()["data"]

        enrollment = next(m for m in machines if m["resource"] == "enrollment")

        assert enrollment["initial"] == "active"
        assert enrollment["transitions"]["active"] == [
            "paused",
            "completed",
            "exited",
            "failed",
        ]
        assert "active" in enrollment["transitions"]["paused"]
        assert enrollment["transitions"]["completed"] == []
        assert enrollment["transitions"]["exited"] == []
        assert enrollment["transitions"]["failed"] == ["active"]
