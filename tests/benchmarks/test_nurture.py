"""The nurture benchmark, run small: every email must arrive once, and nothing is timed."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
import redis.asyncio as aioredis

from benchmarks.config import BenchConfig
from benchmarks.environment import BenchServers, database_name, with_database
from benchmarks.nurture import FULL, NurtureFailed, Sink, check_counts
from benchmarks.report import render
from benchmarks.runner import run_nurture
from tests.conftest import Servers


@pytest.fixture
def nurture_servers(servers: Servers, redis_client: aioredis.Redis) -> BenchServers:
    """A database of its own, apart from those of the other benchmark tests."""
    database_url = with_database(
        servers.database_url, database_name(servers.database_url) + "_bench_nurture"
    )
    return BenchServers(database_url=database_url, redis_url=servers.redis_url)


def _message(message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "bench@example.com"
    message["To"] = "lead@example.com"
    message["Subject"] = "Hello"
    message["Message-ID"] = message_id
    message.set_content("Hello there.\n")
    return message


class TestNurtureSmokeRun:
    def test_every_email_sent_once(self, nurture_servers: BenchServers) -> None:
        config = BenchConfig().smoke()

        report = run_nurture(config, servers=nurture_servers)

        nurture = report.nurture
        assert nurture is not None
        assert nurture.enrollments == config.nurture_enrollments
        assert [run.label for run in nurture.bare_runs] == ["bare before", "bare after"]
        assert nurture.full.label == FULL
        for run in [*nurture.bare_runs, nurture.full]:
            assert run.messages == config.nurture_enrollments
            assert 0 < run.first_message_seconds <= run.seconds
            assert run.messages_per_second > 0
            assert run.cpu_ms_per_message > 0
        assert nurture.full.message_bytes == nurture.bare_runs[0].message_bytes
        assert nurture.full.recorded_seconds is not None
        assert nurture.ratio > 0
        assert [check.name for check in report.checks] == [
            "nurture emails worker/bare emails/s"
        ]
        assert "worker/bare" in render(report)


class TestSink:
    async def test_counts_distinct_message_ids(self, tmp_path: Path) -> None:
        sink = await Sink.start(tmp_path, "sink")
        try:
            for message_id in ("<one@bench>", "<two@bench>", "<one@bench>"):
                await aiosmtplib.send(
                    _message(message_id), hostname="127.0.0.1", port=sink.port
                )
            status = await sink.status()
        finally:
            await sink.stop()

        assert status["messages"] == 3
        assert status["distinct_message_ids"] == 2
        assert status["first"] <= status["last"]
        with pytest.raises(NurtureFailed, match="3 messages with 2 distinct"):
            check_counts("sink", status, 3)

    async def test_exact_count_passes(self, tmp_path: Path) -> None:
        sink = await Sink.start(tmp_path, "sink")
        try:
            for message_id in ("<one@bench>", "<two@bench>"):
                await aiosmtplib.send(
                    _message(message_id), hostname="127.0.0.1", port=sink.port
                )
            status = await sink.status()
        finally:
            await sink.stop()

        check_counts("sink", status, 2)
