from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from app.core.schemas import Timestamp


class Stamped(BaseModel):
    at: Timestamp


class TestTimestamp:
    def test_rfc3339_accepted(self) -> None:
        assert Stamped(at="2026-12-04T10:00:00Z").at.year == 2026

    @pytest.mark.parametrize(
        "value",
        ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z"],
    )
    def test_out_of_range_rejected(self, value: str) -> None:
        with pytest.raises(ValidationError, match="year from 1900"):
            Stamped(at=value)

    def test_number_rejected(self) -> None:
        with pytest.raises(ValidationError, match="RFC 3339"):
            Stamped(at=0.5)

    def test_naive_rejected(self) -> None:
        with pytest.raises(ValidationError, match="timezone"):
            Stamped(at="2026-12-04T10:00:00")
