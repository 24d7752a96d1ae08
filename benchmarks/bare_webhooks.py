"""The bare baseline of the webhook workload, as a process of its own.

``python -m benchmarks.bare_webhooks BODIES TIMES`` reads a JSON document from
``BODIES``: the receiver's URL, the signing secret, the concurrency and the
``[webhook_id, body]`` pairs. It signs and posts every body from ``concurrency``
aiohttp tasks, one request at a time on each. Then it writes to ``TIMES`` the Unix
time at which each request started (``started``) and the CPU seconds the sending took
(``cpu_seconds``). It runs on uvloop when it is installed, as the worker does, so
that the sender and the receiver are two processes in both runs and the baseline pays
the same hop between them. A non-2xx response ends it with status 1.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson

from app.webhooks.signing import webhook_headers


async def send_all(
    url: str, secret: str, concurrency: int, bodies: list[tuple[str, bytes]]
) -> dict[str, float]:
    """Post ``bodies`` from ``concurrency`` tasks and return when each request started."""
    pending = list(reversed(bodies))
    started: dict[str, float] = {}

    async def sender(session: aiohttp.ClientSession) -> None:
        while pending:
            message_id, body = pending.pop()
            started[message_id] = time.time()
            headers = {
                "Content-Type": "application/json",
                **webhook_headers([secret], message_id, int(started[message_id]), body),
            }
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status >= 300:
                    raise RuntimeError(
                        f"the receiver returned status {response.status}, not 2xx"
                    )

    connector = aiohttp.TCPConnector(limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
    return started


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.bare_webhooks BODIES TIMES", file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    job = orjson.loads(source.read_bytes())
    bodies = [(message_id, body.encode()) for message_id, body in job["bodies"]]
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        cpu_before = time.process_time()
        started = runner.run(
            send_all(job["url"], job["secret"], job["concurrency"], bodies)
        )
        cpu_seconds = time.process_time() - cpu_before
    target.write_bytes(orjson.dumps({"started": started, "cpu_seconds": cpu_seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
