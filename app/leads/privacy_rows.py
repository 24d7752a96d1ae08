"""Rows of any table as JSON, for a lead's data export."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import inspect


def row_data(row: Any) -> dict[str, Any]:
    """Return every column of an ORM row, in JSON types."""
    mapper = inspect(row).mapper
    return {
        column.key: to_jsonable_python(getattr(row, column.key))
        for column in mapper.column_attrs
    }
