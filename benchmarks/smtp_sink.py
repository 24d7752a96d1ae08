"""The mail server of the nurture benchmark: ``python -m benchmarks.smtp_sink --port P``.

An aiosmtpd server on 127.0.0.1 that accepts every message, keeps nothing but its
Message-ID, and counts. It prints ``ready`` once it listens. Then each line ``status``
on its standard input gets one JSON line back: the messages received, the distinct
Message-IDs among them, their bytes, and the ``time.monotonic()`` of the first and the
last message and of each tenth of them. The harness subtracts its own readings from
these, because every process of the machine shares ``CLOCK_MONOTONIC`` on Linux. The
server stops when its standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from typing import Any

import orjson
import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session

MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
# Far above the size of one benchmark message, so the server rejects none of them.
DATA_SIZE_LIMIT = 1_048_576


class CountingHandler:
    """Accepts every message and records its Message-ID and arrival time."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.without_id = 0
        self.message_ids: set[bytes] = set()
        self.arrivals: list[float] = []

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        received = time.monotonic()
        content = envelope.original_content or b""
        headers = content.partition(b"\r\n\r\n")[0]
        found = MESSAGE_ID.search(headers)
        if found is None:
            self.without_id += 1
        else:
            self.message_ids.add(found.group(1))
        self.messages += 1
        self.bytes += len(content)
        self.arrivals.append(received)
        return "250 OK"

    def status(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "distinct_message_ids": len(self.message_ids),
            "without_message_id": self.without_id,
            "bytes": self.bytes,
            "first": self.arrivals[0] if self.arrivals else None,
            "last": self.arrivals[-1] if self.arrivals else None,
            # When the first 10 %, 20 %, ... 90 % of the messages so far had arrived.
            "deciles": [
                self.arrivals[len(self.arrivals) * tenth // 10 - 1]
                for tenth in range(1, 10)
            ]
            if len(self.arrivals) >= 10
            else [],
        }


async def serve(port: int) -> None:
    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="bench-sink.localhost",
            data_size_limit=DATA_SIZE_LIMIT,
            enable_SMTPUTF8=True,
        ),
        host="127.0.0.1",
        port=port,
        backlog=1024,
    )
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        while line := await reader.readline():
            if line.strip() == b"status":
                sys.stdout.write(orjson.dumps(handler.status()).decode() + "\n")
                sys.stdout.flush()
    finally:
        server.close()
        await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="Port on 127.0.0.1.")
    arguments = parser.parse_args()
    uvloop.run(serve(arguments.port))


if __name__ == "__main__":
    main()
