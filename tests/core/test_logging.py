from __future__ import annotations

import json
import sys
from typing import Any

import pytest
import structlog

from app.core import ids
from app.core.ids import new_uuid
from app.core.logging import configure_logging

ANSI_ESCAPE = "\x1b["


@pytest.mark.usefixtures("restore_logging")
class TestConsoleLogColours:
    def test_plain_when_not_terminal(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure_logging("console", "INFO")

        structlog.get_logger().info("lead.created", lead_id="lead_1")

        line = capsys.readouterr().err
        assert "lead.created" in line
        assert "lead_id=lead_1" in line
        assert ANSI_ESCAPE not in line

    def test_coloured_on_terminal(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
        configure_logging("console", "INFO")

        structlog.get_logger().info("lead.created", lead_id="lead_1")

        assert ANSI_ESCAPE in capsys.readouterr().err


@pytest.mark.usefixtures("restore_logging")
class TestApiIds:
    def _line(self, capsys: pytest.CaptureFixture[str], **fields: object) -> Any:
        configure_logging("json", "INFO")
        structlog.get_logger().info("test.logged", **fields)
        return json.loads(capsys.readouterr().err)

    def test_uuid_fields_written_as_api_ids(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        lead, invoice = new_uuid(), new_uuid()

        line = self._line(capsys, lead_id=str(lead), invoice_id=invoice)

        assert line["lead_id"] == ids.encode("lead", lead)
        assert line["invoice_id"] == ids.encode("invoice", invoice)

    def test_named_kinds(self, capsys: pytest.CaptureFixture[str]) -> None:
        delivery, endpoint, step = new_uuid(), new_uuid(), new_uuid()

        line = self._line(
            capsys,
            delivery_id=str(delivery),
            endpoint_id=str(endpoint),
            step_id=str(step),
        )

        assert line["delivery_id"] == ids.encode("webhook_delivery", delivery)
        assert line["endpoint_id"] == ids.encode("webhook_endpoint", endpoint)
        assert line["step_id"] == ids.encode("sequence_step", step)

    def test_object_id_takes_its_object_type(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        customer = new_uuid()

        line = self._line(capsys, object_type="customer", object_id=str(customer))

        assert line["object_id"] == ids.encode("customer", customer)

    @pytest.mark.parametrize(
        "fields",
        [
            # A provider's own id, already an API id, or not a UUID at all.
            {"event_id": "evt_1NJpk2LkdIwHu7ix"},
            {"lead_id": "lead_01j9zq4c8m7v6x5w4t3s2r1p0n"},
            {"lead_id": "not-a-uuid-but-thirty-six-characters"},
            # A UUID of a kind with no API prefix, or of an unknown object type.
            {"job_id": "0192e4a1-7c2b-7d4e-8f10-1a2b3c4d5e6f"},
            {
                "object_type": "widget",
                "object_id": "0192e4a1-7c2b-7d4e-8f10-1a2b3c4d5e6f",
            },
            {"lead_ids": "0192e4a1-7c2b-7d4e-8f10-1a2b3c4d5e6f"},
        ],
    )
    def test_other_values_kept(
        self, capsys: pytest.CaptureFixture[str], fields: dict[str, str]
    ) -> None:
        line = self._line(capsys, **fields)

        for field, value in fields.items():
            assert line[field] == value
