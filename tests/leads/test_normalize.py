"""Normalized identity keys: email, phone, company domain, and names kept as sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.core.errors import InvalidInput
from app.core.jobs import JobQueue
from app.leads.normalize import (
    email_company_domain,
    normalize_company_domain,
    normalize_email,
    normalize_phone,
    website_domain,
)
from app.main import create_app
from app.settings import Settings
from tests.conftest import TestDatabase


@pytest.fixture
async def german_client(
    settings: Settings, database: TestDatabase, queue: JobQueue
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose default_phone_region is DE."""
    app = create_app(
        settings.model_copy(update={"default_phone_region": "DE"}),
        database=database,
        queue=queue,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


class TestNormalizeEmail:
    def test_trims_and_lowercases(self) -> None:
        assert (
            normalize_email("  Ada.Lovelace@EXAMPLE.com ") == "ada.lovelace@example.com"
        )

    def test_keeps_tags_and_dots(self) -> None:
        assert normalize_email("a.d.a+news@gmail.com") == "a.d.a+news@gmail.com"

    def test_idn_domain_with_unicode_local_part(self) -> None:
        assert normalize_email("José@Bücher.de") == "josé@xn--bcher-kva.de"

    def test_invalid_raises(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            normalize_email("no-at-sign")

        assert raised.value.errors[0]["field"] == "email"

    def test_local_part_of_64_characters_accepted(self) -> None:
        local = "a" * 64

        assert normalize_email(f"{local}@example.com") == f"{local}@example.com"

    def test_local_part_over_64_characters_refused(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            normalize_email("a" * 65 + "@example.com")

        error = raised.value.errors[0]
        assert error["field"] == "email"
        assert "too long before the @-sign" in error["message"]

    @given(
        st.one_of(
            st.emails(),
            st.sampled_from(["Ada@Example.COM", "josé@bücher.de", "x+y.z@ÉCOLE.fr"]),
        )
    )
    def test_idempotent(self, email: str) -> None:
        try:
            once = normalize_email(email)
        except InvalidInput:
            assume(False)
            raise

        assert normalize_email(once) == once


# Valid numbers of several regions, built from phonenumbers' own example numbers.
EXAMPLE_NUMBERS = [
    (region, phonenumbers.example_number(region))
    for region in ("DE", "US", "GB", "FR", "IL", "JP", "BR", "IN", "EG")
]


class TestNormalizePhone:
    def test_national_with_region(self) -> None:
        assert normalize_phone("030 123456", "DE") == "+4930123456"

    def test_international_without_region(self) -> None:
        assert normalize_phone("+49 (30) 123-456", None) == "+4930123456"

    def test_national_without_region_says_what_to_send(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            normalize_phone("030 123456", None)

        assert raised.value.errors[0]["code"] == "phone_region_required"
        assert "phone_region" in raised.value.detail
        assert "E.164" in raised.value.detail

    def test_invalid_number(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            normalize_phone("+49 1", None)

        assert raised.value.errors[0]["code"] == "invalid_phone"

    def test_letters_rejected(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            normalize_phone("call me", "DE")

        assert raised.value.errors[0]["code"] == "invalid_phone"
        assert raised.value.detail.startswith(
            "The phone number 'call me' is invalid: it does not look like a number. "
        )

    @given(
        number=st.sampled_from(EXAMPLE_NUMBERS),
        style=st.sampled_from(
            [
                phonenumbers.PhoneNumberFormat.E164,
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.NATIONAL,
                phonenumbers.PhoneNumberFormat.RFC3966,
            ]
        ),
        reading_region=st.sampled_from([None, "DE", "US", "JP"]),
    )
    def test_idempotent(
        self,
        number: tuple[str, phonenumbers.PhoneNumber | None],
        style: int,
        reading_region: str | None,
    ) -> None:
        region, example = number
        assert example is not None
        written = phonenumbers.format_number(example, style)

        once = normalize_phone(written, region)

        assert once.startswith("+")
        assert normalize_phone(once, reading_region) == once


class TestCompanyDomain:
    def test_lowercase_idna_no_www(self) -> None:
        assert normalize_company_domain("WWW.Bücher.DE") == "xn--bcher-kva.de"

    def test_bare_www_domain_kept(self) -> None:
        assert normalize_company_domain("www.com") == "www.com"

    def test_invalid_domain(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            normalize_company_domain("https://example.com/path")

        assert raised.value.errors[0]["field"] == "company_domain"

    def test_website_host(self) -> None:
        assert website_domain("https://www.Acme.com/about?x=1") == "acme.com"

    def test_website_without_scheme(self) -> None:
        assert website_domain("acme.io/pricing") == "acme.io"

    def test_malformed_website(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            website_domain("http://[::1")

        assert raised.value.errors[0]["field"] == "website"

    def test_free_mail_has_none(self) -> None:
        assert email_company_domain("ada@gmail.com") is None

    def test_company_mail(self) -> None:
        assert email_company_domain("ada@www.acme.com") == "acme.com"


class TestCreateNormalization:
    async def test_phone_stored_raw_and_e164(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "p@acme.com", "phone": "030 123456", "phone_region": "DE"},
            headers=auth,
        )

        assert response.status_code == 201, response.text
        lead = response.json()
        assert lead["phone"] == "030 123456"
        assert lead["phone_normalized"] == "+4930123456"

    async def test_national_phone_without_region_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "p@acme.com", "phone": "030 123456"},
            headers=auth,
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"][0]["field"] == "phone"
        assert problem["errors"][0]["code"] == "phone_region_required"

    async def test_default_region_setting(
        self, german_client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await german_client.post(
            "/v1/leads",
            json={"email": "p@acme.com", "phone": "030 123456"},
            headers=auth,
        )

        assert response.status_code == 201, response.text
        assert response.json()["phone_normalized"] == "+4930123456"

    async def test_invalid_phone_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads", json={"email": "p@acme.com", "phone": "+1 555"}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "invalid_phone"

    async def test_bad_region_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "p@acme.com", "phone": "030 1234", "phone_region": "de"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "phone_region"

    @pytest.mark.parametrize(
        ("extra", "expected"),
        [
            ({}, "acme.com"),
            ({"company_domain": "WWW.Other.COM"}, "other.com"),
            ({"website": "https://www.site.example/x"}, "site.example"),
            ({"company_domain": "a.com", "website": "https://b.com"}, "a.com"),
        ],
    )
    async def test_company_domain_sources(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        extra: dict[str, str],
        expected: str,
    ) -> None:
        response = await client.post(
            "/v1/leads", json={"email": "ada@acme.com", **extra}, headers=auth
        )

        assert response.status_code == 201, response.text
        assert response.json()["company_domain"] == expected

    async def test_free_mail_no_company_domain(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads", json={"email": "ada@gmail.com"}, headers=auth
        )

        assert response.status_code == 201
        assert response.json()["company_domain"] is None

    async def test_invalid_website_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "ada@acme.com", "website": "http://"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "website"

    async def test_phone_update_renormalizes(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await client.post(
            "/v1/leads", json={"email": "u@acme.com"}, headers=auth
        )
        lead_id = created.json()["id"]

        response = await client.patch(
            f"/v1/leads/{lead_id}",
            json={"phone": "020 7946 0018", "phone_region": "GB"},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert response.json()["phone_normalized"] == "+442079460018"

    async def test_region_without_phone_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await client.post(
            "/v1/leads", json={"email": "u@acme.com"}, headers=auth
        )

        response = await client.patch(
            f"/v1/leads/{created.json()['id']}",
            json={"phone_region": "GB"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "phone_required"

    async def test_explicit_domain_kept_on_email_update(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await client.post(
            "/v1/leads",
            json={"email": "u@acme.com", "company_domain": "parent.com"},
            headers=auth,
        )

        response = await client.patch(
            f"/v1/leads/{created.json()['id']}",
            json={"email": "u@newco.com"},
            headers=auth,
        )

        assert response.json()["company_domain"] == "parent.com"

    async def test_email_update_moves_derived_domain(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await client.post(
            "/v1/leads", json={"email": "u@acme.com"}, headers=auth
        )
        lead_id = created.json()["id"]

        response = await client.patch(
            f"/v1/leads/{lead_id}", json={"email": "u@newco.com"}, headers=auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["company_domain"] == "newco.com"


# Names in several scripts, with combining marks and multi-code-point emoji, in forms
# that NFC or NFKC would change.
UNICODE_NAMES = [
    "שָׁלוֹם",
    "محمد",
    "e\u0301tienne",
    "ﬁona",
    "👩🏽‍💻 Dev",
    "Ａｄａ",
    "\u200fنور",
]


class TestNames:
    @pytest.mark.parametrize("name", UNICODE_NAMES)
    async def test_kept_exactly(
        self, client: httpx.AsyncClient, auth: dict[str, str], name: str
    ) -> None:
        created = await client.post(
            "/v1/leads",
            json={"email": "n@acme.com", "first_name": name, "last_name": name},
            headers=auth,
        )
        assert created.status_code == 201, created.text

        fetched = await client.get(f"/v1/leads/{created.json()['id']}", headers=auth)

        assert fetched.json()["first_name"] == name
        assert fetched.json()["last_name"] == name

    async def test_limit_counts_code_points(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        name = "\u05e9\u05c1" * 100

        response = await client.post(
            "/v1/leads", json={"email": "n@acme.com", "first_name": name}, headers=auth
        )

        assert response.status_code == 201, response.text
        assert response.json()["first_name"] == name

    @pytest.mark.parametrize("field", ["first_name", "last_name", "title"])
    async def test_too_long_rejected_not_cut(
        self, client: httpx.AsyncClient, auth: dict[str, str], field: str
    ) -> None:
        response = await client.post(
            "/v1/leads", json={"email": "n@acme.com", field: "é" * 201}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == field

    async def test_company_too_long_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "n@acme.com", "company": "x" * 301},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "company"
