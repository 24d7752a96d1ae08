from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import create_api_key
from app.models import Contact, Customer, Event, Lead, Opportunity, Workspace
from tests.conftest import make_workspace_key
from tests.customers.factories import create_contact, create_customer
from tests.leads.test_router import create_lead
from tests.opportunities.factories import default_pipeline
from tests.users.factories import create_user


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


async def event_types(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(Event.type).order_by(Event.id))).all())


class TestConvertLead:
    async def test_creates_everything(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        owner = await create_user(client, auth)
        lead = await create_lead(
            client,
            auth,
            email="Ada@Analytical.Example",
            first_name="Ada",
            last_name="Lovelace",
            company="Analytical Engines",
            phone="+442079460000",
            timezone="Europe/London",
            owner_id=owner["id"],
        )

        response = await convert(client, auth, lead["id"])

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["object"] == "lead_conversion"
        assert result["lead_id"] == lead["id"]
        assert result["customer_id"].startswith("cus_")
        assert result["contact_id"].startswith("con_")
        assert result["opportunity_id"].startswith("opp_")
        assert result["customer_created"] is True
        assert result["contact_created"] is True

        converted = result["lead"]
        assert converted["status"] == "converted"
        assert converted["converted_at"] is not None
        assert converted["status_changed_at"] == converted["converted_at"]
        assert converted["customer_id"] == result["customer_id"]
        assert converted["contact_id"] == result["contact_id"]
        assert converted["opportunity_id"] == result["opportunity_id"]
        assert response.headers["etag"] == f'"{converted["version"]}"'

        customer = result["customer"]
        assert customer["id"] == result["customer_id"]
        assert customer["name"] == "Analytical Engines"
        assert customer["email"] == lead["email"]
        assert customer["domain"] == "analytical.example"
        assert customer["timezone"] == "Europe/London"
        assert customer["currency"] == "USD"
        assert customer["source_lead_id"] == lead["id"]

        contact = result["contact"]
        assert contact["customer_id"] == customer["id"]
        assert contact["first_name"] == "Ada"
        assert contact["last_name"] == "Lovelace"
        assert contact["phone"] == "+442079460000"

        opportunity = result["opportunity"]
        pipeline = await default_pipeline(client, auth)
        assert opportunity["pipeline_id"] == pipeline["id"]
        assert opportunity["stage_id"] == pipeline["stages"][0]["id"]
        assert opportunity["customer_id"] == customer["id"]
        assert opportunity["contact_id"] == contact["id"]
        assert opportunity["lead_id"] == lead["id"]
        assert opportunity["name"] == "Analytical Engines"
        assert opportunity["amount"] == 0
        assert opportunity["currency"] == "USD"
        assert opportunity["owner_id"] == owner["id"]

        assert await event_types(session) == [
            "user.created",
            "lead.created",
            "lead.assigned",
            "customer.created",
            "contact.created",
            "opportunity.created",
            "lead.converted",
        ]
        converted_event = await session.scalar(
            select(Event).where(Event.type == "lead.converted")
        )
        assert converted_event is not None
        assert converted_event.data == converted

    async def test_persisted(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        result = (await convert(client, auth, lead["id"])).json()

        fetched_lead = await client.get(f"/v1/leads/{lead['id']}", headers=auth)
        fetched_customer = await client.get(
            f"/v1/customers/{result['customer_id']}", headers=auth
        )
        fetched_opportunity = await client.get(
            f"/v1/opportunities/{result['opportunity_id']}", headers=auth
        )
        contacts = await client.get(
            f"/v1/customers/{result['customer_id']}/contacts", headers=auth
        )

        assert fetched_lead.json() == result["lead"]
        assert fetched_customer.json() == result["customer"]
        assert fetched_opportunity.json() == result["opportunity"]
        assert contacts.json()["data"] == [result["contact"]]

    @pytest.mark.parametrize("status", ["new", "working", "nurturing", "qualified"])
    async def test_any_open_status(
        self, client: httpx.AsyncClient, auth: dict[str, str], status: str
    ) -> None:
        lead = await create_lead(client, auth)
        if status != "new":
            moved = await client.patch(
                f"/v1/leads/{lead['id']}", json={"status": status}, headers=auth
            )
            assert moved.status_code == 200, moved.text

        response = await convert(client, auth, lead["id"])

        assert response.status_code == 200, response.text
        assert response.json()["lead"]["status"] == "converted"

    async def test_person_with_free_mail(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(
            client,
            auth,
            email="grace@gmail.com",
            first_name="Grace",
            last_name="Hopper",
        )

        customer = (await convert(client, auth, lead["id"])).json()["customer"]

        assert customer["name"] == "Grace Hopper"
        assert customer["domain"] is None

    async def test_email_only_lead(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads", json={"email": "solo@example.org"}, headers=auth
        )
        lead = response.json()

        result = (await convert(client, auth, lead["id"])).json()

        assert result["customer"]["name"] == "solo@example.org"
        assert result["contact"]["email"] == "solo@example.org"

    async def test_overrides(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth, company="Babbage")
        owner = await create_user(client, auth)

        response = await convert(
            client,
            auth,
            lead["id"],
            {
                "customer": {"name": "Babbage Holdings", "payment_terms_days": 60},
                "opportunity": {
                    "name": "Difference engine No. 2",
                    "amount": 2500000,
                    "currency": "GBP",
                    "expected_close_date": "2027-06-30",
                    "owner_id": owner["id"],
                },
            },
        )

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["customer"]["name"] == "Babbage Holdings"
        assert result["customer"]["payment_terms_days"] == 60
        assert result["customer"]["currency"] == "GBP"
        assert result["opportunity"]["name"] == "Difference engine No. 2"
        assert result["opportunity"]["amount"] == 2500000
        assert result["opportunity"]["currency"] == "GBP"
        assert result["opportunity"]["expected_close_date"] == "2027-06-30"
        assert result["opportunity"]["owner_id"] == owner["id"]

    async def test_without_opportunity(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)

        response = await convert(
            client, auth, lead["id"], {"create_opportunity": False}
        )

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["opportunity_id"] is None
        assert result["opportunity"] is None
        assert result["lead"]["opportunity_id"] is None
        assert await count(session, Opportunity) == 0

    async def test_no_body(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)

        response = await client.post(f"/v1/leads/{lead['id']}/convert", headers=auth)

        assert response.status_code == 200, response.text
        assert response.json()["opportunity_id"] is not None


class TestConvertIntoExistingCustomer:
    async def test_links_customer(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth, currency="CHF")
        lead = await create_lead(client, auth, company="Ignored Co")

        response = await convert(
            client, auth, lead["id"], {"customer_id": customer["id"]}
        )

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["customer_id"] == customer["id"]
        assert result["customer_created"] is False
        assert result["contact_created"] is True
        assert result["customer"] == customer
        assert result["opportunity"]["currency"] == "CHF"
        assert await count(session, Customer) == 1
        assert "customer.created" not in (await event_types(session))[1:]

    async def test_reuses_contact_with_same_email(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(
            client, auth, customer["id"], email="ADA@example.com"
        )
        lead = await create_lead(client, auth, email="ada@example.com")

        result = (
            await convert(client, auth, lead["id"], {"customer_id": customer["id"]})
        ).json()

        assert result["contact_id"] == contact["id"]
        assert result["contact_created"] is False
        assert result["opportunity"]["contact_id"] == contact["id"]
        assert await count(session, Contact) == 1

    async def test_customer_of_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        _, other = await make_workspace_key(session)
        foreign = await create_customer(client, other)
        lead = await create_lead(client, auth)

        response = await convert(
            client, auth, lead["id"], {"customer_id": foreign["id"]}
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "customer_id"
        assert error["code"] == "customer_not_found"
        assert await count(session, Contact) == 0

    async def test_customer_id_with_overrides(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        lead = await create_lead(client, auth)

        response = await convert(
            client,
            auth,
            lead["id"],
            {"customer_id": customer["id"], "customer": {"name": "Other"}},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "customer_conflict"


class TestConvertRejected:
    async def test_twice_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        first = (await convert(client, auth, lead["id"])).json()

        response = await convert(client, auth, lead["id"])

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "lead_already_converted"
        assert problem["customer_id"] == first["customer_id"]
        assert problem["contact_id"] == first["contact_id"]
        assert problem["opportunity_id"] == first["opportunity_id"]
        assert first["customer_id"] in problem["detail"]
        assert first["opportunity_id"] in problem["detail"]
        assert await count(session, Customer) == 1
        assert await count(session, Opportunity) == 1

    @pytest.mark.parametrize(
        ("status", "phrase"),
        [
            ("disqualified", "disqualified"),
            ("junk", "junk"),
            ("merged", "merged into another lead"),
        ],
    )
    async def test_closed_lead_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        status: str,
        phrase: str,
    ) -> None:
        lead = await create_lead(client, auth)
        # No endpoint merges leads yet, so every closed status is set directly.
        await session.execute(
            update(Lead)
            .where(Lead.id == ids.decode("lead", str(lead["id"])))
            .values(status=status)
        )
        await session.commit()

        response = await convert(client, auth, lead["id"])

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "lead_not_convertible"
        assert problem["current_status"] == status
        assert problem["convertible_statuses"] == [
            "new",
            "working",
            "nurturing",
            "qualified",
        ]
        assert phrase in problem["detail"]
        assert await count(session, Customer) == 0

    async def test_opportunity_overrides_without_opportunity(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)

        response = await convert(
            client,
            auth,
            lead["id"],
            {"create_opportunity": False, "opportunity": {"amount": 5}},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "opportunity_not_created"

    async def test_invalid_overrides(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"opportunity": {"amount": -100}}, "opportunity.amount"),
            ({"opportunity": {"currency": "XYZ"}}, "opportunity.currency"),
            ({"customer": {"timezone": "Nowhere/City"}}, "customer.timezone"),
            ({"customer": {"currency": "usdollar"}}, "customer.currency"),
            ({"create_customer": True}, "create_customer"),
        ]

        for body, field in cases:
            response = await convert(client, auth, lead["id"], body)

            assert response.status_code == 422, body
            assert response.json()["errors"][0]["field"] == field
        assert await count(session, Customer) == 0

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        _, other = await make_workspace_key(session)

        response = await convert(client, other, lead["id"])

        assert response.status_code == 404
        assert response.json()["code"] == "lead_not_found"
        assert await count(session, Customer) == 0

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)

        response = await convert(
            client, {**auth, "If-Match": '"5"'}, lead["id"], {"customer": {}}
        )

        assert response.status_code == 412
        assert response.json()["current_version"] == 1
        assert await count(session, Customer) == 0

    async def test_if_match_current(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)

        response = await convert(client, {**auth, "If-Match": '"1"'}, lead["id"])

        assert response.status_code == 200

    async def test_needs_leads_write(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        workspace = await session.scalar(select(Workspace))
        assert workspace is not None
        created = await create_api_key(
            session,
            workspace_id=workspace.id,
            name="sales",
            scopes=["sales:write", "leads:read"],
        )
        await session.commit()

        response = await convert(
            client, {"Authorization": f"Bearer {created.secret}"}, lead["id"]
        )

        assert response.status_code == 403
        assert response.json()["missing_scope"] == "leads:write"


class TestConvertAtomicity:
    async def test_failure_part_way_leaves_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        # A trigger that fails every opportunity insert with a check violation makes
        # the conversion fail after the customer and the contact have been written.
        # The DDL is part of the test's transaction and is rolled back with it.
        await session.execute(
            text(
                "CREATE FUNCTION fail_opportunity_insert() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'opportunity insert failed on purpose' "
                "USING ERRCODE = 'check_violation'; END $$"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER fail_opportunity_insert BEFORE INSERT ON opportunities "
                "FOR EACH ROW EXECUTE FUNCTION fail_opportunity_insert()"
            )
        )
        await session.commit()

        response = await convert(client, auth, lead["id"])

        assert response.status_code == 409
        assert response.json()["code"] == "conflict"
        assert response.json()["title"] == "Conflicting write"
        assert "opportunity insert failed" not in response.text
        assert await count(session, Customer) == 0
        assert await count(session, Contact) == 0
        assert await count(session, Opportunity) == 0
        assert await event_types(session) == ["lead.created"]
        unchanged = await client.get(f"/v1/leads/{lead['id']}", headers=auth)
        assert unchanged.json() == lead

    async def test_succeeds_once_failure_is_gone(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        await session.execute(
            text(
                "CREATE FUNCTION fail_contact_insert() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'contact insert failed on purpose' "
                "USING ERRCODE = 'check_violation'; END $$"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER fail_contact_insert BEFORE INSERT ON contacts "
                "FOR EACH ROW EXECUTE FUNCTION fail_contact_insert()"
            )
        )
        await session.commit()
        failed = await convert(client, auth, lead["id"])
        await session.execute(text("DROP TRIGGER fail_contact_insert ON contacts"))
        await session.commit()

        retried = await convert(client, auth, lead["id"])

        assert failed.status_code == 409
        assert retried.status_code == 200, retried.text
        assert await count(session, Customer) == 1
        assert await count(session, Contact) == 1


class TestConvertIdempotency:
    async def test_same_key_replays(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await create_lead(client, auth)
        headers = {**auth, "Idempotency-Key": "convert-ada-1"}
        body = {"opportunity": {"amount": 4200}}

        first = await convert(client, headers, lead["id"], body)
        second = await convert(client, headers, lead["id"], body)

        assert first.status_code == 200, first.text
        assert second.status_code == 200, second.text
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert second.json() == first.json()
        assert second.headers["etag"] == first.headers["etag"]
        assert await count(session, Customer) == 1
        assert await count(session, Opportunity) == 1
        assert (await event_types(session)).count("lead.converted") == 1

    async def test_same_key_other_body(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        headers = {**auth, "Idempotency-Key": "convert-ada-2"}
        await convert(client, headers, lead["id"], {"opportunity": {"amount": 1}})

        response = await convert(
            client, headers, lead["id"], {"opportunity": {"amount": 2}}
        )

        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"

    async def test_new_key_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        await convert(client, {**auth, "Idempotency-Key": "k-1"}, lead["id"])

        response = await convert(client, {**auth, "Idempotency-Key": "k-2"}, lead["id"])

        assert response.status_code == 409
        assert response.json()["code"] == "lead_already_converted"


class TestLeadStateMachine:
    async def test_open_statuses_convert(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/meta/state-machines")

        machines = {item["resource"]: item for item in response.json()["data"]}
        transitions = machines["lead"]["transitions"]
        for status in ("new", "working", "nurturing", "qualified"):
            assert "converted" in transitions[status], status
        for status in ("disqualified", "junk", "converted", "merged"):
            assert "converted" not in transitions[status], status
