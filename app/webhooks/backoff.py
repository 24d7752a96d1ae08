"""When a failed webhook delivery is tried again.

The delays double from one attempt to the next and add up to ``RETRY_WINDOW``, so the
last attempt comes about three days after the first, whatever ``webhook_max_attempts``
is. With 12 attempts the first retry waits about 2 minutes and the last about 36 hours.
Each delay is spread by ±``JITTER`` so endpoints that failed together do not all retry
in the same second. A ``Retry-After`` on 429 or 503 postpones the next attempt to at
least that time.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache

RETRY_WINDOW = timedelta(days=3)
JITTER = 0.2
MIN_DELAY_SECONDS = 1.0
MAX_RETRY_AFTER = timedelta(days=1)
RETRY_AFTER_STATUSES = frozenset({429, 503})


@lru_cache(maxsize=64)
def retry_delays(max_attempts: int) -> tuple[float, ...]:
    """Return the nominal seconds before attempts 2 to ``max_attempts``."""
    retries = max_attempts - 1
    if retries < 1:
        return ()
    first = RETRY_WINDOW.total_seconds() / (2**retries - 1)
    return tuple(max(MIN_DELAY_SECONDS, first * 2**index) for index in range(retries))


def backoff_seconds(
    attempt: int, max_attempts: int, rng: random.Random | None = None
) -> float:
    """Return the jittered seconds to wait after failed attempt number ``attempt``."""
    delays = retry_delays(max_attempts)
    if not delays:
        return 0.0
    nominal = delays[min(max(attempt, 1), len(delays)) - 1]
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return max(MIN_DELAY_SECONDS, nominal * spread)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Parse ``Retry-After`` (seconds or an HTTP date) into seconds from ``now``.

    Returns None when the header is missing or malformed; caps the result at
    ``MAX_RETRY_AFTER`` so a receiver cannot park a delivery for ever.
    """
    if value is None:
        return None
    text = value.strip()
    # str.isdigit() also accepts digits such as the superscript two, which float()
    # rejects, and RFC 9110 delay-seconds are ASCII digits only.
    if text.isascii() and text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER.total_seconds())


def next_delay_seconds(
    attempt: int,
    max_attempts: int,
    *,
    status_code: int | None,
    retry_after: float | None,
    rng: random.Random | None = None,
) -> float:
    """Return the seconds before the next attempt, honouring ``Retry-After``."""
    delay = backoff_seconds(attempt, max_attempts, rng)
    if status_code in RETRY_AFTER_STATUSES and retry_after is not None:
        return max(delay, retry_after)
    return delay
