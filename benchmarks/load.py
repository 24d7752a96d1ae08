"""The load generator, run as its own process: ``python -m benchmarks.load``.

It reads a ``LoadSpec`` as JSON on standard input, opens ``concurrency`` keep-alive
HTTP/1.1 connections to the server, and on each sends one request at a time: a closed
loop. Requests completed during the warm-up are not counted; after it, the run lasts
``duration_seconds`` or ``max_requests`` completions, whichever comes first, and the
whole process gives up after a hard timeout. It prints a ``LoadResult`` as JSON.

With ``bodies`` set, the run sends each of those bodies exactly once, in order, with
its own extra headers from ``body_headers``, and ends with the response to the last one.

Requests are written from prebuilt bytes and responses parsed with httptools, so that
the generator spends a small fraction of the CPU the servers spend per request and the
two cores of a small machine go mostly to the server and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import cast

import httptools
import uvloop

# A hard bound on top of the spec's own, in case a server stops responding.
TIMEOUT_MARGIN_SECONDS = 30.0
MAX_ERROR_BODY = 500


@dataclass(frozen=True)
class LoadSpec:
    """One run against one server."""

    port: int
    method: str
    paths: list[str]
    headers: dict[str, str]
    expected_status: int
    concurrency: int
    warmup_seconds: float
    duration_seconds: float
    max_requests: int
    # A request body in which ``{n}`` is replaced by a number unique within the run.
    body_template: str | None = None
    host: str = "127.0.0.1"
    # Bodies sent once each, in order, and the extra headers of each one.
    bodies: list[str] | None = None
    body_headers: list[dict[str, str]] | None = None


@dataclass
class LoadResult:
    """Measurements of one run, with latencies in milliseconds."""

    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    warmup_requests: int
    errors: int
    statuses: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None
    # time.monotonic() when the measured part began; CLOCK_MONOTONIC on Linux, which
    # every process of the machine shares.
    started_monotonic: float = 0.0


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of values sorted in ascending order."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(fraction * len(sorted_values) + 0.999999))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Connection(asyncio.Protocol):
    """One keep-alive connection that carries one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.body = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def _fail(self, error: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self.body.clear()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Run:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        started = time.perf_counter()
        self.started_monotonic = time.monotonic() + spec.warmup_seconds
        self.measure_from = started + spec.warmup_seconds
        self.deadline = self.measure_from + spec.duration_seconds
        self.measure_until = self.deadline
        self.latencies = array("d")
        self.warmup_requests = 0
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.first_error: str | None = None
        self.sequence = 0
        self.rng = random.Random(spec.port)
        self.prefix = self._prefix()
        self.prebuilt = (
            None
            if spec.body_template is not None or spec.bodies is not None
            else [self._request(path, b"") for path in spec.paths]
        )
        self.fixed = None if spec.bodies is None else self._fixed_requests(spec.bodies)

    def _prefix(self) -> bytes:
        lines = [f"Host: {self.spec.host}:{self.spec.port}"]
        lines += [f"{name}: {value}" for name, value in self.spec.headers.items()]
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    def _request(self, path: str, body: bytes, extra: bytes = b"") -> bytes:
        start = f"{self.spec.method} {path} HTTP/1.1\r\n".encode("latin-1")
        length = f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
        return start + self.prefix + extra + length + body

    def _fixed_requests(self, bodies: list[str]) -> list[bytes]:
        headers = self.spec.body_headers or [{} for _ in bodies]
        if len(headers) != len(bodies):
            raise ValueError("body_headers must give one mapping per body")
        requests = []
        for number, (body, extra) in enumerate(zip(bodies, headers, strict=True)):
            lines = "".join(f"{name}: {value}\r\n" for name, value in extra.items())
            path = self.spec.paths[number % len(self.spec.paths)]
            requests.append(self._request(path, body.encode(), lines.encode("latin-1")))
        requests.reverse()
        return requests

    def next_request(self) -> bytes | None:
        if self.fixed is not None:
            return self.fixed.pop() if self.fixed else None
        if self.prebuilt is not None:
            return self.prebuilt[self.rng.randrange(len(self.prebuilt))]
        assert self.spec.body_template is not None
        self.sequence += 1
        body = self.spec.body_template.replace("{n}", str(self.sequence))
        path = self.spec.paths[self.rng.randrange(len(self.spec.paths))]
        return self._request(path, body.encode())

    def record(self, status: int, body: bytes, sent: float, received: float) -> None:
        if received < self.measure_from:
            self.warmup_requests += 1
        elif received <= self.deadline:
            self.latencies.append((received - sent) * 1000)
            key = str(status)
            self.statuses[key] = self.statuses.get(key, 0) + 1
            if len(self.latencies) >= self.spec.max_requests:
                self.measure_until = received
                self.deadline = received
            elif self.fixed is not None:
                self.measure_until = received
        if status != self.spec.expected_status:
            self.errors += 1
            if self.first_error is None:
                text = body[:MAX_ERROR_BODY].decode("utf-8", "replace")
                self.first_error = f"HTTP {status}: {text}"

    async def drive(self, connection: _Connection) -> None:
        while True:
            request = self.next_request()
            sent = time.perf_counter()
            if request is None or sent >= self.deadline:
                return
            try:
                status = await connection.send(request)
            except (OSError, httptools.HttpParserError) as error:
                # The connection is gone, so this one stops; the parent rejects a run
                # with errors.
                self.errors += 1
                self.first_error = self.first_error or f"connection failed: {error!r}"
                return
            self.record(status, bytes(connection.body), sent, time.perf_counter())

    def result(self) -> LoadResult:
        latencies = sorted(self.latencies)
        seconds = max(self.measure_until - self.measure_from, 1e-9)
        return LoadResult(
            requests=len(latencies),
            seconds=round(seconds, 3),
            requests_per_second=round(len(latencies) / seconds, 1),
            p50_ms=round(percentile(latencies, 0.50), 3),
            p99_ms=round(percentile(latencies, 0.99), 3),
            max_ms=round(latencies[-1], 3) if latencies else 0.0,
            warmup_requests=self.warmup_requests,
            errors=self.errors,
            statuses=self.statuses,
            first_error=self.first_error,
            started_monotonic=self.started_monotonic,
        )


async def run_load(spec: LoadSpec) -> LoadResult:
    """Drive the server as ``spec`` describes and return the measurements."""
    loop = asyncio.get_running_loop()
    connections: list[_Connection] = []
    try:
        for _ in range(spec.concurrency):
            _, connection = await loop.create_connection(
                _Connection, spec.host, spec.port
            )
            connections.append(connection)
        run = _Run(spec)
        timeout = spec.warmup_seconds + spec.duration_seconds + TIMEOUT_MARGIN_SECONDS
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(run.drive(item) for item in connections))
        return run.result()
    finally:
        for connection in connections:
            connection.close()


def main() -> None:
    spec = LoadSpec(**json.loads(sys.stdin.read()))
    result = uvloop.run(run_load(spec))
    sys.stdout.write(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
