"""Customer kinds, billing details, language, owner and their validation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer, Event
from tests.customers.factories import create_customer
from tests.users.factories import create_user

ADDRESS = {
    "line1": "12 Babbage Street",
    "line2": "Floor 3",
    "city": "London",
    "region": "Greater London",
    "postal_code": "EC1A 1BB",
    "country": "gb",
}


class TestBillingDetails:
    async def test_all_fields_round_trip(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        owner = await create_user(client, auth)

        customer = await create_customer(
            client,
            auth,
            kind="company",
            legal_name="Analytical Engines Limited",
            billing_email="accounts@analytical.example",
            billing_address=ADDRESS,
            tax_id={"type": "gb_vat", "value": "gb 123 4567 89"},
            currency="GBP",
            timezone="Europe/London",
            language="EN-gb",
            payment_terms_days=15,
            owner_id=owner["id"],
        )

        assert customer["kind"] == "company"
        assert customer["legal_name"] == "Analytical Engines Limited"
        assert customer["billing_email"] == "accounts@analytical.example"
        assert customer["billing_address"] == {**ADDRESS, "country": "GB"}
        assert customer["tax_id"] == {"type": "gb_vat", "value": "GB123456789"}
        assert customer["currency"] == "GBP"
        assert customer["language"] == "en-GB"
        assert customer["payment_terms_days"] == 15
        assert customer["owner_id"] == owner["id"]
        assert customer["credit_balance"] == 0
        fetched = await client.get(f"/v1/customers/{customer['id']}", headers=auth)
        assert fetched.json() == customer
        event = await session.scalar(
            select(Event).where(Event.type == "customer.created")
        )
        assert event is not None
        assert event.data == customer

    async def test_defaults(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)

        assert customer["kind"] == "company"
        assert customer["billing_address"] is None
        assert customer["tax_id"] is None
        assert customer["language"] is None
        assert customer["owner_id"] is None

    async def test_individual(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(
            client, auth, kind="individual", name="Ada Lovelace"
        )

        assert customer["kind"] == "individual"

    async def test_owner_from_on_behalf_of(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        owner = await create_user(client, auth)

        customer = await create_customer(client, {**auth, "On-Behalf-Of": owner["id"]})

        assert customer["owner_id"] == owner["id"]

    async def test_payment_terms_reach_invoices(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth, payment_terms_days=60)

        response = await client.post(
            "/v1/invoices",
            json={
                "customer_id": customer["id"],
                "lines": [
                    {"description": "Engine", "quantity": "1", "unit_amount": 100}
                ],
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        assert response.json()["payment_terms_days"] == 60


class TestBillingDetailsRejected:
    @pytest.mark.parametrize(
        ("fields", "field", "fragment"),
        [
            ({"kind": "partnership"}, "kind", "company"),
            (
                {"billing_address": {**ADDRESS, "country": "XX"}},
                "billing_address.country",
                "ISO 3166-1",
            ),
            (
                {"billing_address": {**ADDRESS, "country": "GBR"}},
                "billing_address.country",
                "at most 2",
            ),
            (
                {"billing_address": {"city": "London", "country": "GB"}},
                "billing_address.line1",
                "required",
            ),
            (
                {"tax_id": {"type": "eu_vat", "value": "US123456"}},
                "tax_id",
                "member state",
            ),
            (
                {"tax_id": {"type": "vat", "value": "DE123456789"}},
                "tax_id.type",
                "eu_vat",
            ),
            (
                {"tax_id": {"type": "us_ein", "value": "12#34"}},
                "tax_id",
                "letters, digits",
            ),
            ({"language": "english"}, "language", "BCP 47"),
            ({"language": "zz-QQ"}, "language", "BCP 47"),
            ({"language": "en_US"}, "language", "BCP 47"),
            ({"currency": "XYZ"}, "currency", "XYZ"),
            ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
            ({"billing_email": "not-an-email"}, "billing_email", "email"),
            ({"owner_id": "lead_0193abcdefghjkmnpqrstvwxyz"}, "owner_id", "usr_"),
        ],
    )
    async def test_invalid_field(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        fields: dict[str, Any],
        field: str,
        fragment: str,
    ) -> None:
        response = await client.post(
            "/v1/customers", json={"name": "Globex", **fields}, headers=auth
        )

        assert response.status_code == 422, response.text
        errors = response.json()["errors"]
        assert errors[0]["field"] == field, errors
        assert fragment in errors[0]["message"], errors
        assert await session.scalar(select(Customer)) is None

    async def test_unknown_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/customers",
            json={"name": "Globex", "owner_id": "usr_0193abcdefghjkmnpqrstvwxyz"},
            headers=auth,
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["code"] == "user_not_found"

    async def test_inactive_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        owner = await create_user(client, auth)
        deactivated = await client.patch(
            f"/v1/users/{owner['id']}", json={"active": False}, headers=auth
        )
        assert deactivated.status_code == 200, deactivated.text

        response = await client.post(
            "/v1/customers",
            json={"name": "Globex", "owner_id": owner["id"]},
            headers=auth,
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["code"] == "inactive"


class TestUpdateBillingDetails:
    async def test_replace_and_clear(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(
            client,
            auth,
            billing_address=ADDRESS,
            tax_id={"type": "eu_vat", "value": "DE123456789"},
            language="de",
        )

        response = await client.patch(
            f"/v1/customers/{customer['id']}",
            json={
                "billing_address": {"line1": "1 Rue", "city": "Paris", "country": "FR"},
                "tax_id": None,
                "language": None,
                "kind": "individual",
            },
            headers={**auth, "If-Match": response_etag(customer)},
        )

        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["billing_address"] == {
            "line1": "1 Rue",
            "line2": None,
            "city": "Paris",
            "region": None,
            "postal_code": None,
            "country": "FR",
        }
        assert updated["tax_id"] is None
        assert updated["language"] is None
        assert updated["kind"] == "individual"
        assert updated["version"] == customer["version"] + 1
        assert response.headers["etag"] == f'"{updated["version"]}"'
        event = await session.scalar(
            select(Event).where(Event.type == "customer.updated")
        )
        assert event is not None
        assert event.data == updated

    async def test_owner_change(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        owner = await create_user(client, auth)
        customer = await create_customer(client, auth)

        set_owner = await client.patch(
            f"/v1/customers/{customer['id']}",
            json={"owner_id": owner["id"]},
            headers=auth,
        )
        cleared = await client.patch(
            f"/v1/customers/{customer['id']}", json={"owner_id": None}, headers=auth
        )

        assert set_owner.json()["owner_id"] == owner["id"]
        assert cleared.json()["owner_id"] is None

    async def test_null_kind(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.patch(
            f"/v1/customers/{customer['id']}", json={"kind": None}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "kind"

    async def test_credit_balance_read_only(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.patch(
            f"/v1/customers/{customer['id']}",
            json={"credit_balance": 100},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "extra_forbidden"


def response_etag(resource: dict[str, Any]) -> str:
    return f'"{resource["version"]}"'
