from __future__ import annotations

import httpx
import pytest

from app.core import ids
from app.core.errors import NotFound, quoted, validation_field_errors, with_article


class TestProblemResponses:
    async def test_unknown_route(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/nothing-here")

        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "route_not_found"
        assert problem["type"] == "urn:problem:salescycle:route_not_found"
        assert problem["instance"] == "/v1/nothing-here"

    async def test_wrong_method(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.delete("/v1/leads", headers=auth)

        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"
        assert "GET" in response.headers["allow"]

    async def test_malformed_json(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            content=b'{"email": ',
            headers={**auth, "Content-Type": "application/json"},
        )

        assert response.status_code == 400
        assert response.json()["code"] == "malformed_json"

    async def test_deeply_nested_json(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            content=b"[" * 50_000 + b"]" * 50_000,
            headers={**auth, "Content-Type": "application/json"},
        )

        assert response.status_code == 400
        problem = response.json()
        assert problem["code"] == "malformed_json"
        assert "nested too deeply" in problem["detail"]
        assert problem["errors"][0]["field"] == "body"
        assert problem["instance"] == "/v1/leads"

    async def test_json_without_content_type(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            content=b'{"email": "a@example.com"}',
            headers={**auth, "Content-Type": ""},
        )

        assert response.status_code == 201, response.text
        assert response.json()["email"] == "a@example.com"

    async def test_malformed_json_without_content_type(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads", content=b'{"email": ', headers={**auth, "Content-Type": ""}
        )

        assert response.status_code == 400
        assert response.json()["code"] == "malformed_json"

    async def test_wrong_content_type(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            content=b"email=a@example.com",
            headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
        )

        assert response.status_code == 415
        assert response.json()["code"] == "unsupported_media_type"

    async def test_wrong_type(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post("/v1/leads", json={"email": 12}, headers=auth)

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "email"
        assert error["code"] == "string_type"

    async def test_missing_body(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post("/v1/leads", headers=auth)

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "missing"

    async def test_body_over_limit(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        body = b'{"email": "a@example.com", "notes": "' + b"x" * 1_100_000 + b'"}'

        response = await client.post(
            "/v1/leads",
            content=body,
            headers={**auth, "Content-Type": "application/json"},
        )

        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
        assert response.json()["instance"] == "/v1/leads"

    async def test_streamed_body_over_limit(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        async def chunks() -> object:
            for _ in range(40):
                yield b"x" * 50_000

        response = await client.post(
            "/v1/leads",
            content=chunks(),  # type: ignore[arg-type]
            headers={**auth, "Content-Type": "application/json"},
        )

        assert response.status_code == 413
        assert response.json()["instance"] == "/v1/leads"

    async def test_no_stack_trace_on_500(self) -> None:
        from fastapi import APIRouter

        from app.main import create_app
        from app.settings import Settings

        app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
        router = APIRouter()

        @router.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals")

        app.include_router(router)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as http:
            response = await http.get("/boom")

        assert response.status_code == 500
        assert response.json()["code"] == "internal_error"
        assert "secret internals" not in response.text


class TestMalformedPathIds:
    @pytest.mark.parametrize(
        ("path", "kind", "code"),
        [
            ("/v1/leads/{}", "lead", "lead_not_found"),
            ("/v1/customers/{}", "customer", "customer_not_found"),
            ("/v1/opportunities/{}", "opportunity", "opportunity_not_found"),
            ("/v1/invoices/{}", "invoice", "invoice_not_found"),
            ("/v1/events/{}", "event", "event_not_found"),
            (
                "/v1/webhook-endpoints/{}",
                "webhook_endpoint",
                "webhook_endpoint_not_found",
            ),
        ],
    )
    async def test_same_code_as_unknown_id(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        path: str,
        kind: str,
        code: str,
    ) -> None:
        unknown = await client.get(
            path.format(ids.encode(kind, ids.new_uuid())), headers=auth
        )
        malformed = await client.get(path.format(f"{kind}_nonsense"), headers=auth)

        assert unknown.status_code == 404
        assert unknown.json()["code"] == code
        assert malformed.status_code == 404
        assert malformed.json()["code"] == code
        assert (
            "Copy the id from the object's own response" in malformed.json()["detail"]
        )

    def test_kind_without_its_own_error(self) -> None:
        assert NotFound.for_kind("api_key") is NotFound


class TestRequestId:
    async def test_generated(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")

        assert len(response.headers["x-request-id"]) == 32

    async def test_echoed(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Request-Id": "req-abc.123"})

        assert response.headers["x-request-id"] == "req-abc.123"

    async def test_unsafe_value_replaced(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Request-Id": "a b\tc"})

        assert response.headers["x-request-id"] != "a b\tc"


class TestQueryParameters:
    async def test_unknown_parameter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/leads?statsu=new", headers=auth)

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "query.statsu"
        assert error["code"] == "unknown_parameter"

    async def test_nul_character_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com", "attributes": {"note": "a\u0000b"}},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attributes"

    async def test_nul_in_query_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for query in ("q=%00", "email=a%00b", "tag=x%00", "attribute=a%00"):
            response = await client.get(f"/v1/leads?{query}", headers=auth)

            assert response.status_code == 422, query
            error = response.json()["errors"][0]
            assert error["field"] == f"query.{query.split('=')[0]}"
            assert error["code"] == "unstorable"

    async def test_repeated_parameter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/leads?limit=5&limit=6", headers=auth)

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "query.limit"
        assert error["code"] == "repeated"

    async def test_malformed_json_names_offset(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            content=b'{"email":',
            headers={**auth, "Content-Type": "application/json"},
        )

        problem = response.json()
        assert problem["errors"] == [
            {
                "field": "body",
                "message": "invalid JSON at character 9",
                "code": "json_invalid",
            }
        ]
        assert "at character 9" in problem["detail"]

    async def test_non_finite_number_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for number in (b"NaN", b"Infinity", b"1e400"):
            response = await client.post(
                "/v1/leads",
                content=b'{"email": "n@example.com", "attributes": {"x": '
                + number
                + b"}}",
                headers={**auth, "Content-Type": "application/json"},
            )

            assert response.status_code == 422, number
            assert response.json()["errors"][0]["field"] == "attributes", number

    async def test_deep_nesting_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        nested = b'{"a": ' * 100 + b"1" + b"}" * 100
        response = await client.post(
            "/v1/leads",
            content=b'{"email": "d@example.com", "attributes": ' + nested + b"}",
            headers={**auth, "Content-Type": "application/json"},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attributes"


class TestFieldMessages:
    def test_value_error_prefix_dropped(self) -> None:
        [error] = validation_field_errors(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "timezone"),
                    "msg": "Value error, 'Mars/Base' is not an IANA time zone",
                    "input": "Mars/Base",
                }
            ]
        )

        assert error["field"] == "timezone"
        assert error["message"] == "'Mars/Base' is not an IANA time zone."

    def test_value_shown_once(self) -> None:
        [quoted, plain] = validation_field_errors(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "a"),
                    "msg": "Value error, 'x' is wrong",
                    "input": "x",
                },
                {"type": "int_type", "loc": ("body", "b"), "msg": "bad", "input": "y"},
            ]
        )

        assert quoted["message"] == "'x' is wrong."
        assert plain["message"] == "bad; got 'y'."

    def test_if_match_without_quotes(self) -> None:
        [error] = validation_field_errors(
            [
                {
                    "type": "string_pattern_mismatch",
                    "loc": ("header", "if-match"),
                    "msg": "String should match pattern '^...$'",
                    "input": "3",
                }
            ]
        )

        assert error["field"] == "header.if-match"
        assert error["code"] == "string_pattern_mismatch"
        assert error["message"] == (
            'If-Match must be an ETag in double quotes, such as "3", as the ETag '
            "response header sends it, or *; got '3'."
        )
        assert "pattern" not in error["message"]

    def test_article(self) -> None:
        assert with_article("active") == "an active"
        assert with_article("paused") == "a paused"
        assert with_article("open").capitalize() == "An open"


class TestQuoted:
    def test_short_value_quoted_whole(self) -> None:
        assert quoted("invoice.paid") == "'invoice.paid'"

    def test_long_value_cut_with_its_length(self) -> None:
        assert quoted("x" * 61) == f"{'x' * 60!r}… (61 characters)"

    def test_value_at_the_limit_whole(self) -> None:
        assert quoted("y" * 60) == repr("y" * 60)
