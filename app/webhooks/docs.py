from __future__ import annotations

from fastapi import FastAPI


def document_webhooks(app: FastAPI) -> None:
    """Describe the outbound webhook payloads in the OpenAPI ``webhooks`` section."""
