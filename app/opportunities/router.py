from __future__ import annotations

from fastapi import APIRouter

from app.core.routing import UnitOfWorkRoute

router = APIRouter(route_class=UnitOfWorkRoute)
