"""The FastAPI application: routers, middleware, error handlers and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from app import ops
from app.activities.router import router as activities_router
from app.backlog import BacklogGauges
from app.billing.credit_router import router as credit_router
from app.billing.providers.fastpath import ProviderWebhookFastPath
from app.billing.providers.inbox import DrainSignal
from app.billing.providers.router import router as provider_webhooks_router
from app.billing.router import router as billing_router
from app.core.auth import KeyCache
from app.core.db import Database
from app.core.errors import install_error_handlers
from app.core.jobs import JobQueue
from app.core.logging import configure_logging
from app.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.customers.router import contacts_router
from app.customers.router import router as customers_router
from app.customfields.router import router as custom_fields_router
from app.leads.assignment_router import router as assignment_router
from app.leads.attribution_routes import router as attribution_router
from app.leads.capture_router import CAPTURE_PATH_PREFIX
from app.leads.identity_router import router as lead_identity_router
from app.leads.imports_router import IMPORT_UPLOAD_ROUTE
from app.leads.imports_router import router as lead_imports_router
from app.leads.router import router as leads_router
from app.leads.scoring_router import router as scoring_router
from app.meta import router as meta_router
from app.nurture.email_events_router import events_router as email_events_router
from app.nurture.email_events_router import secrets_router as email_secrets_router
from app.nurture.enrolment_router import router as enrolment_router
from app.nurture.offers_router import router as offers_router
from app.nurture.router import router as nurture_router
from app.nurture.schedule_router import router as nurture_schedule_router
from app.nurture.settings_router import router as nurture_settings_router
from app.opportunities.line_item_router import router as line_items_router
from app.opportunities.objections_router import router as objections_router
from app.opportunities.pipelines_router import router as pipelines_router
from app.opportunities.product_router import router as products_router
from app.opportunities.proposal_router import router as proposals_router
from app.opportunities.router import router as opportunities_router
from app.settings import Settings, get_settings
from app.users.router import router as users_router
from app.webhooks.docs import document_webhooks
from app.webhooks.router import router as webhooks_router
from app.workspaces.router import router as workspace_router

log = structlog.get_logger(__name__)

API_VERSION = "0.1.0"
DESCRIPTION = """\
salescycle is a headless backend for the whole sales cycle: capture leads, nurture them,
convert them into customers and opportunities, invoice, collect payments and chase debts.

Authenticate with `Authorization: Bearer sk_…`. Every error is an RFC 9457 problem
document (`application/problem+json`) with a stable `code`. Every POST accepts
`Idempotency-Key`. Mutable objects carry a `version`, sent as `ETag`; send it back in
`If-Match` to update safely.
"""


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    queue: JobQueue | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("api.started", env=settings.env)
        try:
            yield
        finally:
            if queue is None:
                await app.state.queue.close()
            if database is None:
                await app.state.db.dispose()
            log.info("api.stopped")

    app = FastAPI(
        title="salescycle",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        separate_input_output_schemas=False,
    )
    app.state.settings = settings
    app.state.db = database or Database(settings)
    app.state.queue = queue or JobQueue(settings.redis_url)
    app.state.drain_signal = DrainSignal(app.state.queue)
    app.state.backlog = BacklogGauges(app.state.db, app.state.queue)
    app.state.key_cache = KeyCache(settings.auth_cache_seconds)

    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        route_limits={IMPORT_UPLOAD_ROUTE: settings.import_max_bytes},
        # The capture route returns its own 413, with the CORS headers a browser needs.
        answered_by_route=(CAPTURE_PATH_PREFIX,),
    )
    app.add_middleware(RequestContextMiddleware)
    # Added last, so it is the outermost: it serves Stripe deliveries on its own.
    app.add_middleware(ProviderWebhookFastPath, max_bytes=settings.max_body_bytes)

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount(ops.DOCS_ASSETS, StaticFiles(directory=static), name="docs-assets")
    app.include_router(ops.router)
    # FastAPI tries the routes in order. Provider webhooks come first, so that a
    # provider's burst of events does not pay for matching every other route.
    app.include_router(provider_webhooks_router, prefix="/v1")
    for router in (
        lead_identity_router,
        lead_imports_router,
        leads_router,
        attribution_router,
        custom_fields_router,
        scoring_router,
        assignment_router,
        users_router,
        activities_router,
        nurture_router,
        nurture_schedule_router,
        enrolment_router,
        offers_router,
        nurture_settings_router,
        email_secrets_router,
        email_events_router,
        customers_router,
        pipelines_router,
        contacts_router,
        opportunities_router,
        objections_router,
        line_items_router,
        products_router,
        proposals_router,
        billing_router,
        credit_router,
        webhooks_router,
        workspace_router,
        meta_router,
    ):
        app.include_router(router, prefix="/v1")

    document_webhooks(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                webhooks=app.webhooks.routes,
                separate_input_output_schemas=False,
            )
            schema["components"].setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "A secret API key, `sk_…`.",
            }
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
