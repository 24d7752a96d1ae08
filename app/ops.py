"""Operational endpoints: liveness, readiness, metrics and the offline API reference."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from starlette.responses import Response

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False)

DOCS_ASSETS = "/docs-assets"


class Readiness(BaseModel):
    status: str
    database: str
    redis: str


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    database = "ok"
    try:
        async with state.db.engine.connect() as connection:
            await asyncio.wait_for(connection.execute(text("SELECT 1")), timeout=2)
    except Exception as error:
        log.warning("readiness.database_failed", error=repr(error))
        database = "unavailable"
    redis = "ok" if await state.queue.ping() else "unavailable"
    ready = database == "ok" and redis == "ok"
    body = Readiness(
        status="ok" if ready else "unavailable", database=database, redis=redis
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    await request.app.state.backlog.refresh()
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="salescycle API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
    )
