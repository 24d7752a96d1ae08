from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app.webhooks.backoff import (
    JITTER,
    MAX_RETRY_AFTER,
    RETRY_WINDOW,
    backoff_seconds,
    next_delay_seconds,
    parse_retry_after,
    retry_delays,
)

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


class TestRetryDelays:
    def test_twelve_attempts_span_three_days(self) -> None:
        delays = retry_delays(12)

        assert len(delays) == 11
        assert sum(delays) == pytest.approx(RETRY_WINDOW.total_seconds())
        assert 120 <= delays[0] <= 130
        assert delays[-1] == pytest.approx(36 * 3600, rel=0.01)

    def test_doubles(self) -> None:
        delays = retry_delays(12)

        for earlier, later in zip(delays, delays[1:], strict=False):
            assert later == pytest.approx(2 * earlier)

    def test_one_attempt_never_retries(self) -> None:
        assert retry_delays(1) == ()
        assert backoff_seconds(1, 1) == 0.0

    def test_many_attempts_keep_a_floor(self) -> None:
        delays = retry_delays(50)

        assert min(delays) >= 1.0
        assert sum(delays) == pytest.approx(RETRY_WINDOW.total_seconds(), rel=0.01)


class TestBackoffSeconds:
    def test_jitter_bounds(self) -> None:
        rng = random.Random(7)
        nominal = retry_delays(12)[2]

        samples = [backoff_seconds(3, 12, rng) for _ in range(500)]

        assert min(samples) >= nominal * (1 - JITTER)
        assert max(samples) <= nominal * (1 + JITTER)
        assert len(set(samples)) > 400

    def test_total_with_jitter_about_three_days(self) -> None:
        rng = random.Random(11)

        total = sum(backoff_seconds(attempt, 12, rng) for attempt in range(1, 12))

        assert total == pytest.approx(RETRY_WINDOW.total_seconds(), rel=JITTER)


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("120", 120.0),
            (" 5 ", 5.0),
            ("0", 0.0),
            ("Fri, 04 Dec 2026 10:10:00 GMT", 600.0),
            ("Fri, 04 Dec 2026 09:00:00 GMT", 0.0),
            ("999999999", MAX_RETRY_AFTER.total_seconds()),
            ("soon", None),
            ("\u00b2", None),
            ("-5", None),
            ("", None),
            (None, None),
        ],
    )
    def test_values(self, value: str | None, expected: float | None) -> None:
        assert parse_retry_after(value, NOW) == expected


class TestNextDelay:
    def test_retry_after_postpones(self) -> None:
        delay = next_delay_seconds(
            1, 12, status_code=429, retry_after=3600.0, rng=random.Random(1)
        )

        assert delay == 3600.0

    def test_retry_after_never_shortens(self) -> None:
        delay = next_delay_seconds(
            5, 12, status_code=503, retry_after=1.0, rng=random.Random(1)
        )

        assert delay >= retry_delays(12)[4] * (1 - JITTER)

    def test_retry_after_ignored_on_500(self) -> None:
        delay = next_delay_seconds(
            1, 12, status_code=500, retry_after=3600.0, rng=random.Random(1)
        )

        assert delay < timedelta(minutes=3).total_seconds()
