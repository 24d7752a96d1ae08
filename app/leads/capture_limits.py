"""Fixed-window rate limits of public captures, counted in Redis.

Each minute has its own counters, one per client address (over every form) and one
per form. Counters live in Redis and may be lost: when Redis is unreachable the
limit is not enforced (fail open), because a lost capture costs more than a burst of
spam, and the failure is logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError

from app.core.jobs import JobQueue

log = structlog.get_logger(__name__)

WINDOW_SECONDS = 60
KEY_PREFIX = "salescycle:capture:"
# How long Redis may take to count before the limit is skipped, in seconds.
TIMEOUT_SECONDS = 0.5
_last_outage_log = 0.0


@dataclass(frozen=True)
class RateLimitState:
    """The counter nearest its limit: its limit, requests left and seconds to reset."""

    limit: int
    remaining: int
    reset_seconds: int
    exceeded: bool

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if self.exceeded:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


async def count_capture(
    queue: JobQueue,
    *,
    form_key: str,
    client_address: str,
    per_client: int,
    per_form: int,
) -> RateLimitState | None:
    """Count one capture; return the tighter limit's state, or None if Redis failed."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    reset = WINDOW_SECONDS - int(now % WINDOW_SECONDS)
    client_counter = f"{KEY_PREFIX}client:{client_address}:{window}"
    form_counter = f"{KEY_PREFIX}form:{form_key}:{window}"
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            redis = await queue.pool()
            async with redis.pipeline(transaction=False) as pipeline:
                pipeline.incr(client_counter)
                pipeline.expire(client_counter, WINDOW_SECONDS * 2)
                pipeline.incr(form_counter)
                pipeline.expire(form_counter, WINDOW_SECONDS * 2)
                client_count, _, form_count, _ = await pipeline.execute()
    except (RedisError, OSError, TimeoutError) as error:
        _log_outage(error)
        return None
    states = [
        RateLimitState(
            limit=limit,
            remaining=max(limit - count, 0),
            reset_seconds=reset,
            exceeded=count > limit,
        )
        for limit, count in ((per_client, client_count), (per_form, form_count))
    ]
    return min(states, key=lambda state: (not state.exceeded, state.remaining))


def _log_outage(error: BaseException) -> None:
    global _last_outage_log
    now = time.monotonic()
    if now - _last_outage_log < WINDOW_SECONDS:
        return
    _last_outage_log = now
    log.warning("capture.rate_limit_unavailable", error=repr(error))
