"""CSV export of leads: filters, formula neutralisation and the round trip."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.leads.imports_router import EXPORT_COLUMNS
from app.models import Lead
from tests.conftest import make_workspace_key
from tests.leads.test_imports import import_file
from tests.leads.test_router import create_lead
from tests.users.factories import create_user

COMPARED = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone_normalized",
    "timezone",
    "source",
    "owner_id",
    "notes",
    "company_domain",
    "tags",
    "attributes",
)


async def export(
    client: httpx.AsyncClient, auth: dict[str, str], query: str = ""
) -> httpx.Response:
    response = await client.get(f"/v1/lead-exports{query}", headers=auth)
    assert response.status_code == 200, response.text
    return response


def rows_of(response: httpx.Response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.text)))


class TestExport:
    async def test_header_and_rows(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(
            client, auth, email="ada@example.com", attributes={"plan": "pro"}
        )

        response = await export(client, auth)

        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert "attachment" in response.headers["content-disposition"]
        assert response.text.splitlines()[0] == (
            "id,email,first_name,last_name,company,title,phone,timezone,source,"
            "owner_id,notes,company_domain,tags,attributes"
        )
        rows = rows_of(response)
        assert len(rows) == 1
        assert rows[0]["id"] == lead["id"]
        assert rows[0]["attributes"] == '{"plan": "pro"}'

    async def test_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        owner = await create_user(client, auth)
        await create_lead(client, auth, email="a@x.com", owner_id=owner["id"])
        second = await create_lead(client, auth, email="b@x.com", company="Acme")
        await client.patch(
            f"/v1/leads/{second['id']}", json={"status": "working"}, headers=auth
        )

        by_status = rows_of(await export(client, auth, "?status=working"))
        by_owner = rows_of(await export(client, auth, f"?owner_id={owner['id']}"))
        by_query = rows_of(await export(client, auth, "?q=acm"))
        after = rows_of(
            await export(client, auth, f"?created_after={second['created_at']}")
        )

        assert [row["email"] for row in by_status] == ["b@x.com"]
        assert [row["email"] for row in by_owner] == ["a@x.com"]
        assert [row["email"] for row in by_query] == ["b@x.com"]
        assert after == []

    async def test_invalid_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get(
            "/v1/lead-exports?created_after=yesterday", headers=auth
        )

        assert response.status_code == 422

    async def test_pages_through_all(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Any,
    ) -> None:
        session.add_all(
            Lead(
                workspace_id=workspace.id,
                email=f"u{n}@x.com",
                email_normalized=f"u{n}@x.com",
                attributes={},
            )
            for n in range(2100)
        )
        await session.commit()

        rows = rows_of(await export(client, auth))

        assert len(rows) == 2100
        assert len({row["id"] for row in rows}) == 2100

    async def test_formulas_neutralized(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_lead(
            client,
            auth,
            email="a@x.com",
            first_name='=HYPERLINK("http://evil")',
            last_name="'quoted",
            company="@SUM(1)",
            phone="+4930123456",
            notes="-2+3",
        )

        row = rows_of(await export(client, auth))[0]

        assert row["first_name"] == '\'=HYPERLINK("http://evil")'
        assert row["last_name"] == "''quoted"
        assert row["company"] == "'@SUM(1)"
        assert row["phone"] == "'+4930123456"
        assert row["notes"] == "'-2+3"

    async def test_other_workspace_hidden(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        await create_lead(client, auth, email="a@x.com")
        _, other = await make_workspace_key(session)

        rows = rows_of(await export(client, other))

        assert rows == []

    async def test_needs_read_scope(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, headers = await make_workspace_key(session, scopes=("nurture:read",))

        response = await client.get("/v1/lead-exports", headers=headers)

        assert response.status_code == 403


class TestRoundTrip:
    async def test_import_of_export_unchanged(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        context: dict[str, Any],
    ) -> None:
        owner = await create_user(client, auth)
        originals = [
            await create_lead(
                client,
                auth,
                email="Ada@Example.com",
                first_name="=1+1",
                last_name="'t Hooft",
                company="Analytical, Engines; Ltd",
                title="@head",
                phone="+4930123456",
                timezone="Europe/Berlin",
                source="web_form",
                owner_id=owner["id"],
                notes='line one\nline "two"\t-tabbed',
                attributes={"plan": "pro", "seats": 3, "tags": ["a", "b"]},
                tags=["vip", "trade-fair"],
                company_domain="engines.example",
            ),
            await create_lead(
                client,
                auth,
                email="bo@example.com",
                phone="030 1234567",
                phone_region="DE",
            ),
        ]
        exported = (await export(client, auth)).content
        # Owners belong to the workspace, so the file goes back into the same one,
        # after the originals are closed and their emails are free again.
        for lead in originals:
            response = await client.patch(
                f"/v1/leads/{lead['id']}",
                json={"status": "disqualified", "status_reason": "re-imported"},
                headers=auth,
            )
            assert response.status_code == 200, response.text

        job = await import_file(client, auth, context, exported)
        imported = [row for row in rows_of(await export(client, auth, "?status=new"))]

        assert job["status"] == "completed"
        assert job["created"] == 2
        assert job["failed"] == 0
        assert {c["target"] for c in job["columns"]} >= {"ignore", "attributes"}
        listed = await client.get("/v1/leads?status=new", headers=auth)
        after = {lead["email"]: lead for lead in listed.json()["data"]}
        before = {lead["email"]: lead for lead in originals}
        assert set(after) == set(before)
        for email, lead in after.items():
            for name in COMPARED:
                assert lead[name] == before[email][name], (email, name)
        assert after[originals[0]["email"]]["phone"] == "+4930123456"
        assert after["bo@example.com"]["phone"] == "+49301234567"
        first = {row["email"]: row for row in rows_of_bytes(exported)}
        for row in imported:
            for name in EXPORT_COLUMNS[1:]:
                assert row[name] == first[row["email"]][name], (row["email"], name)


def rows_of_bytes(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))
