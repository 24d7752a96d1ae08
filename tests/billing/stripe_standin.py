"""A local stand-in for the parts of Stripe's API that billing calls, on 127.0.0.1.

It serves Checkout Session and Refund creation, and honours ``Idempotency-Key`` on
both as Stripe does. A repeated key with the same parameters returns the first
result, and one with other parameters fails with an ``idempotency_error``. It also
serves PaymentIntent and Dispute retrieval from objects the test puts in
``payment_intents`` and ``disputes``. Every request is recorded.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class StripeRequest:
    method: str
    path: str
    form: dict[str, str]
    headers: dict[str, str]


class StripeStandIn:
    def __init__(self) -> None:
        self.requests: list[StripeRequest] = []
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.fail_with: int | None = None
        # The number of refund requests that create the refund but close the
        # connection instead of responding, as when a response is lost on the network.
        self.drop_refund_responses = 0
        self.port = 0
        self._sessions_by_key: dict[str, dict[str, Any]] = {}
        self._session_forms_by_key: dict[str, dict[str, str]] = {}
        self._refunds_by_key: dict[str, dict[str, Any]] = {}
        self._refund_forms_by_key: dict[str, dict[str, str]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _record(self, request: web.Request) -> StripeRequest:
        form = {key: str(value) for key, value in (await request.post()).items()}
        recorded = StripeRequest(
            request.method, request.path_qs, form, dict(request.headers)
        )
        self.requests.append(recorded)
        return recorded

    def _error(self, status: int, message: str) -> web.Response:
        body = {"error": {"type": "invalid_request_error", "message": message}}
        if status == 404:
            body["error"]["code"] = "resource_missing"
        return web.json_response(body, status=status)

    @staticmethod
    def _idempotency_error() -> web.Response:
        body = {
            "error": {
                "type": "idempotency_error",
                "message": "Keys for idempotent requests can only be used with the "
                "same parameters they were first used with.",
            }
        }
        return web.json_response(body, status=400)

    async def _create_session(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if self.fail_with is not None:
            return self._error(self.fail_with, "stand-in failure")
        key = recorded.headers.get("Idempotency-Key", "")
        if key and key in self._sessions_by_key:
            if self._session_forms_by_key[key] != recorded.form:
                return self._idempotency_error()
            return web.json_response(self._sessions_by_key[key])
        session_id = f"cs_test_{len(self._sessions_by_key) + 1}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "mode": "payment",
            "amount_total": int(
                recorded.form["line_items[0][price_data][unit_amount]"]
            ),
            "currency": recorded.form["line_items[0][price_data][currency]"],
            "metadata": {
                "invoice_id": recorded.form["metadata[invoice_id]"],
                "workspace_id": recorded.form["metadata[workspace_id]"],
            },
        }
        if key:
            self._sessions_by_key[key] = session
            self._session_forms_by_key[key] = recorded.form
        return web.json_response(session)

    async def _create_refund(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if self.fail_with is not None:
            return self._error(self.fail_with, "stand-in failure")
        key = recorded.headers.get("Idempotency-Key", "")
        if key and key in self._refunds_by_key:
            if self._refund_forms_by_key[key] != recorded.form:
                return self._idempotency_error()
            refund = self._refunds_by_key[key]
        else:
            refund = {
                "id": f"re_standin_{len(self._refunds_by_key) + 1}",
                "object": "refund",
                "amount": int(recorded.form["amount"]),
                "payment_intent": recorded.form["payment_intent"],
                "status": "succeeded",
            }
            if key:
                self._refunds_by_key[key] = refund
                self._refund_forms_by_key[key] = recorded.form
        if self.drop_refund_responses > 0:
            self.drop_refund_responses -= 1
            assert request.transport is not None
            request.transport.close()
        return web.json_response(refund)

    async def _retrieve(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.fail_with is not None:
            return self._error(self.fail_with, "stand-in failure")
        kind = request.match_info["kind"]
        store = self.payment_intents if kind == "payment_intents" else self.disputes
        found = store.get(request.match_info["object_id"])
        if found is None:
            return self._error(404, f"No such {kind}")
        return web.Response(text=json.dumps(found), content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_post("/v1/refunds", self._create_refund)
        app.router.add_get(
            "/v1/{kind:payment_intents|disputes}/{object_id}", self._retrieve
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
