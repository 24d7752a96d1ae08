"""ASGI middleware: request id, access log and metrics, and the body size limit."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping

import structlog
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_body, problem_response

log = structlog.get_logger("app.access")

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,200}$")

REQUESTS = Counter(
    "salescycle_http_requests_total",
    "HTTP requests handled, by method, route and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "salescycle_http_request_duration_seconds",
    "Time from the first byte received to the response start, by method and route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def client_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Return the client's ``X-Request-Id`` if it is well formed, else None."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            return candidate if _REQUEST_ID.match(candidate) else None
    return None


def record_request(
    method: str, path: str, route: str, status: int, elapsed: float
) -> None:
    """Count and time a finished request, and write its access log line."""
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(elapsed)
    log.info(
        "request.completed",
        method=method,
        path=path,
        route=route,
        status=status,
        duration_ms=round(elapsed * 1000, 2),
    )


class RequestContextMiddleware:
    """Accept or create ``X-Request-Id``, echo it, bind it to logs, time the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = client_request_id(scope["headers"]) or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        encoded_id = request_id.encode()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, encoded_id),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            record_request(
                scope["method"],
                scope["path"],
                getattr(route, "path", "unmatched"),
                status,
                time.perf_counter() - started,
            )
            structlog.contextvars.clear_contextvars()


class BodySizeLimitMiddleware:
    """Return 413 once a request body exceeds its limit, declared or streamed.

    The limit is ``max_bytes``, unless ``route_limits`` has one for the request's
    method and exact path, such as a file upload's. Under a path in
    ``answered_by_route``, a body declared too large is not answered at once: the
    route's first read raises ``BodyTooLarge``, as an oversized stream does, so that
    a route which adds headers of its own to every response, such as CORS headers,
    can add them to the 413 too.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        route_limits: Mapping[tuple[str, str], int] | None = None,
        answered_by_route: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.route_limits = dict(route_limits or {})
        self.answered_by_route = answered_by_route

    def _too_large(self, max_bytes: int, path: str) -> ASGIApp:
        body = problem_body(
            status=413,
            code="payload_too_large",
            title="Payload too large",
            detail=too_large_detail(max_bytes),
            instance=path,
        )
        return problem_response(body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.route_limits.get(
            (scope["method"], scope["path"].rstrip("/")), self.max_bytes
        )
        declared_too_large = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared_too_large = value.isdigit() and int(value) > max_bytes
                break
        if declared_too_large and not scope["path"].startswith(self.answered_by_route):
            await self._too_large(max_bytes, scope["path"])(scope, receive, send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            if declared_too_large:
                raise BodyTooLarge(max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._too_large(max_bytes, scope["path"])(scope, receive, send)


class BodyTooLarge(StarletteHTTPException):
    """Raised by a read of a request body over its limit."""

    # An HTTPException, because FastAPI turns any other error raised while it reads the
    # body into a 400, and this one must reach the client as 413.
    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=too_large_detail(max_bytes))


def too_large_detail(max_bytes: int) -> str:
    return (
        f"The request body exceeds {max_bytes} bytes. Send a smaller body, or split "
        "the request."
    )
