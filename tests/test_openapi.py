from __future__ import annotations

import json
from pathlib import Path

from app.core.openapi import render_schema
from app.main import create_app
from app.settings import Settings

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


class TestCommittedContract:
    def test_matches_app(self, settings: Settings) -> None:
        generated = render_schema(create_app(settings).openapi())

        assert generated == COMMITTED.read_text(), (
            "openapi/openapi.json differs from the app's schema. Run 'make openapi' and "
            "commit the result."
        )

    def test_operation_ids_unique(self) -> None:
        schema = json.loads(COMMITTED.read_text())

        operation_ids = [
            operation["operationId"]
            for path in schema["paths"].values()
            for operation in path.values()
        ]

        assert len(operation_ids) == len(set(operation_ids))

    def test_every_operation_documents_problems(self) -> None:
        schema = json.loads(COMMITTED.read_text())

        for path, methods in schema["paths"].items():
            for method, operation in methods.items():
                problems = [
                    status
                    for status, response in operation["responses"].items()
                    if "application/problem+json" in response.get("content", {})
                ]
                assert "422" in problems, f"{method.upper()} {path} lacks a 422 problem"

    def test_posts_declare_idempotency_key(self) -> None:
        schema = json.loads(COMMITTED.read_text())
        signed_receivers = {
            "/v1/email-events/{provider}",
            "/v1/provider-webhooks/stripe",
        }

        for path, methods in schema["paths"].items():
            for method, operation in methods.items():
                headers = [
                    parameter["name"]
                    for parameter in operation.get("parameters", [])
                    if parameter["in"] == "header"
                ]
                declared = headers.count("Idempotency-Key")
                if method == "post" and path not in signed_receivers:
                    assert declared == 1, f"POST {path} lacks Idempotency-Key"
                else:
                    assert declared == 0, f"{method.upper()} {path} declares it"
