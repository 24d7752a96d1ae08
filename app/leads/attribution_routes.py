"""The routes of campaigns, partners, touches, capture forms and public captures."""

from __future__ import annotations

from fastapi import APIRouter

from app.leads.attribution_router import router as attribution_router
from app.leads.capture_router import capture_router, forms_router

router = APIRouter()
router.include_router(attribution_router)
router.include_router(forms_router)
router.include_router(capture_router)
