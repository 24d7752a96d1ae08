"""Capture submissions for typed custom fields and national phone numbers."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Lead
from tests.leads.factories import create_form, create_publishable_key

ORIGIN = "https://www.example.com"


async def typed_form(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> tuple[str, dict[str, str]]:
    for key, type_ in (("employees", "number"), ("newsletter", "boolean")):
        response = await client.post(
            "/v1/custom-fields",
            json={"object_type": "lead", "key": key, "label": key, "type": type_},
            headers=auth,
        )
        assert response.status_code == 201, response.text
    form = await create_form(
        client,
        auth,
        fields=["email", "phone"],
        attribute_keys=["employees", "newsletter"],
    )
    key = await create_publishable_key(client, auth, form["id"])
    return f"/v1/capture/{form['id']}", {
        "Authorization": f"Bearer {key}",
        "Origin": ORIGIN,
    }


async def stored(session: AsyncSession) -> Lead:
    lead: Lead | None = await session.scalar(select(Lead))
    assert lead is not None
    return lead


class TestTypedAttributes:
    async def test_form_encoded_text_read_as_types(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        url, headers = await typed_form(client, auth)

        response = await client.post(
            url,
            data={"email": "ada@example.com", "employees": "12", "newsletter": "on"},
            headers=headers,
        )

        assert response.status_code == 200, response.text
        lead = await stored(session)
        assert lead.attributes == {"employees": 12, "newsletter": True}

    async def test_json_numbers_kept(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        url, headers = await typed_form(client, auth)

        response = await client.post(
            url,
            json={"email": "ada@example.com", "employees": 40, "newsletter": False},
            headers=headers,
        )

        assert response.status_code == 200, response.text
        lead = await stored(session)
        assert lead.attributes == {"employees": 40, "newsletter": False}

    async def test_text_not_a_number_422(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        url, headers = await typed_form(client, auth)

        response = await client.post(
            url, data={"email": "ada@example.com", "employees": "many"}, headers=headers
        )

        assert response.status_code == 422
        errors: list[dict[str, Any]] = response.json()["errors"]
        assert errors[0]["field"] == "attributes.employees"
        assert await session.scalar(select(Lead)) is None

    async def test_number_too_long_422(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        url, headers = await typed_form(client, auth)

        responses = {
            text: await client.post(
                url,
                data={"email": "ada@example.com", "employees": text},
                headers=headers,
            )
            for text in ("1e5000", "9" * 4301, "1e100000")
        }

        for text, response in responses.items():
            assert response.status_code == 422, text[:10]
            errors: list[dict[str, Any]] = response.json()["errors"]
            assert errors[0]["field"] == "attributes.employees", text[:10]
        assert await session.scalar(select(Lead)) is None


class TestPhoneRegion:
    async def test_national_number_with_region(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        url, headers = await typed_form(client, auth)

        response = await client.post(
            url,
            data={
                "email": "ada@example.com",
                "phone": "030 1234567",
                "phone_region": "de",
            },
            headers=headers,
        )

        assert response.status_code == 200, response.text
        lead = await stored(session)
        assert lead.phone_normalized == "+49301234567"

    async def test_region_refused_without_phone_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        form = await create_form(client, auth, fields=["email"])
        key = await create_publishable_key(client, auth, form["id"])

        response = await client.post(
            f"/v1/capture/{form['id']}",
            json={"email": "ada@example.com", "phone_region": "DE"},
            headers={"Authorization": f"Bearer {key}", "Origin": ORIGIN},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "phone_region"


class TestSameAnswerForKnownEmail:
    async def test_invalid_attribute_fails_known_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        url, headers = await typed_form(client, auth)
        known = await client.post(
            "/v1/leads", json={"email": "ada@example.com"}, headers=auth
        )
        assert known.status_code == 201, known.text

        answers = [
            await client.post(
                url, data={"email": email, "employees": "many"}, headers=headers
            )
            for email in ("ada@example.com", "new@example.com")
        ]

        assert [answer.status_code for answer in answers] == [422, 422]
        assert answers[0].json()["errors"] == answers[1].json()["errors"]

    async def test_invalid_phone_fails_known_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        url, headers = await typed_form(client, auth)
        known = await client.post(
            "/v1/leads", json={"email": "ada@example.com"}, headers=auth
        )
        assert known.status_code == 201, known.text

        for phone in ("not a phone", "030 1234567"):
            answers = [
                await client.post(
                    url, data={"email": email, "phone": phone}, headers=headers
                )
                for email in ("ada@example.com", "new@example.com")
            ]

            assert [answer.status_code for answer in answers] == [422, 422], phone
            assert answers[0].json()["errors"] == answers[1].json()["errors"]
