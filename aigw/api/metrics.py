"""GET /metrics: Prometheus exposition."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.responses import Response

from aigw.api.deps import GatewayDep

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(gw: GatewayDep) -> Response:
    loaded = len(gw.engine.status())
    # Rendering many series takes milliseconds: off the event loop.
    body = await asyncio.to_thread(gw.meter.metrics.exposition, loaded)
    return Response(body, media_type=gw.meter.metrics.CONTENT_TYPE)
