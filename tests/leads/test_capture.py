from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import admin
from app.core.jobs import JobQueue
from app.main import create_app
from app.models import Event, Lead, LeadConsent, LeadTouch
from app.settings import Settings
from tests.conftest import TestDatabase
from tests.leads.factories import (
    create_campaign,
    create_form,
    create_publishable_key,
)

ORIGIN = "https://www.example.com"
ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@dataclass(frozen=True)
class Published:
    form: dict[str, Any]
    key: str

    @property
    def url(self) -> str:
        return f"/v1/capture/{self.form['id']}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Origin": ORIGIN}


async def publish(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> Published:
    form = await create_form(client, auth, **fields)
    return Published(
        form=form, key=await create_publishable_key(client, auth, form["id"])
    )


@pytest.fixture
async def published(client: httpx.AsyncClient, auth: dict[str, str]) -> Published:
    return await publish(client, auth)


@pytest.fixture
async def make_client(
    settings: Settings, database: TestDatabase, queue: JobQueue
) -> AsyncIterator[ClientFactory]:
    async with AsyncExitStack() as stack:

        async def build(
            *,
            job_queue: JobQueue | None = None,
            peer: tuple[str, int] = ("127.0.0.1", 123),
            **overrides: Any,
        ) -> httpx.AsyncClient:
            app = create_app(
                settings.model_copy(update=overrides),
                database=database,
                queue=job_queue or queue,
            )
            transport = httpx.ASGITransport(
                app=app, raise_app_exceptions=False, client=peer
            )
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://test")
            )

        yield build


async def count(session: AsyncSession, model: type[Any]) -> int:
    total = await session.scalar(select(func.count()).select_from(model))
    assert total is not None
    return total


class TestCreateForm:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/forms",
            json={
                "name": "Demo request",
                "fields": ["first_name"],
                "attribute_keys": ["team_size"],
                "required_fields": ["team_size"],
                "allowed_origins": [
                    "HTTPS://WWW.Example.com:443",
                    "http://localhost:3000",
                ],
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        form = response.json()
        assert form["id"].startswith("form_")
        assert form["fields"] == ["email", "first_name"]
        assert form["allowed_origins"] == [
            "https://www.example.com",
            "http://localhost:3000",
        ]
        assert form["honeypot_field"] == "website_url"
        assert form["enabled"] is True
        events = (await session.scalars(select(Event.type))).all()
        assert events == ["form.created"]

    @pytest.mark.parametrize(
        "origin",
        [
            "*",
            "https://*.example.com",
            "https://example.com/form",
            "ftp://example.com",
            "example.com",
            "https://user@example.com",
            "null",
            "https://www example.com",
            "https://exa|mple.com",
            "https://-bücher.example",
        ],
    )
    async def test_invalid_origin(
        self, client: httpx.AsyncClient, auth: dict[str, str], origin: str
    ) -> None:
        response = await client.post(
            "/v1/forms",
            json={"name": "X", "allowed_origins": [origin]},
            headers=auth,
        )

        assert response.status_code == 422, origin
        assert response.json()["errors"][0]["field"].startswith("allowed_origins")

    async def test_unicode_origin_stored_ascii(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/forms",
            json={
                "name": "X",
                "allowed_origins": ["https://Bücher.example", "https://straße.de:8443"],
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        assert response.json()["allowed_origins"] == [
            "https://xn--bcher-kva.example",
            "https://xn--strae-oqa.de:8443",
        ]

    async def test_consent_without_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/forms",
            json={"name": "X", "consent_text": "I agree to hear from Acme."},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "consent_version"

    async def test_required_not_collected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/forms",
            json={"name": "X", "required_fields": ["phone"]},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "required_fields"

    async def test_honeypot_reuses_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/forms",
            json={"name": "X", "honeypot_field": "company"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "honeypot_field"

    async def test_reserved_attribute_key(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/forms",
            json={"name": "X", "attribute_keys": ["utm_source"]},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attribute_keys"

    async def test_unknown_campaign(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/forms",
            json={"name": "X", "campaign_id": "cmp_01m90qp9t2exqbceh38k87tvgx"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "campaign_id"


class TestUpdateForm:
    async def test_disable(
        self, client: httpx.AsyncClient, auth: dict[str, str], published: Published
    ) -> None:
        response = await client.patch(
            f"/v1/forms/{published.form['id']}",
            json={"enabled": False},
            headers={**auth, "If-Match": '"1"'},
        )
        capture = await client.post(
            published.url, json={"email": "ada@example.com"}, headers=published.headers
        )

        assert response.status_code == 200, response.text
        assert response.json()["version"] == 2
        assert capture.status_code == 404

    async def test_stale_version(
        self, client: httpx.AsyncClient, auth: dict[str, str], published: Published
    ) -> None:
        response = await client.patch(
            f"/v1/forms/{published.form['id']}",
            json={"name": "Renamed"},
            headers={**auth, "If-Match": '"5"'},
        )

        assert response.status_code == 412

    async def test_merged_state_checked(
        self, client: httpx.AsyncClient, auth: dict[str, str], published: Published
    ) -> None:
        response = await client.patch(
            f"/v1/forms/{published.form['id']}",
            json={"fields": ["email"]},
            headers=auth,
        )
        other = await client.patch(
            f"/v1/forms/{published.form['id']}",
            json={"required_fields": ["first_name"], "fields": ["email"]},
            headers=auth,
        )

        assert response.status_code == 200
        assert other.status_code == 422
        assert other.json()["errors"][0]["field"] == "required_fields"


class TestPublishableKey:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], published: Published
    ) -> None:
        response = await client.post(
            f"/v1/forms/{published.form['id']}/publishable-keys", headers=auth
        )

        assert response.status_code == 201, response.text
        key = response.json()
        assert key["key"].startswith("pk_")
        assert key["id"].startswith("key_")
        assert key["form_id"] == published.form["id"]
        assert key["key"].startswith(key["prefix"])

    async def test_unknown_form(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/forms/form_01m90qp9t2exqbceh38k87tvgx/publishable-keys", headers=auth
        )

        assert response.status_code == 404

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/leads"),
            ("POST", "/v1/leads"),
            ("GET", "/v1/forms"),
            ("POST", "/v1/forms"),
            ("GET", "/v1/campaigns"),
            ("GET", "/v1/events"),
            ("GET", "/v1/invoices"),
            ("POST", "/v1/webhook-endpoints"),
        ],
    )
    async def test_only_capture(
        self,
        client: httpx.AsyncClient,
        published: Published,
        method: str,
        path: str,
    ) -> None:
        body = {"email": "ada@example.com", "name": "X"} if method == "POST" else None

        response = await client.request(
            method,
            path,
            json=body,
            headers={"Authorization": f"Bearer {published.key}"},
        )

        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden"

    async def test_other_form(
        self, client: httpx.AsyncClient, auth: dict[str, str], published: Published
    ) -> None:
        other = await create_form(client, auth, name="Other")

        response = await client.post(
            f"/v1/capture/{other['id']}",
            json={"email": "ada@example.com"},
            headers=published.headers,
        )

        assert response.status_code == 401

    async def test_secret_key(
        self, client: httpx.AsyncClient, auth: dict[str, str], published: Published
    ) -> None:
        response = await client.post(
            published.url,
            json={"email": "ada@example.com"},
            headers={**auth, "Origin": ORIGIN},
        )

        assert response.status_code == 403

    async def test_missing_key(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        response = await client.post(
            published.url, json={"email": "ada@example.com"}, headers={"Origin": ORIGIN}
        )

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert await count(session, Lead) == 0

    async def test_revoked(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await client.post(
            f"/v1/forms/{(await create_form(client, auth))['id']}/publishable-keys",
            headers=auth,
        )
        key = created.json()
        await admin.revoke_key(session, key["id"])
        await session.commit()

        response = await client.post(
            f"/v1/capture/{key['form_id']}",
            json={"email": "ada@example.com"},
            headers={"Authorization": f"Bearer {key['key']}"},
        )

        assert response.status_code == 401


class TestCaptureJson:
    async def test_creates_lead(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        campaign = await create_campaign(client, auth)
        published = await publish(
            client, auth, campaign_id=campaign["id"], attribute_keys=["team_size"]
        )

        response = await client.post(
            published.url,
            json={
                "email": "Ada@Example.com",
                "first_name": "Ada",
                "team_size": "11-50",
                "utm_source": "linkedin",
                "utm_medium": "paid_social",
            },
            headers={**published.headers, "Referer": f"{ORIGIN}/pricing"},
        )

        assert response.status_code == 200, response.text
        assert response.json() == {"status": "received"}
        lead = await session.scalar(select(Lead))
        assert lead is not None
        assert lead.email_normalized == "ada@example.com"
        assert lead.source == "web_form"
        assert lead.attributes == {"team_size": "11-50"}
        touch = await session.scalar(select(LeadTouch))
        assert touch is not None
        assert touch.channel == "web_form"
        assert touch.utm_source == "linkedin"
        assert touch.landing_page == f"{ORIGIN}/pricing"
        assert lead.first_touch_id == touch.id
        listed = await client.get(f"/v1/leads/{_lead_id(lead)}/touches", headers=auth)
        listed_touch = listed.json()["data"][0]
        assert listed_touch["form_id"] == published.form["id"]
        assert listed_touch["campaign_id"] == campaign["id"]

    async def test_key_in_query(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        response = await client.post(
            f"{published.url}?key={published.key}",
            json={"email": "ada@example.com"},
            headers={"Origin": ORIGIN},
        )

        assert response.status_code == 200, response.text
        assert await count(session, Lead) == 1

    async def test_key_in_body(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        response = await client.post(
            published.url,
            json={"email": "ada@example.com", "key": published.key},
            headers={"Origin": ORIGIN},
        )

        assert response.status_code == 200, response.text
        assert await count(session, Lead) == 1

    async def test_existing_lead_gets_touch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        published: Published,
        session: AsyncSession,
    ) -> None:
        created = await client.post(
            "/v1/leads", json={"email": "ada@example.com"}, headers=auth
        )
        lead = created.json()

        first = await client.post(
            published.url,
            json={"email": "ADA@example.com", "first_name": "Someone else"},
            headers=published.headers,
        )
        fresh = await client.post(
            published.url, json={"email": "new@example.com"}, headers=published.headers
        )

        assert first.status_code == fresh.status_code == 200
        assert first.json() == fresh.json()
        assert first.content == fresh.content
        after = (await client.get(f"/v1/leads/{lead['id']}", headers=auth)).json()
        assert after["first_name"] is None
        assert after["first_touch_id"] == lead["first_touch_id"]
        assert after["last_touch_id"] != lead["last_touch_id"]
        assert after["version"] == 2
        touches = await client.get(f"/v1/leads/{lead['id']}/touches", headers=auth)
        assert [t["channel"] for t in touches.json()["data"]] == ["web_form", "api"]
        events = (
            await session.scalars(
                select(Event.type).where(Event.object_type == "lead").order_by(Event.id)
            )
        ).all()
        assert events == ["lead.created", "lead.touch_recorded", "lead.created"]
        assert await count(session, Lead) == 2

    async def test_first_and_last_touch(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first_campaign = await create_campaign(client, auth, name="First")
        second_campaign = await create_campaign(client, auth, name="Second")
        first_form = await publish(client, auth, campaign_id=first_campaign["id"])
        second_form = await publish(client, auth, campaign_id=second_campaign["id"])
        body = {"email": "ada@example.com"}

        for published in (first_form, second_form, first_form, second_form):
            response = await client.post(
                published.url, json=body, headers=published.headers
            )
            assert response.status_code == 200, response.text

        page = await client.get("/v1/leads", headers=auth)
        lead = page.json()["data"][0]
        touches = (
            await client.get(f"/v1/leads/{lead['id']}/touches", headers=auth)
        ).json()["data"]
        by_id = {touch["id"]: touch for touch in touches}
        assert len(touches) == 4
        assert by_id[lead["first_touch_id"]]["campaign_id"] == first_campaign["id"]
        assert by_id[lead["last_touch_id"]]["campaign_id"] == second_campaign["id"]
        assert touches[0]["id"] == lead["last_touch_id"]
        assert touches[-1]["id"] == lead["first_touch_id"]
        for campaign in (first_campaign, second_campaign):
            filtered = await client.get(
                f"/v1/leads?campaign_id={campaign['id']}", headers=auth
            )
            assert [row["id"] for row in filtered.json()["data"]] == [lead["id"]]

    async def test_long_referer_dropped(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        referer = f"{ORIGIN}/?q=" + "x" * 3000

        response = await client.post(
            published.url,
            json={"email": "ada@example.com"},
            headers={**published.headers, "Referer": referer},
        )

        assert response.status_code == 200, response.text
        touch = await session.scalar(select(LeadTouch))
        assert touch is not None
        assert touch.landing_page is None

    async def test_script_referer_dropped(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        response = await client.post(
            published.url,
            json={"email": "ada@example.com"},
            headers={**published.headers, "Referer": "javascript:alert(1)"},
        )

        assert response.status_code == 200, response.text
        touch = await session.scalar(select(LeadTouch))
        assert touch is not None
        assert touch.landing_page is None

    @pytest.mark.parametrize(
        ("field", "url"),
        [
            ("landing_page", "javascript:alert(document.cookie)"),
            ("landing_page", " JavaScript:alert(1)"),
            ("landing_page", "java\tscript:alert(1)"),
            ("referrer", "data:text/html,<script>alert(1)</script>"),
            ("referrer", "vbscript:msgbox(1)"),
        ],
    )
    async def test_script_url_rejected(
        self,
        client: httpx.AsyncClient,
        published: Published,
        session: AsyncSession,
        field: str,
        url: str,
    ) -> None:
        response = await client.post(
            published.url,
            json={"email": "ada@example.com", field: url},
            headers=published.headers,
        )

        assert response.status_code == 422, url
        errors = response.json()["errors"]
        assert [error["field"] for error in errors] == [field]
        assert "http or https" in errors[0]["message"]
        assert await count(session, Lead) == 0

    async def test_page_path_and_app_referrer_kept(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        response = await client.post(
            published.url,
            json={
                "email": "ada@example.com",
                "landing_page": "/pricing?plan=team",
                "referrer": "android-app://com.google.android.gm/",
            },
            headers=published.headers,
        )

        assert response.status_code == 200, response.text
        touch = await session.scalar(select(LeadTouch))
        assert touch is not None
        assert touch.landing_page == "/pricing?plan=team"
        assert touch.referrer == "android-app://com.google.android.gm/"

    async def test_stale_referral_code_kept(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        response = await client.post(
            published.url,
            json={"email": "ada@example.com", "referral_code": "GONE"},
            headers=published.headers,
        )

        assert response.status_code == 200, response.text
        touch = await session.scalar(select(LeadTouch))
        assert touch is not None
        assert touch.referral_code == "GONE"
        assert touch.partner_id is None

    async def test_missing_required(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        published = await publish(
            client, auth, required_fields=["first_name", "company"]
        )

        response = await client.post(
            published.url,
            json={"first_name": " ", "company": "Analytical"},
            headers=published.headers,
        )

        assert response.status_code == 422
        fields = sorted(error["field"] for error in response.json()["errors"])
        assert fields == ["email", "first_name"]
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert await count(session, Lead) == 0

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"email": "not-an-email"}, "email"),
            ({"email": "ada@example.com", "title": "CEO"}, "title"),
            ({"email": "ada@example.com", "first_name": 7}, "first_name"),
            ({"email": "ada@example.com", "utm_source": "x" * 201}, "utm_source"),
            ({"email": "ada@example.com", "first_name": "a\x00b"}, "first_name"),
            (
                {"email": "ada@example.com", "referral_code": "bad code"},
                "referral_code",
            ),
        ],
    )
    async def test_invalid_field(
        self,
        client: httpx.AsyncClient,
        published: Published,
        session: AsyncSession,
        body: dict[str, Any],
        field: str,
    ) -> None:
        response = await client.post(
            published.url, json=body, headers=published.headers
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field
        assert await count(session, Lead) == 0

    async def test_malformed_json(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.post(
            published.url,
            content=b'{"email": ',
            headers={**published.headers, "Content-Type": "application/json"},
        )

        assert response.status_code == 400
        assert response.json()["code"] == "malformed_json"

    async def test_malformed_json_names_position(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        cases = [
            (b'{"email": x}', "at character 10"),
            (b'\xef\xbb\xbf{"email": "ada@example.com"}', "byte order mark"),
            ('{"first_name": "\xe9"}'.encode("latin-1"), "not valid UTF-8"),
        ]
        for body, fault in cases:
            response = await client.post(
                published.url,
                content=body,
                headers={**published.headers, "Content-Type": "application/json"},
            )

            assert response.status_code == 400, body
            problem = response.json()
            assert fault in problem["detail"], body
            assert fault in problem["errors"][0]["message"], body
            assert problem["errors"][0]["field"] == "body"

    async def test_json_array(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.post(
            published.url, json=["ada@example.com"], headers=published.headers
        )

        assert response.status_code == 422

    async def test_wrong_content_type(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.post(
            published.url,
            content=b"email=ada@example.com",
            headers={**published.headers, "Content-Type": "text/plain"},
        )

        assert response.status_code == 415

    async def test_unknown_form(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        for form_id in ("form_01m90qp9t2exqbceh38k87tvgx", "nope"):
            response = await client.post(
                f"/v1/capture/{form_id}",
                json={"email": "ada@example.com"},
                headers=published.headers,
            )

            assert response.status_code == 404
            assert response.json()["code"] == "form_not_found"

    async def test_idempotency_key(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        headers = {**published.headers, "Idempotency-Key": "capture-1"}

        first = await client.post(
            published.url, json={"email": "ada@example.com"}, headers=headers
        )
        again = await client.post(
            published.url, json={"email": "ada@example.com"}, headers=headers
        )

        assert first.status_code == again.status_code == 200
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["access-control-allow-origin"] == ORIGIN
        assert await count(session, LeadTouch) == 1

    async def test_idempotency_key_per_client(
        self,
        make_client: ClientFactory,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        setup = await make_client()
        published = await publish(setup, auth)
        headers = {**published.headers, "Idempotency-Key": "submit-1"}
        statuses = []

        for number, peer in enumerate(("192.0.2.1", "192.0.2.2")):
            visitor = await make_client(peer=(peer, 123))
            response = await visitor.post(
                published.url,
                json={"email": f"visitor{number}@example.com"},
                headers=headers,
            )
            statuses.append(response.status_code)
            assert "idempotent-replayed" not in response.headers

        assert statuses == [200, 200]
        assert await count(session, Lead) == 2

    async def test_invalid_idempotency_key(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.post(
            published.url,
            json={"email": "ada@example.com"},
            headers={**published.headers, "Idempotency-Key": "k" * 256},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "header.Idempotency-Key"
        assert response.headers["access-control-allow-origin"] == ORIGIN


def _lead_id(lead: Lead) -> str:
    from app.core import ids

    return ids.encode("lead", lead.id)


class TestCaptureFormEncoded:
    async def test_redirect(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        published = await publish(
            client, auth, success_redirect_url="https://www.example.com/thanks"
        )

        response = await client.post(
            published.url,
            data={
                "email": "ada@example.com",
                "first_name": "Ada",
                "key": published.key,
            },
            headers={"Origin": ORIGIN},
        )

        assert response.status_code == 303, response.text
        assert response.headers["location"] == "https://www.example.com/thanks"
        assert await count(session, Lead) == 1

    async def test_json_receipt_without_redirect(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        response = await client.post(
            published.url,
            data={"email": "ada@example.com", "company": ""},
            headers=published.headers,
        )

        assert response.status_code == 200, response.text
        assert response.json() == {"status": "received"}
        lead = await session.scalar(select(Lead))
        assert lead is not None
        assert lead.company is None

    async def test_missing_required(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        published = await publish(
            client, auth, success_redirect_url="https://www.example.com/thanks"
        )

        response = await client.post(
            published.url,
            data={"first_name": "Ada", "key": published.key},
            headers={"Origin": ORIGIN},
        )

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == "email"
        assert await count(session, Lead) == 0

    async def test_unreadable_form_keeps_cors(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        cases = [
            ("multipart/form-data", b"email=ada%40example.com"),
            (
                "application/x-www-form-urlencoded",
                "&".join(f"f{number}=1" for number in range(1001)).encode(),
            ),
        ]
        for content_type, body in cases:
            response = await client.post(
                published.url,
                content=body,
                headers={**published.headers, "Content-Type": content_type},
            )

            assert response.status_code == 400, content_type
            assert response.headers["access-control-allow-origin"] == ORIGIN
            problem = response.json()
            assert problem["errors"][0]["field"] == "body"
            assert "at most 1,000 fields" in problem["detail"]

    async def test_declared_body_over_limit_keeps_cors(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        body = b'{"email": "ada@example.com", "notes": "' + b"x" * 1_100_000 + b'"}'

        response = await client.post(
            published.url,
            content=body,
            headers={**published.headers, "Content-Type": "application/json"},
        )

        assert response.status_code == 413
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "ratelimit-limit" in response.headers
        problem = response.json()
        assert problem["code"] == "payload_too_large"
        assert problem["detail"].startswith("The request body exceeds 1048576 bytes.")
        assert await count(session, Lead) == 0

    async def test_streamed_body_over_limit_keeps_cors(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"email": "ada@example.com", "notes": "'
            for _ in range(30):
                yield b"x" * 50_000
            yield b'"}'

        response = await client.post(
            published.url,
            content=chunks(),
            headers={**published.headers, "Content-Type": "application/json"},
        )

        assert response.status_code == 413
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.json()["code"] == "payload_too_large"
        assert await count(session, Lead) == 0

    async def test_other_origin_refused_before_body_size(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.post(
            published.url,
            content=b"x" * 1_100_000,
            headers={
                **published.headers,
                "Origin": "https://elsewhere.example",
                "Content-Type": "application/json",
            },
        )

        assert response.status_code == 403
        assert "access-control-allow-origin" not in response.headers

    async def test_repeated_field(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.post(
            published.url,
            content=b"email=a%40example.com&email=b%40example.com",
            headers={
                **published.headers,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "email"


class TestCors:
    async def test_allowed_origin(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.post(
            published.url, json={"email": "ada@example.com"}, headers=published.headers
        )

        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["vary"] == "Origin"

    async def test_disallowed_origin(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        for origin in ("https://evil.example", "https://www.example.com:8443", "null"):
            response = await client.post(
                published.url,
                json={"email": "ada@example.com"},
                headers={**published.headers, "Origin": origin},
            )

            assert response.status_code == 403, origin
            assert response.json()["code"] == "origin_not_allowed"
            assert "access-control-allow-origin" not in response.headers
            assert response.headers["vary"] == "Origin"
        assert await count(session, Lead) == 0

    async def test_without_origin(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.post(
            published.url,
            json={"email": "ada@example.com"},
            headers={"Authorization": f"Bearer {published.key}"},
        )

        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers

    async def test_preflight_allowed(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.options(
            published.url,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )

        assert response.status_code == 204, response.text
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["access-control-allow-methods"] == "POST"
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed
        assert "content-type" in allowed
        assert response.headers["vary"] == "Origin"
        assert "*" not in response.headers["access-control-allow-origin"]

    async def test_preflight_denied(
        self, client: httpx.AsyncClient, published: Published
    ) -> None:
        response = await client.options(
            published.url,
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
            },
        )

        assert response.status_code == 403
        assert "access-control-allow-origin" not in response.headers

    async def test_preflight_unknown_form(self, client: httpx.AsyncClient) -> None:
        response = await client.options(
            "/v1/capture/form_01m90qp9t2exqbceh38k87tvgx",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )

        assert response.status_code == 404


class TestRateLimit:
    async def test_per_client(
        self,
        make_client: ClientFactory,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        client = await make_client(capture_rate_limit_per_minute=2)
        published = await publish(client, auth)
        statuses = []
        responses = []

        for number in range(3):
            response = await client.post(
                published.url,
                json={"email": f"lead{number}@example.com"},
                headers=published.headers,
            )
            statuses.append(response.status_code)
            responses.append(response)

        assert statuses == [200, 200, 429]
        assert responses[0].headers["ratelimit-limit"] == "2"
        assert responses[0].headers["ratelimit-remaining"] == "1"
        limited = responses[2]
        assert limited.json()["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.headers["ratelimit-remaining"] == "0"
        assert limited.headers["access-control-allow-origin"] == ORIGIN
        assert await count(session, Lead) == 2

    async def test_ipv6_counted_per_network(
        self, make_client: ClientFactory, auth: dict[str, str]
    ) -> None:
        setup = await make_client()
        published = await publish(setup, auth)
        statuses = []

        for number in range(3):
            client = await make_client(
                capture_rate_limit_per_minute=2, peer=(f"2001:db8:1:2::{number}", 123)
            )
            response = await client.post(
                published.url,
                json={"email": f"lead{number}@example.com"},
                headers=published.headers,
            )
            statuses.append(response.status_code)
        other_network = await make_client(
            capture_rate_limit_per_minute=2, peer=("2001:db8:1:3::1", 123)
        )
        other = await other_network.post(
            published.url,
            json={"email": "other@example.com"},
            headers=published.headers,
        )

        assert statuses == [200, 200, 429]
        assert other.status_code == 200

    async def test_ipv4_mapped_counted_as_ipv4(
        self, make_client: ClientFactory, auth: dict[str, str]
    ) -> None:
        setup = await make_client()
        published = await publish(setup, auth)
        statuses = []

        for number, peer in enumerate(("192.0.2.7", "::ffff:192.0.2.7")):
            client = await make_client(
                capture_rate_limit_per_minute=1, peer=(peer, 123)
            )
            response = await client.post(
                published.url,
                json={"email": f"lead{number}@example.com"},
                headers=published.headers,
            )
            statuses.append(response.status_code)

        assert statuses == [200, 429]

    async def test_per_form(
        self, make_client: ClientFactory, auth: dict[str, str]
    ) -> None:
        client = await make_client(
            capture_rate_limit_per_minute=100, capture_form_rate_limit_per_minute=1
        )
        busy = await publish(client, auth)
        quiet = await publish(client, auth)

        first = await client.post(
            busy.url, json={"email": "a@example.com"}, headers=busy.headers
        )
        second = await client.post(
            busy.url, json={"email": "b@example.com"}, headers=busy.headers
        )
        other = await client.post(
            quiet.url, json={"email": "c@example.com"}, headers=quiet.headers
        )

        assert first.status_code == 200
        assert second.status_code == 429
        assert other.status_code == 200

    async def test_redis_down_fails_open(
        self,
        make_client: ClientFactory,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        # Port 1 on the loopback address has no server, so every connection is refused.
        unreachable = JobQueue("redis://127.0.0.1:1/0")
        client = await make_client(
            job_queue=unreachable, capture_rate_limit_per_minute=1
        )
        published = await publish(client, auth)

        for number in range(3):
            response = await client.post(
                published.url,
                json={"email": f"lead{number}@example.com"},
                headers=published.headers,
            )
            assert response.status_code == 200, response.text
            assert "ratelimit-limit" not in response.headers
        assert await count(session, Lead) == 3
        await unreachable.close()


class TestHoneypot:
    async def test_filled_drops(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        real = await client.post(
            published.url, json={"email": "real@example.com"}, headers=published.headers
        )

        bot = await client.post(
            published.url,
            json={"email": "bot@example.com", "website_url": "http://spam.example"},
            headers=published.headers,
        )

        assert bot.status_code == real.status_code == 200
        assert bot.content == real.content
        emails = (await session.scalars(select(Lead.email_normalized))).all()
        assert emails == ["real@example.com"]
        assert await count(session, LeadTouch) == 1

    async def test_filled_redirects(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        published = await publish(
            client,
            auth,
            honeypot_field="fax",
            success_redirect_url="https://www.example.com/thanks",
        )

        response = await client.post(
            published.url,
            data={"fax": "123", "key": published.key},
            headers={"Origin": ORIGIN},
        )

        assert response.status_code == 303
        assert await count(session, Lead) == 0

    async def test_empty_is_ignored(
        self, client: httpx.AsyncClient, published: Published, session: AsyncSession
    ) -> None:
        response = await client.post(
            published.url,
            data={"email": "ada@example.com", "website_url": ""},
            headers=published.headers,
        )

        assert response.status_code == 200
        assert await count(session, Lead) == 1


class TestConsent:
    async def test_required(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        published = await publish(
            client, auth, consent_text="Email me about Acme.", consent_version="v3"
        )

        for consent in (None, False, "no"):
            body: dict[str, Any] = {"email": "ada@example.com"}
            if consent is not None:
                body["consent"] = consent
            response = await client.post(
                published.url, json=body, headers=published.headers
            )

            assert response.status_code == 422, consent
            assert response.json()["errors"][0]["field"] == "consent"
        assert await count(session, Lead) == 0

    async def test_stored(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        published = await publish(
            client, auth, consent_text="Email me about Acme.", consent_version="v3"
        )

        response = await client.post(
            published.url,
            data={"email": "ada@example.com", "consent": "on"},
            headers={**published.headers, "User-Agent": "Browser/1.0"},
        )

        assert response.status_code == 200, response.text
        consent = await session.scalar(select(LeadConsent))
        lead = await session.scalar(select(Lead))
        assert consent is not None
        assert lead is not None
        assert consent.lead_id == lead.id
        assert consent.consent_version == "v3"
        assert consent.consent_text == "Email me about Acme."
        assert consent.ip_address == "127.0.0.1"
        assert consent.user_agent == "Browser/1.0"
        assert consent.touch_id == lead.first_touch_id
        assert consent.given_at is not None

    async def test_existing_lead(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        published = await publish(
            client, auth, consent_text="Email me about Acme.", consent_version="v3"
        )
        body = {"email": "ada@example.com", "consent": True}

        for _ in range(2):
            response = await client.post(
                published.url, json=body, headers=published.headers
            )
            assert response.status_code == 200

        assert await count(session, Lead) == 1
        assert await count(session, LeadConsent) == 2
        assert await count(session, LeadTouch) == 2


class TestCaptureContract:
    def test_documents_publishable_key(self, settings: Settings) -> None:
        schema = create_app(settings).openapi()

        operation = schema["paths"]["/v1/capture/{form_id}"]["post"]

        assert operation["operationId"] == "capture_submit"
        assert operation["security"] == [{"publishable_key": []}]
        scheme = schema["components"]["securitySchemes"]["publishable_key"]
        assert scheme["scheme"] == "bearer"
        content = operation["requestBody"]["content"]
        assert set(content) == {"application/json", "application/x-www-form-urlencoded"}
        assert "303" in operation["responses"]
        assert "429" in operation["responses"]
