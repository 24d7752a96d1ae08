"""CSV imports over HTTP, with the worker's job function run for real."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import utcnow
from app.leads.imports import run_job_id
from app.models import (
    Event,
    Lead,
    LeadAssignment,
    LeadImport,
    LeadImportError,
    LeadTouch,
    UndispatchedEvent,
)
from app.settings import Settings
from tests.conftest import make_workspace_key
from tests.leads.helpers import create_rule as create_scoring_rule
from tests.leads.helpers import define_field, get_lead
from tests.leads.test_assignment import create_rule as create_assignment_rule
from tests.leads.test_router import create_lead
from tests.users.factories import create_user
from workers import tasks


def upload(
    content: bytes | str,
    *,
    filename: str = "leads.csv",
    **fields: str,
) -> dict[str, Any]:
    data = content.encode() if isinstance(content, str) else content
    return {"files": {"file": (filename, data, "text/csv")}, "data": fields}


async def post_import(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    content: bytes | str,
    **fields: str,
) -> httpx.Response:
    return await client.post(
        "/v1/lead-imports", headers=auth, **upload(content, **fields)
    )


async def run_job(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    context: dict[str, Any],
    import_id: str,
) -> dict[str, Any]:
    outcome = "continued"
    while outcome == "continued":
        outcome = await tasks.run_lead_import(
            context, str(ids.decode("lead_import", import_id))
        )
    response = await client.get(f"/v1/lead-imports/{import_id}", headers=auth)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def import_file(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    context: dict[str, Any],
    content: bytes | str,
    **fields: str,
) -> dict[str, Any]:
    response = await post_import(client, auth, content, **fields)
    assert response.status_code == 202, response.text
    return await run_job(client, auth, context, response.json()["id"])


async def error_rows(
    client: httpx.AsyncClient, auth: dict[str, str], import_id: str
) -> list[dict[str, str]]:
    response = await client.get(f"/v1/lead-imports/{import_id}/errors", headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


async def leads_by_email(session: AsyncSession) -> dict[str, Lead]:
    rows = (
        await session.scalars(select(Lead).execution_options(populate_existing=True))
    ).all()
    return {lead.email_normalized: lead for lead in rows}


class TestUpload:
    async def test_queued(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        redis_client: Any,
    ) -> None:
        response = await post_import(client, auth, "Email,First Name\na@x.com,Ann\n")

        assert response.status_code == 202
        job = response.json()
        assert job["id"].startswith("imp_")
        assert job["status"] == "queued"
        assert job["processed"] == 0
        assert job["total"] is None
        assert job["options"]["dedupe"] == "skip"
        assert job["columns"] == [
            {"column": "Email", "target": "email", "origin": "recognized"},
            {"column": "First Name", "target": "first_name", "origin": "recognized"},
        ]
        assert response.headers["location"] == f"/v1/lead-imports/{job['id']}"
        queued = await redis_client.zrange("salescycle:queue", 0, -1)
        assert len(queued) == 1
        assert queued[0].decode().startswith("lead_import:")

    async def test_not_multipart(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/lead-imports", headers=auth, json={"file": "a@x.com"}
        )

        assert response.status_code == 415
        assert "multipart/form-data" in response.json()["detail"]

    async def test_missing_file(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/lead-imports", headers=auth, files={"other": ("a.csv", b"x")}
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "file"

    async def test_empty_file(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_import(client, auth, b"")

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "empty_file"

    async def test_no_header(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_import(client, auth, "a@x.com,Ann\nb@x.com,Bo\n")

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "missing_header"

    async def test_no_email_column(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_import(client, auth, "Name,Company\nAnn,Acme\n")

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "missing_email_column"

    async def test_unknown_mapping_target(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_import(
            client,
            auth,
            "Mail,Name\na@x.com,Ann\n",
            mapping=json.dumps({"Mail": "email", "Name": "full_name"}),
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"][0]["field"] == "mapping.Name"
        assert "full_name" in problem["detail"]

    async def test_mapping_unknown_column(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_import(
            client, auth, "Email\na@x.com\n", mapping=json.dumps({"Mail": "email"})
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "unknown_column"

    async def test_invalid_encoding(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_import(
            client, auth, "Email,Company\na@x.com,Müller\n".encode("cp1252")
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"][0]["code"] == "invalid_encoding"
        assert "CSV UTF-8" in problem["detail"]

    async def test_invalid_dedupe(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_import(client, auth, "Email\na@x.com\n", dedupe="merge")

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "dedupe"

    async def test_options_and_fields_together(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_import(
            client,
            auth,
            "Email\na@x.com\n",
            options=json.dumps({"dedupe": "update"}),
            dry_run="true",
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "dry_run"

    async def test_unknown_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_import(client, auth, "Email\na@x.com\n", verbose="1")

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "unknown_field"

    async def test_too_large(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        settings: Settings,
    ) -> None:
        content = "Email\n" + "a@x.com\n" * (settings.import_max_bytes // 8 + 1)

        response = await post_import(client, auth, content)

        assert response.status_code == 413
        assert str(settings.import_max_bytes) in response.json()["detail"]

    async def test_larger_than_json_limit(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        settings: Settings,
        context: dict[str, Any],
    ) -> None:
        notes = "n" * 500
        rows = settings.max_body_bytes // len(notes) + 10
        content = "Email,Notes\n" + "".join(
            f"lead{n}@example.com,{notes}\n" for n in range(rows)
        )

        job = await import_file(client, auth, context, content)

        assert len(content) > settings.max_body_bytes
        assert job["status"] == "completed"
        assert job["created"] == rows

    async def test_needs_write_scope(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, headers = await make_workspace_key(session, scopes=("leads:read",))

        response = await post_import(client, headers, "Email\na@x.com\n")

        assert response.status_code == 403


class TestRun:
    async def test_counts_and_progress(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        content = (
            "E-mail Address,Given Name,Family Name,Organization,Job Title,Plan\n"
            "ada@example.com,Ada,Lovelace,Analytical,Countess,pro\n"
            "not-an-email,Bad,Row,,,\n"
            "grace@example.com,Grace,Hopper,Navy,,free\n"
        )

        job = await import_file(client, auth, context, content)

        assert job["status"] == "completed"
        assert job["total"] == 3
        assert job["processed"] == 3
        assert (job["created"], job["updated"], job["skipped"], job["failed"]) == (
            2,
            0,
            0,
            1,
        )
        assert job["started_at"] is not None
        assert job["completed_at"] is not None
        leads = await leads_by_email(session)
        assert leads["ada@example.com"].company == "Analytical"
        assert leads["ada@example.com"].title == "Countess"
        assert leads["ada@example.com"].source == "import"
        assert leads["ada@example.com"].attributes == {"plan": "pro"}
        assert {c["target"] for c in job["columns"]} >= {"attributes.plan"}

    async def test_events_emitted(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await import_file(
            client, auth, context, "Email,First Name\na@x.com,Ann\nb@x.com,Bo\n"
        )

        events = (
            await session.execute(
                select(Event.type, Event.sequence, Event.data).order_by(Event.id)
            )
        ).all()
        assert [(e.type, e.sequence) for e in events] == [
            ("lead.created", 1),
            ("lead.created", 1),
        ]
        assert {e.data["email"] for e in events} == {"a@x.com", "b@x.com"}
        assert events[0].data["id"].startswith("lead_")
        assert events[0].data["source"] == "import"
        # Both wait for the webhook dispatch, as emitted events do.
        queued = await session.scalar(
            select(func.count()).select_from(UndispatchedEvent)
        )
        assert queued == 2

    async def test_event_data_matches_api(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await import_file(
            client,
            auth,
            context,
            "Email,First Name,Phone,Plan,Time Zone\nA@x.com,Ann,+4930123456,pro,UTC\n",
        )
        data = await session.scalar(select(Event.data))
        assert data is not None

        response = await client.get(f"/v1/leads/{data['id']}", headers=auth)

        assert data == response.json()

    async def test_error_report(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
    ) -> None:
        content = (
            "Email,Created Date,Source\n"
            "a@x.com,2025-01-02,api\n"
            "b@x.com,31/02/2025,api\n"
            "broken,2025-01-02,api\n"
            "c@x.com,2025-01-02,fax\n"
        )

        job = await import_file(client, auth, context, content)
        rows = await error_rows(client, auth, job["id"])

        assert job["failed"] == 3
        assert [row["row"] for row in rows] == ["3", "4", "5"]
        assert rows[0]["column"] == "Created Date"
        assert rows[0]["value"] == "31/02/2025"
        assert "not a valid date" in rows[0]["message"]
        assert rows[1]["column"] == "Email"
        assert "not a valid email" in rows[1]["message"]
        assert rows[2]["column"] == "Source"
        assert rows[2]["value"] == "fax"

    async def test_ambiguous_date_column(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        content = "Email,Created Date\na@x.com,03/04/2025\nb@x.com,05/05/2025\n"

        job = await import_file(client, auth, context, content)
        rows = await error_rows(client, auth, job["id"])

        assert job["failed"] == 1
        assert rows[0]["row"] == "2"
        assert "ambiguous" in rows[0]["message"]
        leads = await leads_by_email(session)
        assert "a@x.com" not in leads
        assert leads["b@x.com"].attributes == {"source_created_at": "2025-05-05"}

    async def test_date_format_option(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        content = "Email,Signed Up\na@x.com,03/04/2025\n"

        job = await import_file(
            client,
            auth,
            context,
            content,
            options=json.dumps(
                {
                    "mapping": {"Signed Up": "attributes.signed_up:date"},
                    "date_format": "MM/DD/YYYY",
                }
            ),
        )

        assert job["failed"] == 0
        leads = await leads_by_email(session)
        assert leads["a@x.com"].attributes == {"signed_up": "2025-03-04"}

    async def test_phone_region(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        content = "Email,Mobile Phone\na@x.com,030 12345678\n"

        await import_file(client, auth, context, content, default_phone_region="de")

        leads = await leads_by_email(session)
        assert leads["a@x.com"].phone == "030 12345678"
        assert leads["a@x.com"].phone_normalized == "+493012345678"

    async def test_national_phone_without_region(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        content = "Email,Mobile Phone\na@x.com,030 12345678\nb@x.com,+4930123456\n"

        job = await import_file(client, auth, context, content)

        assert job["created"] == 1
        assert job["failed"] == 1
        rows = await error_rows(client, auth, job["id"])
        assert len(rows) == 1
        assert rows[0]["row"] == "2"
        assert rows[0]["column"] == "Mobile Phone"
        assert rows[0]["value"] == "030 12345678"
        assert "phone_region" in rows[0]["message"]
        leads = await leads_by_email(session)
        assert set(leads) == {"b@x.com"}
        assert leads["b@x.com"].phone_normalized == "+4930123456"

    async def test_too_many_rows(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        settings: Settings,
        session: AsyncSession,
    ) -> None:
        context["settings"] = settings.model_copy(update={"import_max_rows": 2})

        job = await import_file(
            client, auth, context, "Email\na@x.com\nb@x.com\nc@x.com\n"
        )

        assert job["status"] == "failed"
        assert job["error"]["code"] == "too_many_rows"
        assert "more than 2 rows" in job["error"]["message"]
        assert await leads_by_email(session) == {}

    async def test_chunks_resume(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        settings: Settings,
        session: AsyncSession,
    ) -> None:
        context["settings"] = settings.model_copy(
            update={"import_chunk_rows": 2, "import_run_seconds": 0.000001}
        )
        content = "Email\n" + "".join(f"u{n}@x.com\n" for n in range(5))
        response = await post_import(client, auth, content)
        import_id = response.json()["id"]
        uid = ids.decode("lead_import", import_id)

        first = await tasks.run_lead_import(context, str(uid))
        after_first = await session.get(LeadImport, uid, populate_existing=True)
        assert after_first is not None
        processed_first = after_first.next_row
        job = await run_job(client, auth, context, import_id)

        assert first == "continued"
        assert processed_first == 2
        assert job["status"] == "completed"
        assert job["created"] == 5
        assert len(await leads_by_email(session)) == 5

    async def test_rerun_imports_nothing_twice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        job = await import_file(client, auth, context, "Email\na@x.com\nb@x.com\n")
        uid = ids.decode("lead_import", job["id"])

        again = await tasks.run_lead_import(context, str(uid))

        assert again == "not_claimed"
        count = await session.scalar(select(func.count()).select_from(Lead))
        assert count == 2

    async def test_stalled_run_swept(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
        redis_client: Any,
    ) -> None:
        response = await post_import(client, auth, "Email\na@x.com\n")
        uid = ids.decode("lead_import", response.json()["id"])
        # A worker claimed the import, then died: its lease has lapsed.
        await session.execute(
            update(LeadImport)
            .where(LeadImport.id == uid)
            .values(
                status="running",
                attempts=1,
                claimed_until=utcnow() - timedelta(seconds=1),
            )
        )
        await session.commit()
        await redis_client.flushdb()

        swept = await tasks.sweep_lead_imports(context)
        queued = await redis_client.zrange("salescycle:queue", 0, -1)
        job = await run_job(client, auth, context, response.json()["id"])

        assert swept == 1
        assert queued == [f"lead_import:{uid}:0:1".encode()]
        assert job["status"] == "completed"
        assert job["created"] == 1

    async def test_leased_run_not_swept(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        response = await post_import(client, auth, "Email\na@x.com\n")
        uid = ids.decode("lead_import", response.json()["id"])
        await session.execute(
            update(LeadImport)
            .where(LeadImport.id == uid)
            .values(status="running", claimed_until=utcnow() + timedelta(minutes=1))
        )
        await session.commit()

        swept = await tasks.sweep_lead_imports(context)
        outcome = await tasks.run_lead_import(context, str(uid))

        assert swept == 0
        assert outcome == "not_claimed"

    async def test_workspace_isolated(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        response = await post_import(client, auth, "Email\na@x.com\n")
        _, other = await make_workspace_key(session)

        found = await client.get(
            f"/v1/lead-imports/{response.json()['id']}", headers=other
        )
        errors = await client.get(
            f"/v1/lead-imports/{response.json()['id']}/errors", headers=other
        )

        assert found.status_code == 404
        assert found.json()["code"] == "lead_import_not_found"
        assert errors.status_code == 404

    async def test_list(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        first = await post_import(client, auth, "Email\na@x.com\n")
        second = await post_import(client, auth, "Email\nb@x.com\n")

        response = await client.get("/v1/lead-imports?limit=1", headers=auth)

        assert response.status_code == 200
        page = response.json()
        assert [job["id"] for job in page["data"]] == [second.json()["id"]]
        assert page["has_more"] is True
        rest = await client.get(
            f"/v1/lead-imports?cursor={page['next_cursor']}", headers=auth
        )
        assert [job["id"] for job in rest.json()["data"]] == [first.json()["id"]]


class TestDedupe:
    async def test_skip(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await create_lead(client, auth, email="ada@example.com", company="Old")
        content = "Email,Company\nADA@example.com,New\nb@x.com,B1\nb@x.com,B2\n"

        job = await import_file(client, auth, context, content, dedupe="skip")

        assert (job["created"], job["skipped"], job["updated"]) == (1, 2, 0)
        leads = await leads_by_email(session)
        assert leads["ada@example.com"].company == "Old"
        assert leads["b@x.com"].company == "B1"

    async def test_update(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await create_lead(
            client,
            auth,
            email="ada@example.com",
            company="Old",
            title="Countess",
            attributes={"plan": "free", "seats": 3},
        )
        content = (
            "Email,Company,Job Title,Plan\n"
            "ada@example.com,New,,pro\n"
            "b@x.com,B1,CTO,\n"
            "b@x.com,B2,,basic\n"
        )

        job = await import_file(client, auth, context, content, dedupe="update")

        assert (job["created"], job["updated"], job["skipped"]) == (1, 2, 0)
        leads = await leads_by_email(session)
        ada = leads["ada@example.com"]
        assert ada.company == "New"
        assert ada.title == "Countess"
        assert ada.attributes == {"plan": "pro", "seats": 3}
        assert ada.version == 2
        assert leads["b@x.com"].company == "B2"
        assert leads["b@x.com"].title == "CTO"
        assert leads["b@x.com"].attributes == {"plan": "basic"}
        updated = await session.scalar(
            select(func.count()).select_from(Event).where(Event.type == "lead.updated")
        )
        assert updated == 1

    async def test_create_makes_lead_beside_closed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        closed = await create_lead(client, auth, email="ada@example.com")
        response = await client.patch(
            f"/v1/leads/{closed['id']}", json={"status": "junk"}, headers=auth
        )
        assert response.status_code == 200, response.text
        await create_lead(client, auth, email="open@example.com")
        content = "Email\nada@example.com\nopen@example.com\n"

        job = await import_file(client, auth, context, content, dedupe="create")

        assert (job["created"], job["skipped"]) == (1, 1)
        count = await session.scalar(
            select(func.count())
            .select_from(Lead)
            .where(Lead.email_normalized == "ada@example.com")
        )
        assert count == 2


class TestDryRun:
    async def test_writes_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        settings: Settings,
        session: AsyncSession,
    ) -> None:
        context["settings"] = settings.model_copy(update={"import_chunk_rows": 2})
        await create_lead(client, auth, email="ada@example.com")
        content = "Email\nada@example.com\nb@x.com\nbroken\nc@x.com\nb@x.com\n"

        job = await import_file(client, auth, context, content, dry_run="true")

        assert job["status"] == "completed"
        assert job["options"]["dry_run"] is True
        assert (job["created"], job["skipped"], job["failed"]) == (2, 2, 1)
        assert len(await error_rows(client, auth, job["id"])) == 1
        assert set(await leads_by_email(session)) == {"ada@example.com"}
        events = await session.scalar(select(func.count()).select_from(Event))
        assert events == 1

    async def test_errors_stored(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        job = await import_file(
            client, auth, context, "Email\nbroken\n", dry_run="true"
        )

        stored = await session.scalar(
            select(func.count())
            .select_from(LeadImportError)
            .where(LeadImportError.import_id == ids.decode("lead_import", job["id"]))
        )
        assert stored == 1


class TestRules:
    async def test_owner_unknown(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        stranger = ids.encode("user", uuid.UUID(int=99))
        content = f"Email,Owner\na@x.com,{stranger}\nb@x.com,\n"

        job = await import_file(client, auth, context, content)

        assert job["created"] == 1
        assert job["failed"] == 1
        rows = await error_rows(client, auth, job["id"])
        assert [(r["row"], r["column"], r["value"]) for r in rows] == [
            ("2", "Owner", stranger)
        ]
        assert "no user" in rows[0]["message"]
        assert set(await leads_by_email(session)) == {"b@x.com"}

    async def test_owner_inactive(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
    ) -> None:
        rep = await create_user(client, auth)
        response = await client.patch(
            f"/v1/users/{rep['id']}", json={"active": False}, headers=auth
        )
        assert response.status_code == 200, response.text

        job = await import_file(
            client, auth, context, f"Email,Owner\na@x.com,{rep['id']}\n"
        )

        assert job["failed"] == 1
        rows = await error_rows(client, auth, job["id"])
        assert "inactive" in rows[0]["message"]

    async def test_owner_named_audited(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        rep = await create_user(client, auth)

        job = await import_file(
            client, auth, context, f"Email,Owner\na@x.com,{rep['id']}\n"
        )

        assert job["created"] == 1
        lead = (await leads_by_email(session))["a@x.com"]
        assert lead.owner_id == ids.decode("user", rep["id"])
        audits = (await session.scalars(select(LeadAssignment))).all()
        assert [(a.lead_id, a.method, a.rule_id) for a in audits] == [
            (lead.id, "manual", None)
        ]
        types = (
            await session.scalars(
                select(Event.type).where(Event.object_id == lead.id).order_by(Event.id)
            )
        ).all()
        assert list(types) == ["lead.created", "lead.assigned"]

    async def test_assignment_rule_applies(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        default_rep = await create_user(client, auth)
        partner_rep = await create_user(client, auth)
        await create_assignment_rule(
            client,
            auth,
            position=1,
            strategy="fixed",
            user_id=partner_rep["id"],
            criteria=[{"field": "source", "operator": "equals", "value": "partner"}],
        )
        rule = await create_assignment_rule(
            client, auth, position=2, strategy="fixed", user_id=default_rep["id"]
        )
        content = "Email,Source\na@x.com,partner\nb@x.com,\n"

        job = await import_file(client, auth, context, content)

        assert job["created"] == 2
        leads = await leads_by_email(session)
        assert leads["a@x.com"].owner_id == ids.decode("user", partner_rep["id"])
        assert leads["b@x.com"].owner_id == ids.decode("user", default_rep["id"])
        audit = await session.scalar(
            select(LeadAssignment).where(LeadAssignment.lead_id == leads["b@x.com"].id)
        )
        assert audit is not None
        assert audit.method == "rule"
        assert audit.rule_id == ids.decode("assignment_rule", rule["id"])

    async def test_custom_field_violation(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await define_field(
            client,
            auth,
            key="industry",
            label="Industry",
            type="choice",
            choices=["saas", "retail"],
        )
        content = "Email,Industry\na@x.com,saas\nb@x.com,mining\n"

        job = await import_file(client, auth, context, content)

        assert job["created"] == 1
        assert job["failed"] == 1
        rows = await error_rows(client, auth, job["id"])
        assert len(rows) == 1
        assert rows[0]["row"] == "3"
        assert rows[0]["column"] == "Industry"
        assert rows[0]["value"] == "mining"
        assert rows[0]["message"].startswith("attributes.industry ")
        assert set(await leads_by_email(session)) == {"a@x.com"}

    async def test_required_custom_field(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
    ) -> None:
        await define_field(
            client, auth, key="region", label="Region", type="text", required=True
        )

        job = await import_file(
            client, auth, context, "Email,Region\na@x.com,\nb@x.com,EMEA\n"
        )

        assert job["created"] == 1
        rows = await error_rows(client, auth, job["id"])
        assert [(r["row"], r["column"]) for r in rows] == [("2", "attributes.region")]
        assert "is required" in rows[0]["message"]

    async def test_custom_field_violation_dry_run(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
    ) -> None:
        await define_field(client, auth, key="seats", label="Seats", type="number")

        job = await import_file(
            client, auth, context, "Email,Seats\na@x.com,3\n", dry_run="true"
        )

        assert job["created"] == 0
        assert job["failed"] == 1

    async def test_touch_recorded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await import_file(
            client, auth, context, "Email,Source\na@x.com,partner\nb@x.com,\n"
        )

        leads = await leads_by_email(session)
        touches = (await session.scalars(select(LeadTouch))).all()
        assert len(touches) == 2
        by_lead = {touch.lead_id: touch for touch in touches}
        for lead in leads.values():
            touch = by_lead[lead.id]
            assert touch.channel == "import"
            assert touch.workspace_id == lead.workspace_id
            assert lead.first_touch_id == touch.id
            assert lead.last_touch_id == touch.id
            assert lead.version == 1
        response = await client.get(
            f"/v1/leads/{ids.encode('lead', leads['a@x.com'].id)}/touches",
            headers=auth,
        )
        assert response.status_code == 200, response.text
        assert [t["channel"] for t in response.json()["data"]] == ["import"]

    async def test_update_records_touch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        lead = await create_lead(client, auth, email="a@x.com")

        job = await import_file(
            client, auth, context, "Email,Tags\na@x.com,vip\n", dedupe="update"
        )

        assert job["updated"] == 1
        touches = (
            await session.scalars(select(LeadTouch).order_by(LeadTouch.id))
        ).all()
        assert [t.channel for t in touches] == ["api", "import"]
        current = await client.get(f"/v1/leads/{lead['id']}", headers=auth)
        assert current.json()["last_touch_id"] == ids.encode("touch", touches[1].id)
        assert current.json()["first_touch_id"] == lead["first_touch_id"]
        assert current.json()["tags"] == ["vip"]

    async def test_event_equals_get(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        rep = await create_user(client, auth)
        content = (
            "Email,Owner,Tags,Mobile Phone,Company,Plan\n"
            f"Ann@Acme.example,{rep['id']},vip expo,030 1234567,Acme,pro\n"
        )

        await import_file(client, auth, context, content, default_phone_region="DE")

        data = await session.scalar(
            select(Event.data).where(Event.type == "lead.created")
        )
        assert data is not None
        response = await client.get(f"/v1/leads/{data['id']}", headers=auth)
        assert data == response.json()
        assert data["owner_id"] == rep["id"]
        assert data["tags"] == ["vip", "expo"]
        assert data["phone_normalized"] == "+49301234567"
        assert data["company_domain"] == "acme.example"
        assert data["first_touch_id"] is not None

    async def test_scoring_sweep_scores(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
        session: AsyncSession,
    ) -> None:
        await create_scoring_rule(
            client, auth, kind="field", points=7, field="company", operator="exists"
        )
        await import_file(
            client, auth, context, "Email,Company\na@x.com,Acme\nb@x.com,\n"
        )
        imported = await leads_by_email(session)
        assert [lead.scored_version for lead in imported.values()] == [0, 0]

        swept = await tasks.sweep_lead_scores(context)

        assert swept == 2
        leads = await leads_by_email(session)
        a_lead = await get_lead(client, auth, ids.encode("lead", leads["a@x.com"].id))
        b_lead = await get_lead(client, auth, ids.encode("lead", leads["b@x.com"].id))
        assert a_lead["score"] == 7
        assert b_lead["score"] == 0


def test_job_ids_unique() -> None:
    lead_import = LeadImport(id=uuid.UUID(int=1), next_row=0, attempts=0)

    first = run_job_id(lead_import)
    lead_import.next_row = 1000
    second = run_job_id(lead_import)

    assert first != second
