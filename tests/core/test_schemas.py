from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field, ValidationError

from app.core.schemas import InputModel, check_storable_text, drop_null_from_schema


class Sample(InputModel):
    name: str | None = Field(default=None, json_schema_extra=drop_null_from_schema)
    note: str | None = None
    tags: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)


class TestStorableText:
    def test_plain_text(self) -> None:
        assert check_storable_text("Grüße 👋") == "Grüße 👋"

    def test_nul_rejected(self) -> None:
        with pytest.raises(ValueError, match="NUL"):
            check_storable_text("a\x00b")

    def test_lone_surrogate_rejected(self) -> None:
        with pytest.raises(ValueError, match="surrogates"):
            check_storable_text("a\ud800b")

    @pytest.mark.parametrize(
        "fields",
        [
            {"note": "a\x00"},
            {"tags": ["ok", "b\x00"]},
            {"attributes": {"key": {"nested": ["\x00"]}}},
            {"attributes": {"\x00": 1}},
            {"attributes": {"key": "\ud800"}},
        ],
    )
    def test_nested_values_checked(self, fields: dict[str, Any]) -> None:
        with pytest.raises(ValidationError) as raised:
            Sample.model_validate(fields)

        assert raised.value.errors()[0]["loc"] == (next(iter(fields)),)


class TestDropNullFromSchema:
    def test_null_removed(self) -> None:
        schema = Sample.model_json_schema()["properties"]["name"]

        assert schema["type"] == "string"
        assert "anyOf" not in schema
        assert "default" not in schema

    def test_other_fields_keep_null(self) -> None:
        schema = Sample.model_json_schema()["properties"]["note"]

        assert {"type": "null"} in schema["anyOf"]

    def test_null_still_validates(self) -> None:
        assert Sample.model_validate({"name": None}).name is None
