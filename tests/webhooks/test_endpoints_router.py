from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database
from app.core.ids import decode
from app.core.jobs import JobQueue
from app.main import create_app
from app.models import Event, WebhookDelivery, WebhookEndpoint, Workspace
from app.settings import Settings
from app.webhooks import catalog
from app.webhooks.docs import DATA_SCHEMAS
from tests.billing.factories import create_customer, create_open_invoice
from tests.billing.test_payments import pay
from tests.conftest import TestDatabase, make_workspace_key
from tests.webhooks.conftest import Committed
from tests.webhooks.factories import create_endpoint

URL = "http://127.0.0.1:9/hooks"


async def endpoint_events(session: AsyncSession) -> list[tuple[str, dict[str, object]]]:
    rows = await session.execute(
        select(Event.type, Event.data)
        .where(Event.object_type == "webhook_endpoint")
        .order_by(Event.id)
    )
    return [(row.type, row.data) for row in rows]


class TestCreateEndpoint:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={
                "url": URL,
                "description": "ERP sync",
                "event_types": ["invoice.*", "payment.succeeded", "invoice.*"],
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        endpoint = response.json()
        assert endpoint["id"].startswith("we_")
        assert endpoint["object"] == "webhook_endpoint"
        assert endpoint["url"] == URL
        assert endpoint["event_types"] == ["invoice.*", "payment.succeeded"]
        assert endpoint["enabled"] is True
        assert endpoint["disabled_reason"] is None
        assert endpoint["secret"].startswith("whsec_")
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"/v1/webhook-endpoints/{endpoint['id']}"
        events = await endpoint_events(session)
        assert [event_type for event_type, _ in events] == ["webhook_endpoint.created"]
        assert "secret" not in events[0][1]
        assert events[0][1]["id"] == endpoint["id"]

    async def test_secret_shown_once(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_endpoint(client, auth, URL)

        fetched = await client.get(
            f"/v1/webhook-endpoints/{created['id']}", headers=auth
        )
        listed = await client.get("/v1/webhook-endpoints", headers=auth)

        assert "secret" not in fetched.json()
        assert "secret" not in listed.json()["data"][0]
        assert created["secret"] not in fetched.text
        assert created["secret"] not in listed.text

    async def test_created_disabled(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL, enabled=False)

        assert endpoint["enabled"] is False
        assert endpoint["disabled_reason"] == "manual"

    async def test_localhost_allowed_by_setting(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, "http://localhost:9/hooks")

        assert endpoint["url"] == "http://localhost:9/hooks"

    async def test_http_rejected_unless_allowed(
        self,
        settings: Settings,
        database: TestDatabase,
        queue: JobQueue,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        strict = create_app(
            settings.model_copy(update={"webhook_allow_http": False}),
            database=database,
            queue=queue,
        )
        transport = httpx.ASGITransport(app=strict, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as http:
            rejected = await http.post(
                "/v1/webhook-endpoints",
                json={"url": "http://localhost:9/hooks", "event_types": ["*"]},
                headers=auth,
            )
            accepted = await http.post(
                "/v1/webhook-endpoints",
                json={"url": "https://localhost:9/hooks", "event_types": ["*"]},
                headers=auth,
            )

        assert rejected.status_code == 422
        problem = rejected.json()
        assert problem["code"] == "webhook_url_not_allowed"
        assert problem["errors"][0]["field"] == "url"
        assert "SALESCYCLE_WEBHOOK_ALLOW_HTTP" in problem["detail"]
        assert accepted.status_code == 201, accepted.text
        count = select(func.count()).select_from(WebhookEndpoint)
        assert await session.scalar(count) == 1

    @pytest.mark.parametrize(
        "url",
        [
            "ftp://127.0.0.1/hooks",
            "file:///etc/passwd",
            "127.0.0.1/hooks",
            "http://user:pw@127.0.0.1/",
            "http://2130706433/",
            "http://\u2488.example/",
            "http://[2606:4700::1]x/",
        ],
    )
    async def test_invalid_url(
        self, client: httpx.AsyncClient, auth: dict[str, str], url: str
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": url, "event_types": ["*"]},
            headers=auth,
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "invalid_webhook_url"
        assert problem["errors"][0]["field"] == "url"

    @pytest.mark.parametrize(
        ("url", "address"),
        [
            ("http://10.0.0.1/", "10.0.0.1"),
            ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
            ("http://[fd00:ec2::254]/", "fd00:ec2::254"),
            ("http://192.168.0.10:8080/hooks", "192.168.0.10"),
            ("http://[::1]/", "::1"),
            ("http://0.0.0.0/", "0.0.0.0"),
        ],
    )
    async def test_private_address_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        url: str,
        address: str,
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": url, "event_types": ["*"]},
            headers=auth,
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "webhook_url_not_allowed"
        assert problem["address"] == address
        assert "SALESCYCLE_WEBHOOK_ALLOW_PRIVATE_HOSTS" in problem["detail"]
        count = select(func.count()).select_from(WebhookEndpoint)
        assert await session.scalar(count) == 0

    @pytest.mark.parametrize(
        ("event_types", "code"),
        [
            ([], "too_short"),
            (["invoice.pay"], "unknown_event_type"),
            (["invoices.*"], "unknown_event_type"),
            (["*.paid"], "unknown_event_type"),
            ([""], "unknown_event_type"),
        ],
    )
    async def test_invalid_event_types(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        event_types: list[str],
        code: str,
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": URL, "event_types": event_types},
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"].startswith("event_types")
        assert error["code"] == code

    async def test_long_event_type_not_repeated_in_full(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": URL, "event_types": ["invoice." + "p" * 100_000]},
            headers=auth,
        )

        assert response.status_code == 422
        message = response.json()["errors"][0]["message"]
        assert "… (100008 characters) is not an event type" in message
        assert len(response.text) < 2_000

    async def test_too_many_event_types(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": URL, "event_types": ["*"] * 101},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "too_long"

    async def test_unknown_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": URL, "event_types": ["*"], "secret": "whsec_mine"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "extra_forbidden"

    async def test_needs_scope(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, headers = await make_workspace_key(session, scopes=("events:read",))

        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": URL, "event_types": ["*"]},
            headers=headers,
        )

        assert response.status_code == 403
        assert response.json()["missing_scope"] == "webhooks:manage"

    async def test_idempotent_replay(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        headers = {**auth, "Idempotency-Key": "create-endpoint-1"}
        body = {"url": URL, "event_types": ["*"]}

        first = await client.post("/v1/webhook-endpoints", json=body, headers=headers)
        second = await client.post("/v1/webhook-endpoints", json=body, headers=headers)

        assert first.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        count = select(func.count()).select_from(WebhookEndpoint)
        assert await session.scalar(count) == 1


class TestCustomHeaders:
    async def test_stored_and_redacted_in_events(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, URL, headers={"Authorization": "Bearer t0ken"}
        )

        assert endpoint["headers"] == {"Authorization": "Bearer t0ken"}
        [(event_type, data)] = await endpoint_events(session)
        assert event_type == "webhook_endpoint.created"
        assert data["headers"] == {"Authorization": "[redacted]"}
        assert "t0ken" not in str(data)

    @pytest.mark.parametrize(
        ("url", "redacted"),
        [
            (
                "http://127.0.0.1:9/hooks/catch/123/s3cret/",
                "http://127.0.0.1:9/[redacted]",
            ),
            ("http://127.0.0.1:9/?token=s3cret", "http://127.0.0.1:9/[redacted]"),
            ("http://127.0.0.1:9/", "http://127.0.0.1:9/"),
        ],
    )
    async def test_url_path_redacted_in_events(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        url: str,
        redacted: str,
    ) -> None:
        endpoint = await create_endpoint(client, auth, url)

        assert endpoint["url"] == url
        [(_, data)] = await endpoint_events(session)
        assert data["url"] == redacted
        assert "s3cret" not in str(data)

    async def test_replaced_and_removed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL, headers={"X-A": "1"})
        path = f"/v1/webhook-endpoints/{endpoint['id']}"

        replaced = await client.patch(
            path, json={"headers": {"X-B": "2"}}, headers=auth
        )
        removed = await client.patch(path, json={"headers": {}}, headers=auth)
        nulled = await client.patch(path, json={"headers": None}, headers=auth)

        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["headers"] == {"X-B": "2"}
        assert removed.json()["headers"] == {}
        assert nulled.status_code == 422
        assert nulled.json()["errors"][0]["code"] == "null_not_allowed"

    @pytest.mark.parametrize(
        "headers",
        [
            {"webhook-signature": "v1,forged"},
            {"Content-Type": "text/plain"},
            {"HOST": "elsewhere.example"},
            {"Bad Name": "x"},
            {"X-Split": "a\r\nInjected: yes"},
            {"X-Bell": "a\x07b"},
            {"X-Name": "Zoë"},
            {"Proxy-Authorization": "Basic eDp5"},
            {"Connection": "close"},
            {"X-Long": "x" * 1001},
            {"X-Dup": "1", "x-dup": "2"},
            {f"X-{index}": "v" for index in range(21)},
        ],
    )
    async def test_invalid_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        headers: dict[str, str],
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": URL, "event_types": ["*"], "headers": headers},
            headers=auth,
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"].startswith("headers")
        count = select(func.count()).select_from(WebhookEndpoint)
        assert await session.scalar(count) == 0

    @pytest.mark.parametrize(
        ("headers", "fault"),
        [
            ({"X-Name": "Zoë"}, "outside ASCII; percent-encode"),
            ({"Proxy-Authorization": "Basic eDp5"}, "one connection or proxy hop"),
            ({"X-Bell": "a\x07b"}, "control characters"),
        ],
    )
    async def test_invalid_value_explained(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        headers: dict[str, str],
        fault: str,
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": URL, "event_types": ["*"], "headers": headers},
            headers=auth,
        )

        assert response.status_code == 422, response.text
        assert fault in response.json()["errors"][0]["message"]

    @pytest.mark.parametrize(
        ("headers", "advice"),
        [
            ({"X-Café": "1"}, "; use 1 to 100 ASCII letters, digits and hyphens"),
            ({"Webhook-Signature": "v1,x"}, "cannot be replaced; remove it"),
            ({"X-Dup": "1", "x-dup": "2"}, "header names ignore case, so keep one"),
            ({"X-Long": "x" * 1001}, "longer than 1000 characters; shorten it"),
            ({"X-Split": "a\r\nX-Injected: b"}, "control characters such as line"),
            ({f"X-{index}": "v" for index in range(21)}, "not 21; remove the ones"),
            ({"X-A": "1", "X-A ": "2"}, "'X-A ' has spaces around it; remove them"),
        ],
    )
    async def test_invalid_says_what_to_do(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        headers: dict[str, str],
        advice: str,
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": URL, "event_types": ["*"], "headers": headers},
            headers=auth,
        )

        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        assert error["field"] == "headers"
        assert advice in error["message"]

    async def test_long_name_not_repeated_in_full(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        name = "X-" + "é" * 5_000

        response = await client.post(
            "/v1/webhook-endpoints",
            json={"url": URL, "event_types": ["*"], "headers": {name: "1"}},
            headers=auth,
        )

        assert response.status_code == 422
        message = response.json()["errors"][0]["message"]
        assert "… (5002 characters) is not a valid header name" in message
        assert len(response.text) < 2_000

    async def test_inner_tab_accepted(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL, headers={"X-List": "a\tb"})

        assert endpoint["headers"] == {"X-List": "a\tb"}


class TestGetEndpoint:
    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)
        _, other = await make_workspace_key(session)

        response = await client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}", headers=other
        )

        assert response.status_code == 404
        assert response.json()["code"] == "webhook_endpoint_not_found"

    async def test_malformed_id_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/webhook-endpoints/lead_123", headers=auth)

        assert response.status_code == 404


class TestListEndpoints:
    async def test_pages_and_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = [await create_endpoint(client, auth, URL) for _ in range(3)]
        disabled = await create_endpoint(client, auth, URL, enabled=False)

        first = (await client.get("/v1/webhook-endpoints?limit=2", headers=auth)).json()
        second = (
            await client.get(
                f"/v1/webhook-endpoints?limit=2&cursor={first['next_cursor']}",
                headers=auth,
            )
        ).json()
        only_disabled = (
            await client.get("/v1/webhook-endpoints?enabled=false", headers=auth)
        ).json()

        seen = [item["id"] for item in first["data"] + second["data"]]
        assert seen == [disabled["id"]] + [item["id"] for item in reversed(created)]
        assert first["has_more"] is True
        assert second["has_more"] is False
        assert [item["id"] for item in only_disabled["data"]] == [disabled["id"]]


class TestUpdateEndpoint:
    async def test_updated(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={
                "url": "http://localhost:8081/new",
                "event_types": ["lead.*"],
                "description": "CRM",
            },
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["url"] == "http://localhost:8081/new"
        assert updated["event_types"] == ["lead.*"]
        assert updated["description"] == "CRM"
        assert updated["version"] == 2
        assert response.headers["etag"] == '"2"'
        types = [event_type for event_type, _ in await endpoint_events(session)]
        assert types == ["webhook_endpoint.created", "webhook_endpoint.updated"]

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={"description": "late"},
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412
        assert response.json()["current_version"] == 1

    async def test_private_url_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={"url": "http://10.0.0.1/"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["code"] == "webhook_url_not_allowed"

    async def test_null_url_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={"url": None},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0] == {
            "field": "url",
            "message": "cannot be null",
            "code": "null_not_allowed",
        }

    async def test_disable_and_enable(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"

        disabled = (
            await client.patch(path, json={"enabled": False}, headers=auth)
        ).json()
        row = await session.get(
            WebhookEndpoint, decode("webhook_endpoint", endpoint["id"])
        )
        assert row is not None
        row.failing_since = row.created_at
        await session.commit()
        enabled = (
            await client.patch(path, json={"enabled": True}, headers=auth)
        ).json()

        assert disabled["enabled"] is False
        assert disabled["disabled_reason"] == "manual"
        assert enabled["enabled"] is True
        assert enabled["disabled_reason"] is None
        await session.refresh(row)
        assert row.failing_since is None

    async def test_no_change_keeps_version(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL, description="same")

        response = await client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={"description": "same"},
            headers=auth,
        )

        assert response.json()["version"] == 1
        assert len(await endpoint_events(session)) == 1


class TestDeleteEndpoint:
    async def test_deleted(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"

        response = await client.delete(path, headers={**auth, "If-Match": '"1"'})

        assert response.status_code == 204
        assert response.content == b""
        assert (await client.get(path, headers=auth)).status_code == 404
        events = await endpoint_events(session)
        assert [event_type for event_type, _ in events] == [
            "webhook_endpoint.created",
            "webhook_endpoint.deleted",
        ]
        assert events[1][1]["id"] == endpoint["id"]
        count = select(func.count()).select_from(WebhookDelivery)
        assert await session.scalar(count) == 0

    async def test_body_with_fields_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"

        response = await client.request(
            "DELETE", path, json={"cascade": False}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "body_not_accepted"
        assert "It sent 'cascade'." in response.json()["detail"]
        assert (await client.get(path, headers=auth)).status_code == 200

    async def test_empty_json_body_accepted(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.request(
            "DELETE", f"/v1/webhook-endpoints/{endpoint['id']}", json={}, headers=auth
        )

        assert response.status_code == 204

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.delete(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            headers={**auth, "If-Match": '"2"'},
        )

        assert response.status_code == 412

    @pytest.mark.parametrize(
        ("action", "body"),
        [
            ("send-test-event", {"type": "lead.created"}),
            ("recover", {"since": "2026-01-01T00:00:00Z"}),
        ],
    )
    async def test_concurrent_delete_gives_not_found(
        self,
        committed_api: httpx.AsyncClient,
        committed: Committed,
        action: str,
        body: dict[str, str],
    ) -> None:
        endpoint = await create_endpoint(committed_api, committed.auth, URL)
        endpoint_id = decode("webhook_endpoint", endpoint["id"])

        async with committed.database.session() as deleting:
            await deleting.execute(
                delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
            )
            request = asyncio.create_task(
                committed_api.post(
                    f"/v1/webhook-endpoints/{endpoint['id']}/{action}",
                    json=body,
                    headers=committed.auth,
                )
            )
            # The request blocks on the row the uncommitted delete holds.
            await asyncio.sleep(0.5)
            waited = not request.done()
            await deleting.commit()
        response = await request

        assert waited
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "webhook_endpoint_not_found"


def limited_app(
    settings: Settings, database: Database, queue: JobQueue, limit: int
) -> httpx.AsyncClient:
    """An API client whose workspaces may have at most ``limit`` endpoints."""
    limited = settings.model_copy(update={"webhook_max_endpoints_per_workspace": limit})
    app = create_app(limited, database=database, queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


class TestEndpointLimit:
    async def test_create_beyond_limit_conflicts(
        self,
        auth: dict[str, str],
        settings: Settings,
        database: TestDatabase,
        queue: JobQueue,
        session: AsyncSession,
    ) -> None:
        async with limited_app(settings, database, queue, 2) as api:
            first = await create_endpoint(api, auth, URL)
            await create_endpoint(api, auth, URL, enabled=False)
            rejected = await api.post(
                "/v1/webhook-endpoints",
                json={"url": URL, "event_types": ["*"]},
                headers=auth,
            )
            deleted = await api.delete(
                f"/v1/webhook-endpoints/{first['id']}", headers=auth
            )
            after_delete = await api.post(
                "/v1/webhook-endpoints",
                json={"url": URL, "event_types": ["*"]},
                headers=auth,
            )

        assert rejected.status_code == 409, rejected.text
        assert rejected.json()["code"] == "webhook_endpoint_limit_reached"
        assert (
            "SALESCYCLE_WEBHOOK_MAX_ENDPOINTS_PER_WORKSPACE is 2"
            in (rejected.json()["detail"])
        )
        assert deleted.status_code == 204
        assert after_delete.status_code == 201, after_delete.text
        count = select(func.count()).select_from(WebhookEndpoint)
        assert await session.scalar(count) == 2

    async def test_limit_per_workspace(
        self,
        auth: dict[str, str],
        settings: Settings,
        database: TestDatabase,
        queue: JobQueue,
        session: AsyncSession,
    ) -> None:
        _, other = await make_workspace_key(session)

        async with limited_app(settings, database, queue, 1) as api:
            await create_endpoint(api, auth, URL)
            elsewhere = await api.post(
                "/v1/webhook-endpoints",
                json={"url": URL, "event_types": ["*"]},
                headers=other,
            )

        assert elsewhere.status_code == 201, elsewhere.text

    async def test_concurrent_creates_stop_at_limit(
        self, settings: Settings, committed: Committed, queue: JobQueue
    ) -> None:
        async with limited_app(settings, committed.database, queue, 3) as api:
            responses = await asyncio.gather(
                *(
                    api.post(
                        "/v1/webhook-endpoints",
                        json={"url": URL, "event_types": ["*"]},
                        headers=committed.auth,
                    )
                    for _ in range(8)
                )
            )
        async with committed.database.session() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(WebhookEndpoint)
                .where(WebhookEndpoint.workspace_id == committed.workspace.id)
            )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] * 3 + [409] * 5
        assert count == 3


class TestRotateSecret:
    async def test_rotated_with_grace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
            json={"previous_secret_expires_in": 3600},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        rotated = response.json()
        assert rotated["secret"].startswith("whsec_")
        assert rotated["secret"] != endpoint["secret"]
        assert rotated["previous_secret_expires_at"] is not None
        assert rotated["version"] == 2
        row = await session.get(
            WebhookEndpoint, decode("webhook_endpoint", endpoint["id"])
        )
        assert row is not None
        assert row.secret == rotated["secret"]
        assert row.previous_secret == endpoint["secret"]
        events = await endpoint_events(session)
        assert events[-1][0] == "webhook_endpoint.updated"
        assert "secret" not in events[-1][1]

    async def test_without_body_uses_default_grace(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=auth
        )

        assert response.status_code == 200
        assert response.json()["previous_secret_expires_at"] is not None

    async def test_zero_grace_retires_old_secret(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
            json={"previous_secret_expires_in": 0},
            headers=auth,
        )

        assert response.json()["previous_secret_expires_at"] is None
        row = await session.get(
            WebhookEndpoint, decode("webhook_endpoint", endpoint["id"])
        )
        assert row is not None
        assert row.previous_secret is None

    async def test_grace_too_long(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        response = await client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
            json={"previous_secret_expires_in": 8 * 86_400},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "previous_secret_expires_in"


class TestEventTypesCatalogue:
    async def test_published(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/meta/event-types")

        assert response.status_code == 200
        items = {item["type"]: item for item in response.json()["data"]}
        assert items["invoice.paid"]["object_type"] == "invoice"
        assert "webhook_endpoint.disabled" in items
        assert all(item["description"] for item in items.values())


class TestOpenApiWebhooks:
    async def test_lists_every_event_type(self, client: httpx.AsyncClient) -> None:
        schema = (await client.get("/openapi.json")).json()

        catalogue = (await client.get("/v1/meta/event-types")).json()["data"]
        assert set(schema["webhooks"]) == {item["type"] for item in catalogue}
        operation = schema["webhooks"]["lead.created"]["post"]
        reference = operation["requestBody"]["content"]["application/json"]["schema"]
        assert reference == {"$ref": "#/components/schemas/LeadWebhookPayload"}
        payload = schema["components"]["schemas"]["LeadWebhookPayload"]
        assert payload["properties"]["data"]["$ref"] == "#/components/schemas/Lead"
        headers = {item["name"] for item in operation["parameters"]}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert "422" not in operation["responses"]

    async def test_data_schemas_match_emitted_data(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_endpoint(client, auth, URL, headers={"X-Token": "t"})
        lead = await client.post(
            "/v1/leads", json={"email": "ada@example.com"}, headers=auth
        )
        customer = await client.post(
            "/v1/customers", json={"name": "Acme GmbH"}, headers=auth
        )
        assert lead.status_code == 201, lead.text
        assert customer.status_code == 201, customer.text

        rows = (await session.execute(select(Event.object_type, Event.data))).all()

        checked = {row.object_type for row in rows if row.object_type in DATA_SCHEMAS}
        assert checked >= {"webhook_endpoint", "lead", "customer"}
        for row in rows:
            schema = DATA_SCHEMAS.get(row.object_type)
            if schema is not None:
                schema.model_validate(row.data)
        payload = (await client.get("/openapi.json")).json()["components"]["schemas"]
        data = payload["CustomerWebhookPayload"]["properties"]["data"]
        assert data["$ref"] == "#/components/schemas/Customer"

    def test_every_object_type_has_data_schema(self) -> None:
        missing = [name for name in catalog.OBJECT_TYPES if name not in DATA_SCHEMAS]

        assert missing == []

    async def test_billing_event_data_matches_schemas(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        paid = await pay(client, auth, customer, 10000, invoice_id=invoice["id"])
        assert paid.status_code == 201, paid.text

        rows = (
            await session.execute(
                select(Event.object_type, Event.data).where(
                    Event.workspace_id == workspace.id
                )
            )
        ).all()

        assert {"invoice", "payment"} <= {row.object_type for row in rows}
        for row in rows:
            DATA_SCHEMAS[row.object_type].model_validate(row.data)
