from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import structlog

from app.core.logging import configure_logging
from app.settings import Settings

ANSI_ESCAPE = "\x1b["


@pytest.fixture
def restore_logging(settings: Settings) -> Iterator[None]:
    yield
    configure_logging(settings.log_format, settings.log_level)


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
