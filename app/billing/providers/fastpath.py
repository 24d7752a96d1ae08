"""Stripe deliveries served ahead of the middleware stack and FastAPI's routing.

A provider sends its events in bursts, and each delivery does little: check the
signature on the raw body, insert one inbox row, respond. Through the full stack, the
routing, the middleware and a session cost several times that work in CPU.
``ProviderWebhookFastPath`` is the outermost middleware, and serves
``POST /v1/provider-webhooks/stripe`` itself with what the stack would have done for
it: the body size limit, the request id (accepted or created, echoed, bound to the
logs), the access log line and the request metrics, and problem documents for
rejected deliveries. Anything unusual goes on to the stack, where the route handles
it: a query string, a body over the limit, no configured secret, an unexpected
error (the body read so far is replayed, and the insert is idempotent).
"""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.billing.providers import stripe as stripe_provider
from app.billing.providers.router import STRIPE_PATH, store_stripe_event, stripe_secret
from app.core.errors import DomainError, render_domain_error
from app.core.middleware import REQUEST_ID_HEADER, client_request_id, record_request

log = structlog.get_logger(__name__)

_SIGNATURE_HEADER = stripe_provider.SIGNATURE_HEADER.encode()
_JSON = b"application/json"


class ProviderWebhookFastPath:
    """Serve Stripe deliveries without the middleware stack, and pass on the rest."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != STRIPE_PATH
            or scope["method"] != "POST"
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        secret = stripe_secret(state.settings)
        declared_too_large = False
        signature: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                # A malformed length goes on to the stack, as anything unusual does.
                declared_too_large = not value.isdigit() or int(value) > self.max_bytes
            elif name == _SIGNATURE_HEADER and signature is None:
                # The first one, as Starlette's ``Request.headers.get`` returns.
                signature = value.decode("latin-1")
        if secret is None or declared_too_large:
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        request_id = client_request_id(scope["headers"]) or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self._serve(
                scope, receive, send, secret, signature, request_id.encode(), started
            )
        finally:
            structlog.contextvars.clear_contextvars()

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        secret: str,
        signature: str | None,
        encoded_id: bytes,
        started: float,
    ) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                replay = [*_as_messages(chunks, more=True), message]
                await self._pass_on(scope, encoded_id, replay, receive, send)
                return
            chunk: bytes = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                replay = _as_messages(chunks, more=True)
                await self._pass_on(scope, encoded_id, replay, receive, send)
                return
            if not message.get("more_body", False):
                break

        try:
            receipt = await store_stripe_event(
                scope["app"].state, secret, b"".join(chunks), signature
            )
        except DomainError as error:
            response = render_domain_error(error, scope["path"])

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [
                        *message.get("headers", []),
                        (REQUEST_ID_HEADER, encoded_id),
                    ]
                await send(message)

            await response(scope, receive, send_with_id)
            self._record(scope, response.status_code, started)
            return
        except Exception as error:
            log.warning("provider_webhook.passed_on", error=repr(error))
            await self._pass_on(scope, encoded_id, _as_messages(chunks), receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", _JSON),
                    (b"content-length", str(len(receipt)).encode()),
                    (REQUEST_ID_HEADER, encoded_id),
                ],
            }
        )
        await send({"type": "http.response.body", "body": receipt})
        self._record(scope, 200, started)

    async def _pass_on(
        self,
        scope: Scope,
        encoded_id: bytes,
        replay: list[Message],
        receive: Receive,
        send: Send,
    ) -> None:
        """Hand the request to the stack, replaying the messages already received.

        The stack keeps the request id already bound to this request's log lines.
        """
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name != REQUEST_ID_HEADER
        ]
        scope = {**scope, "headers": [*headers, (REQUEST_ID_HEADER, encoded_id)]}

        async def replaying_receive() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        await self.app(scope, replaying_receive, send)

    @staticmethod
    def _record(scope: Scope, status: int, started: float) -> None:
        record_request(
            scope["method"],
            scope["path"],
            STRIPE_PATH,
            status,
            time.perf_counter() - started,
        )


def _as_messages(chunks: list[bytes], *, more: bool = False) -> list[Message]:
    """Turn received body chunks back into ``http.request`` messages."""
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
    ]
    if messages and not more:
        messages[-1]["more_body"] = False
    return messages
