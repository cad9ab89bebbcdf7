"""GET /health (liveness) and GET /health/detailed (per provider)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aigw import __version__
from aigw.api.deps import GatewayDep

router = APIRouter()


@router.get("/health")
async def health(gw: GatewayDep) -> dict[str, Any]:
    return {"status": "ok", "version": __version__, "uptime_s": round(gw.uptime_s(), 3)}


@router.get("/health/detailed")
async def health_detailed(gw: GatewayDep) -> dict[str, Any]:
    await gw.models.fresh()
    return gw.detailed_health()
