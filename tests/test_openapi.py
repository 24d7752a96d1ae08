"""The committed contract: openapi/openapi.json is exactly what the app serves."""

from __future__ import annotations

from pathlib import Path

from app.cli import render_schema
from app.main import create_app
from app.settings import Settings

CONTRACT = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


class TestContract:
    def test_committed_schema_current(self, settings: Settings) -> None:
        served = render_schema(create_app(settings).openapi())

        committed = CONTRACT.read_text()

        assert committed == served, (
            "openapi/openapi.json differs from the app's schema. If the API change is "
            "intended, run 'make openapi' and commit the file."
        )
