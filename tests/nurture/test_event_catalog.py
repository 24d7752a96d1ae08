"""Every event type the nurture package emits is in the webhook catalogue.

An event type missing from the catalogue is stored but cannot be subscribed to, so
integrators never receive it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import httpx

from app.webhooks.catalog import EVENT_TYPES_BY_NAME

NURTURE = Path(__file__).parents[2] / "app" / "nurture"


def emitted_types() -> dict[str, str]:
    """Return each event type literal passed to emit or publish, with its location."""
    found: dict[str, str] = {}
    for path in sorted(NURTURE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            values: list[ast.expr] = [
                keyword.value
                for keyword in node.keywords
                if keyword.arg in ("type", "event_type")
            ]
            if name in ("publish", "_publish") and len(node.args) >= 3:
                values.append(node.args[2])
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found[value.value] = f"{path.name}:{node.lineno}"
    return found


class TestEventCatalog:
    def test_scan_finds_emits(self) -> None:
        found = emitted_types()

        assert "enrollment.created" in found
        assert "sequence.created" in found
        assert "enrollment.step_failed" in found

    def test_every_type_catalogued(self) -> None:
        missing = {
            name: where
            for name, where in emitted_types().items()
            if name not in EVENT_TYPES_BY_NAME
        }

        assert missing == {}

    async def test_step_failed_subscribable(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            json={
                "url": "http://127.0.0.1:9/hooks",
                "event_types": ["enrollment.step_failed"],
            },
            headers=auth,
        )

        assert response.status_code == 201
        assert response.json()["event_types"] == ["enrollment.step_failed"]
