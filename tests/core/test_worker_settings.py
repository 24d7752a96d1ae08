from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from app.core.logging import configure_logging
from app.settings import Settings
from workers import tasks
from workers.settings import worker_settings


class TestWorkerSettings:
    def test_sweeps_follow_interval(self, settings: Settings) -> None:
        tuned = settings.model_copy(update={"sweep_interval_seconds": 20})

        cron_jobs = worker_settings(tuned)["cron_jobs"]

        sweeps = [job for job in cron_jobs if job.coroutine in tasks.SWEEPS]
        assert len(sweeps) == len(tasks.SWEEPS)
        assert all(job.second == {0, 20, 40} for job in sweeps)
        assert all(job.run_at_startup for job in sweeps)

    def test_interval_must_divide_minute(self) -> None:
        with pytest.raises(ValidationError, match="must divide 60"):
            Settings(sweep_interval_seconds=7)

    def test_poll_delay_tuned(self, settings: Settings) -> None:
        assert worker_settings(settings)["poll_delay"] < 0.5


@pytest.fixture
def restore_logging(settings: Settings) -> Iterator[None]:
    yield
    configure_logging(settings.log_format, settings.log_level)


@pytest.mark.usefixtures("restore_logging")
class TestJobQueueLogLevel:
    def test_job_lines_hidden_at_info(self) -> None:
        configure_logging("json", "INFO")

        assert logging.getLogger("arq.worker").getEffectiveLevel() == logging.WARNING

    def test_job_lines_shown_at_debug(self) -> None:
        configure_logging("json", "DEBUG")

        assert logging.getLogger("arq.worker").getEffectiveLevel() == logging.DEBUG

    def test_errors_only_at_error(self) -> None:
        configure_logging("json", "ERROR")

        assert logging.getLogger("arq.worker").getEffectiveLevel() == logging.ERROR
